"""The last applied state on disk (`--state-dir`), so a restarted speaker resumes it.

Two files (docs/performance.md says why):

- `applied.json`, the base: one applied state at one version, written whole for a snapshot and
  when the journal is compacted. Its first line is a header,
  `{"kind":"kubgp-speaker-applied","version":2,"epoch":E,"generation":G,"length":N,
  "sha256":H}`; then N bytes of JSON, the state with its advertisements grouped by attribute
  set and each group's prefixes as one base64 string of NLRI keys (`speaker.api.routes`).
  Writing is atomic: a temporary file, fsync, rename over the old one, fsync the directory.
  Reading checks the checksum and then trusts the content: the prefixes are sliced out of the
  NLRI keys without the schema's checks (our own file, intact); the peers and attribute sets,
  a few, are read by the schema as usual. A version 1 file (the whole state as a document,
  before the journal) is still read, through the schema.
- `journal`, appended per delta: a header line `{"epoch":E,"generation":G,"base":B,
  "length":N,"sha256":H}` and the delta's request line as it came (N bytes), fsynced before
  the ack. Loading replays the records that follow the base's version in order; a torn or
  unreadable tail (a crash while appending, never acked) ends the replay and is cut off before
  the next append. The journal is compacted (a new base, the journal removed) when it grows
  past the base's size, and whenever a snapshot is saved.

A crash at any point leaves the last acked version or the one being saved (the ack lost): the
base is replaced by a rename, a journal record counts only whole and with its checksum, and a
record that does not follow the version before it (left from before a compaction) is skipped.

The state holds TCP MD5 passwords, so files are created 0600 (and a created directory 0700).
Loading a base that cannot be read (truncated, hand-edited, a newer format) does not stop the
speaker: it is renamed aside to `applied.json.corrupt-<UTC time>`, the journal with it, the
speaker starts with nothing applied, and `LoadResult.problem` says what happened and where the
file went, for the caller to log.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from speaker.api.ipc import AppliedState, Delta, IpcError, StateVersion, apply_delta_in_place
from speaker.api.ipc import parse_request as _parse_request
from speaker.api.routes import (
    FAMILY_IPV4,
    FAMILY_IPV6,
    AttributeInterner,
    FamilyRoutes,
    RouteAttributes,
    Routes,
)
from speaker.api.schema import (
    AdvertisementReader,
    DesiredState,
    SchemaError,
    attributes_to_dict,
    parse_desired_state,
)

FILE_NAME: Final = "applied.json"
JOURNAL_NAME: Final = "journal"
KIND: Final = "kubgp-speaker-applied"
FORMAT_VERSION: Final = 2
COMPACT_AT: Final = 64 * 1024
"""Journal bytes below which it is never compacted (above: when larger than the base)."""
_HEADER_LIMIT: Final = 4096


class StateStoreError(Exception):
    """The state could not be saved (the running state is not affected)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    applied: AppliedState | None
    problem: str | None = None
    """Set when a file was found but not usable; says where it was moved."""
    kept_aside: Path | None = None


