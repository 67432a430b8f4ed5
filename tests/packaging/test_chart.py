"""The Helm chart (deploy/helm/kubgp), rendered and linted by the real Helm SDK over a matrix of
values; every manifest validated against the Kubernetes API schemas (kubernetes-validate,
strict) or, for our own kinds, against our CRDs; what each workload and role must be."""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from testing.kube.crd_schema import admit
from testing.procs import free_port
from tests.packaging.chart import (
    CHART_DIR,
    KUBERNETES_VERSION,
    NAMESPACE,
    ROOT,
    Manifest,
    component_name,
    container,
    find,
    kubelet_args,
    load_documents,
    one,
    render,
    render_files,
)
from tests.speaker.api.test_client import server_thread

BIN = Path(sys.executable).parent
# What the downward API gives a node pod's containers, for $(VAR) in their args.
NODE_FIELDS = {
    "spec.nodeName": "node-1",
    "metadata.namespace": NAMESPACE,
    "status.hostIP": "192.0.2.10",
}

# The values matrix: defaults, everything optional switched on, everything switched off, and
# the knobs that change the shape of the workloads.
MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": [{"name": "regcred"}],
        "logLevel": "debug",
        "defaultASN": 4200000000,
        "node": {
            "stateHostPath": "/var/lib/kubgp",
            "priorityClassName": "system-node-critical",
            "podAnnotations": {"example.com/a": "b"},
            "podLabels": {"team": "net"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "bgp", "operator": "Exists"}]}
                        ]
                    }
                }
            },
        },
        "speaker": {
            "capabilities": ["NET_BIND_SERVICE", "NET_ADMIN"],
            "extraArgs": ["--extra=1"],
            "extraEnv": [{"name": "A", "value": "b"}],
        },
        "nodeAgent": {"extraArgs": ["--extra=2"]},
        "routeImport": {"enabled": True, "table": 4294967295, "metric": 4294967295},
        "controller": {
            "replicas": 3,
            "tolerations": [{"key": "role", "operator": "Equal", "value": "infra"}],
            "priorityClassName": "system-cluster-critical",
        },
        "serviceAccount": {"annotations": {"example.com/role": "x"}},
        "rbac": {
            "peerSecretNamespaces": ["bgp-secrets", "kube-system"],
            "peerSecrets": [{"name": "tor-password"}, {"namespace": "bgp-secrets", "name": "x"}],
        },
        "metrics": {
            "podMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        },
        "defaultAdvertisement": {
            "enabled": True,
            "serviceAddresses": ["LoadBalancerIP", "ExternalIP"],
            "communities": ["64512:100", "no-export"],
        },
    },
    "minimal": {
        "controller": {"enabled": False},
        "metrics": {"enabled": False},
        "rbac": {"viewer": {"enabled": False}},
    },
    "on-delete-named-secrets": {
        "fullnameOverride": "bgp",
        "image": {"tag": 2},
        "node": {"updateStrategy": {"type": "OnDelete"}},
        "rbac": {
            "peerSecrets": [{"name": "tor-password"}, {"namespace": "bgp", "name": "leaf-a"}],
            "viewer": {"aggregateToView": False},
        },
        "defaultAdvertisement": {"enabled": True, "serviceAddresses": [], "podCIDRs": True},
    },
    # The speaker without capabilities (so non-root), metrics on the node's loopback only.
    "non-root-loopback": {
        "image": {"tag": "v1.10"},
        "speaker": {"capabilities": []},
        "node": {"stateHostPath": "/var/lib/kubgp", "nonRootUser": 1000},
        "nodeAgent": {"tokenExpirationSeconds": 600},
        "metrics": {"bindAddress": "127.0.0.1"},
    },
    "every-ipv6-address": {"metrics": {"bindAddress": "::", "podMonitor": {"enabled": True}}},
}

# prometheus-operator's kinds: no schema ships offline, so they are checked by hand below.
MONITORING = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
OUR_CRDS = {p.stem: p.name for p in (ROOT / "crds").glob("*.yaml")}


def test_chart_crds_are_the_repository_crds() -> None:
    """One source of truth: deploy/helm/sync-crds.sh copies crds/ into the chart."""
    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    charted = {p.name: p.read_bytes() for p in (CHART_DIR / "crds").glob("*.yaml")}
    assert ours, "no CRDs in crds/"
    assert sorted(charted) == sorted(ours), "run deploy/helm/sync-crds.sh"
    drifted = [name for name in ours if charted[name] != ours[name]]
    assert not drifted, f"{drifted} differ from crds/: run deploy/helm/sync-crds.sh"


