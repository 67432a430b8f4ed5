"""`python -m lab --once` (what `make lab` runs) as a user runs it: the sample
cluster of deploy/examples/ reaches BIRD as the ToR over three node namespaces, the output says
so, and nothing it made is left behind.

The expected values are the sample's: three Nodes 192.0.2.11-13 with pod CIDRs 10.244.{1,2,3}.0/24,
the Service `web` (eTP Local) given 203.0.113.10 by the cluster controller from the pool, ready
endpoints on worker-1 and worker-2 only, communities 64512:100 and 64512:1:2.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from lab.cluster_demo import EXAMPLES, load_manifests
from testing.wait import wait_for_text

pytestmark = [pytest.mark.lab, pytest.mark.netns]

ROOT = Path(__file__).resolve().parents[2]
NODES = {"worker-1": "192.0.2.11", "worker-2": "192.0.2.12", "worker-3": "192.0.2.13"}
POD_CIDRS = {"worker-1": "10.244.1.0/24", "worker-2": "10.244.2.0/24", "worker-3": "10.244.3.0/24"}
SERVICE = "203.0.113.10/32"
READY = ("worker-1", "worker-2")


def test_the_examples_are_what_this_test_expects() -> None:
    objs = load_manifests(EXAMPLES)
    nodes = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Node"}
    assert {n: o["status"]["addresses"][0]["address"] for n, o in nodes.items()} == NODES
    assert {n: o["spec"]["podCIDRs"][0] for n, o in nodes.items()} == POD_CIDRS
    [slice_] = [o for o in objs if o["kind"] == "EndpointSlice"]
    ready = tuple(e["nodeName"] for e in slice_["endpoints"] if e["conditions"]["ready"])
    assert ready == READY
    text = (EXAMPLES / "30-loadbalancerippool.yaml").read_text()
    assert yaml.safe_load(text)["spec"]["ranges"][0]["start"] == SERVICE.removesuffix("/32")


def _rows(stdout: str) -> dict[str, list[str]]:
    """The ToR table's rows by prefix: the cells, split where the columns are."""
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if re.fullmatch(r"[\d.]+/\d+", cells[0]):
            rows[cells[0]] = cells
    return rows


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _cmdlines_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.mark.timeout(90)
def test_make_lab_once() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lab", "--once", "--timeout", "60"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=85,
        check=False,
    )
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"

    # What the ToR learned: every node's pod CIDR from that node, the Service's /32 from
    # exactly the nodes with a ready endpoint, all with the advertisement's communities.
    rows = _rows(out)
    assert set(rows) == {*POD_CIDRS.values(), SERVICE}, out
    for node, cidr in POD_CIDRS.items():
        assert rows[cidr] == [
            cidr,
            f"{NODES[node]} ({node})",
            "64512",
            "64512:100",
            "64512:1:2",
            "1 path",
        ], out
    hops = ", ".join(f"{NODES[n]} ({n})" for n in READY)
    assert rows[SERVICE] == [SERVICE, hops, "64512", "64512:100", "64512:1:2", "ECMP x2"], out
    # ...and BIRD merged the two paths into one ECMP route in the ToR's kernel table.
    via = " ".join(f"nexthop via {NODES[n]}" for n in READY)
    assert f"ToR kernel (BIRD merge paths): {SERVICE} {via}" in out, out

    # Each node's BGPNodeState, read from the API server: its session Established, and as
    # many prefixes advertised as it announces (its pod CIDR, plus the /32 where ready).
    for node, address in NODES.items():
        advertised = 2 if node in READY else 1
        pattern = (
            rf"^\s+{node}\s+{re.escape(address)}\s+64512\s+\d+\s+tor 192\.0\.2\.1\s+"
            rf"Established\s+\S+Z\s+{advertised}$"
        )
        assert re.search(pattern, out, re.M), out

    _assert_nothing_left(err)


def _assert_nothing_left(err: str) -> None:
    """Nothing left behind: the demo's namespaces, its processes (by the PIDs it reported, and
    any process still naming its work dir), the work dir itself."""
    spaces = re.search(r"^lab: namespaces (.+); work dir (\S+)$", err, re.M)
    assert spaces is not None, err
    namespaces, workdir = spaces.group(1).split(), spaces.group(2)
    assert len(namespaces) == 4, namespaces
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert not set(namespaces) & {line.split()[0] for line in listed.stdout.splitlines()}
    pids = [int(p) for p in re.findall(r"^lab: started \S+ pid (\d+)", err, re.M)]
    assert len(pids) == 8, err  # BIRD, the cluster controller, a speaker and an agent per node
    assert [p for p in pids if _alive(p)] == []
    assert _cmdlines_mentioning(workdir) == []
    assert not os.path.exists(workdir)
    assert "lab: torn down\n" in err


@pytest.mark.timeout(90)
def test_not_converging_in_time_is_an_error_and_still_cleans_up() -> None:
    # One second is too short for the agents even to start, so this run cannot converge.
    done = subprocess.run(
        [sys.executable, "-m", "lab", "--once", "--timeout", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=85,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "lab: did not converge within 1 s:\n" in done.stderr
    assert "BGPNodeState worker-1: not every peer Established yet" in done.stderr
    _assert_nothing_left(done.stderr)


@pytest.mark.timeout(180)
def test_following_shows_a_change_and_ctrl_c_cleans_up(tmp_path: Path) -> None:
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "lab"], cwd=ROOT, stdout=out, stderr=err)
    try:
        text = wait_for_text(
            err_path.read_text, "following changes until Ctrl-C", "the lab's stderr", 60,
            running=lambda: proc.poll() is None,
        )  # fmt: skip
        url = re.search(r"API server at (http://127\.0\.0\.1:\d+) ", text)
        assert url is not None, text
        # The Service loses its endpoints: the ToR loses its /32, from both nodes.
        path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-7x2kq"
        request = urllib.request.Request(url.group(1) + path, method="DELETE")
        with urllib.request.urlopen(request, timeout=10) as rsp:
            assert rsp.status == 200
        hops = ", ".join(f"{NODES[n]} ({n})" for n in READY)
        wait_for_text(out_path.read_text, f"- ToR  {SERVICE}  {hops}  64512", "the lab's stdout",
                      running=lambda: proc.poll() is None)  # fmt: skip
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:  # the test failed: let the demo tear down, as it does on TERM
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    _assert_nothing_left(err_path.read_text())
