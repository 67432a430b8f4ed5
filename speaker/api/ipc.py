"""The speaker's control protocol: newline-delimited JSON over a Unix socket (see DESIGN.md).

This module is pure: no I/O. One frozen dataclass per message with `to_json()` / `from_json()`,
and two plain dispatch tables from the `type` key to the class, one per direction, because
`{"type":"status"}` is a request from a client and `{"type":"status","peers":...}` a reply:

    client -> speaker   snapshot, delta, status, routes    `parse_request(line)`
    speaker -> client   hello, ack, nack, status, routes   `parse_reply(line)`

(`routes` and the `fib` part of `status` are defined in `speaker.api.route_status`.)

`encode(message)` gives one line (compact JSON, `type` first, ending in `\\n`). Parsing returns a
message or raises `IpcError` with a reason fit to send back in a nack: malformed JSON, a line
over the size limit, an unknown type, a missing or unknown key, a value of the wrong type, a
desired state that breaks the schema (the reason starts with the key path, `state.peers[0].asn`).

The state machine is pure too: `accept(applied, message)` returns the next `AppliedState` or
raises `IpcError`. Its rules, where DESIGN.md leaves a choice:
- Epochs and generations are integers in 0..2**63-1. An agent picks a new epoch per process
  (any value different from the applied one; epochs are not ordered).
- A snapshot is accepted when nothing is applied, when its epoch differs from the applied one
  (a new agent), or when its generation is greater than the applied one in the same epoch.
- A delta needs an applied state of the same epoch, `base` equal to the applied generation and
  `generation > base`; otherwise it is refused with `want: "snapshot"`.
- A delta's `add` entries follow the advertisement schema; an entry replaces the applied entry
  with the same prefix. `remove` names prefixes that must be applied now (removing one that is
  not means the agent's view has drifted: refused, send a snapshot). A prefix may not be both
  added and removed, nor appear twice. Advertisement `peers` must name peers of the applied
  state. The result is a valid `DesiredState`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal, ParamSpec, TypeAlias, TypeVar

from speaker.api.fields import (
    JSON,
    FieldError,
    Fields,
    any_string,
    boolean,
    integer,
    mapping,
    number,
    sequence,
    type_name,
)
from speaker.api.fields import prefix as cidr_prefix
from speaker.api.route_status import FibSummary, Routes, RoutesRequest
from speaker.api.routes import (
    FAMILY_IPV4,
    FAMILY_IPV6,
    AttributeInterner,
    RouteAttributes,
    fast_nlri,
    nlri_text,
)
from speaker.api.schema import (
    Advertisement,
    AdvertisementReader,
    DesiredState,
    attributes_to_dict,
    nlri_of,
    parse_desired_state,
)

PROTO: Final = 2
"""2: snapshots and deltas may carry advertisements grouped (`prefixes`, defaults left out;
docs/performance.md). A client sends that form only to a speaker whose hello says 2 or more."""
COMPACT_PROTO: Final = 2
DEFAULT_MAX_LINE: Final = 16 * 1024 * 1024
"""Bytes per line, newline excluded: about 100,000 advertisements in a snapshot."""
MAX_COUNTER: Final = (1 << 63) - 1

Want: TypeAlias = Literal["snapshot"] | None
WANT_SNAPSHOT: Final = "snapshot"


class IpcError(ValueError):
    """A line or a message the peer must be told about; `reason` goes into the nack."""

    def __init__(self, reason: str, *, want: Want = WANT_SNAPSHOT) -> None:
        super().__init__(reason)
        self.reason = reason
        self.want: Want = want


P = ParamSpec("P")
R = TypeVar("R")


def _nacked(parse: Callable[P, R]) -> Callable[P, R]:
    """A parser whose field errors become `IpcError`s (the reason names the key path)."""

    @functools.wraps(parse)
    def parse_or_nack(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return parse(*args, **kwargs)
        except FieldError as err:
            raise IpcError(str(err)) from None

    return parse_or_nack


def _fields(doc: object, path: str, keys: Sequence[str]) -> Fields:
    """A message object: exactly `keys`, every one required."""
    return Fields(doc, path, keys=keys, required=keys, words=JSON)


def _counter(value: object, path: str) -> int:
    return integer(value, path, 0, MAX_COUNTER)


# --- values --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StateVersion:
    """Which state is applied: the agent's epoch and its generation within it."""

    epoch: int
    generation: int

    def to_json(self) -> dict[str, object]:
        return {"epoch": self.epoch, "generation": self.generation}

    @classmethod
    @_nacked
    def from_json(cls, doc: object, path: str) -> StateVersion:
        f = _fields(doc, path, ("epoch", "generation"))
        return cls(epoch=_counter(f.raw("epoch"), f.at("epoch")),
                   generation=_counter(f.raw("generation"), f.at("generation")))  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class AppliedState:
    """The state the speaker runs, with the version that put it there."""

    version: StateVersion
    state: DesiredState


