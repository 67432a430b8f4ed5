"""`kubgp-controller cluster`: the cluster controller. Run as a Deployment of 2 replicas: the
one holding the coordination.k8s.io Lease assigns LoadBalancer addresses from
LoadBalancerIPPools, writes pool and BGPPeer status and posts Events; the other stands by.

Kubernetes access: in-cluster service account, else $KUBECONFIG (or ~/.kube/config).
SIGTERM/SIGINT release the Lease and stop.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any

from controller.controller_metrics import ClusterMetrics

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
    from controller.kube.leader import LeaseConfig

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
    metrics = ClusterMetrics()
    if args.metrics_address:
        try:
            metrics.serve(args.metrics_address)
        except (OSError, ValueError) as err:
            print(f"kubgp-controller cluster: --metrics-address {args.metrics_address}: {err}",
                  file=sys.stderr)  # fmt: skip
            return 2
    try:
        api = glue.api_client()
        options = glue.ClusterOptions(
            login=glue.login_from(api),
            lease=lease,
            metrics=metrics,
            event_namespace=args.event_namespace,
        )
        return glue.main(options, api)
    finally:
        metrics.close()
