"""`kubgp-controller cluster`: the cluster controller. Run as a Deployment of 2 replicas: the
one holding the coordination.k8s.io Lease assigns LoadBalancer addresses from
LoadBalancerIPPools, writes pool and BGPPeer status and posts Events; the other stands by.

Kubernetes access: in-cluster service account, else $KUBECONFIG (or ~/.kube/config).
SIGTERM/SIGINT release the Lease (if this replica holds it) and stop.

Health (--health-address): /readyz answers 200 for the leader once kopf runs and for a standby
that reads the Lease (the text says which); /livez fails when kopf's event loop or the Lease
loop made no progress for --stall-timeout seconds, or kopf's thread ended.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

from controller.cluster.probes import DEFAULT_STALL_AFTER, ClusterHealth
from controller.controller_metrics import ClusterMetrics
from controller.health_endpoint import HealthServer

DEFAULT_LEASE_NAME = "kubgp-cluster-controller"


def register(subparsers: Any) -> None:  # argparse's _SubParsersAction is private
    p: argparse.ArgumentParser = subparsers.add_parser(
        "cluster",
        help="run the cluster controller: LoadBalancer IPAM, pool and BGPPeer status",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE") or "default",
                   help="the Lease's namespace (default: $POD_NAMESPACE or default)")  # fmt: skip
    p.add_argument("--lease-name", default=DEFAULT_LEASE_NAME)
    p.add_argument("--identity",
                   default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
                   help="this replica's Lease holder identity (default: $POD_NAME)")  # fmt: skip
    p.add_argument("--lease-duration", type=float, default=15.0, metavar="SECONDS",
                   help="a standby takes a Lease unrenewed this long (default 15)")  # fmt: skip
    p.add_argument("--renew-deadline", type=float, default=10.0, metavar="SECONDS",
                   help="the leader stops acting when it could not renew for this long "
                   "(default 10)")  # fmt: skip
    p.add_argument("--retry-period", type=float, default=2.0, metavar="SECONDS",
                   help="how often to try to acquire or renew (default 2)")  # fmt: skip
    p.add_argument("--event-namespace", default="default",
                   help="where Events about cluster-scoped objects (pools) go")  # fmt: skip
    p.add_argument("--metrics-address", default="", metavar="HOST:PORT",
                   help="serve Prometheus metrics on /metrics there (':9475' = every "
                   "address); default: no metrics endpoint")  # fmt: skip
    p.add_argument("--health-address", default="", metavar="HOST:PORT",
                   help="serve /readyz (leader running, or standby reading the Lease) and "
                   "/livez there (':9477' = every address); default: no health "
                   "endpoint")  # fmt: skip
    p.add_argument("--stall-timeout", type=float, default=DEFAULT_STALL_AFTER, metavar="SECONDS",
                   help="/livez fails when kopf's event loop or the Lease loop made no "
                   "progress for this long (default %(default)s)")  # fmt: skip
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if args.log_level != "debug":
        logging.getLogger("kopf").setLevel(logging.WARNING)
    from controller.kube import cluster_watch as glue  # kopf and kubernetes load only here
    from controller.kube.client import KubeConfigError, api_client, kopf_login
    from controller.kube.leader import LeaseConfig
    from controller.kube.user_agent import CLUSTER_CONTROLLER

    try:
        lease = LeaseConfig(
            namespace=args.namespace,
            name=args.lease_name,
            identity=args.identity,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
    except ValueError as err:
        print(f"kubgp-controller cluster: {err}", file=sys.stderr)
        return 2
    if args.stall_timeout <= 0:
        print("kubgp-controller cluster: --stall-timeout must be positive", file=sys.stderr)
        return 2
    try:
        api = api_client(CLUSTER_CONTROLLER)
    except KubeConfigError as err:
        print(f"kubgp-controller cluster: {err}", file=sys.stderr)
        return 2
    metrics = ClusterMetrics()
    if args.metrics_address:
        try:
            metrics.serve(args.metrics_address)
        except (OSError, ValueError) as err:
            print(f"kubgp-controller cluster: --metrics-address {args.metrics_address}: {err}",
                  file=sys.stderr)  # fmt: skip
            return 2
    health = ClusterHealth(stall_after=args.stall_timeout)
    options = glue.ClusterOptions(
        login=kopf_login(api),
        lease=lease,
        metrics=metrics,
        health=health,
        event_namespace=args.event_namespace,
    )

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # On the loop that holds the Lease: a wedged loop does not answer /livez.
        server = HealthServer(ready=health.ready, live=health.live)
        if args.health_address:
            try:
                await server.start(args.health_address)
            except (OSError, ValueError) as err:
                print(f"kubgp-controller cluster: --health-address {args.health_address}: {err}",
                      file=sys.stderr)  # fmt: skip
                return 2
        try:
            return await glue.run_cluster(api, options, stop)
        finally:
            await server.close()

    try:
        return asyncio.run(main())
    finally:
        metrics.close()
        api.close()  # type: ignore[no-untyped-call]
