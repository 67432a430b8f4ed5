"""`kubgp-controller cluster` as a process: elected, allocates, serves metrics and its probes,
and on SIGTERM releases the Lease and exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from testing.kube.emulator import KubeAPI
from testing.wait import wait_for
from tests.cluster.harness import ingress
from tests.cluster.manifests import lb_service, pool

CLI = Path(sys.executable).parent / "kubgp-controller"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow  # the cluster controller as a process
def test_cluster_command_end_to_end(kube_api: KubeAPI, tmp_path: Path) -> None:
    kube_api.apply(pool("v4", cidrs=("203.0.113.0/30",)))
    kube_api.apply(lb_service("web"))
    port, health_port = free_port(), free_port()
    log = tmp_path / "controller.log"
    env = {**os.environ, "KUBECONFIG": str(kube_api.kubeconfig), "POD_NAME": "cli-1"}
    stderr = log.open("w")
    proc = subprocess.Popen(
        [str(CLI), "cluster", "--namespace=kube-system", "--lease-duration=2",
         "--renew-deadline=1.5", "--retry-period=0.2", f"--metrics-address=127.0.0.1:{port}",
         f"--health-address=127.0.0.1:{health_port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
    )  # fmt: skip
    try:
        # A cold process on a loaded 2-core machine: imports, election, kopf's first listing.
        wait_for(lambda: ingress(kube_api, "web") == ("203.0.113.0",), "web's address", 60)
        lease = kube_api.get("Lease", "kubgp-cluster-controller", "kube-system")
        assert lease is not None and lease["spec"]["holderIdentity"] == "cli-1"

        def metrics() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())

        wait_for(
            lambda: 'kubgp_lb_pool_addresses{pool="v4",state="used"} 1.0' in metrics(), "metrics"
        )
        assert "kubgp_cluster_controller_leader 1.0" in metrics()
        for path, answer in (("/readyz", "Leader: leading: kopf is running\n"),
                             ("/livez", "Running\n")):  # fmt: skip
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}{path}", timeout=5) as r:
                assert (r.status, r.read().decode()) == (200, answer)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    except AssertionError as err:
        raise AssertionError(f"{err}\ncontroller log:\n{log.read_text()}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
    assert proc.returncode == 0, log.read_text()
    lease = kube_api.get("Lease", "kubgp-cluster-controller", "kube-system")
    assert lease is not None and not lease["spec"].get("holderIdentity")


@pytest.mark.slow  # the cluster controller as a process
def test_bad_lease_timings_are_refused(kube_api: KubeAPI) -> None:
    env = {**os.environ, "KUBECONFIG": str(kube_api.kubeconfig)}
    proc = subprocess.run(
        [str(CLI), "cluster", "--lease-duration=5", "--renew-deadline=10"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "renew_deadline" in proc.stderr


def test_bad_health_address_is_refused(kube_api: KubeAPI) -> None:
    env = {**os.environ, "KUBECONFIG": str(kube_api.kubeconfig)}
    proc = subprocess.run(
        [str(CLI), "cluster", "--health-address=nowhere"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--health-address nowhere: expected HOST:PORT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_kopf_logs_in_with_the_clients_credentials(kube_api: KubeAPI) -> None:
    from controller.kube.client import kopf_login

    client = kube_api.api_client()
    try:
        info = kopf_login(client)()
    finally:
        client.close()  # type: ignore[no-untyped-call]
    assert (info.server, info.scheme, info.token) == (kube_api.url, "Bearer", "emulator")
