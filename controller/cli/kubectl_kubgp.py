"""`kubectl-kubgp`: kubgp's kubectl plugin (`kubectl kubgp ...` once on PATH; it also runs on
its own).

  status                      every node's BGP sessions, from the BGPNodeStates
  routes NODE                 the node's received routes: per peer accepted / best / installed,
                              what is in the kernel and what is not and why (its BGPNodeState;
                              bounded: the whole table is `kubgp-speaker routes` on the node)
  plan --node NAME            the node's desired BGP state, planned from the live cluster
  explain service NS/NAME     which nodes announce the Service to which peers, and why not

Tables by default, `-o json` or `-o yaml` for scripts. Cluster access as kubectl's: --kubeconfig,
--context, $KUBECONFIG, ~/.kube/config, else the pod's service account. Only reads. Peer
password Secrets are read by name where BGPPeers point; where that is forbidden the plugin
plans as if the Secret were there (and says so), and passwords are never printed.
Exit status: 0 done; 1 `plan` gave no state, the Service is unknown or the node has no
BGPNodeState; 2 usage or API errors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import yaml

from controller.cli.kubectl_views import (
    explain_table,
    explain_view,
    plan_table,
    plan_view,
    routes_table,
    routes_view,
    status_table,
    status_view,
)
from controller.domain.objects import CRD_API_VERSION, SERVICE_NAME_LABEL
from controller.domain.planner import DEFAULT_ASN
from controller.domain.snapshot import Snapshot

Raw = dict[str, Any]
PROG = "kubectl-kubgp"
ASN_HELP = "ASN of nodes without kubgp.io/asn (as the agents' --default-asn)"


class Reader(Protocol):
    """What the plugin needs from the API (controller.kube.kubectl_plugin_api.KubeReader)."""

    def get(
        self, api_version: str, plural: str, name: str, namespace: str | None = None
    ) -> Raw: ...

    def list(
        self,
        api_version: str,
        plural: str,
        *,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[Raw]: ...


def _status_of(err: BaseException) -> int | None:
    """The HTTP status of an API read error, None when it is not one."""
    from controller.kube.kubectl_plugin_api import ApiAccessError

    return err.status if isinstance(err, ApiAccessError) else None


# --- reading the cluster --------------------------------------------------------------------


class ClusterObjects:
    """The raw objects the planner reads, and notes about what could not be read."""

    def __init__(self) -> None:
        self.raws: list[Raw] = []
        self.notes: list[str] = []


def read_common(reader: Reader, objects: ClusterObjects) -> None:
    """Nodes, BGPPeers, BGPAdvertisements and the peers' password Secrets."""
    objects.raws += reader.list("v1", "nodes")
    peers = reader.list(CRD_API_VERSION, "bgppeers")
    objects.raws += peers
    objects.raws += reader.list(CRD_API_VERSION, "bgpadvertisements")
    for ns, name, key in sorted(_secret_refs(peers)):
        try:
            objects.raws.append(reader.get("v1", "secrets", name, namespace=ns))
        except Exception as err:
            status = _status_of(err)
            if status == 404:
                continue  # the planner reports PeerSecretMissing
            if status != 403:
                raise
            objects.notes.append(
                f"cannot read Secret {ns}/{name} (forbidden): planned as if it held key {key!r}"
            )
            objects.raws.append(_placeholder_secret(ns, name, key))


def _secret_refs(peers: Sequence[Raw]) -> set[tuple[str, str, str]]:
    refs = set()
    for peer in peers:
        ref = (peer.get("spec") or {}).get("passwordSecretRef")
        if isinstance(ref, Mapping) and ref.get("name") and ref.get("key"):
            refs.add((str(ref.get("namespace") or "default"), str(ref["name"]), str(ref["key"])))
    return refs


def _placeholder_secret(namespace: str, name: str, key: str) -> Raw:
    # "dW5yZWFkYWJsZQ==" is base64 of "unreadable": a valid password the plugin never prints.
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": namespace, "name": name},
        "data": {key: "dW5yZWFkYWJsZQ=="},
    }


def read_for_plan(reader: Reader) -> ClusterObjects:
    objects = ClusterObjects()
    read_common(reader, objects)
    objects.raws += reader.list("v1", "services")
    objects.raws += reader.list("discovery.k8s.io/v1", "endpointslices")
    return objects


