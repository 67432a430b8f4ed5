"""The chart as a cluster admin reviews it (issue 13): who runs as root and with which
capabilities, which container holds the ServiceAccount token, which Secrets the node agents may
read, where metrics listen, what Pod Security level each workload needs. Each on the manifests
the real Helm SDK renders; the socket and metrics settings also with the real speaker, started
with the rendered command line and the rendered user, group and capabilities."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from kubernetes.config import incluster_config

from testing.procs import Proc, free_port
from tests.packaging import pod_security
from tests.packaging.chart import (
    CHART_DIR,
    NAMESPACE,
    RELEASE,
    ROOT,
    Manifest,
    component_name,
    container,
    find,
    kubelet_args,
    one,
    pod_spec,
    render,
    render_files,
)
from tests.packaging.rbac import ApiCall, chart_grants

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
AGENT_UID = 65532
TOKEN = "eyJ0b2tlbi1mb3ItdGhlLWFnZW50"
# `kubgp-speaker` of this checkout (the console script's own entry point).
SPEAKER_MODULE = [sys.executable, "-m", "speaker.cli.kubgp_speaker"]


def _node(values: dict[str, Any] | None = None) -> Manifest:
    return one(render(values), "DaemonSet", component_name("node"))


def _mounts(c: Manifest) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or ()}


# --- 1. users and capabilities -------------------------------------------------------------


def test_node_agent_runs_as_non_root_with_nothing() -> None:
    ds = _node()
    pod = pod_spec(ds)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == AGENT_UID
    assert pod["securityContext"]["fsGroup"] == AGENT_UID
    agent = container(ds, "node-agent")["securityContext"]
    assert agent == {
        "runAsUser": AGENT_UID,
        "runAsGroup": AGENT_UID,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_speaker_keeps_only_the_capabilities_asked_for() -> None:
    """NET_BIND_SERVICE by default (port 179), so uid 0 (Kubernetes gives added capabilities
    to uid 0 only) in the agent's group; none at all runs it as the agent's user."""
    speaker = container(_node(), "speaker")["securityContext"]
    assert speaker["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert (speaker["runAsUser"], speaker["runAsGroup"]) == (0, AGENT_UID)
    assert speaker["runAsNonRoot"] is False
    assert speaker["allowPrivilegeEscalation"] is False
    assert speaker["readOnlyRootFilesystem"] is True
    assert speaker["seccompProfile"] == {"type": "RuntimeDefault"}
    route_import = container(
        _node({"speaker": {"capabilities": ["NET_BIND_SERVICE", "NET_ADMIN"]}}), "speaker"
    )
    assert route_import["securityContext"]["capabilities"]["add"] == [
        "NET_BIND_SERVICE",
        "NET_ADMIN",
    ]
    bare = _node({"speaker": {"capabilities": []}, "node": {"nonRootUser": 1000}})
    for c in pod_spec(bare)["containers"]:
        sc = c["securityContext"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (1000, 1000, True)
    args = container(bare, "speaker")["args"]
    assert "--socket-group=1000" in args
    assert [a for a in args if a.startswith("--allowed-uid")] == ["--allowed-uid=1000"]


def test_capabilities_are_documented_in_values() -> None:
    """values.yaml says what each capability the schema allows is for."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    allowed = schema["properties"]["speaker"]["properties"]["capabilities"]["items"]["enum"]
    comments = [
        line.strip()
        for line in (CHART_DIR / "values.yaml").read_text().splitlines()
        if line.strip().startswith("#")
    ]
    for capability in allowed:
        assert any(line.startswith(f"#   {capability} ") for line in comments), capability


# --- the speaker as the chart starts it: its socket shared with the agent's uid, its metrics
# on one address. Started like the container runtime would: setpriv sets the rendered uid, gid,
# supplementary groups (fsGroup), capability bounding set and no_new_privs.


def _runtime_prefix(pod: Manifest, c: Manifest) -> list[str]:
    sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    caps = ",".join(["-all", *(f"+{cap.lower()}" for cap in sc["capabilities"].get("add", ()))])
    prefix = [
        shutil.which("setpriv") or "setpriv",
        f"--reuid={sc['runAsUser']}",
        f"--regid={sc['runAsGroup']}",
        f"--groups={pod['securityContext']['fsGroup']}",
        "--inh-caps=-all",
        f"--bounding-set={caps}",
    ]
    if sc["allowPrivilegeEscalation"] is False:
        prefix.append("--no-new-privs")
    return [*prefix, "--"]


CAPABILITY_BITS = {"NET_ADMIN": 12, "NET_BIND_SERVICE": 10, "CHOWN": 0, "DAC_OVERRIDE": 1}