class StateStore:
    """Reads and writes the base and the journal in `directory`. Blocking I/O: call it from a
    thread (`asyncio.to_thread`) when an event loop must not stall."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.journal_path = self.directory / JOURNAL_NAME
        self._base_bytes = 0
        self._journal_bytes = 0
        self._journal_fd: int | None = None
        self._need_base = False  # a journal write failed: the next save must be whole

    # -- saving ------------------------------------------------------------------------------

    def save(self, applied: AppliedState) -> None:
        """Write `applied` as the new base and drop the journal."""
        data = encode_base(applied)
        tmp = self.directory / f".{FILE_NAME}.{os.getpid()}.tmp"
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_file(tmp, data)
            os.replace(tmp, self.path)
            self._close_journal()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.journal_path)
            _fsync_directory(self.directory)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            self._need_base = True
            raise StateStoreError(f"cannot save the applied state to {self.path}: {err}") from err
        self._base_bytes = len(data)
        self._journal_bytes = 0
        self._need_base = False

    def append(self, line: bytes, delta: Delta, applied: AppliedState) -> None:
        """Journal an applied delta (`line` as it came), fsynced; `applied` is the state after
        it, saved whole instead when the journal cannot be trusted to follow the base."""
        if self._need_base or not self.path.exists():
            self.save(applied)
            return
        body = line if line.endswith(b"\n") else line + b"\n"
        header = json.dumps(
            {
                "epoch": delta.epoch,
                "generation": delta.generation,
                "base": delta.base,
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            },
            separators=(",", ":"),
        ).encode()
        record = header + b"\n" + body
        try:
            fd = self._journal()
            view = memoryview(record)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as err:
            self._close_journal()
            self._need_base = True
            raise StateStoreError(f"cannot append to {self.journal_path}: {err}") from err
        self._journal_bytes += len(record)

    @property
    def compaction_due(self) -> bool:
        """The journal has grown past the base (and past `COMPACT_AT`): time for a new base."""
        return self._journal_bytes > max(COMPACT_AT, self._base_bytes) or self._need_base

    def _journal(self) -> int:
        if self._journal_fd is None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._journal_fd = os.open(
                self.journal_path,
                os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                0o600,
            )
        return self._journal_fd

    def _close_journal(self) -> None:
        if self._journal_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._journal_fd)
            self._journal_fd = None

    def close(self) -> None:
        self._close_journal()

    # -- loading -----------------------------------------------------------------------------

    def load(self, *, interner: AttributeInterner | None = None) -> LoadResult:
        self._remove_leftovers()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return LoadResult(applied=None)
        except OSError as err:
            # Unreadable (permissions, I/O error): leave it where it is, it may be transient.
            return LoadResult(applied=None, problem=f"cannot read {self.path}: {err}")
        try:
            applied = decode_base(data, interner=interner)
        except ValueError as err:  # IpcError and SchemaError are ValueErrors
            aside = self._keep_aside()
            where = f"moved to {aside}" if aside else "could not be moved aside"
            return LoadResult(
                applied=None,
                problem=f"{self.path} is not a usable applied state ({err}); it was {where}, "
                "starting with nothing applied",
                kept_aside=aside,
            )
        self._base_bytes = len(data)
        applied, problem = self._replay(applied, interner)
        return LoadResult(applied=applied, problem=problem)

    def _remove_leftovers(self) -> None:
        """Remove the temporary files of writers that died between writing and renaming
        (`.applied.json.<pid>.tmp`, never acked: the base beside it is the state). A file whose
        process still runs is left alone."""
        prefix = f".{FILE_NAME}."
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            pid_text = name[len(prefix) : -len(".tmp")]
            if not (name.startswith(prefix) and name.endswith(".tmp") and pid_text.isdigit()):
                continue
            pid = int(pid_text)
            if pid == os.getpid() or _alive(pid):
                continue
            with contextlib.suppress(OSError):
                os.unlink(self.directory / name)

    def _replay(
        self, applied: AppliedState, interner: AttributeInterner | None
    ) -> tuple[AppliedState, str | None]:
        """The base moved forward by the journal's records; cuts off a torn tail."""
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return applied, None
        except OSError as err:
            self._need_base = True
            return applied, f"cannot read {self.journal_path}: {err}; resuming the base alone"
        good, problem = 0, None
        for end, record in _records(data):
            if isinstance(record, str):
                if not record.startswith("a torn"):  # torn: a crash while appending
                    problem = f"{self.journal_path}: {record} at byte {good}; replayed up to there"
                break
            header, line = record
            version = applied.version
            if header["epoch"] != version.epoch or header["generation"] <= version.generation:
                # From before the base (left by a crash between writing a base and removing
                # the journal): already in it, or of an epoch a snapshot ended.
                good = end
                continue
            if header["base"] != version.generation:
                problem = (f"{self.journal_path}: a record at byte {good} does not follow "
                           f"generation {version.generation}; replayed up to there")  # fmt: skip
                break
            try:
                delta = _parse_request(line, max_line=len(line), interner=interner)
                if not isinstance(delta, Delta):
                    raise IpcError("not a delta")
                apply_delta_in_place(applied.state, delta)
            except IpcError as err:
                problem = (f"{self.journal_path}: the record at byte {good} does not apply "
                           f"({err.reason}); replayed up to there")  # fmt: skip
                break
            applied = AppliedState(version=delta.version, state=applied.state)
            good = end
        if good < len(data):
            # A torn tail (never acked) or a record that cannot be used: cut it off, so that
            # the next append follows the last good record.
            try:
                os.truncate(self.journal_path, good)
            except OSError as err:
                self._need_base = True
                problem = f"{problem}; cannot cut the journal: {err}"
        self._journal_bytes = good
        if problem is not None:
            self._need_base = True
        return applied, problem

    def _keep_aside(self) -> Path | None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{FILE_NAME}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{FILE_NAME}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, aside)
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.journal_path, aside.with_name(aside.name + ".journal"))
            _fsync_directory(self.directory)
        except OSError:
            return None
        return aside


