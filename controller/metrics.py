"""The node agent's Prometheus metrics: the only controller module that imports prometheus_client
(an import-linter contract keeps it so). Everything else records through `AgentMetrics`.

Each `AgentMetrics` has its own registry, so tests can make as many as they like; the agent
process serves its one with `serve(address)`.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

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