def _effective_capabilities(pid: int) -> set[str]:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(
        next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff")), 16
    )
    unknown = mask & ~sum(1 << bit for bit in CAPABILITY_BITS.values())
    assert not unknown, f"capabilities {unknown:#x}"
    return {name for name, bit in CAPABILITY_BITS.items() if mask & (1 << bit)}


@contextlib.contextmanager
def _empty_dir(gid: int) -> Iterator[Path]:
    """A directory like the kubelet's emptyDir with fsGroup: group gid, setgid, 2777; outside
    pytest's 0700 tmp tree so that other uids can reach a socket in it."""
    path = Path(tempfile.mkdtemp(prefix="kubgp-emptydir-"))
    try:
        os.chown(path, 0, gid)
        path.chmod(0o2777)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _connect_as(path: Path, uid: int, gid: int, groups: list[int]) -> str:
    """Connect to the control socket as uid/gid/groups (a forked child: the agent's image would
    run Python as that user; ours is not readable by it) and say what the speaker answered:
    its first line's type, a nack's reason, or the connect error."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: syscalls only, then _exit
        answer = "nothing"
        try:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(20)
                sock.connect(str(path))
                line = sock.makefile("rb").readline()
            msg = json.loads(line)
            answer = msg["type"] + (f": {msg['reason']}" if msg["type"] == "nack" else "")
        except OSError as err:
            answer = errno.errorcode.get(err.errno or 0, str(err))
        finally:
            os.write(write_end, answer.encode())
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as f:
            return f.read().decode()
    finally:
        os.waitpid(pid, 0)


# The node's status.hostIP, either family. (The speaker without capabilities runs as the
# agent's uid, which cannot read this machine's interpreter under /root: that variant is
# checked on the rendered manifests only, in test_speaker_keeps_only_the_capabilities_asked_for.)
HOST_IPS = {"ipv4": "127.0.0.1", "ipv6": "::1"}


def _scrape(host: str, port: int) -> str | None:
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10) as rsp:
            return str(rsp.read().decode())
    except (urllib.error.URLError, OSError):
        return None


@pytest.mark.parametrize("family", sorted(HOST_IPS))
def test_the_rendered_speaker_shares_its_socket_with_the_agent_only(
    family: str, tmp_path: Path
) -> None:
    host_ip = HOST_IPS[family]
    port = free_port()
    gid = AGENT_UID
    with _empty_dir(gid) as run_dir, _empty_dir(gid) as state_dir:
        ds = _node(
            {
                "node": {"socketDir": str(run_dir), "stateDir": str(state_dir)},
                "metrics": {"speakerPort": port},
            }
        )
        pod, spk = pod_spec(ds), container(ds, "speaker")
        agent_sc = {**pod["securityContext"], **container(ds, "node-agent")["securityContext"]}
        argv = kubelet_args(spk, {"status.hostIP": host_ip})
        assert argv[0] == "kubgp-speaker"
        command = [*SPEAKER_MODULE, *argv[1:]]
        proc = Proc(
            "speaker",
            _runtime_prefix(pod, spk) + command,
            tmp_path / "speaker.log",
            dict(os.environ),
        ).start()
        try:
            proc.wait_log("control socket", timeout=60)
            # It runs with the rendered capabilities only (setpriv did what the runtime does).
            assert _effective_capabilities(proc.pid) == {"NET_BIND_SERVICE"}
            sock = run_dir / "speaker.sock"
            # The node agent: its rendered uid and gid, the pod's fsGroup.
            agent = (
                agent_sc["runAsUser"],
                agent_sc["runAsGroup"],
                [pod["securityContext"]["fsGroup"]],
            )
            assert _connect_as(sock, *agent) == "hello"
            # Another uid in the socket's group: the speaker refuses it (--allowed-uid).
            assert _connect_as(sock, 4242, gid, [gid]).startswith("nack: uid 4242")
            # Another uid outside the group: the socket's mode (0660) keeps it out.
            assert _connect_as(sock, 4242, 4242, []) == "EACCES"
            # The speaker's probes, run in its container as its user, get an answer.
            probe = spk["readinessProbe"]["exec"]["command"]
            assert probe[0] == "kubgp-speaker"
            probe_argv = [*_runtime_prefix(pod, spk), *SPEAKER_MODULE, *probe[1:]]
            done = subprocess.run(
                probe_argv, capture_output=True, text=True, timeout=60, check=False
            )
            assert done.returncode == 0, done.stderr
            # Metrics on the node's address only: another local address is refused.
            assert "kubgp_speaker_apply_duration_seconds" in (_scrape(host_ip, port) or "")
            other = "127.0.0.2" if host_ip == "127.0.0.1" else "127.0.0.1"
            assert _scrape(other, port) is None
        finally:
            proc.stop(timeout=30)
        assert not proc.running()


# --- 2. the ServiceAccount token: the agent's alone ----------------------------------------


def test_only_the_node_agent_gets_a_token() -> None:
    docs = render()
    ds = one(docs, "DaemonSet", component_name("node"))
    pod = pod_spec(ds)
    assert pod["automountServiceAccountToken"] is False
    assert (
        one(docs, "ServiceAccount", component_name("node"))["automountServiceAccountToken"] is False
    )
    assert not pod.get("shareProcessNamespace")  # the speaker cannot reach the agent's files
    speaker, agent = container(ds, "speaker"), container(ds, "node-agent")
    assert not [p for p in _mounts(speaker) if p.startswith("/var/run/secrets")]
    assert _mounts(agent)[SA_DIR] == "kube-api-access"
    volume = next(v for v in pod["volumes"] if v["name"] == "kube-api-access")
    sources = volume["projected"]["sources"]
    token = next(s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s)
    assert token == {"path": "token", "expirationSeconds": 3607}
    # Only the agent mounts it.
    users = [c["name"] for c in pod["containers"] if "kube-api-access" in _mounts(c).values()]
    assert users == ["node-agent"]
    short = pod_spec(_node({"nodeAgent": {"tokenExpirationSeconds": 600}}))
    volume = next(v for v in short["volumes"] if v["name"] == "kube-api-access")
    assert volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 600


def _project(ds: Manifest, root: Path) -> dict[str, Path]:
    """Lay out the agent's projected token volume under `root` as the kubelet would in the
    container: its mountPath, each source's file. Returns in-container path -> file written."""
    agent = container(ds, "node-agent")
    mount = next(m for m in agent["volumeMounts"] if m["name"] == "kube-api-access")
    volume = next(v for v in pod_spec(ds)["volumes"] if v["name"] == "kube-api-access")
    content = {
        "serviceAccountToken": TOKEN,
        "configMap": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        "downwardAPI": NAMESPACE,
    }
    files = {}
    for source in volume["projected"]["sources"]:
        ((kind, spec),) = source.items()
        if kind == "configMap":
            assert spec["name"] == "kube-root-ca.crt"  # what every namespace has
        paths = (
            [spec["path"]] if kind == "serviceAccountToken" else [i["path"] for i in spec["items"]]
        )
        for rel in paths:
            inside = f"{mount['mountPath']}/{rel}"
            target = root / inside.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content[kind])
            files[inside] = target
    return files