# -- the base ---------------------------------------------------------------------------------


def encode_base(applied: AppliedState) -> bytes:
    """The base file's bytes: header line, then the state (prefixes as base64 NLRI keys)."""
    state = applied.state
    head = state.with_routes(Routes())
    doc = head.to_dict(compact=True)
    doc.pop("advertisements")
    groups: dict[RouteAttributes, dict[str, list[bytes]]] = {}
    for family, table in state.routes.families.items():
        for attrs, keys in _grouped(table).items():
            groups.setdefault(attrs, {})[family] = keys
    doc["routeGroups"] = [
        {
            "attributes": attributes_to_dict(attrs, compact=True),
            **{
                _STORED_FAMILY[family]: base64.b64encode(b"".join(keys)).decode()
                for family, keys in members.items()
            },
        }
        for attrs, members in groups.items()
    ]
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    header = {
        "kind": KIND,
        "version": FORMAT_VERSION,
        "epoch": applied.version.epoch,
        "generation": applied.version.generation,
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


_STORED_FAMILY: Final = {FAMILY_IPV4: "ipv4", FAMILY_IPV6: "ipv6"}


def _grouped(table: FamilyRoutes) -> dict[RouteAttributes, list[bytes]]:
    """A family's keys per attribute set (one set: every key, at C speed)."""
    if len(table.counts) == 1:
        (attrs,) = table.counts
        return {attrs: list(table.routes)}
    out: dict[RouteAttributes, list[bytes]] = {a: [] for a in table.counts}
    for key, attrs in table.routes.items():
        out[attrs].append(key)
    return out


def decode_base(data: bytes, *, interner: AttributeInterner | None = None) -> AppliedState:
    """A base file back; ValueError saying why it is not usable."""
    head, _, body = data.partition(b"\n")
    try:
        doc = json.loads(head if body else data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"malformed JSON: {err}") from None
    except RecursionError:
        raise ValueError("malformed JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("kind") == KIND and doc.get("version") == 1:
        return _decode_v1(doc)
    if doc.get("kind") != KIND or doc.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"kind/version {doc.get('kind')!r}/{doc.get('version')!r}, "
            f"expected {KIND!r}/{FORMAT_VERSION}"
        )
    unknown = set(doc) - {"kind", "version", "epoch", "generation", "length", "sha256"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    version = _version(doc)
    if doc.get("length") != len(body) or doc.get("sha256") != hashlib.sha256(body).hexdigest():
        raise ValueError(f"the content does not match its checksum ({len(body)} bytes)")
    try:
        state_doc = json.loads(body)
        return AppliedState(version=version, state=_trusted_state(state_doc, interner))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"malformed state: {err}") from None
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as err:
        if isinstance(err, SchemaError):
            raise ValueError(f"state.{err}") from None
        raise ValueError(f"malformed state: {type(err).__name__}: {err}") from None


def _version(doc: dict[str, object]) -> StateVersion:
    try:
        return StateVersion.from_json(
            {"epoch": doc.get("epoch"), "generation": doc.get("generation")}, ""
        )
    except IpcError as err:
        raise ValueError(err.reason) from None


def _decode_v1(doc: dict[str, object]) -> AppliedState:
    """The format before the journal: the whole state as a document, read by the schema."""
    unknown = set(doc) - {"kind", "version", "epoch", "generation", "state"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    version = _version(doc)
    state_doc = doc.get("state")
    if not isinstance(state_doc, dict):
        raise ValueError("state: must be an object")
    try:
        state = parse_desired_state(state_doc)
    except SchemaError as err:
        raise ValueError(f"state.{err}") from None
    return AppliedState(version=version, state=state)


def _trusted_state(doc: dict[str, object], interner: AttributeInterner | None) -> DesiredState:
    """Our own state, checksum verified: the peers and attribute sets (a few) through the
    schema, the prefixes sliced out of their NLRI keys without checks."""
    groups = doc.pop("routeGroups")
    assert isinstance(groups, list)
    head = parse_desired_state(doc, interner=interner)
    reader = AdvertisementReader({p.name: p for p in head.peers}, interner)
    tables: dict[str, dict[bytes, RouteAttributes]] = {FAMILY_IPV4: {}, FAMILY_IPV6: {}}
    for i, group in enumerate(groups):
        attrs = reader.attributes(group["attributes"], f"routeGroups[{i}].attributes")
        for family, stored in _STORED_FAMILY.items():
            packed = group.get(stored)
            if packed:
                keys = split_nlri(base64.b64decode(packed, validate=True))
                tables[family].update(dict.fromkeys(keys, attrs))
    return head.with_routes(Routes.of(tables))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, someone else's
        return True
    return True


def split_nlri(data: bytes) -> list[bytes]:
    """Concatenated NLRI keys back into keys (runs of one whole-octet length in one pass)."""
    n = len(data)
    if not n:
        return []
    length = data[0]
    stride = 1 + ((length + 7) >> 3)
    if not n % stride and data[::stride] == bytes((length,)) * (n // stride):
        return [data[i : i + stride] for i in range(0, n, stride)]
    out: list[bytes] = []
    i = 0
    while i < n:
        end = i + 1 + ((data[i] + 7) >> 3)
        if end > n:
            raise ValueError("a prefix overruns the stored keys")
        out.append(data[i:end])
        i = end
    return out


# -- the journal --------------------------------------------------------------------------------


def _records(data: bytes) -> list[tuple[int, tuple[dict[str, int], bytes] | str]]:
    """(end offset, (header, line)) per whole record; a string says why reading stopped."""
    out: list[tuple[int, tuple[dict[str, int], bytes] | str]] = []
    i, n = 0, len(data)
    while i < n:
        newline = data.find(b"\n", i, i + _HEADER_LIMIT)
        if newline < 0:
            out.append((i, "a torn record header"))
            break
        try:
            header = json.loads(data[i:newline])
            fields = {k: header[k] for k in ("epoch", "generation", "base", "length")}
            digest = header["sha256"]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in fields.values()):
                raise TypeError("not integers")
        except (ValueError, KeyError, TypeError):
            out.append((i, "an unreadable record header"))
            break
        start, end = newline + 1, newline + 1 + fields["length"]
        if end > n:
            out.append((i, "a torn record"))
            break
        line = data[start:end]
        if hashlib.sha256(line).hexdigest() != digest:
            out.append((i, "a record that does not match its checksum"))
            break
        out.append((end, (fields, line)))
        i = end
    return out


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "FILE_NAME",
    "JOURNAL_NAME",
    "LoadResult",
    "StateStore",
    "StateStoreError",
    "decode_base",
    "encode_base",
    "split_nlri",
]