def read_for_service(reader: Reader, namespace: str, name: str) -> ClusterObjects | None:
    """What explaining one Service needs: that Service and its EndpointSlices only."""
    try:
        service = reader.get("v1", "services", name, namespace=namespace)
    except Exception as err:
        if _status_of(err) == 404:
            return None
        raise
    service.setdefault("apiVersion", "v1")
    service.setdefault("kind", "Service")
    objects = ClusterObjects()
    read_common(reader, objects)
    objects.raws.append(service)
    objects.raws += reader.list(
        "discovery.k8s.io/v1",
        "endpointslices",
        namespace=namespace,
        label_selector=f"{SERVICE_NAME_LABEL}={name}",
    )
    return objects


# --- commands -----------------------------------------------------------------------------


def _emit(doc: Mapping[str, Any], fmt: str, render_table: Callable[[], str]) -> None:
    if fmt == "json":
        print(json.dumps(doc, indent=2))
    elif fmt == "yaml":
        print(yaml.safe_dump(dict(doc), sort_keys=False), end="")
    else:
        print(render_table())


def _notes(objects: ClusterObjects) -> None:
    for note in objects.notes:
        print(f"{PROG}: note: {note}", file=sys.stderr)


def cmd_status(args: argparse.Namespace, reader: Reader) -> int:
    states = reader.list(CRD_API_VERSION, "bgpnodestates")
    nodes = reader.list("v1", "nodes")
    view = status_view(states, nodes)
    now = datetime.datetime.now(datetime.UTC)
    _emit(view, args.output, lambda: status_table(view, now))
    return 0


def cmd_routes(args: argparse.Namespace, reader: Reader) -> int:
    try:
        state: Raw | None = reader.get(CRD_API_VERSION, "bgpnodestates", args.node)
    except Exception as err:
        if _status_of(err) != 404:
            raise
        state = None
    view = routes_view(args.node, state)
    _emit(view, args.output, lambda: routes_table(view))
    return 0 if state is not None else 1


def cmd_plan(args: argparse.Namespace, reader: Reader) -> int:
    objects = read_for_plan(reader)
    _notes(objects)
    view = plan_view(Snapshot.build(objects.raws), args.node, default_asn=args.default_asn)
    _emit(view, args.output, lambda: plan_table(view))
    return 0 if view["state"] is not None else 1


def cmd_explain(args: argparse.Namespace, reader: Reader) -> int:
    namespace, sep, name = args.name.partition("/")
    if not sep:
        namespace, name = args.namespace or "default", args.name
    objects = read_for_service(reader, namespace, name)
    view = None
    if objects is not None:
        _notes(objects)
        view = explain_view(
            Snapshot.build(objects.raws), namespace, name, default_asn=args.default_asn
        )
    if view is None:
        print(f"{PROG}: service {namespace}/{name} not found", file=sys.stderr)
        return 1
    _emit(view, args.output, lambda: explain_table(view))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    common.add_argument("--context", help="kubeconfig context (default: the current one)")
    common.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    status = sub.add_parser("status", parents=[common], help="every node's BGP sessions")
    status.set_defaults(handler=cmd_status)
    routes = sub.add_parser(
        "routes", parents=[common], help="a node's received routes: installed, or why not"
    )
    routes.add_argument("node", metavar="NODE", help="the node")
    routes.set_defaults(handler=cmd_routes)
    plan = sub.add_parser(
        "plan", parents=[common], help="a node's desired BGP state, planned from the cluster"
    )
    plan.add_argument("--node", required=True, help="the node to plan for")
    plan.add_argument("--default-asn", type=int, default=DEFAULT_ASN, help=ASN_HELP)
    plan.set_defaults(handler=cmd_plan)
    explain = sub.add_parser(
        "explain", parents=[common], help="which nodes announce a Service, and why not"
    )
    explain.add_argument("what", choices=("service", "svc"), help="what to explain")
    explain.add_argument("name", metavar="NAMESPACE/NAME", help="the Service")
    explain.add_argument("-n", "--namespace", help="namespace when NAME has none")
    explain.add_argument("--default-asn", type=int, default=DEFAULT_ASN, help=ASN_HELP)
    explain.set_defaults(handler=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None, *, reader: Reader | None = None) -> int:
    """Run one command; `reader` replaces the kubeconfig connection (tests)."""
    args = build_parser().parse_args(argv)
    from controller.kube.kubectl_plugin_api import ApiAccessError, connect

    try:
        own = reader is None
        active = connect(args.kubeconfig, args.context) if reader is None else reader
        try:
            handler: Callable[[argparse.Namespace, Reader], int] = args.handler
            return handler(args, active)
        finally:
            if own:
                active.close()  # type: ignore[attr-defined]
    except ApiAccessError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