def test_the_agents_kubernetes_client_and_kopf_find_the_projected_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files the chart projects, where the in-cluster loader of the agent's kubernetes
    client looks: the agent's own client (controller.kube.client.api_client) and kopf's login
    taken from it (kopf_login, the agent's login handler) use that token and CA. Only the file
    system root is moved (to tmp_path); the paths are the library's own."""
    from controller.kube.client import KubeConfigError, api_client, kopf_login
    from controller.kube.user_agent import NODE_AGENT

    files = _project(_node(), tmp_path)
    token_file = incluster_config.SERVICE_TOKEN_FILENAME
    ca_file = incluster_config.SERVICE_CERT_FILENAME
    assert token_file in files and ca_file in files, sorted(files)
    assert f"{SA_DIR}/namespace" in files  # as the standard service-account volume has it
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(files[token_file]))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(files[ca_file]))
    # What the kubelet sets in every container.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))

    client = api_client(NODE_AGENT)
    config = client.configuration
    assert config.host == "https://10.96.0.1:443"
    assert config.ssl_ca_cert == str(files[ca_file])
    assert config.get_api_key_with_prefix("BearerToken") == f"bearer {TOKEN}"

    info = kopf_login(client)()
    assert (info.server, info.token, info.ca_path) == (
        "https://10.96.0.1:443",
        TOKEN,
        str(files[ca_file]),
    )

    # The speaker's container has none of these files: its loaders find no credentials.
    empty = tmp_path / "speaker-root"
    monkeypatch.setattr(
        incluster_config, "SERVICE_TOKEN_FILENAME", str(empty / token_file.lstrip("/"))
    )
    with pytest.raises(KubeConfigError):
        api_client(NODE_AGENT)


# --- 3. Secrets: by name by default --------------------------------------------------------

PEER_SECRETS = component_name("node") + "-peer-secrets"