@dataclass(frozen=True, slots=True, kw_only=True)
class BfdStatus:
    """A peer's BFD session: `state` (AdminDown, Down, Init, Up), since when (Unix time), how
    often it left Up, the diagnostic of its last Down, and whether BGP is held down until BFD
    is Up again (docs/bfd.md)."""

    state: str
    since: float | None = None
    flaps: int = 0
    last_diagnostic: str | None = None
    bgp_held: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "since": self.since,
            "flaps": self.flaps,
            "lastDiagnostic": self.last_diagnostic,
            "bgpHeld": self.bgp_held,
        }

    @classmethod
    @_nacked
    def from_json(cls, doc: object, path: str) -> BfdStatus:
        f = _fields(doc, path, ("state", "since", "flaps", "lastDiagnostic", "bgpHeld"))
        return cls(
            state=any_string(f.raw("state"), f.at("state")),
            since=f.optional("since", number),
            flaps=_counter(f.raw("flaps"), f.at("flaps")),
            last_diagnostic=f.optional("lastDiagnostic", any_string),
            bgp_held=boolean(f.raw("bgpHeld"), f.at("bgpHeld")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatus:
    """One peer as `status` reports it. `since` is when `state` was entered (Unix time,
    seconds); `last_error` the reason the session last went down, if it ever did. `bfd` is
    there only for a peer with BFD configured (and then only in the JSON): a status without
    it is what a speaker before BFD sent, and reads the same."""

    name: str
    address: str
    state: str
    since: float | None = None
    prefixes_advertised: int = 0
    prefixes_received: int = 0
    last_error: str | None = None
    bfd: BfdStatus | None = None
    # Route import (docs/route-import.md), only when the speaker imports routes: prefixes the
    # peer's import policy accepted, that have its path as best, and whose installed kernel
    # route goes through it (in the JSON only when set: an older speaker sends none).
    prefixes_accepted: int | None = None
    prefixes_best: int | None = None
    prefixes_installed: int | None = None

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "name": self.name,
            "address": self.address,
            "state": self.state,
            "since": self.since,
            "prefixesAdvertised": self.prefixes_advertised,
            "prefixesReceived": self.prefixes_received,
            "lastError": self.last_error,
        }
        if self.bfd is not None:
            doc["bfd"] = self.bfd.to_json()
        for key, value in (("prefixesAccepted", self.prefixes_accepted),
                           ("prefixesBest", self.prefixes_best),
                           ("prefixesInstalled", self.prefixes_installed)):  # fmt: skip
            if value is not None:
                doc[key] = value
        return doc

    @classmethod
    @_nacked
    def from_json(cls, doc: object, path: str) -> PeerStatus:
        # `bfd` and the route import counts are optional (a speaker before them sends none);
        # every other key is required.
        f = Fields(doc, path, (*_PEER_STATUS_KEYS, *_PEER_STATUS_OPTIONAL),
                   required=_PEER_STATUS_KEYS, words=JSON)  # fmt: skip
        return cls(
            prefixes_accepted=f.optional("prefixesAccepted", _counter),
            prefixes_best=f.optional("prefixesBest", _counter),
            prefixes_installed=f.optional("prefixesInstalled", _counter),
            bfd=f.optional("bfd", BfdStatus.from_json),
            name=any_string(f.raw("name"), f.at("name")),
            address=any_string(f.raw("address"), f.at("address")),
            state=any_string(f.raw("state"), f.at("state")),
            since=f.optional("since", number),
            prefixes_advertised=_counter(f.raw("prefixesAdvertised"), f.at("prefixesAdvertised")),
            prefixes_received=_counter(f.raw("prefixesReceived"), f.at("prefixesReceived")),
            last_error=f.optional("lastError", any_string),
        )


_PEER_STATUS_KEYS = (
    "name",
    "address",
    "state",
    "since",
    "prefixesAdvertised",
    "prefixesReceived",
    "lastError",
)
_PEER_STATUS_OPTIONAL = ("bfd", "prefixesAccepted", "prefixesBest", "prefixesInstalled")


# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """speaker -> client, first line of every connection."""

    applied: StateVersion | None
    proto: int = PROTO
    TYPE: ClassVar[str] = "hello"

    def to_json(self) -> dict[str, object]:
        applied = None if self.applied is None else self.applied.to_json()
        return {"type": self.TYPE, "proto": self.proto, "applied": applied}

    @classmethod
    @_nacked
    def from_json(cls, doc: Mapping[str, object]) -> Hello:
        f = _fields(doc, "", ("type", "proto", "applied"))
        raw = f.raw("applied")
        return cls(
            proto=_counter(f.raw("proto"), "proto"),
            applied=None if raw is None else StateVersion.from_json(raw, "applied"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """client -> speaker: the whole desired state. `compact`: written with advertisements
    grouped (proto 2); read either way."""

    epoch: int
    generation: int
    state: DesiredState
    compact: bool = field(default=False, compare=False)
    TYPE: ClassVar[str] = "snapshot"

    @property
    def version(self) -> StateVersion:
        return StateVersion(epoch=self.epoch, generation=self.generation)

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.TYPE,
            "epoch": self.epoch,
            "generation": self.generation,
            "state": self.state.to_dict(compact=self.compact),
        }

    @classmethod
    @_nacked
    def from_json(
        cls, doc: Mapping[str, object], interner: AttributeInterner | None = None
    ) -> Snapshot:
        f = _fields(doc, "", ("type", "epoch", "generation", "state"))
        raw = mapping(f.raw("state"), "state", JSON)
        try:
            state = parse_desired_state(raw, interner=interner)
        except FieldError as err:
            raise FieldError(f"state.{err.path}" if err.path else "state", err.detail) from None
        return cls(
            epoch=_counter(f.raw("epoch"), "epoch"),
            generation=_counter(f.raw("generation"), "generation"),
            state=state,
        )


Added = tuple[tuple[str, bytes, RouteAttributes], ...]
Removed = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class DeltaRoutes:
    """A delta in compact form: (family, NLRI key, attributes) added, (family, key) removed,
    in the order of `Delta.add` and `Delta.remove`."""

    add: Added
    remove: Removed


@dataclass(frozen=True, slots=True, kw_only=True)
class Delta:
    """client -> speaker: advertisements to add (or replace, by prefix) and prefixes to remove,
    against the applied generation `base`. Peers, ASN and router id change only by snapshot.
    `compact`: `add` written grouped by attribute set (proto 2); read either way."""

    epoch: int
    generation: int
    base: int
    add: tuple[Advertisement, ...] = ()
    remove: tuple[str, ...] = ()
    compact: bool = field(default=False, compare=False)
    parsed: DeltaRoutes | None = field(default=None, compare=False, repr=False)
    TYPE: ClassVar[str] = "delta"

    @property
    def version(self) -> StateVersion:
        return StateVersion(epoch=self.epoch, generation=self.generation)

    def routes(self) -> DeltaRoutes:
        """The compact form (as parsed, or made from `add` and `remove`)."""
        if self.parsed is not None:
            return self.parsed
        add = tuple((*nlri_of(a.prefix), a.attributes) for a in self.add)
        return DeltaRoutes(add, tuple(nlri_of(p) for p in self.remove))

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.TYPE,
            "epoch": self.epoch,
            "generation": self.generation,
            "base": self.base,
            "add": (
                advertisement_groups(self.add) if self.compact else advertisements_to_json(self.add)
            ),
            "remove": list(self.remove),
        }

    @classmethod
    @_nacked
    def from_json(
        cls, doc: Mapping[str, object], interner: AttributeInterner | None = None
    ) -> Delta:
        f = _fields(doc, "", ("type", "epoch", "generation", "base", "add", "remove"))
        reader = AdvertisementReader(None, interner)
        seen: dict[tuple[str, bytes], str] = {}
        added: list[tuple[str, bytes, RouteAttributes]] = []
        for i, raw in enumerate(sequence(f.raw("add"), "add", JSON)):
            path = f"add[{i}]"
            reader.tables = {FAMILY_IPV4: {}, FAMILY_IPV6: {}}
            reader.entry(mapping(raw, path, JSON), path)
            for family, table in reader.tables.items():
                for key, attrs in table.items():
                    _once(seen, family, key, path)
                    added.append((family, key, attrs))
        removed: list[tuple[str, bytes]] = []
        for i, raw in enumerate(sequence(f.raw("remove"), "remove", JSON)):
            path = f"remove[{i}]"
            found = fast_nlri(raw) if type(raw) is str else None
            if found is None:
                found = nlri_of(cidr_prefix(raw, path))
            _once(seen, *found, path)
            removed.append(found)
        return cls(
            epoch=_counter(f.raw("epoch"), "epoch"),
            generation=_counter(f.raw("generation"), "generation"),
            base=_counter(f.raw("base"), "base"),
            add=tuple(Advertisement.of(nlri_text(fm, k), a) for fm, k, a in added),
            remove=tuple(nlri_text(fm, k) for fm, k in removed),
            parsed=DeltaRoutes(tuple(added), tuple(removed)),
        )


def _once(seen: dict[tuple[str, bytes], str], family: str, key: bytes, path: str) -> None:
    """A prefix may appear once in a delta, across `add` and `remove`."""
    first = seen.get((family, key))
    if first is not None:
        raise IpcError(f"{path}: prefix {nlri_text(family, key)} is also in {first}")
    seen[(family, key)] = path


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRequest:
    """client -> speaker: `{"type":"status"}`."""

    TYPE: ClassVar[str] = "status"

    def to_json(self) -> dict[str, object]:
        return {"type": self.TYPE}

    @classmethod
    @_nacked
    def from_json(cls, doc: Mapping[str, object]) -> StatusRequest:
        _fields(doc, "", ("type",))
        return cls()


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """speaker -> client: the answer to a status request."""

    peers: tuple[PeerStatus, ...]
    applied: StateVersion | None
    fib: FibSummary | None = None  # route import; only when configured (docs/route-import.md)
    TYPE: ClassVar[str] = "status"

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "type": self.TYPE,
            "peers": [p.to_json() for p in self.peers],
            "applied": None if self.applied is None else self.applied.to_json(),
        }
        if self.fib is not None:
            doc["fib"] = self.fib.to_json()
        return doc

    @classmethod
    @_nacked
    def from_json(cls, doc: Mapping[str, object]) -> Status:
        keys = ("type", "peers", "applied")
        f = Fields(doc, "", (*keys, "fib"), required=keys, words=JSON)
        peers = tuple(
            PeerStatus.from_json(raw, f"peers[{i}]")
            for i, raw in enumerate(sequence(f.raw("peers"), "peers", JSON))
        )
        raw = f.raw("applied")
        return cls(
            peers=peers,
            applied=None if raw is None else StateVersion.from_json(raw, "applied"),
            fib=f.optional("fib", FibSummary.from_json),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """speaker -> client: the snapshot or delta of this version is applied."""

    epoch: int
    generation: int
    TYPE: ClassVar[str] = "ack"

    def to_json(self) -> dict[str, object]:
        return {"type": self.TYPE, "epoch": self.epoch, "generation": self.generation}

    @classmethod
    @_nacked
    def from_json(cls, doc: Mapping[str, object]) -> Ack:
        f = _fields(doc, "", ("type", "epoch", "generation"))
        return cls(
            epoch=_counter(f.raw("epoch"), "epoch"),
            generation=_counter(f.raw("generation"), "generation"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """speaker -> client: refused, nothing changed. `want` is "snapshot" when sending a full
    snapshot is the way on, None when retrying cannot help (a refused uid)."""

    reason: str
    want: Want = WANT_SNAPSHOT
    TYPE: ClassVar[str] = "nack"

    def to_json(self) -> dict[str, object]:
        return {"type": self.TYPE, "reason": self.reason, "want": self.want}

    @classmethod
    @_nacked
    def from_json(cls, doc: Mapping[str, object]) -> Nack:
        f = _fields(doc, "", ("type", "reason", "want"))
        want = f.raw("want")
        if want is not None and want != WANT_SNAPSHOT:
            raise IpcError(f"want: must be 'snapshot' or null, not {want!r}")
        reason = any_string(f.raw("reason"), "reason")
        return cls(reason=reason, want=WANT_SNAPSHOT if want is not None else None)


Request: TypeAlias = Snapshot | Delta | StatusRequest | RoutesRequest
Reply: TypeAlias = Hello | Ack | Nack | Status | Routes
Message: TypeAlias = Request | Reply


def _status_request(doc: Mapping[str, object], interner: AttributeInterner | None) -> Request:
    return StatusRequest.from_json(doc)


def _routes_request(doc: Mapping[str, object], interner: AttributeInterner | None) -> Request:
    return _nacked(RoutesRequest.from_json)(doc)  # speaker.api.route_status


REQUESTS: Final[
    Mapping[str, Callable[[Mapping[str, object], AttributeInterner | None], Request]]
] = {
    Snapshot.TYPE: Snapshot.from_json,
    Delta.TYPE: Delta.from_json,
    StatusRequest.TYPE: _status_request,
    RoutesRequest.TYPE: _routes_request,
}
REPLIES: Final[Mapping[str, Callable[[Mapping[str, object]], Reply]]] = {
    Hello.TYPE: Hello.from_json,
    Ack.TYPE: Ack.from_json,
    Nack.TYPE: Nack.from_json,
    Status.TYPE: Status.from_json,
    Routes.TYPE: _nacked(Routes.from_json),
}


# --- lines ---------------------------------------------------------------------------------


def encode(message: Message) -> bytes:
    """One line of compact JSON, `type` first, ending in a newline (JSON escapes any newline
    inside a string, so the line has exactly one)."""
    text = json.dumps(message.to_json(), separators=(",", ":"), ensure_ascii=False)
    return text.encode() + b"\n"


def parse_request(
    line: bytes, *, max_line: int = DEFAULT_MAX_LINE, interner: AttributeInterner | None = None
) -> Request:
    """A line from a client -> a request, or `IpcError`. `interner`: attribute sets shared
    with the states parsed before (the speaker's own)."""
    doc, kind = _decode_line(line, max_line)
    parse = REQUESTS.get(kind)
    if parse is None:
        raise IpcError(f"type: unknown request type {kind!r}; expected one of {sorted(REQUESTS)}")
    return parse(doc, interner)


def parse_reply(line: bytes, *, max_line: int = DEFAULT_MAX_LINE) -> Reply:
    """A line from the speaker -> a reply, or `IpcError`."""
    doc, kind = _decode_line(line, max_line)
    parse = REPLIES.get(kind)
    if parse is None:
        raise IpcError(f"type: unknown reply type {kind!r}; expected one of {sorted(REPLIES)}")
    return parse(doc)


def _reject_constant(name: str) -> object:
    raise IpcError(f"malformed JSON: {name} is not a JSON number")


def _decode_line(line: bytes, max_line: int) -> tuple[Mapping[str, object], str]:
    body = line[:-1] if line.endswith(b"\n") else line
    body = body[:-1] if body.endswith(b"\r") else body
    if len(body) > max_line:
        raise IpcError(f"line of {len(body)} bytes is over the limit of {max_line} bytes")
    try:
        # Decoded here, not by json.loads: that would guess UTF-16/32 from the first bytes.
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise IpcError(f"malformed line: not UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise IpcError(f"malformed JSON: {err.msg} at column {err.colno}") from None
    except RecursionError:
        raise IpcError("malformed JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise IpcError(f"a message must be a JSON object, not {type_name(doc, JSON)}")
    kind = doc.get("type")
    if not isinstance(kind, str):
        raise IpcError("type: required, a string" if kind is None else "type: must be a string")
    return doc, kind


# --- the state machine ---------------------------------------------------------------------


def check_version(applied: AppliedState | None, message: Snapshot | Delta) -> None:
    """`IpcError` (want snapshot) when the epoch and generation rules refuse `message`."""
    if isinstance(message, Snapshot):
        if (
            applied is not None
            and message.epoch == applied.version.epoch
            and message.generation <= applied.version.generation
        ):
            raise IpcError(
                f"generation {message.generation} is not after the applied generation "
                f"{applied.version.generation} of epoch {message.epoch}"
            )
        return
    if applied is None:
        raise IpcError("no state is applied yet; a delta needs a snapshot first")
    if message.epoch != applied.version.epoch:
        raise IpcError(
            f"delta of epoch {message.epoch}, but epoch {applied.version.epoch} is applied; "
            "a new epoch starts with a snapshot"
        )
    if message.base != applied.version.generation:
        raise IpcError(
            f"delta base {message.base} is not the applied generation {applied.version.generation}"
        )
    if message.generation <= message.base:
        raise IpcError(
            f"delta generation {message.generation} is not after its base {message.base}"
        )


def accept(applied: AppliedState | None, message: Snapshot | Delta) -> AppliedState:
    """The state after `message`, or `IpcError` (want snapshot) when the rules refuse it.
    Pure: a delta gives a new state (a copy); the speaker applies deltas in place instead
    (`check_version`, then `apply_delta_in_place`)."""
    check_version(applied, message)
    if isinstance(message, Snapshot):
        return AppliedState(version=message.version, state=message.state)
    assert applied is not None
    return AppliedState(version=message.version, state=apply_delta(applied.state, message))


Change = tuple[bytes, RouteAttributes | None, RouteAttributes | None]
RouteChanges = dict[str, list[Change]]
"""Per family: (NLRI key, attributes before, attributes after), None where absent."""


def check_delta(state: DesiredState, delta: Delta) -> DeltaRoutes:
    """`IpcError` unless `delta` applies to `state`: every removed prefix is advertised, every
    added one names peers of the state. Changes nothing."""
    routes = state.routes
    parsed = delta.routes()
    for i, (family, key) in enumerate(parsed.remove):
        if routes.get(family, key) is None:
            raise IpcError(f"remove[{i}]: {nlri_text(family, key)} is not advertised")
    peer_names = {p.name for p in state.peers}
    checked: set[RouteAttributes] = set()
    for i, (_family, _key, attrs) in enumerate(parsed.add):
        if attrs.peers is None or attrs in checked:
            continue
        for j, name in enumerate(attrs.peers):
            if name not in peer_names:
                raise IpcError(f"add[{i}].peers[{j}]: no peer named {name!r}")
        checked.add(attrs)
    return parsed


def apply_delta_in_place(state: DesiredState, delta: Delta) -> RouteChanges:
    """Moves `state.routes` forward by `delta` (checked first: on `IpcError` nothing changed)
    and returns what changed. The cost is the delta's size, not the state's. `state` is the
    caller's own (the speaker's applied state): whoever else holds it sees the change."""
    parsed = check_delta(state, delta)
    families = state.routes.families
    changes: RouteChanges = {}
    for family, key in parsed.remove:
        old = families[family].remove(key)
        changes.setdefault(family, []).append((key, old, None))
    for family, key, attrs in parsed.add:
        old = families[family].set(key, attrs)
        if old is not attrs and old != attrs:
            changes.setdefault(family, []).append((key, old, attrs))
    return changes


def apply_delta(state: DesiredState, delta: Delta) -> DesiredState:
    """`state` with `delta.add` put in (replacing by prefix) and `delta.remove` taken out, as a
    new state; `state` is unchanged."""
    copy = state.with_routes(state.routes.copy())
    apply_delta_in_place(copy, delta)
    return copy


# --- helpers -------------------------------------------------------------------------------


def advertisements_to_json(advertisements: Sequence[Advertisement]) -> list[object]:
    """Advertisements in the schema's canonical JSON form, one entry each."""
    out: list[object] = []
    for a in advertisements:
        doc: dict[str, object] = {"prefix": a.prefix}
        doc.update(attributes_to_dict(a.attributes, compact=False))
        out.append(doc)
    return out


def advertisement_groups(advertisements: Sequence[Advertisement]) -> list[object]:
    """Advertisements grouped by attribute set (`prefixes`), defaults left out (proto 2)."""
    groups: dict[RouteAttributes, list[str]] = {}
    for a in advertisements:
        groups.setdefault(a.attributes, []).append(a.prefix)
    out: list[object] = []
    for attrs, prefixes in groups.items():
        doc: dict[str, object] = {"prefixes": prefixes}
        doc.update(attributes_to_dict(attrs, compact=True))
        out.append(doc)
    return out


__all__ = [
    "COMPACT_PROTO",
    "DEFAULT_MAX_LINE",
    "PROTO",
    "REPLIES",
    "REQUESTS",
    "WANT_SNAPSHOT",
    "Ack",
    "AppliedState",
    "BfdStatus",
    "Delta",
    "DeltaRoutes",
    "Hello",
    "IpcError",
    "Message",
    "Nack",
    "PeerStatus",
    "Reply",
    "Request",
    "RouteChanges",
    "Snapshot",
    "StateVersion",
    "Status",
    "StatusRequest",
    "Want",
    "accept",
    "advertisement_groups",
    "advertisements_to_json",
    "apply_delta",
    "apply_delta_in_place",
    "check_delta",
    "check_version",
    "encode",
    "parse_reply",
    "parse_request",
]
