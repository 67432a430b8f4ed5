"""`kubgp-controller plan`, run as a real process on manifests in a temporary directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from speaker.api.schema import parse_desired_state
from tests.controller.manifests import (
    advertisement,
    endpoint,
    endpoint_slice,
    node,
    peer,
    secret,
    service,
)

SCRIPT = Path(sys.executable).parent / "kubgp-controller"
REF = {"namespace": "kubgp", "name": "bgp-auth", "key": "password"}


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), "the console script is installed with the package"
    return subprocess.run(
        [str(SCRIPT), "plan", *args], capture_output=True, text=True, input=stdin, check=False
    )


def write_cluster(tmp: Path) -> None:
    """A multi-document YAML file, a `kubectl get -o yaml` List in a subdirectory, JSON, and
    a kind the planner does not read."""
    (tmp / "bgp.yaml").write_text(
        yaml.safe_dump_all(
            [
                peer(passwordSecretRef=REF),
                advertisement(podCIDRs=True, serviceAddresses=["LoadBalancerIP"]),
                {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}},
            ]
        )
    )
    (tmp / "core").mkdir()
    (tmp / "core" / "list.yml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    node(),
                    node("n2", ip="192.0.2.12", pod_cidrs=("10.244.2.0/24",)),
                    service(),
                    service("local", etp="Local", lb_ips=("203.0.113.11",)),
                    endpoint_slice("local", "default", endpoint("n2")),
                ],
            }
        )
    )
    (tmp / "secret.json").write_text(json.dumps(secret(password="s3cret")))
    (tmp / "notes.txt").write_text("not a manifest: ignored by suffix")


def test_plan_prints_yaml_state_and_reasons(tmp_path: Path) -> None:
    write_cluster(tmp_path)
    out = cli("-f", str(tmp_path), "--node", "n1")
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = yaml.safe_load(out.stdout)
    assert doc["node"] == "n1"
    state = doc["state"]
    assert [a["prefix"] for a in state["advertisements"]] == ["10.244.1.0/24", "203.0.113.10/32"]
    assert state["peers"][0]["password"] == "<redacted>"
    assert doc["reasons"] == [
        {
            "reason": "NoLocalReadyEndpoint",
            "kind": "Service",
            "namespace": "default",
            "name": "local",
            "detail": "LoadBalancerIP: traffic policy Local and no ready endpoint on this node",
        }
    ]


def test_plan_json_output_for_another_node_with_secrets_is_a_valid_speaker_config(
    tmp_path: Path,
) -> None:
    write_cluster(tmp_path)
    out = cli(
        "-f", str(tmp_path / "bgp.yaml"), "-f", str(tmp_path / "core"), "-f",
        str(tmp_path / "secret.json"), "--node", "n2", "-o", "json", "--show-secrets",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    state = parse_desired_state(doc["state"])
    assert state.router_id == "192.0.2.12"
    assert state.peers[0].password == "s3cret"
    assert {a.prefix for a in state.advertisements} == {
        "10.244.2.0/24",
        "203.0.113.10/32",
        "203.0.113.11/32",
    }
    assert doc["reasons"] == []


def test_plan_reads_stdin(tmp_path: Path) -> None:
    text = yaml.safe_dump_all([node(), peer(), advertisement(podCIDRs=True)])
    out = cli("-f", "-", "--node", "n1", "-o", "json", stdin=text)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"]["advertisements"][0]["prefix"] == "10.244.1.0/24"


def test_missing_secret_shows_as_a_reason(tmp_path: Path) -> None:
    write_cluster(tmp_path)
    (tmp_path / "secret.json").unlink()
    out = cli("-f", str(tmp_path), "--node", "n1", "-o", "json")
    doc = json.loads(out.stdout)
    assert doc["state"]["peers"] == []
    assert {"reason": "PeerSecretMissing", "kind": "BGPPeer", "name": "tor-a"}.items() <= doc[
        "reasons"
    ][0].items()


def test_unknown_node_exits_1_with_the_reason(tmp_path: Path) -> None:
    write_cluster(tmp_path)
    out = cli("-f", str(tmp_path), "--node", "nope")
    assert out.returncode == 1
    doc = yaml.safe_load(out.stdout)
    assert doc["state"] is None
    assert doc["reasons"][0]["reason"] == "NodeNotFound"


def test_unreadable_input_exits_2(tmp_path: Path) -> None:
    out = cli("-f", str(tmp_path / "missing.yaml"), "--node", "n1")
    assert out.returncode == 2
    assert "no such file or directory" in out.stderr
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    out = cli("-f", str(tmp_path / "bad.yaml"), "--node", "n1")
    assert out.returncode == 2
    assert "bad.yaml" in out.stderr