def _get_secret(name: str, namespace: str = NAMESPACE) -> ApiCall:
    return ApiCall(
        verb="get",
        group="",
        resource="secrets",
        namespace=namespace,
        name=name,
        request=f"GET /api/v1/namespaces/{namespace}/secrets/{name}",
    )


def test_by_default_the_agents_read_no_secret_at_all() -> None:
    docs = render()
    assert find(docs, "Role", PEER_SECRETS) == []
    grants = chart_grants("node")
    helm_release = _get_secret(f"sh.helm.release.v1.{RELEASE}.v1")
    assert not grants.allows(helm_release)
    assert not grants.allows(_get_secret("tor-password"))
    notes = render_files()[f"{RELEASE}/templates/NOTES.txt"]
    assert "rbac.peerSecrets" in notes


def test_listed_peer_secrets_are_readable_by_name_only() -> None:
    values = {
        "rbac": {
            "peerSecrets": [
                {"name": "tor-password"},
                {"namespace": "bgp", "name": "leaf-b"},
                {"namespace": "bgp", "name": "leaf-a"},
                {"namespace": NAMESPACE, "name": "tor-password"},
            ]
        }
    }
    roles = {
        r["metadata"]["namespace"]: r["rules"] for r in find(render(values), "Role", PEER_SECRETS)
    }
    rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    assert roles == {
        NAMESPACE: [{**rule, "resourceNames": ["tor-password"]}],
        "bgp": [{**rule, "resourceNames": ["leaf-a", "leaf-b"]}],
    }
    grants = chart_grants("node", values=values)
    assert grants.allows(_get_secret("tor-password"))
    assert grants.allows(_get_secret("leaf-a", "bgp"))
    assert not grants.allows(_get_secret("leaf-a"))  # that name in the release namespace
    assert not grants.allows(_get_secret(f"sh.helm.release.v1.{RELEASE}.v1"))
    assert not grants.allows(_get_secret("tor-password", "bgp"))
    listing = ApiCall(
        verb="list",
        group="",
        resource="secrets",
        namespace=NAMESPACE,
        name=None,
        request=f"GET /api/v1/namespaces/{NAMESPACE}/secrets",
    )
    assert not grants.allows(listing)
    assert "rbac.peerSecrets" not in render_files(values)[f"{RELEASE}/templates/NOTES.txt"]


def test_the_wider_form_is_explicit() -> None:
    """rbac.peerSecretNamespaces: any name in those namespaces, and nothing else changes."""
    values = {
        "rbac": {
            "peerSecretNamespaces": ["bgp-passwords"],
            "peerSecrets": [{"namespace": "bgp-passwords", "name": "a"}, {"name": "b"}],
        }
    }
    roles = {
        r["metadata"]["namespace"]: r["rules"] for r in find(render(values), "Role", PEER_SECRETS)
    }
    assert roles["bgp-passwords"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    ]
    assert roles[NAMESPACE][0]["resourceNames"] == ["b"]
    grants = chart_grants("node", values=values)
    assert grants.allows(_get_secret("anything", "bgp-passwords"))
    assert not grants.allows(_get_secret("anything"))
    wide_release = chart_grants("node", values={"rbac": {"peerSecretNamespaces": [NAMESPACE]}})
    assert wide_release.allows(_get_secret(f"sh.helm.release.v1.{RELEASE}.v1"))  # as documented


# --- 4. metrics: one address --------------------------------------------------------------


def test_node_metrics_listen_on_the_nodes_address_by_default() -> None:
    ds = _node()
    for name, port in (("speaker", 9473), ("node-agent", 9474)):
        c = container(ds, name)
        env = {e["name"]: e for e in c["env"]}
        assert env["HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
        assert f"--metrics-address=[$(HOST_IP)]:{port}" in c["args"]
        fields = {"status.hostIP": "2001:db8::7", "spec.nodeName": "n", "metadata.namespace": "x"}
        assert f"--metrics-address=[2001:db8::7]:{port}" in kubelet_args(c, fields)
    bracketed = {"127.0.0.1": "127.0.0.1", "::1": "[::1]", "0.0.0.0": "0.0.0.0", "::": "[::]"}
    for address, rendered in bracketed.items():
        c = container(_node({"metrics": {"bindAddress": address}}), "node-agent")
        assert f"--metrics-address={rendered}:9474" in c["args"]
        assert "HOST_IP" not in {e["name"] for e in c["env"]}
    # The controller is not on the host network: its pod's own address.
    dep = one(render(), "Deployment")
    assert "--metrics-address=:9475" in container(dep, "controller")["args"]


def test_a_pod_monitor_needs_an_address_prometheus_reaches() -> None:
    """Prometheus scrapes the pod IP, which for a host-network pod is status.hostIP."""
    for address in ("hostIP", "0.0.0.0", "::"):
        values = {"metrics": {"bindAddress": address, "podMonitor": {"enabled": True}}}
        assert len(find(render(values), "PodMonitor")) == 2
    for address in ("127.0.0.1", "::1"):
        values = {"metrics": {"bindAddress": address, "podMonitor": {"enabled": True}}}
        with pytest.raises(helm.HelmError, match=r"metrics\.podMonitor\.enabled needs"):
            render(values)
        assert find(render({"metrics": {"bindAddress": address}}), "PodMonitor") == []


# --- 5. image.tag as a number ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "image"),
    [
        ("image.tag=2", "kubgp/kubgp:2"),
        ("image.tag=20240101", "kubgp/kubgp:20240101"),  # no 2.0240101e+07
        ("image.tag=1.10", "kubgp/kubgp:1.10"),  # --set keeps it a string
        ("image.tag=v0.2.0", "kubgp/kubgp:v0.2.0"),
    ],
)
def test_set_image_tag_as_helm_parses_it(flag: str, image: str) -> None:
    values = helm.parse_set_string(flag)  # Helm's own --set parser (strvals)
    docs = render(values)
    images = {
        c["image"]
        for kind in ("DaemonSet", "Deployment")
        for c in pod_spec(one(docs, kind))["containers"]
    }
    assert images == {image}