def test_the_sync_script_reproduces_the_chart_crds(tmp_path: Path) -> None:
    tree = tmp_path / "repo"
    shutil.copytree(ROOT / "crds", tree / "crds")
    (tree / "deploy" / "helm" / "kubgp").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "helm" / "sync-crds.sh", tree / "deploy" / "helm")
    subprocess.run(["sh", str(tree / "deploy" / "helm" / "sync-crds.sh")], check=True)
    made = {p.name: p.read_bytes() for p in (tree / "deploy/helm/kubgp/crds").iterdir()}
    assert made == {p.name: p.read_bytes() for p in (CHART_DIR / "crds").iterdir()}


def test_helm_loads_the_crds_and_they_validate() -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        crds = chart.crds
    assert sorted(Path(c["filename"]).name for c in crds) == sorted(OUR_CRDS.values())
    for c in crds:
        doc = yaml.safe_load(c["data"])
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_helm_lint_is_clean(case: str) -> None:
    report = helm.lint(CHART_DIR, MATRIX[case], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report
    assert report["total_charts_linted"] == 1


def _validate(doc: Manifest) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if doc["apiVersion"] == "kubgp.io/v1alpha1":
        crd = next(f for f in OUR_CRDS.values() if f.startswith(doc["kind"].lower()))
        assert admit(crd, doc) == [], doc
    elif key in MONITORING:
        _check_monitoring(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_manifest_validates(case: str) -> None:
    docs = render(MATRIX[case])
    assert docs
    seen: set[tuple[str, str, str]] = set()
    for doc in docs:
        _validate(doc)
        meta = doc["metadata"]
        key = (doc["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in seen, f"{key} rendered twice"
        seen.add(key)
        assert meta["labels"]["app.kubernetes.io/instance"] == "kubgp"
        assert len(meta["name"]) <= 63


def test_the_validator_can_fail() -> None:
    """kubernetes-validate in strict mode rejects an unknown field and a wrong type."""
    ds = one(render(), "DaemonSet")
    bad = copy.deepcopy(ds)
    bad["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
    bad = copy.deepcopy(ds)
    bad["spec"]["minReadySeconds"] = "ten"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(yaml.constructor.ConstructorError):
        load_documents("a: 1\nb: 2\na: 3\n")


def _check_monitoring(doc: Manifest) -> None:
    spec = doc["spec"]
    if doc["kind"] == "PodMonitor":
        assert spec["selector"]["matchLabels"]
        assert all(e["port"] and e["interval"] for e in spec["podMetricsEndpoints"])
    else:
        for group in spec["groups"]:
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
                assert rule["alert"].startswith("Kubgp") and rule["expr"].strip()


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"speaker": {"extraArg": []}}, "extraArg"),
        ({"logLevel": "chatty"}, "logLevel"),
        ({"metrics": {"speakerPort": 70000}}, "speakerPort"),
        ({"defaultASN": 0}, "defaultASN"),
        ({"node": {"socketDir": "relative"}}, "socketDir"),
        ({"defaultAdvertisement": {"serviceAddresses": ["NodePort"]}}, "serviceAddresses"),
        ({"rbac": {"peerSecretNamespaces": ["Not_A_Namespace"]}}, "peerSecretNamespaces"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"image": {"tag": 1.1}}, "tag"),
        ({"image": {"tag": True}}, "tag"),
        ({"speaker": {"capabilities": ["SYS_ADMIN"]}}, "capabilities"),
        ({"node": {"runAsNonRoot": True}}, "runAsNonRoot"),  # gone: speaker.capabilities=[]
        ({"nodeAgent": {"tokenExpirationSeconds": 60}}, "tokenExpirationSeconds"),
        ({"rbac": {"peerSecrets": [{"namespace": "bgp"}]}}, "name"),
        ({"rbac": {"peerSecrets": ["tor-password"]}}, "peerSecrets"),
        ({"rbac": {"peerSecretNames": ["tor-password"]}}, "peerSecretNames"),  # gone
        ({"metrics": {"bindAddress": "192.0.2.1"}}, "bindAddress"),
        ({"routeImport": {"table": 255}}, "table"),
        ({"routeImport": {"protocol": 2}}, "protocol"),
        ({"routeImport": {"maxPaths": 65}}, "maxPaths"),
        ({"routeImport": {"metrics": 20}}, "metrics"),
    ],
)
def test_the_values_schema_refuses(values: dict[str, Any], complaint: str) -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        with pytest.raises(helm.HelmError, match=complaint):
            chart.validate_schema(chart.merge_values(values))
        with pytest.raises(helm.HelmError):
            chart.render(values, name="kubgp", namespace=NAMESPACE)


