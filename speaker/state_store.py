"""The last applied state on disk (`--state-dir`), so a restarted speaker resumes it.

One JSON file, `applied.json`:
`{"kind":"kubgp-speaker-applied","version":1,"epoch":E,"generation":G,"state":{...}}`.
Saving is atomic: write a temporary file in the same directory, fsync it, rename it over the
old one, fsync the directory. A crash leaves either the old file or the new one, never half.
The state holds TCP MD5 passwords, so the file is created 0600 (and a created directory 0700).

Loading a file that cannot be read as such a document (truncated, hand-edited, a newer format)
does not stop the speaker: the file is renamed aside to `applied.json.corrupt-<UTC time>`, the
speaker starts with nothing applied, and `LoadResult.problem` says what happened and where the
file went, for the caller to log.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from speaker.api.ipc import AppliedState, IpcError, StateVersion
from speaker.api.schema import SchemaError, parse_desired_state

FILE_NAME: Final = "applied.json"
KIND: Final = "kubgp-speaker-applied"
FORMAT_VERSION: Final = 1


class StateStoreError(Exception):
    """The state could not be saved (the running state is not affected)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    applied: AppliedState | None
    problem: str | None = None
    """Set when a file was found but not usable; says where it was moved."""
    kept_aside: Path | None = None


class StateStore:
    """Reads and writes `applied.json` in `directory`. Blocking I/O: call it from a thread
    (`asyncio.to_thread`) when an event loop must not stall."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME

    def save(self, applied: AppliedState) -> None:
        doc = {
            "kind": KIND,
            "version": FORMAT_VERSION,
            "epoch": applied.version.epoch,
            "generation": applied.version.generation,
            "state": applied.state.to_dict(),
        }
        data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        tmp = self.directory / f".{FILE_NAME}.{os.getpid()}.tmp"
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            _fsync_directory(self.directory)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StateStoreError(f"cannot save the applied state to {self.path}: {err}") from err

    def load(self) -> LoadResult:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return LoadResult(applied=None)
        except OSError as err:
            # Unreadable (permissions, I/O error): leave it where it is, it may be transient.
            return LoadResult(applied=None, problem=f"cannot read {self.path}: {err}")
        try:
            return LoadResult(applied=_decode(data))
        except ValueError as err:  # IpcError and SchemaError are ValueErrors
            aside = self._keep_aside()
            where = f"moved to {aside}" if aside else "could not be moved aside"
            return LoadResult(
                applied=None,
                problem=f"{self.path} is not a usable applied state ({err}); it was {where}, "
                "starting with nothing applied",
                kept_aside=aside,
            )

    def _keep_aside(self) -> Path | None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{FILE_NAME}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{FILE_NAME}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, aside)
            _fsync_directory(self.directory)
        except OSError:
            return None
        return aside


def _decode(data: bytes) -> AppliedState:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"malformed JSON: {err}") from None
    except RecursionError:
        raise ValueError("malformed JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("kind") != KIND or doc.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"kind/version {doc.get('kind')!r}/{doc.get('version')!r}, "
            f"expected {KIND!r}/{FORMAT_VERSION}"
        )
    unknown = set(doc) - {"kind", "version", "epoch", "generation", "state"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    try:
        version = StateVersion.from_json(
            {"epoch": doc.get("epoch"), "generation": doc.get("generation")}, ""
        )
    except IpcError as err:
        raise ValueError(err.reason) from None
    state_doc = doc.get("state")
    if not isinstance(state_doc, dict):
        raise ValueError("state: must be an object")
    try:
        state = parse_desired_state(state_doc)
    except SchemaError as err:
        raise ValueError(f"state.{err}") from None
    return AppliedState(version=version, state=state)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["FILE_NAME", "LoadResult", "StateStore", "StateStoreError"]
