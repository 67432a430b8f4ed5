"""Which session a received packet belongs to (RFC 5880 §6.3, §6.8.6; RFC 5881 §3, §5;
RFC 5883 §2), sans-IO.

    demux = Demux(rng)
    disc = demux.allocate_discriminator()
    demux.add(key, Path(local=..., remote=..., multihop=False),
              Session(local_discriminator=disc, ...))
    key, events = demux.receive(data, source=..., destination=..., multihop=False, ttl=255, now=now)

A packet with a nonzero Your Discriminator goes to the session with that local discriminator,
and only if it came from that session's remote address over the same kind of hop (a packet
that names a session but comes from elsewhere is someone else's, or forged). One with Your
Discriminator zero (the remote has not heard from us yet; `decode` already requires Down or
AdminDown then) goes to the session of (local address, source address, single/multihop).

TTL (the Generalized TTL Security Mechanism of RFC 5881 §5 / RFC 5883 §5): a single-hop
session takes only packets that arrived with TTL (hop limit) 255; a multihop one takes packets
whose TTL is at least its `min_ttl`. A packet with the A bit is discarded: kubgp configures no
authentication (§6.8.6). Every discard is counted by reason in `dropped`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from speaker.bfd.packet import BfdError, decode
from speaker.bfd.session import Event, Session

K = TypeVar("K", bound=Hashable)

SINGLE_HOP_TTL: Final = 255

# Discard reasons beyond the codec's (speaker.bfd.packet.Malformed).
NO_SESSION: Final = "no-session"
WRONG_SOURCE: Final = "wrong-source"
TTL: Final = "ttl"
AUTHENTICATION: Final = "authentication"


@dataclass(frozen=True, slots=True, kw_only=True)
class Path:
    """Where a session runs: local and remote address (canonical text), and RFC 5881 single
    hop or RFC 5883 multihop."""

    local: str
    remote: str
    multihop: bool


@dataclass(slots=True)
class _Entry(Generic[K]):
    key: K
    path: Path
    session: Session
    min_ttl: int


class Demux(Generic[K]):
    """The sessions of one speaker by discriminator and by path."""

    def __init__(self, rng: Callable[[], float]) -> None:
        self._rng = rng
        self._by_key: dict[K, _Entry[K]] = {}
        self._by_discriminator: dict[int, _Entry[K]] = {}
        self._by_path: dict[Path, _Entry[K]] = {}
        self.dropped: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def items(self) -> Iterator[tuple[K, Session]]:
        for key, entry in self._by_key.items():
            yield key, entry.session

    def session(self, key: K) -> Session:
        return self._by_key[key].session

    def path(self, key: K) -> Path:
        return self._by_key[key].path

    def allocate_discriminator(self) -> int:
        """A random nonzero 32-bit value no session of ours uses (§6.8.1: unique, and random
        values make a stale packet of an earlier session unlikely to match a new one)."""
        while True:
            value = int(self._rng() * 0x1_0000_0000) & 0xFFFFFFFF
            if value and value not in self._by_discriminator:
                return value

    def add(self, key: K, path: Path, session: Session, *, min_ttl: int = SINGLE_HOP_TTL) -> None:
        if key in self._by_key:
            raise ValueError(f"session {key!r} exists")
        if path in self._by_path:
            raise ValueError(f"a session on {path} exists")
        if session.local_discriminator in self._by_discriminator:
            raise ValueError(f"discriminator {session.local_discriminator} is in use")
        entry = _Entry(key=key, path=path, session=session, min_ttl=min_ttl)
        self._by_key[key] = entry
        self._by_discriminator[session.local_discriminator] = entry
        self._by_path[path] = entry

    def remove(self, key: K) -> Session | None:
        entry = self._by_key.pop(key, None)
        if entry is None:
            return None
        del self._by_discriminator[entry.session.local_discriminator]
        del self._by_path[entry.path]
        return entry.session

    def receive(
        self,
        data: bytes,
        *,
        source: str,
        destination: str,
        multihop: bool,
        ttl: int | None,
        now: float,
    ) -> tuple[K | None, list[Event]]:
        """One UDP payload from `source` to `destination` (canonical address text) on the
        single-hop (3784) or multihop (4784) port, with the TTL it arrived with (None: the
        kernel did not say). Returns the session's key and its events, or (None, [])."""
        try:
            packet = decode(data)
        except BfdError as err:
            self.dropped[err.reason.value] += 1
            return None, []
        if packet.your_discriminator:
            entry = self._by_discriminator.get(packet.your_discriminator)
            if entry is None:
                self.dropped[NO_SESSION] += 1
                return None, []
            if entry.path.remote != source or entry.path.multihop != multihop:
                self.dropped[WRONG_SOURCE] += 1
                return None, []
        else:
            found = self._by_path.get(Path(local=destination, remote=source, multihop=multihop))
            if found is None:
                self.dropped[NO_SESSION] += 1
                return None, []
            entry = found
        if ttl is None or ttl < entry.min_ttl:
            self.dropped[TTL] += 1
            return None, []
        if packet.auth is not None:
            self.dropped[AUTHENTICATION] += 1
            return None, []
        return entry.key, entry.session.receive(packet, now)


__all__ = [
    "AUTHENTICATION",
    "NO_SESSION",
    "SINGLE_HOP_TTL",
    "TTL",
    "WRONG_SOURCE",
    "Demux",
    "Path",
]
