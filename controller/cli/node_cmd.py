"""`kubgp-controller node`: the per-node agent. Watches the cluster (kopf), plans this node's
desired BGP state, keeps the speaker next to it running it over the control socket, and writes
the node's BGPNodeState and Events about its BGP sessions.

Kubernetes access: in-cluster service account, else $KUBECONFIG (or ~/.kube/config).
SIGTERM/SIGINT stop the agent; the speaker keeps advertising the last state it was given.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from controller.agent.node_agent import (
    DEFAULT_MAX_DELAY,
    DEFAULT_QUIET,
    DEFAULT_SECRET_REFRESH,
    NodeAgent,
)
from controller.agent.node_status import DEFAULT_MIN_INTERVAL, NodeStatusReporter
from controller.agent.push import DEFAULT_STATUS_INTERVAL, PushLoop
from controller.controller_metrics import AgentMetrics
from controller.domain.planner import DEFAULT_ASN
from controller.health_endpoint import HealthServer
from speaker.api.client import default_socket_path
from speaker.api.schema import (
    DEFAULT_FIB_METRIC,
    DEFAULT_FIB_PROTOCOL,
    DEFAULT_FIB_TABLE,
    DEFAULT_MAX_PATHS,
    Fib,
    SchemaError,
    parse_desired_state,
)

NODE_NAME_ENV = "KUBGP_NODE_NAME"
FIB_FLAGS = {"table": "--fib-table", "protocol": "--fib-protocol", "metric": "--fib-metric",
             "maxPaths": "--fib-max-paths"}  # fmt: skip


def register(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    p: argparse.ArgumentParser = subparsers.add_parser(
        "node",
        help="run the node agent: plan this node's BGP state and push it to the speaker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--node-name", default=os.environ.get(NODE_NAME_ENV),
                   help=f"this node's name (default: ${NODE_NAME_ENV})")  # fmt: skip
    p.add_argument("--speaker-socket", default=default_socket_path(), metavar="PATH",
                   help="the speaker's control socket (default: $KUBGP_SPEAKER_SOCKET or "
                   "/run/kubgp/speaker.sock)")  # fmt: skip
    p.add_argument("--default-asn", type=int, default=DEFAULT_ASN,
                   help="the node's ASN without a kubgp.io/asn annotation")  # fmt: skip
    p.add_argument("--metrics-address", default="", metavar="HOST:PORT",
                   help="serve Prometheus metrics on /metrics there (':9474' = every "
                   "address); default: no metrics endpoint")  # fmt: skip
    p.add_argument("--health-address", default="", metavar="HOST:PORT",
                   help="serve /readyz (synced: listed, first state acked by the speaker) and "
                   "/livez there ('127.0.0.1:9476'); default: no health endpoint")  # fmt: skip
    p.add_argument(
        "--coalesce-quiet",
        type=float,
        default=DEFAULT_QUIET,
        metavar="SECONDS",
        help="plan once no change came for this long (default %(default)s)",
    )
    p.add_argument(
        "--coalesce-max-delay",
        type=float,
        default=DEFAULT_MAX_DELAY,
        metavar="SECONDS",
        help="but at most this long after a burst began (default %(default)s)",
    )
    p.add_argument(
        "--status-interval",
        type=float,
        default=DEFAULT_STATUS_INTERVAL,
        metavar="SECONDS",
        help="how often to read the speaker's sessions (default %(default)s)",
    )
    p.add_argument(
        "--status-min-interval",
        type=float,
        default=DEFAULT_MIN_INTERVAL,
        metavar="SECONDS",
        help="at most one BGPNodeState write per this long (default %(default)s)",
    )
    p.add_argument(
        "--secret-refresh",
        type=float,
        default=DEFAULT_SECRET_REFRESH,
        metavar="SECONDS",
        help="re-read BGPPeer password Secrets this often (default %(default)s)",
    )
    p.add_argument(
        "--sweep-interval",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="LIST every watched kind this often to forget objects deleted while "
        "unwatched (default %(default)s; a 410 re-list triggers one anyway)",
    )
    fib = p.add_argument_group(
        "received routes into the kernel (docs/route-import.md); the speaker needs NET_ADMIN"
    )
    fib.add_argument("--fib", action="store_true",
                     help="install the routes BGPPeers' spec.import accepts into the node's "
                     "routing table (without: selected and reported, never installed)")  # fmt: skip
    fib.add_argument("--fib-table", type=int, default=DEFAULT_FIB_TABLE, metavar="ID",
                     help="routing table (default %(default)s, main)")  # fmt: skip
    fib.add_argument("--fib-protocol", type=int, default=DEFAULT_FIB_PROTOCOL, metavar="N",
                     help="rtnetlink protocol of our routes (default %(default)s)")  # fmt: skip
    fib.add_argument("--fib-metric", type=int, default=DEFAULT_FIB_METRIC, metavar="N",
                     help="route metric (default %(default)s)")  # fmt: skip
    fib.add_argument("--fib-max-paths", type=int, default=DEFAULT_MAX_PATHS, metavar="N",
                     help="ECMP width (default %(default)s)")  # fmt: skip
    p.add_argument("--always-compare-med", action="store_true",
                   help="compare MED between paths from different neighbouring ASes too "
                   "(RFC 4271 9.1.2.2 c; default: only between paths from one AS)")  # fmt: skip
    p.add_argument("--all-nodes", action="store_true",
                   help="watch every Node, not only this one, to plan BGP sessions to the other "
                   "nodes of a BGPNodePeering (docs/in-cluster-routing.md)")  # fmt: skip
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=run)


def fib_settings(args: argparse.Namespace) -> Fib | None:
    """The --fib options as the desired state's `fib` (None without --fib); SystemExit 2 with
    the schema's message when a value is out of range."""
    if not args.fib:
        return None
    doc = {"table": args.fib_table, "protocol": args.fib_protocol, "metric": args.fib_metric,
           "maxPaths": args.fib_max_paths}  # fmt: skip
    state = {"routerId": "192.0.2.1", "asn": 1, "fib": doc}
    try:
        parsed = parse_desired_state(state).fib
    except SchemaError as err:
        flag = FIB_FLAGS.get(err.path.rpartition(".")[2], err.path)
        print(f"kubgp-controller node: {flag}: {err.detail}", file=sys.stderr)
        raise SystemExit(2) from None
    assert parsed is not None
    return parsed


