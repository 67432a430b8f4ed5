"""The push loop: keeps the speaker running the latest planned state, whatever happens to the
connection, and reads the speaker's status for the node's BGPNodeState.

- One epoch per agent process (`new_epoch()`), generations counting up from 1.
- On every (re)connect the speaker's hello says what it runs. If it is this process's last
  acknowledged version, the speaker still has our state and the next change can be a delta;
  otherwise (first connect, a speaker that restarted without our last state, another agent
  process in between) the next push is a snapshot. The speaker diffs a snapshot against what
  it runs, so a snapshot of unchanged content sends nothing to the routers.
- Snapshot or delta: a delta when peers, ASN, router id and listen are unchanged and the
  advertisements changed in fewer entries than a snapshot would carry; a snapshot otherwise,
  and after any nack.
- The status read every `status_interval` doubles as a check that the speaker still runs
  our version; if another client changed it, the agent re-asserts its state (a snapshot).
- Failures (no socket, a closed connection, a timeout, a nack) are retried by the loop itself
  with exponential backoff (`backoff_initial` doubling to `backoff_max`, with jitter), reset
  by the next ack. Nothing here raises to its caller but cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from controller.controller_metrics import AgentMetrics
from speaker.api.client import (
    FibSummary,
    NackError,
    PeerStatus,
    SpeakerClient,
    SpeakerError,
    StateVersion,
    new_epoch,
)
from speaker.api.schema import Advertisement, DesiredState

log = logging.getLogger("kubgp.agent")

DEFAULT_STATUS_INTERVAL: Final = 2.0
DEFAULT_REQUEST_TIMEOUT: Final = 60.0
BACKOFF_INITIAL: Final = 0.1
BACKOFF_MAX: Final = 5.0


@dataclass(frozen=True, slots=True)
class DeltaPlan:
    add: tuple[Advertisement, ...]
    remove: tuple[str, ...]


def delta_between(base: DesiredState | None, target: DesiredState) -> DeltaPlan | None:
    """The delta that turns `base` into `target`, or None when a snapshot is the way: no base,
    a change outside the advertisements, or a delta at least as large as the snapshot."""
    if base is None or (base.router_id, base.asn, base.listen, base.peers) != (
        target.router_id, target.asn, target.listen, target.peers,
    ):  # fmt: skip
        return None
    old = {a.prefix: a for a in base.advertisements}
    new = {a.prefix: a for a in target.advertisements}
    add = tuple(a for prefix, a in new.items() if old.get(prefix) != a)
    remove = tuple(prefix for prefix in old if prefix not in new)
    if len(add) + len(remove) >= max(len(target.advertisements), 1):
        return None
    return DeltaPlan(add=add, remove=remove)


StatusCallback = Callable[
    [DesiredState | None, StateVersion | None, Sequence[PeerStatus], FibSummary | None], None
]


class PushLoop:
    """Run with `await loop.run()` (until cancelled); feed with `offer(state, event_times)`."""

    def __init__(
        self,
        socket_path: str,
        *,
        metrics: AgentMetrics,
        on_status: StatusCallback | None = None,
        epoch: int | None = None,
        status_interval: float = DEFAULT_STATUS_INTERVAL,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket_path = socket_path
        self.epoch = new_epoch() if epoch is None else epoch
        self._metrics = metrics
        self._on_status = on_status
        self._status_interval = status_interval
        self._request_timeout = request_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._clock = clock
        self._generation = 0
        self._desired: DesiredState | None = None
        self._event_times: list[float] = []  # events folded into `_desired`, not acked yet
        self._acked: DesiredState | None = None  # what this process last had acknowledged
        self._acked_generation = 0
        self._speaker_has_ours = False  # the connected speaker runs `_acked`
        self._wake = asyncio.Event()
        self._delay = backoff_initial
        self.connections = 0  # successful connects, for tests and logs
        self.acked = asyncio.Condition()

    @property
    def acked_state(self) -> DesiredState | None:
        return self._acked

    @property
    def acked_version(self) -> StateVersion | None:
        if self._acked is None:
            return None
        return StateVersion(epoch=self.epoch, generation=self._acked_generation)

    def offer(self, state: DesiredState, event_times: Sequence[float] = ()) -> None:
        """The newest desired state (replaces any not yet sent). `event_times`: when the
        Kubernetes events it includes reached the agent (clock()), for the latency metric."""
        self._desired = state
        self._event_times.extend(event_times)
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                client = await SpeakerClient.connect(self.socket_path, timeout=None)
            except SpeakerError as err:  # refused (nack) or not a speaker: back off and retry
                log.warning("cannot connect to the speaker at %s: %s", self.socket_path, err)
                await self._backoff()
                continue
            self.connections += 1
            try:
                await self._serve(client)
            except SpeakerError as err:
                log.warning("speaker connection lost: %s; reconnecting", err)
                await self._backoff()
            finally:
                await client.close()

    async def _backoff(self) -> None:
        await asyncio.sleep(self._delay * random.uniform(0.5, 1.0))
        self._delay = min(self._delay * 2, self._backoff_max)

    async def _serve(self, client: SpeakerClient) -> None:
        ours = self.acked_version
        self._speaker_has_ours = ours is not None and client.hello.applied == ours
        log.info(
            "connected to the speaker at %s: it runs %s (ours: %s)%s",
            self.socket_path, client.hello.applied, ours,
            "" if self._speaker_has_ours else "; the next push is a snapshot",
        )  # fmt: skip
        await self._read_status(client)
        while True:
            desired = self._desired
            if desired is not None and not (self._speaker_has_ours and desired == self._acked):
                await self._push(client, desired)
                await self._read_status(client)
                continue
            self._wake.clear()
            try:
                async with asyncio.timeout(self._status_interval):
                    await self._wake.wait()
            except TimeoutError:
                await self._read_status(client)

    async def _push(self, client: SpeakerClient, desired: DesiredState) -> None:
        times, self._event_times = self._event_times, []
        self._generation += 1
        generation = self._generation
        delta = delta_between(self._acked, desired) if self._speaker_has_ours else None
        kind = "snapshot" if delta is None else "delta"
        try:
            if delta is None:
                await client.snapshot(
                    desired, epoch=self.epoch, generation=generation,
                    timeout=self._request_timeout,
                )  # fmt: skip
            else:
                await client.delta(
                    epoch=self.epoch, generation=generation, base=self._acked_generation,
                    add=delta.add, remove=delta.remove, timeout=self._request_timeout,
                )  # fmt: skip
        except NackError as err:
            self._event_times[:0] = times
            self._metrics.push_failures.labels(reason="nack").inc()
            self._speaker_has_ours = False  # whatever it runs, the next push is a snapshot
            log.warning("speaker refused %s generation %d: %s", kind, generation, err.reason)
            if err.want is None:
                raise SpeakerError(f"refused: {err.reason}") from None
            await self._backoff()
            return
        except SpeakerError:
            self._event_times[:0] = times
            self._metrics.push_failures.labels(reason="connection").inc()
            self._speaker_has_ours = False
            raise
        now = self._clock()
        self._acked, self._acked_generation = desired, generation
        self._speaker_has_ours = True
        self._delay = self._backoff_initial
        self._metrics.pushes.labels(kind=kind).inc()
        for t in times:
            self._metrics.event_to_ack.observe(max(0.0, now - t))
        log.info(
            "speaker applied %s generation %d: %d peers, %d advertisements%s",
            kind, generation, len(desired.peers), len(desired.advertisements),
            f" (+{len(delta.add)} -{len(delta.remove)})" if delta is not None else "",
        )  # fmt: skip
        async with self.acked:
            self.acked.notify_all()

    async def _read_status(self, client: SpeakerClient) -> None:
        """Also the liveness check: a speaker that went away is noticed here, within
        `status_interval`, and re-synced on reconnect even when nothing changed."""
        status = await client.status(timeout=self._request_timeout)
        if self._speaker_has_ours and status.applied != self.acked_version:
            # Someone else gave the speaker a state (another agent process for this node, a
            # person with `kubgp-speaker apply`): the agent owns it; re-assert with a snapshot.
            log.warning("the speaker runs %s, not ours (%s): re-sending our state",
                        status.applied, self.acked_version)  # fmt: skip
            self._speaker_has_ours = False
        if self._on_status is None or self._acked is None or status.applied != self.acked_version:
            return  # it runs some other process's state: ours is on its way; report then
        try:
            self._on_status(self._acked, status.applied, status.peers, status.fib)
        except Exception:  # a reporting bug must not stop pushing
            log.exception("status callback failed")
