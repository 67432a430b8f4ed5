"""The node agent's Prometheus metrics: the only controller module that imports prometheus_client
(an import-linter contract keeps it so). Everything else records through `AgentMetrics`.

Each `AgentMetrics` has its own registry, so tests can make as many as they like; the agent
process serves its one with `serve(address)`.
"""

from __future__ import annotations

from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Planning one node: ~1 ms incrementally, ~100 ms from scratch on a 10k-Service cluster.
PLAN_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Kubernetes event -> speaker ack: the coalescing delay (50 ms) plus plan and apply.
LATENCY_BUCKETS: Final = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.plan_duration = Histogram(
            "kubgp_agent_plan_duration_seconds",
            "Time to plan this node's desired state after a batch of changes",
            buckets=PLAN_BUCKETS,
            registry=self.registry,
        )
        self.event_to_ack = Histogram(
            "kubgp_agent_event_to_ack_seconds",
            "From a Kubernetes watch event reaching the agent to the speaker's ack of the state "
            "that includes it (events that change nothing for this node are not counted)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pushes = Counter(
            "kubgp_agent_pushes",
            "States acknowledged by the speaker, by kind (snapshot or delta)",
            ["kind"],
            registry=self.registry,
        )
        self.push_failures = Counter(
            "kubgp_agent_push_failures",
            "Pushes that did not get an ack, by reason (nack, connection)",
            ["reason"],
            registry=self.registry,
        )
        self.status_writes = Counter(
            "kubgp_agent_status_writes",
            "BGPNodeState status writes, by result (ok, error)",
            ["result"],
            registry=self.registry,
        )
        self.session_events = Counter(
            "kubgp_agent_session_events",
            "Kubernetes Events posted on BGPPeers, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.node_sessions = Gauge(
            "kubgp_agent_node_sessions",
            "This node's BGP sessions to other nodes (BGPNodePeering) the speaker runs, by what "
            "the other node is to this one (Mesh, RouteReflector, RouteReflectorClient)",
            ["role"],
            registry=self.registry,
        )
        self.node_sessions_established = Gauge(
            "kubgp_agent_node_sessions_established",
            "Of those, the Established ones",
            ["role"],
            registry=self.registry,
        )
        self.route_reflector = Gauge(
            "kubgp_agent_route_reflector",
            "1 when this node is a route reflector of its BGPNodePeering",
            registry=self.registry,
        )
        for kind in ("snapshot", "delta"):
            self.pushes.labels(kind=kind)
        for reason in ("nack", "connection"):
            self.push_failures.labels(reason=reason)

    def serve(self, address: str) -> None:
        """Serve /metrics on "HOST:PORT" (":PORT" = every address) from a daemon thread."""
        host, _, port = address.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (None counts as 0), for tests and logs."""
        got = self.registry.get_sample_value(name, labels or {})
        return 0.0 if got is None else got


# --- the cluster controller ------------------------------------------------------------------


class ClusterMetrics:
    """The cluster controller's metrics: addresses per pool, allocation failures, leadership.
    A removed pool's series are dropped (MetalLB's DeleteSession idea)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.pool_addresses = Gauge(
            "kubgp_lb_pool_addresses",
            "Addresses of a LoadBalancerIPPool by state: total (allocatable) and used (held "
            "by Services)",
            ["pool", "state"],
            registry=self.registry,
        )
        self.allocation_failures = Counter(
            "kubgp_lb_allocation_failures",
            "LoadBalancer requests that could not be met, by reason (counted once per new "
            "outcome of a Service, not per retry)",
            ["reason"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "kubgp_cluster_controller_leader",
            "1 while this replica holds the Lease and acts, else 0",
            registry=self.registry,
        )
        self._pools: set[str] = set()
        self._server: Any = None

    def set_pools(self, usage: dict[str, tuple[int, int]]) -> None:
        """Every pool's (total, used); pools not in `usage` lose their series."""
        for gone in self._pools - usage.keys():
            for state in ("total", "used"):
                self.pool_addresses.remove(gone, state)
        for pool, (total, used) in usage.items():
            self.pool_addresses.labels(pool=pool, state="total").set(total)
            self.pool_addresses.labels(pool=pool, state="used").set(used)
        self._pools = set(usage)

    def allocation_failed(self, reason: str) -> None:
        self.allocation_failures.labels(reason=reason).inc()

    def set_leader(self, leader: bool) -> None:
        self.leader.set(1 if leader else 0)

    def serve(self, address: str) -> tuple[str, int]:
        """Serve /metrics on "HOST:PORT" (":PORT" = every address, port 0 = any free one)
        from a thread that `close()` stops; returns the bound address."""
        host, _, port = address.rpartition(":")
        server, _thread = start_http_server(
            int(port),
            addr=host.strip("[]") or "0.0.0.0",
            registry=self.registry,
        )
        self._server = server
        return str(server.server_address[0]), int(server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        got = self.registry.get_sample_value(name, labels or {})
        return 0.0 if got is None else got