# --- 6. Pod Security levels ----------------------------------------------------------------


def test_pod_security_levels() -> None:
    """The DaemonSet needs "privileged" (host network, host ports); the controller runs under
    "restricted"; and each node container but for the host namespace is restricted too."""
    docs = render()
    ds, dep = one(docs, "DaemonSet"), one(docs, "Deployment")
    assert pod_security.required_level(dep) == "restricted"
    assert pod_security.required_level(ds) == "privileged"
    assert pod_security.violations(ds, "baseline") == [
        "host namespaces: hostNetwork",
        "host port 9473 in speaker",
        "host port 9474 in node-agent",
    ]
    restricted = set(pod_security.violations(ds, "restricted"))
    # What restricted adds is the speaker's uid 0 (for NET_BIND_SERVICE) only.
    assert restricted - set(pod_security.violations(ds, "baseline")) == {
        "runAsNonRoot not true: speaker",
        "runAsUser 0: speaker",
    }
    bare = _node({"speaker": {"capabilities": []}, "metrics": {"enabled": False}})
    assert pod_security.violations(bare, "restricted") == ["host namespaces: hostNetwork"]
    host_path = _node({"node": {"stateHostPath": "/var/lib/kubgp"}})
    assert "hostPath volume 'state'" in pod_security.violations(host_path, "baseline")


def test_the_pod_security_checker_can_fail() -> None:
    dep = one(render(), "Deployment")
    spec = pod_spec(dep)
    c = spec["containers"][0]
    broken = {
        "spec": {
            "template": {
                "spec": {
                    **spec,
                    "containers": [
                        {
                            **c,
                            "securityContext": {
                                **c["securityContext"],
                                "privileged": True,
                                "allowPrivilegeEscalation": True,
                                "capabilities": {"add": ["SYS_ADMIN"]},
                            },
                        }
                    ],
                }
            }
        }
    }
    found = pod_security.violations(broken, "restricted")
    assert "privileged: controller" in found
    assert "capabilities beyond baseline in controller: ['SYS_ADMIN']" in found
    assert "allowPrivilegeEscalation not false: controller" in found
    assert "capabilities not dropping ALL: controller" in found
    assert pod_security.required_level(broken) == "privileged"


# --- the documented commands ---------------------------------------------------------------


def _merge(into: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def test_the_documented_install_command_renders() -> None:
    """docs/operations.md's `helm install`, its --set flags through Helm's own parser: the
    image it names and the one Secret it lets the agents read."""
    doc = (ROOT / "docs" / "operations.md").read_text()
    block = next(b for b in doc.split("```sh")[1:] if "helm install" in b.split("```")[0])
    command = shlex.split(block.split("```")[0].split("helm install", 1)[1].replace("\\\n", " "))
    flags = [command[i + 1] for i, word in enumerate(command) if word == "--set"]
    assert len(flags) >= 3, command
    values: dict[str, Any] = {}
    for flag in flags:
        _merge(values, helm.parse_set_string(flag))
    docs = render(values)
    assert container(one(docs, "DaemonSet"), "speaker")["image"] == (
        "registry.example.com/net/kubgp:0.1.0"
    )
    grants = chart_grants("node", values=values)
    assert grants.allows(_get_secret("tor-password"))
    assert not grants.allows(_get_secret("other"))
