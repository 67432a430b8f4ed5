"""The speaker's Prometheus metrics (`kubgp-speaker run --metrics-address HOST:PORT`).

Per-peer series are read from the running sessions at scrape time (a custom collector), so a
removed peer's label values disappear with it: nothing to forget, nothing stale. Only the
apply-duration histogram is recorded as it happens.

    kubgp_bgp_session_up{peer,address}                      1 when Established
    kubgp_bgp_session_state{peer,address,state}             1 for the current RFC 4271 state
    kubgp_bgp_session_flaps_total{peer}                     Established -> down transitions
    kubgp_bgp_session_last_error_info{peer,reason}          1: why the session last went Idle
    kubgp_bgp_prefixes_advertised{peer,family}              Adj-RIB-Out size
    kubgp_bgp_prefixes_received{peer,family}                Adj-RIB-In size
    kubgp_bgp_messages_sent_total{peer,type}                OPEN/UPDATE/KEEPALIVE/...
    kubgp_bgp_messages_received_total{peer,type}
    kubgp_bgp_notifications_sent_total{peer,code,subcode}   by RFC name
    kubgp_bgp_notifications_received_total{peer,code,subcode}
    kubgp_bgp_update_outcomes_total{peer,outcome}           UPDATEs not taken as sent:
        treat-as-withdraw, attribute-discard (RFC 7606), as-loop, family-not-negotiated
    kubgp_bgp_update_outcome_prefixes_total{peer,outcome}   the NLRI those UPDATEs carried
    kubgp_bgp_prefixes_accepted{peer}                       route import (docs/route-import.md),
    kubgp_bgp_prefixes_best{peer}                           only when it is configured: accepted
    kubgp_bgp_prefixes_installed{peer}                      by import policy / best / in the kernel
    kubgp_loc_rib_prefixes{family}                          prefixes with a selected path
    kubgp_bgp_prefixes_reflected{peer}                      route reflection (RFC 4456), on a
    kubgp_route_reflector_clients                           reflector only: best paths reflected
                                                            to each iBGP peer; its clients
    kubgp_fib_routes                                        our routes in the kernel
    kubgp_fib_routes_failed                                 routes the kernel refuses now
    kubgp_fib_deferred                                      1 while graceful restart keeps the
                                                            previous run's routes (End-of-RIB wait)
    kubgp_fib_route_changes_total{op}                       installed / replaced / removed / failed
    kubgp_node_route_rereads_total                          re-reads of the node's routes
    kubgp_speaker_apply_duration_seconds                    histogram of desired-state applies
    kubgp_speaker_applied_generation / _applied_epoch       what the control socket applied
    kubgp_bfd_session_up{peer,address}                      1 when the peer's BFD is Up
    kubgp_bfd_session_state{peer,address,state}             1 for the current RFC 5880 state
    kubgp_bfd_session_flaps_total{peer}                     Up -> down transitions
    kubgp_bfd_last_diagnostic_info{peer,diagnostic}         1: why BFD last went down
    kubgp_bfd_bgp_held{peer}                                1 while BGP waits for BFD Up
    kubgp_bfd_detection_time_seconds{peer}                  negotiated (0 until known)
    kubgp_bfd_tx_interval_seconds{peer}                     negotiated, before jitter
    kubgp_bfd_packets_sent_total{peer} / _received_total{peer}
    kubgp_bfd_send_errors_total{peer}                       packets the kernel refused
    kubgp_bfd_packets_dropped_total{reason}                 received and discarded (no session,
                                                            TTL, malformed, authentication)
    kubgp_bfd_timer_lateness_seconds                        histogram: how late the event loop
                                                            ran BFD timers (its jitter)
    kubgp_bfd_timer_lateness_max_seconds                    the worst of them

Counters restart from zero when a peer's session is re-created (a configuration change),
which Prometheus' rate() treats as a counter reset.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from speaker.api.ipc import AppliedState, Delta, PeerStatus
from speaker.api.route_status import FibSummary, Routes, RoutesRequest
from speaker.api.schema import DesiredState
from speaker.bfd.packet import State as BfdState
from speaker.bfd.packet import diagnostic_name
from speaker.bfd_service import LATENESS_BUCKETS
from speaker.bgp.session.fsm import State
from speaker.bgp.session.inbound import Outcome
from speaker.bgp.wire.context import family_name
from speaker.bgp.wire.errors import code_name, subcode_name
from speaker.bgp.wire.framing import KEEPALIVE, NOTIFICATION, OPEN, ROUTE_REFRESH, UPDATE
from speaker.daemon import Speaker

MESSAGE_TYPES = {
    OPEN: "OPEN",
    UPDATE: "UPDATE",
    NOTIFICATION: "NOTIFICATION",
    KEEPALIVE: "KEEPALIVE",
    ROUTE_REFRESH: "ROUTE_REFRESH",
}


class AppliedVersion(Protocol):
    @property
    def applied(self) -> AppliedState | None: ...


class _SessionCollector(Collector):
    def __init__(self, speaker: Speaker, control: AppliedVersion | None) -> None:
        self.speaker = speaker
        self.control = control

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "kubgp_bgp_session_up", "1 when the BGP session is Established",
            labels=["peer", "address"],
        )  # fmt: skip
        state = GaugeMetricFamily(
            "kubgp_bgp_session_state", "1 for the session's current RFC 4271 state",
            labels=["peer", "address", "state"],
        )  # fmt: skip
        flaps = CounterMetricFamily(
            "kubgp_bgp_session_flaps", "Times the session left Established", labels=["peer"]
        )
        last_error = GaugeMetricFamily(
            "kubgp_bgp_session_last_error_info", "Why the session last went to Idle (1)",
            labels=["peer", "reason"],
        )  # fmt: skip
        advertised = GaugeMetricFamily(
            "kubgp_bgp_prefixes_advertised", "Prefixes in the Adj-RIB-Out",
            labels=["peer", "family"],
        )  # fmt: skip
        received = GaugeMetricFamily(
            "kubgp_bgp_prefixes_received", "Prefixes in the Adj-RIB-In", labels=["peer", "family"]
        )
        sent = CounterMetricFamily(
            "kubgp_bgp_messages_sent", "BGP messages sent", labels=["peer", "type"]
        )
        got = CounterMetricFamily(
            "kubgp_bgp_messages_received", "BGP messages received", labels=["peer", "type"]
        )
        n_sent = CounterMetricFamily(
            "kubgp_bgp_notifications_sent", "NOTIFICATIONs sent",
            labels=["peer", "code", "subcode"],
        )  # fmt: skip
        n_got = CounterMetricFamily(
            "kubgp_bgp_notifications_received", "NOTIFICATIONs received",
            labels=["peer", "code", "subcode"],
        )  # fmt: skip
        outcomes = CounterMetricFamily(
            "kubgp_bgp_update_outcomes", "UPDATEs not taken as sent, by outcome",
            labels=["peer", "outcome"],
        )  # fmt: skip
        outcome_prefixes = CounterMetricFamily(
            "kubgp_bgp_update_outcome_prefixes",
            "Prefixes in UPDATEs not taken as sent, by outcome", labels=["peer", "outcome"],
        )  # fmt: skip
        for name in sorted(self.speaker.runners):
            runner = self.speaker.runners[name]
            session = runner.session
            address = runner.peer.address
            current = session.state
            up.add_metric([name, address], 1.0 if current is State.Established else 0.0)
            for s in State:
                state.add_metric([name, address, s.name], 1.0 if s is current else 0.0)
            counters = session.counters
            flaps.add_metric([name], counters.flaps)
            if session.last_reason is not None:
                last_error.add_metric([name, session.last_reason.value], 1.0)
            for family in sorted(session.config.families):
                label = family_name(family)
                advertised.add_metric([name, label], session.rib_out.count(family))
                received.add_metric([name, label], session.rib_in.count(family))
            for code, label in MESSAGE_TYPES.items():
                sent.add_metric([name, label], counters.sent[code])
                got.add_metric([name, label], counters.received[code])
            for (code, sub), n in sorted(counters.notifications_sent.items()):
                n_sent.add_metric([name, code_name(code), subcode_name(code, sub)], n)
            for (code, sub), n in sorted(counters.notifications_received.items()):
                n_got.add_metric([name, code_name(code), subcode_name(code, sub)], n)
            counts = session.inbound.counts
            for outcome in Outcome:
                outcomes.add_metric([name, outcome.value], counts.updates[outcome])
                outcome_prefixes.add_metric([name, outcome.value], counts.prefixes[outcome])
        yield from (up, state, flaps, last_error, advertised, received, sent, got, n_sent, n_got)
        yield from (outcomes, outcome_prefixes)
        yield from self._routes()
        yield from self._reflection()
        yield from self._bfd()
        applied = self.control.applied if self.control is not None else None
        if applied is not None:
            yield GaugeMetricFamily(
                "kubgp_speaker_applied_generation",
                "Generation of the desired state applied from the control socket",
                value=applied.version.generation,
            )
            yield GaugeMetricFamily(
                "kubgp_speaker_applied_epoch",
                "Epoch (agent process) of the applied desired state",
                value=applied.version.epoch,
            )

    def _routes(self) -> Iterator[Metric]:
        routes = self.speaker.routes
        rib = routes.rib
        if not routes.active or rib is None:
            return
        accepted = GaugeMetricFamily(
            "kubgp_bgp_prefixes_accepted", "Prefixes the peer's import policy accepted",
            labels=["peer"],
        )  # fmt: skip
        best = GaugeMetricFamily(
            "kubgp_bgp_prefixes_best", "Prefixes whose best path is the peer's", labels=["peer"]
        )
        installed = GaugeMetricFamily(
            "kubgp_bgp_prefixes_installed",
            "Prefixes whose kernel route goes through the peer's path", labels=["peer"],
        )  # fmt: skip
        for name in sorted(self.speaker.runners):
            counts = routes.peer_counts(name)
            if counts is not None:
                accepted.add_metric([name], counts[0])
                best.add_metric([name], counts[1])
                installed.add_metric([name], counts[2])
        yield from (accepted, best, installed)
        selected = GaugeMetricFamily(
            "kubgp_loc_rib_prefixes", "Prefixes with a selected path", labels=["family"]
        )
        for family in rib.families():
            selected.add_metric([family_name(family)], rib.selected_count(family))
        yield selected
        writer = routes.fib_writer
        summary = routes.summary()
        yield GaugeMetricFamily(
            "kubgp_fib_routes", "Our routes in the kernel",
            value=writer.count() if writer is not None else 0,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "kubgp_fib_routes_failed", "Routes the kernel refuses now",
            value=summary.failed if summary is not None else 0,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "kubgp_fib_deferred",
            "1 while graceful restart keeps the previous run's routes (End-of-RIB wait)",
            value=1.0 if routes.fib_state() == "deferred" else 0.0,
        )
        changes = CounterMetricFamily(
            "kubgp_fib_route_changes", "Route changes written to the kernel, by outcome",
            labels=["op"],
        )  # fmt: skip
        for op, n in sorted(routes.counts.items()):
            changes.add_metric([op], n)
        yield changes
        yield CounterMetricFamily(
            "kubgp_node_route_rereads", "Re-reads of the node's routes (next-hop resolution)",
            value=routes.node_rereads,
        )  # fmt: skip

    def _reflection(self) -> Iterator[Metric]:
        reflector = self.speaker.reflection.reflector
        if not reflector.active:
            return
        reflected = GaugeMetricFamily(
            "kubgp_bgp_prefixes_reflected", "Best paths reflected to the iBGP peer (RFC 4456)",
            labels=["peer"],
        )  # fmt: skip
        for name, n in sorted(reflector.counts().items()):
            reflected.add_metric([name], n)
        yield reflected
        yield GaugeMetricFamily(
            "kubgp_route_reflector_clients", "Route reflector clients of this speaker",
            value=sum(1 for p in reflector.peers.values() if p.client),
        )  # fmt: skip

    def _bfd(self) -> Iterator[Metric]:
        service = self.speaker.bfd
        if service is None:
            return
        up = GaugeMetricFamily(
            "kubgp_bfd_session_up",
            "1 when the peer's BFD session is Up",
            labels=["peer", "address"],
        )
        state = GaugeMetricFamily(
            "kubgp_bfd_session_state", "1 for the BFD session's current RFC 5880 state",
            labels=["peer", "address", "state"],
        )  # fmt: skip
        flaps = CounterMetricFamily(
            "kubgp_bfd_session_flaps", "Times the BFD session left Up", labels=["peer"]
        )
        diag = GaugeMetricFamily(
            "kubgp_bfd_last_diagnostic_info", "Why the BFD session last went down (1)",
            labels=["peer", "diagnostic"],
        )  # fmt: skip
        held = GaugeMetricFamily(
            "kubgp_bfd_bgp_held", "1 while the BGP session is held down until BFD is Up",
            labels=["peer"],
        )  # fmt: skip
        detect = GaugeMetricFamily(
            "kubgp_bfd_detection_time_seconds", "Negotiated detection time (0 until known)",
            labels=["peer"],
        )  # fmt: skip
        interval = GaugeMetricFamily(
            "kubgp_bfd_tx_interval_seconds", "Negotiated transmit interval, before jitter",
            labels=["peer"],
        )  # fmt: skip
        sent = CounterMetricFamily("kubgp_bfd_packets_sent", "BFD packets sent", labels=["peer"])
        got = CounterMetricFamily(
            "kubgp_bfd_packets_received", "BFD packets received and accepted", labels=["peer"]
        )
        errors = CounterMetricFamily(
            "kubgp_bfd_send_errors", "BFD packets the kernel refused to send", labels=["peer"]
        )
        for name in service.names():
            gate = self.speaker.bfd_gates.get(name)
            held.add_metric([name], 1.0 if gate is not None and gate.holding else 0.0)
            session = service.session(name)
            if session is None:
                continue
            runner = self.speaker.runners.get(name)
            address = runner.peer.address if runner is not None else ""
            up.add_metric([name, address], 1.0 if session.state is BfdState.Up else 0.0)
            for s in BfdState:
                state.add_metric([name, address, s.name], 1.0 if s is session.state else 0.0)
            flaps.add_metric([name], session.flaps)
            if session.last_down_diag is not None:
                diag.add_metric([name, diagnostic_name(session.last_down_diag)], 1.0)
            detect.add_metric([name], session.detection_time() or 0.0)
            interval.add_metric([name], session.tx_interval() or 0.0)
            sent.add_metric([name], session.sent)
            got.add_metric([name], session.received)
            sender = service.sender(name)
            errors.add_metric([name], sender.errors if sender is not None else 0)
        yield from (up, state, flaps, diag, held, detect, interval, sent, got, errors)
        dropped = CounterMetricFamily(
            "kubgp_bfd_packets_dropped", "BFD packets received and discarded", labels=["reason"]
        )
        for reason, n in sorted(service.demux.dropped.items()):
            dropped.add_metric([reason], n)
        yield dropped
        lateness = service.lateness
        cumulative, buckets = 0, []
        for bound, n in zip(LATENESS_BUCKETS, lateness.buckets, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield GaugeMetricFamily(
            "kubgp_bfd_timer_lateness_max_seconds",
            "The latest the event loop ran a BFD timer since the speaker started",
            value=lateness.max,
        )
        yield HistogramMetricFamily(
            "kubgp_bfd_timer_lateness_seconds",
            "How late the event loop ran BFD timers (its jitter as BFD sees it)",
            buckets=buckets,
            sum_value=lateness.total,
        )


class SpeakerMetrics:
    """The registry of one speaker, and the timed sink that records apply durations."""

    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        self.registry = CollectorRegistry()
        self._collector = _SessionCollector(speaker, None)
        self.registry.register(self._collector)
        self.apply_duration = Histogram(
            "kubgp_speaker_apply_duration_seconds",
            "Time to apply a desired state to every Adj-RIB-Out",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=self.registry,
        )

    def watch_control(self, control: AppliedVersion) -> None:
        self._collector.control = control

    def serve(self, address: str) -> None:
        """Serves /metrics on HOST:PORT (or :PORT, all addresses) from a thread."""
        host, _, port = address.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=self.registry)

    def sink(self) -> TimedSink:
        return TimedSink(self)


class TimedSink:
    """The speaker as the control server's sink, with each apply timed."""

    def __init__(self, metrics: SpeakerMetrics) -> None:
        self.metrics = metrics

    async def apply(self, state: DesiredState) -> None:
        started = time.perf_counter()
        await self.metrics.speaker.apply(state)
        self.metrics.apply_duration.observe(time.perf_counter() - started)

    async def apply_delta(self, delta: Delta) -> None:
        started = time.perf_counter()
        await self.metrics.speaker.apply_delta(delta)
        self.metrics.apply_duration.observe(time.perf_counter() - started)

    def status(self) -> Sequence[PeerStatus]:
        return self.metrics.speaker.status()

    def fib_summary(self) -> FibSummary | None:
        return self.metrics.speaker.fib_summary()

    def route_report(self, request: RoutesRequest) -> Routes:
        return self.metrics.speaker.route_report(request)