# --- the node DaemonSet -------------------------------------------------------------------


def _pod(doc: Manifest) -> Manifest:
    spec: Manifest = doc["spec"]["template"]["spec"]
    return spec


def test_daemonset_runs_speaker_and_agent_sharing_the_socket_and_state() -> None:
    ds = one(render(), "DaemonSet", component_name("node"))
    pod = _pod(ds)
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert [c["name"] for c in pod["containers"]] == ["speaker", "node-agent"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["run"] and "emptyDir" in volumes["state"]
    speaker, agent = container(ds, "speaker"), container(ds, "node-agent")
    mounts = {
        c["name"]: {m["name"]: m["mountPath"] for m in c["volumeMounts"]} for c in (speaker, agent)
    }
    assert mounts["speaker"]["run"] == mounts["node-agent"]["run"] == "/run/kubgp"
    assert mounts["speaker"]["state"] == "/var/lib/kubgp"
    assert "--socket=/run/kubgp/speaker.sock" in speaker["args"]
    assert "--state-dir=/var/lib/kubgp" in speaker["args"]
    assert "--speaker-socket=/run/kubgp/speaker.sock" in agent["args"]
    assert "--node-name=$(NODE_NAME)" in agent["args"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert {"operator": "Exists"} in pod["tolerations"]
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1


def test_the_state_dir_can_outlive_the_pod() -> None:
    ds = one(render({"node": {"stateHostPath": "/var/lib/kubgp-state"}}), "DaemonSet")
    state = next(v for v in _pod(ds)["volumes"] if v["name"] == "state")
    assert state == {
        "name": "state",
        "hostPath": {"path": "/var/lib/kubgp-state", "type": "DirectoryOrCreate"},
    }


@pytest.mark.slow  # the speaker as a process
def test_speaker_probes_ask_the_speaker_on_its_socket(tmp_path: Path) -> None:
    """The probe command, as rendered, run against a live control socket: 0 while the speaker
    answers, non-zero when nothing listens (so a hung or dead speaker is restarted)."""
    with server_thread() as (socket_path, _sink):
        ds = one(render({"node": {"socketDir": str(socket_path.parent)}}), "DaemonSet")
        speaker = container(ds, "speaker")
        assert speaker["livenessProbe"]["exec"] == speaker["readinessProbe"]["exec"]
        command = speaker["livenessProbe"]["exec"]["command"]
        assert command[0] == "kubgp-speaker"
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        ok = subprocess.run(
            command, check=False, capture_output=True, text=True, env=env, timeout=30
        )
        assert ok.returncode == 0, ok.stderr
        assert '"type": "status"' in ok.stdout
    gone = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=30)
    assert gone.returncode != 0


# --- the cluster controller, ServiceAccounts and RBAC ------------------------------------


def test_controller_deployment() -> None:
    docs = render()
    dep = one(docs, "Deployment", component_name("controller"))
    assert dep["spec"]["replicas"] == 2
    pod = _pod(dep)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "hostNetwork" not in pod
    ctl = container(dep, "controller")
    assert ctl["args"][:2] == ["kubgp-controller", "cluster"]
    assert ctl["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert find(render({"controller": {"enabled": False}}), "Deployment") == []


def test_one_service_account_per_component() -> None:
    docs = render()
    accounts = sorted(d["metadata"]["name"] for d in find(docs, "ServiceAccount"))
    assert accounts == [component_name("controller"), component_name("node")]
    assert _pod(one(docs, "DaemonSet"))["serviceAccountName"] == component_name("node")
    assert _pod(one(docs, "Deployment"))["serviceAccountName"] == component_name("controller")


WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}


def _writes(docs: list[Manifest], role_kind: str, name: str) -> set[tuple[str, str]]:
    out = set()
    for doc in find(docs, role_kind, name):
        for rule in doc["rules"]:
            if WRITE_VERBS & set(rule["verbs"]):
                out |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    return out


def test_least_privilege() -> None:
    docs = render()
    node, ctl = component_name("node"), component_name("controller")
    for role in find(docs, "ClusterRole") + find(docs, "Role"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["apiGroups"] + rule["resources"], role
            # No ClusterRole may read Secrets: only Roles in the peer-secret namespaces.
            if role["kind"] == "ClusterRole":
                assert "secrets" not in rule["resources"], role["metadata"]["name"]
    # What each component may change.
    assert _writes(docs, "ClusterRole", node) == {
        ("kubgp.io", "bgpnodestates"),
        ("kubgp.io", "bgpnodestates/status"),
        ("", "events"),
    }
    assert _writes(docs, "ClusterRole", ctl) == {
        ("", "services/status"),
        ("kubgp.io", "loadbalancerippools/status"),
        ("kubgp.io", "bgppeers/status"),
        ("", "events"),
    }
    assert _writes(docs, "Role", f"{ctl}-leader-election") == {("coordination.k8s.io", "leases")}
    assert _writes(docs, "ClusterRole", component_name("viewer")) == set()


# --- monitoring, the default advertisement, NOTES ------------------------------------------


def test_monitoring_is_optional() -> None:
    assert find(render(), "PodMonitor") == find(render(), "PrometheusRule") == []
    docs = render(MATRIX["everything"])
    monitors = find(docs, "PodMonitor")
    ports = {e["port"] for m in monitors for e in m["spec"]["podMetricsEndpoints"]}
    ds, dep = one(docs, "DaemonSet"), one(docs, "Deployment")
    declared = {
        p["name"] for c in _pod(ds)["containers"] + _pod(dep)["containers"] for p in c["ports"]
    }
    assert ports == declared == {"speaker-metrics", "agent-metrics", "metrics"}
    alerts = {r["alert"] for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    assert alerts == {"KubgpBGPSessionDown", "KubgpIPPoolExhausted", "KubgpSpeakerStateStale"}


def test_default_advertisement() -> None:
    assert find(render(), "BGPAdvertisement") == []
    ad = one(render({"defaultAdvertisement": {"enabled": True}}), "BGPAdvertisement")
    assert ad["spec"] == {"podCIDRs": True, "serviceAddresses": ["LoadBalancerIP"]}
    assert "namespace" not in ad["metadata"]  # cluster-scoped


def test_notes_tell_the_next_step() -> None:
    notes = render_files()["kubgp/templates/NOTES.txt"]
    assert "kind: BGPPeer" in notes and "kind: BGPAdvertisement" in notes
    assert "kubectl kubgp status" in notes
    enabled = render_files({"defaultAdvertisement": {"enabled": True}})["kubgp/templates/NOTES.txt"]
    assert "kind: BGPAdvertisement" not in enabled and '"default" announces' in enabled


# --- the chart's command lines against the programs' real parsers -------------------------


def test_node_agent_args_parse_with_the_real_cli() -> None:
    """The node agent's container args, as rendered, through `kubgp-controller`'s own
    argparse parser (the kubelet expands $(NODE_NAME) from the container's env)."""
    from controller.cli.kubgp_controller import build_parser

    ds = one(render({"nodeAgent": {"extraArgs": ["--coalesce-quiet=0.5"]}}), "DaemonSet")
    agent = container(ds, "node-agent")
    assert agent["args"][0] == "kubgp-controller"
    argv = kubelet_args(agent, NODE_FIELDS)
    args = build_parser().parse_args(argv[1:])
    assert args.command == "node"
    assert args.node_name == "node-1"
    assert args.speaker_socket == "/run/kubgp/speaker.sock"
    assert args.metrics_address == "[192.0.2.10]:9474"  # the node's address, not every one
    assert args.health_address == "127.0.0.1:9476"
    assert args.default_asn == 64512
    assert args.coalesce_quiet == 0.5


def test_route_import_gives_the_speaker_net_admin_and_the_agent_the_fib_settings() -> None:
    """routeImport: NET_ADMIN added to the speaker's capabilities (whatever else it keeps),
    and the settings, through the node agent's real parser, as the desired state's `fib`."""
    from controller.cli.kubgp_controller import build_parser
    from controller.cli.node_cmd import fib_settings
    from speaker.api.schema import Fib

    values = {"routeImport": {"enabled": True, "table": 1000, "protocol": 200, "metric": 30,
                              "maxPaths": 4}}  # fmt: skip
    for extra, caps in (({}, ["NET_BIND_SERVICE", "NET_ADMIN"]),
                        ({"speaker": {"capabilities": []}}, ["NET_ADMIN"]),
                        ({"speaker": {"capabilities": ["NET_ADMIN"]}}, ["NET_ADMIN"])):  # fmt: skip
        ds = one(render({**values, **extra}), "DaemonSet")
        speaker = container(ds, "speaker")["securityContext"]
        assert speaker["capabilities"] == {"drop": ["ALL"], "add": caps}
        assert speaker["runAsUser"] == 0  # Kubernetes gives added capabilities to uid 0 only
        agent = container(ds, "node-agent")
        args = build_parser().parse_args(kubelet_args(agent, NODE_FIELDS)[1:])
        assert fib_settings(args) == Fib(table=1000, protocol=200, metric=30, max_paths=4)
    off = one(render(), "DaemonSet")
    args = build_parser().parse_args(kubelet_args(container(off, "node-agent"), NODE_FIELDS)[1:])
    assert fib_settings(args) is None
    assert args.always_compare_med is False
    assert "NET_ADMIN" not in container(off, "speaker")["securityContext"]["capabilities"]["add"]


def test_always_compare_med_reaches_the_node_agent_with_or_without_kernel_routes() -> None:
    from controller.cli.kubgp_controller import build_parser

    for enabled in (False, True):
        values = {"routeImport": {"enabled": enabled, "alwaysCompareMed": True}}
        agent = container(one(render(values), "DaemonSet"), "node-agent")
        args = build_parser().parse_args(kubelet_args(agent, NODE_FIELDS)[1:])
        assert args.always_compare_med is True
        assert args.fib is enabled


def _kubelet_http_get(probe: Manifest) -> bool:
    """What the kubelet does for an httpGet probe: success is a 2xx or 3xx answer in time."""
    get = probe["httpGet"]
    url = f"http://{get['host']}:{get['port']}{get['path']}"
    try:
        with urllib.request.urlopen(url, timeout=probe["timeoutSeconds"]) as rsp:
            status: int = rsp.status
            return 200 <= status < 400
    except (urllib.error.URLError, OSError):
        return False


def test_node_agent_probes_ask_the_agent_it_runs() -> None:
    """The agent's probes, as rendered, against the health endpoint its rendered args start:
    readiness follows the agent's readiness, liveness its loops, both fail with no agent."""
    from controller.cli.kubgp_controller import build_parser
    from controller.health_endpoint import Health, HealthServer

    port = free_port()
    ds = one(render({"nodeAgent": {"healthPort": port}}), "DaemonSet")
    agent = container(ds, "node-agent")
    ready, live = agent["readinessProbe"], agent["livenessProbe"]
    assert (ready["httpGet"]["path"], live["httpGet"]["path"]) == ("/readyz", "/livez")
    # Liveness slower to give up than readiness, never a restart loop during a rollout.
    assert live["periodSeconds"] * live["failureThreshold"] >= 60
    assert ready["periodSeconds"] <= 10
    argv = [a.replace("$(NODE_NAME)", "node-1") for a in agent["args"][1:]]
    args = build_parser().parse_args(argv)
    synced = Health(False, "NotAcked")

    async def main() -> list[bool]:
        server = HealthServer(ready=lambda: synced, live=lambda: Health(True, "Running"))
        await server.start(args.health_address)
        try:
            seen = [await asyncio.to_thread(_kubelet_http_get, ready)]
            nonlocal synced
            synced = Health(True, "Acked")
            seen.append(await asyncio.to_thread(_kubelet_http_get, ready))
            seen.append(await asyncio.to_thread(_kubelet_http_get, live))
        finally:
            await server.close()
        seen.append(await asyncio.to_thread(_kubelet_http_get, live))
        return seen

    assert asyncio.run(main()) == [False, True, True, False]


def test_controller_args_parse_with_the_real_cli() -> None:
    from controller.cli.kubgp_controller import build_parser

    dep = one(render({"controller": {"extraArgs": ["--lease-duration=20"]}}), "Deployment")
    ctl = container(dep, "controller")
    assert ctl["args"][0] == "kubgp-controller"
    argv = [a.replace("$(POD_NAMESPACE)", "kubgp-system") for a in ctl["args"][1:]]
    args = build_parser().parse_args(argv)
    assert args.command == "cluster"
    assert args.namespace == "kubgp-system"  # the Lease lives where the Role grants leases
    assert args.metrics_address == ":9475"
    assert args.lease_duration == 20
    env = {e["name"]: e for e in ctl["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_controller_probes_ask_the_controller_it_runs() -> None:
    """The cluster controller's probes, as rendered, against the health endpoint its rendered
    args start: readiness and liveness follow controller.cluster.probes; no endpoint, no pass."""
    from controller.cli.kubgp_controller import build_parser
    from controller.cluster.probes import ClusterHealth
    from controller.health_endpoint import HealthServer

    port = free_port()
    dep = one(render({"controller": {"healthPort": port}}), "Deployment")
    ctl = container(dep, "controller")
    ready, live = ctl["readinessProbe"], ctl["livenessProbe"]
    assert (ready["httpGet"]["path"], live["httpGet"]["path"]) == ("/readyz", "/livez")
    assert ready["httpGet"]["port"] == live["httpGet"]["port"] == port
    assert "host" not in ready["httpGet"] and "host" not in live["httpGet"]  # the pod's IP
    # A restart only after three misses in a minute, on top of the stall timeout.
    assert live["periodSeconds"] * live["failureThreshold"] >= 60
    argv = [a.replace("$(POD_NAMESPACE)", "kubgp-system") for a in ctl["args"][1:]]
    args = build_parser().parse_args(argv)
    assert args.health_address == f":{port}"  # every address of the pod: the pod IP included
    now = [0.0]
    health = ClusterHealth(stall_after=args.stall_timeout, clock=lambda: now[0])

    class Lease:  # controller.cluster.probes.LeaseProgress, as a standby sees it
        attempted_at: float | None = None
        readable = True
        holder = "other-replica"

    lease = Lease()
    health.electing(lease)
    # The kubelet probes the pod IP; here the pod's loopback stands in for it.
    ready, live = ({**p, "httpGet": {**p["httpGet"], "host": "127.0.0.1"}} for p in (ready, live))

    async def main() -> list[bool]:
        server = HealthServer(ready=health.ready, live=health.live)
        await server.start(f"127.0.0.1:{port}")
        try:
            seen = [await asyncio.to_thread(_kubelet_http_get, ready)]  # no Lease read yet
            lease.attempted_at = now[0]
            seen.append(await asyncio.to_thread(_kubelet_http_get, ready))  # a standby
            seen.append(await asyncio.to_thread(_kubelet_http_get, live))
            now[0] += args.stall_timeout + 1  # the Lease loop hangs
            seen.append(await asyncio.to_thread(_kubelet_http_get, live))
        finally:
            await server.close()
        seen.append(await asyncio.to_thread(_kubelet_http_get, ready))
        return seen

    assert asyncio.run(main()) == [False, True, True, False, False]


def test_speaker_args_parse_with_the_real_cli() -> None:
    from speaker.cli.kubgp_speaker import build_parser

    ds = one(render({}), "DaemonSet")
    spk = container(ds, "speaker")
    assert spk["args"][0] == "kubgp-speaker"
    args = build_parser().parse_args(kubelet_args(spk, NODE_FIELDS)[1:])
    assert args.command == "run"
    assert args.socket == "/run/kubgp/speaker.sock"
    assert args.state_dir is not None
    assert args.metrics_address == "[192.0.2.10]:9473"
    # The agent's uid and the speaker's own may use the socket, through its group.
    assert (args.socket_group, args.allowed_uid) == ("65532", [0, 65532])


def test_alert_rules_use_metrics_the_programs_export() -> None:
    import re

    rule = one(render({"metrics": {"prometheusRule": {"enabled": True}}}), "PrometheusRule")
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    names = set(re.findall(r"\bkubgp_[a-z0-9_]+", exprs))
    assert len(names) >= 4
    sources = " ".join(
        p.read_text()
        for p in (
            ROOT / "controller" / "controller_metrics.py",
            ROOT / "speaker" / "speaker_metrics.py",
        )
    )
    for name in names:
        # prometheus_client adds _total to counters
        assert f'"{name.removesuffix("_total")}"' in sources, name
