"""fixsecure.replay: strictly-later compare-and-set, durability, fail-closed on corruption."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from fixsecure.errors import ConfigError
from fixsecure.replay import FileReplayStore, MemoryReplayStore, ReplayStateError
from fixsecure.sessionid import SessionID

SID = SessionID("FIX.4.4", "VENUE", "BANK")
OTHER = SessionID("FIX.4.4", "VENUE", "BROKER/DESK")


@pytest.mark.parametrize("store_kind", ["memory", "file"])
def test_advance_is_strictly_later(store_kind: str, tmp_path: Path) -> None:
    store = MemoryReplayStore() if store_kind == "memory" else FileReplayStore(tmp_path)
    assert store.last_logon(SID) is None
    assert store.advance(SID, 100)
    assert not store.advance(SID, 100)
    assert not store.advance(SID, 99)
    assert store.last_logon(SID) == 100
    assert store.advance(SID, 101)
    assert store.last_logon(SID) == 101
    assert store.last_logon(OTHER) is None  # sessions are independent
    assert store.advance(OTHER, 5)


def test_file_store_survives_a_restart_and_writes_atomically(tmp_path: Path) -> None:
    FileReplayStore(tmp_path).advance(SID, 1_795_622_400_000_000_000)
    reopened = FileReplayStore(tmp_path)
    assert reopened.last_logon(SID) == 1_795_622_400_000_000_000
    assert not reopened.advance(SID, 1_795_622_400_000_000_000)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert not [f for f in files if ".tmp" in f]  # no temporary file left behind
    state = [p for p in tmp_path.iterdir() if p.suffix == ".logon"]
    assert len(state) == 1
    assert state[0].stat().st_mode & 0o777 == 0o600
    assert "VENUE" in state[0].name


def test_a_corrupt_state_file_refuses_logons_until_fixed(tmp_path: Path) -> None:
    store = FileReplayStore(tmp_path)
    store.advance(SID, 10)
    (state,) = [p for p in tmp_path.iterdir() if p.suffix == ".logon"]
    state.write_text("garbage\n")
    with pytest.raises(ReplayStateError, match="corrupt") as caught:
        store.last_logon(SID)
    assert isinstance(caught.value, ConfigError)
    assert str(state) in str(caught.value)
    with pytest.raises(ReplayStateError):
        store.advance(SID, 11)
    state.write_text("10\n")  # an operator restores it
    assert store.advance(SID, 11)


def _contend(directory: str, start: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = FileReplayStore(directory)
    won = [value for value in range(start, start + 200, 2) if store.advance(SID, value)]
    results.put(won)


def test_processes_sharing_a_directory_never_both_win_the_same_step(tmp_path: Path) -> None:
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    workers = [
        multiprocessing.Process(target=_contend, args=(str(tmp_path), start, results))
        for start in (0, 1)
    ]
    for worker in workers:
        worker.start()
    won = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    every = sorted(won[0] + won[1])
    assert len(every) == len(set(every))
    # Whatever interleaving happened, each process's wins are increasing and the final
    # record is the largest value anyone won.
    assert FileReplayStore(tmp_path).last_logon(SID) == every[-1]
    for mine in won:
        assert mine == sorted(mine)


def test_store_paths_cannot_escape_the_directory(tmp_path: Path) -> None:
    evil = SessionID("FIX.4.4", "../../etc", "passwd")
    store = FileReplayStore(tmp_path / "state")
    assert store.advance(evil, 1)
    created = list((tmp_path / "state").iterdir())
    assert created
    assert all(p.parent == tmp_path / "state" for p in created)
    assert not (tmp_path / "etc").exists()
    assert os.listdir(tmp_path) == ["state"]
