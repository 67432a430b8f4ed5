"""speaker.state_store's journal: deltas appended and replayed on top of the base; a torn or
damaged tail (a crash while appending, never acked) is cut off and the state before it resumed;
records left from before a compaction are skipped; the base is trusted only with its checksum;
a version 1 file (before the journal) still loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from speaker.api.ipc import AppliedState, Delta, StateVersion, apply_delta, encode
from speaker.api.routes import FAMILY_IPV4
from speaker.api.schema import Advertisement, DesiredState, parse_desired_state
from speaker.state_store import (
    COMPACT_AT,
    FILE_NAME,
    JOURNAL_NAME,
    StateStore,
    decode_base,
    encode_base,
    split_nlri,
)

EPOCH = 7
DOC = {
    "routerId": "192.0.2.11", "asn": 64512,
    "peers": [{"name": "tor-a", "address": "127.0.0.2", "asn": 65000, "password": "s3cret",
               "families": ["ipv4-unicast", "ipv6-unicast"]}],
    "advertisements": [
        {"prefixes": [f"10.0.{i // 250}.{i % 250}/32" for i in range(500)],
         "communities": ["64512:1"]},
        {"prefixes": ["10.1.0.0/24", "10.2.0.0/16", "2001:db8::/48", "2001:db8:0:1::/64"],
         "peers": ["tor-a"], "med": 3},
    ],
}  # fmt: skip


def base_state() -> DesiredState:
    return parse_desired_state(DOC)


def deltas(n: int) -> list[Delta]:
    out = []
    for g in range(2, 2 + n):
        out.append(Delta(epoch=EPOCH, generation=g, base=g - 1,
                         add=(Advertisement(prefix=f"10.9.{g}.0/24", med=g),),
                         remove=(f"10.0.0.{g}/32",)))  # fmt: skip
    return out


def journaled(tmp_path: Path, n: int) -> tuple[StateStore, list[AppliedState]]:
    """A base at generation 1 and `n` deltas journaled; every applied state along the way."""
    store = StateStore(tmp_path)
    applied = AppliedState(version=StateVersion(epoch=EPOCH, generation=1), state=base_state())
    store.save(applied)
    history = [applied]
    for d in deltas(n):
        state = apply_delta(history[-1].state, d)
        history.append(AppliedState(version=d.version, state=state))
        store.append(encode(d), d, history[-1])
    return store, history


def test_base_and_journal_resume_the_last_generation(tmp_path: Path) -> None:
    _store, history = journaled(tmp_path, 5)
    assert sorted(os.listdir(tmp_path)) == [FILE_NAME, JOURNAL_NAME]
    loaded = StateStore(tmp_path).load()
    assert loaded.problem is None
    assert loaded.applied == history[-1]


def test_every_torn_tail_resumes_the_generation_before_it(tmp_path: Path) -> None:
    _store, history = journaled(tmp_path, 3)
    journal = (tmp_path / JOURNAL_NAME).read_bytes()
    base = (tmp_path / FILE_NAME).read_bytes()
    last_start = journal.rindex(b"\n", 0, journal.rindex(b"\n", 0, len(journal) - 1)) + 1
    for cut in range(last_start, len(journal)):
        (tmp_path / FILE_NAME).write_bytes(base)
        (tmp_path / JOURNAL_NAME).write_bytes(journal[:cut])
        again = StateStore(tmp_path)
        loaded = again.load()
        assert loaded.applied == history[-2], cut
        assert loaded.problem is None  # a torn tail is what a crash leaves: no complaint
        # The torn tail is cut off, so the next record follows the last good one.
        assert (tmp_path / JOURNAL_NAME).read_bytes() == journal[:last_start]
        redo = deltas(3)[-1]
        again.append(encode(redo), redo, history[-1])
        again.close()
        assert StateStore(tmp_path).load().applied == history[-1]


def test_a_damaged_record_ends_the_replay_there(tmp_path: Path) -> None:
    _store, history = journaled(tmp_path, 3)
    journal = bytearray((tmp_path / JOURNAL_NAME).read_bytes())
    second = journal.index(b"\n", journal.index(b"\n") + 1) + 1  # start of the 2nd record
    journal[second + 60 :] = journal[second + 60 :].replace(b"10.9.", b"10.8.", 1)
    (tmp_path / JOURNAL_NAME).write_bytes(bytes(journal))
    loaded = StateStore(tmp_path).load()
    assert loaded.applied == history[1]
    assert loaded.problem is not None and "replayed up to there" in loaded.problem


def test_records_from_before_the_base_are_skipped(tmp_path: Path) -> None:
    # A crash between writing a new base and removing the journal leaves the old records.
    store, history = journaled(tmp_path, 4)
    journal = (tmp_path / JOURNAL_NAME).read_bytes()
    store.save(history[3])
    (tmp_path / JOURNAL_NAME).write_bytes(journal)
    loaded = StateStore(tmp_path).load()
    assert loaded.problem is None
    assert loaded.applied == history[4]  # the 4th delta follows generation 4's base


def test_a_snapshot_of_a_new_epoch_makes_old_records_stale(tmp_path: Path) -> None:
    store, _history = journaled(tmp_path, 2)
    journal = (tmp_path / JOURNAL_NAME).read_bytes()
    fresh = AppliedState(version=StateVersion(epoch=EPOCH + 1, generation=1), state=base_state())
    store.save(fresh)
    assert not (tmp_path / JOURNAL_NAME).exists()  # a save drops the journal
    (tmp_path / JOURNAL_NAME).write_bytes(journal)
    assert StateStore(tmp_path).load().applied == fresh


def test_the_journal_is_due_for_compaction_past_the_base(tmp_path: Path) -> None:
    store, history = journaled(tmp_path, 1)
    assert not bool(store.compaction_due)
    state = history[-1].state
    generation = 2
    while not store.compaction_due:
        d = Delta(epoch=EPOCH, generation=generation + 1, base=generation,
                  add=(Advertisement(prefix="10.9.9.0/24", med=generation),))  # fmt: skip
        state = apply_delta(state, d)
        store.append(encode(d), d, AppliedState(version=d.version, state=state))
        generation += 1
    assert os.path.getsize(tmp_path / JOURNAL_NAME) > max(COMPACT_AT, store._base_bytes)
    last = AppliedState(version=StateVersion(epoch=EPOCH, generation=generation), state=state)
    assert StateStore(tmp_path).load().applied == last
    store.save(last)
    assert not bool(store.compaction_due) and os.listdir(tmp_path) == [FILE_NAME]
    assert StateStore(tmp_path).load().applied == last


def test_after_a_failed_append_the_next_save_is_whole(tmp_path: Path) -> None:
    store, history = journaled(tmp_path, 1)
    store._close_journal()
    os.chmod(tmp_path / JOURNAL_NAME, 0o400)
    d = deltas(2)[1]
    after = AppliedState(version=d.version, state=apply_delta(history[-1].state, d))
    if os.geteuid() == 0:  # root writes through file modes: make the journal a directory
        os.chmod(tmp_path / JOURNAL_NAME, 0o600)
        os.unlink(tmp_path / JOURNAL_NAME)
        os.mkdir(tmp_path / JOURNAL_NAME)
    with pytest.raises(Exception, match="cannot append"):
        store.append(encode(d), d, after)
    if os.geteuid() == 0:
        os.rmdir(tmp_path / JOURNAL_NAME)
    assert store.compaction_due
    nxt = Delta(epoch=EPOCH, generation=4, base=3, remove=("10.0.0.9/32",))
    final = AppliedState(version=nxt.version, state=apply_delta(after.state, nxt))
    store.append(encode(nxt), nxt, final)  # whole, not appended after a gap
    assert StateStore(tmp_path).load().applied == final


def test_the_base_is_trusted_only_with_its_checksum(tmp_path: Path) -> None:
    applied = AppliedState(version=StateVersion(epoch=EPOCH, generation=1), state=base_state())
    data = encode_base(applied)
    assert decode_base(data) == applied
    header, _, body = data.partition(b"\n")
    doc = json.loads(body)
    assert doc["peers"][0]["password"] == "s3cret"
    tampered = header + b"\n" + body.replace(b'"med":3', b'"med":4')
    with pytest.raises(ValueError, match="does not match its checksum"):
        decode_base(tampered)
    store = StateStore(tmp_path)
    store.path.write_bytes(tampered)
    result = store.load()
    assert result.applied is None and result.kept_aside is not None


def test_a_version_1_file_still_loads(tmp_path: Path) -> None:
    state = base_state()
    old = {"kind": "kubgp-speaker-applied", "version": 1, "epoch": EPOCH, "generation": 9,
           "state": state.to_dict()}  # fmt: skip
    (tmp_path / FILE_NAME).write_text(json.dumps(old))
    loaded = StateStore(tmp_path).load()
    assert loaded.applied == AppliedState(
        version=StateVersion(epoch=EPOCH, generation=9), state=state
    )


def test_split_nlri_reads_runs_and_mixed_lengths() -> None:
    state = base_state()
    keys = list(state.routes.table(FAMILY_IPV4))
    assert split_nlri(b"".join(keys)) == keys
    assert split_nlri(b"") == []
    with pytest.raises(ValueError, match="overruns"):
        split_nlri(b"\x18\x0a\x00")