def run(args: argparse.Namespace) -> int:
    if not args.node_name:
        print(f"kubgp-controller node: --node-name (or ${NODE_NAME_ENV}) is required",
              file=sys.stderr)  # fmt: skip
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if args.log_level != "debug":
        logging.getLogger("kopf").setLevel(logging.WARNING)
    from controller.kube import node_watch as glue  # kopf and kubernetes load only here
    from controller.kube.client import KubeConfigError, api_client, kopf_login
    from controller.kube.user_agent import NODE_AGENT

    try:
        client = api_client(NODE_AGENT)
    except KubeConfigError as err:
        print(f"kubgp-controller node: {err}", file=sys.stderr)
        return 2
    metrics = AgentMetrics()
    if args.metrics_address:
        try:
            metrics.serve(args.metrics_address)
        except (OSError, ValueError) as err:
            print(f"kubgp-controller node: --metrics-address {args.metrics_address}: {err}",
                  file=sys.stderr)  # fmt: skip
            return 2
    peer_uids = glue.PeerUids()
    writer = glue.KubeNodeStateWriter(client, node_name=args.node_name, peer_uids=peer_uids)
    reporter = NodeStatusReporter(
        node_name=args.node_name,
        writer=writer,
        metrics=metrics,
        min_interval=args.status_min_interval,
    )
    push = PushLoop(
        args.speaker_socket,
        metrics=metrics,
        on_status=lambda state, applied, peers, fib: reporter.observe(
            state=state, applied=applied, peers=peers, fib=fib
        ),
        status_interval=args.status_interval,
    )
    agent = NodeAgent(
        node_name=args.node_name,
        push=push,
        metrics=metrics,
        reporter=reporter,
        default_asn=args.default_asn,
        quiet=args.coalesce_quiet,
        max_delay=args.coalesce_max_delay,
        freeze_after_sync=True,
        secrets=glue.KubeSecretSource(client),
        secret_refresh=args.secret_refresh,
        fib=fib_settings(args),
        all_nodes=args.all_nodes,
        always_compare_med=args.always_compare_med,
    )
    logging.getLogger("kubgp.agent").info(
        "node agent for %s, speaker at %s, epoch %d", args.node_name, args.speaker_socket,
        push.epoch,
    )  # fmt: skip
    sweeper = glue.Sweeper(client, agent, interval=args.sweep_interval)

    async def main() -> int:
        # On the agent's own event loop: a wedged loop does not answer /livez.
        health = HealthServer(ready=agent.readiness, live=agent.liveness)
        if args.health_address:
            try:
                await health.start(args.health_address)
            except (OSError, ValueError) as err:
                print(f"kubgp-controller node: --health-address {args.health_address}: {err}",
                      file=sys.stderr)  # fmt: skip
                return 2
        try:
            await glue.run_operator(agent, peer_uids, login=kopf_login(client), sweeper=sweeper)
        finally:
            await health.close()
        return 0

    status = asyncio.run(main())
    if status == 0:
        logging.getLogger("kubgp.agent").info("stopped; the speaker keeps its last state")
    return status
