"""The message store: same behaviour in memory and on disk; on disk, survives any crash point."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixsecure.counterparty.store import (
    MAGIC,
    FileStore,
    FsyncPolicy,
    MemoryStore,
    MessageStore,
    store_name,
)
from fixsecure.errors import ConfigError

from .conftest import T0

Snapshot = tuple[int, int, float, list[tuple[int, bytes]]]


def snapshot(store: MessageStore) -> Snapshot:
    return (
        store.next_sender_seq,
        store.next_target_seq,
        store.creation_time,
        store.get(1, 1 << 40),
    )


@pytest.fixture(params=["memory", "always", "commit", "never"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MessageStore]:
    if request.param == "memory":
        yield MemoryStore(T0)
        return
    store = FileStore.open(tmp_path, "s", T0, request.param)
    yield store
    store.close()


# --- the interface, both implementations -----------------------------------------------------


def test_fresh_store(any_store: MessageStore) -> None:
    assert snapshot(any_store) == (1, 1, T0, [])


def test_save_sets_next_sender_and_get_returns_in_order(any_store: MessageStore) -> None:
    any_store.save(1, b"one")
    any_store.save(2, b"two")
    any_store.set_next_sender_seq(5)  # 3 and 4 were never stored (admin, not persisted)
    any_store.save(5, b"five")
    any_store.set_next_target_seq(9)
    any_store.commit()
    assert any_store.next_sender_seq == 6
    assert any_store.next_target_seq == 9
    assert any_store.get(1, 10) == [(1, b"one"), (2, b"two"), (5, b"five")]
    assert any_store.get(2, 4) == [(2, b"two")]
    assert any_store.get(-3, 1) == [(1, b"one")]
    assert any_store.get(4, 3) == []
    assert any_store.get(1, 1 << 40) == any_store.get(1, 10)


def test_reset_clears_everything(any_store: MessageStore) -> None:
    any_store.save(1, b"one")
    any_store.set_next_target_seq(7)
    any_store.reset(T0 + 5)
    assert snapshot(any_store) == (1, 1, T0 + 5, [])


# --- the file store --------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["always", "commit", "never"])
def test_restart_recovers_state(tmp_path: Path, policy: FsyncPolicy) -> None:
    store = FileStore.open(tmp_path, "s", T0, policy)
    assert store.recovery.created
    store.save(1, b"8=FIX.4.4\x01one\x01")
    store.set_next_target_seq(4)
    store.save(2, b"two")
    store.set_next_sender_seq(10)
    store.commit()
    before = snapshot(store)
    store.close()
    store.close()  # idempotent
    reopened = FileStore.open(tmp_path, "s", T0 + 100, policy)
    assert snapshot(reopened) == before
    assert not reopened.recovery.created
    assert reopened.recovery.truncated_bytes == 0
    reopened.close()


def test_reset_survives_restart_and_leftover_temp_file(tmp_path: Path) -> None:
    store = FileStore.open(tmp_path, "s", T0)
    store.save(1, b"one")
    store.reset(T0 + 1)
    store.save(1, b"new one")
    store.close()
    (tmp_path / "s.store.tmp").write_bytes(b"half-written reset")  # crash during a later reset
    reopened = FileStore.open(tmp_path, "s", T0 + 2)
    assert snapshot(reopened) == (2, 1, T0 + 1, [(1, b"new one")])
    reopened.close()


def test_commit_policy_writes_nothing_before_commit(tmp_path: Path) -> None:
    path = tmp_path / "s.store"
    store = FileStore.open(tmp_path, "s", T0, "commit")
    size = path.stat().st_size
    store.save(1, b"one")
    store.set_next_target_seq(2)
    assert path.stat().st_size == size
    assert store.get(1, 1) == [(1, b"one")]  # reading flushes the buffer first
    store.set_next_target_seq(3)
    store.commit()
    assert seen_by_another_process(path) == (2, 3)
    store.close()


def seen_by_another_process(path: Path) -> tuple[int, int]:
    """Sequence numbers as another process would see them after a crash right now."""
    copy = path.with_name("copy.store")
    copy.write_bytes(path.read_bytes())
    other = FileStore.open(path.parent, "copy", T0)
    try:
        return other.next_sender_seq, other.next_target_seq
    finally:
        other.close()


def test_second_open_is_refused_while_in_use(tmp_path: Path) -> None:
    store = FileStore.open(tmp_path, "s", T0)
    with pytest.raises(ConfigError, match="in use"):
        FileStore.open(tmp_path, "s", T0)
    store.close()
    FileStore.open(tmp_path, "s", T0).close()


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s.store").write_bytes(b"something else entirely")
    with pytest.raises(ConfigError, match="bad magic"):
        FileStore.open(tmp_path, "s", T0)


def test_bad_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync"):
        FileStore.open(tmp_path, "s", T0, "sometimes")  # type: ignore[arg-type]


def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    store = FileStore.open(tmp_path, "s", T0)
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.save(1, b"x")


def test_store_name_is_a_safe_file_name() -> None:
    assert store_name("FIX.4.4", "ISLD", "TW") == "FIX.4.4-ISLD-TW"
    assert store_name("FIX.4.2", "A/B", "C D") == "FIX.4.2-A_B-C_D"


# --- crash safety ----------------------------------------------------------------------------

# Each step is one record; the state after each is what a crash right after it must recover.
Step = Callable[[MessageStore], None]
TAIL_STEPS: list[Step] = [
    lambda s: s.save(2, b"8=FIX.4.4\x019=5\x0135=D\x0110=000\x01"),
    lambda s: s.set_next_target_seq(6),
    lambda s: s.set_next_sender_seq(9),
    lambda s: s.save(9, b"x" * 300),
]


def build_base(directory: Path, policy: FsyncPolicy) -> None:
    store = FileStore.open(directory, "s", T0, policy)
    store.save(1, b"logon")
    store.set_next_target_seq(5)
    store.close()


def expected_states() -> list[Snapshot]:
    model = MemoryStore(T0)
    model.save(1, b"logon")
    model.set_next_target_seq(5)
    states = [snapshot(model)]
    for step in TAIL_STEPS:
        step(model)
        states.append(snapshot(model))
    return states


def test_torn_write_at_every_offset_recovers_a_consistent_prefix(tmp_path: Path) -> None:
    """Cut the file at every byte of the last records: never misread, never lose a whole one.

    The bytes on disk do not depend on the fsync policy (only when they are written does), so
    the recovery opens use the fast policy.
    """
    policy: FsyncPolicy = "never"
    build_base(tmp_path, policy)
    path = tmp_path / "s.store"
    base = path.read_bytes()
    store = FileStore.open(tmp_path, "s", T0, policy)
    boundaries = [len(base)]
    for step in TAIL_STEPS:
        step(store)
        store.commit()
        store.get(1, 1)  # flush
        boundaries.append(path.stat().st_size)
    store.close()
    full = path.read_bytes()
    states = expected_states()
    for cut in range(len(base), len(full) + 1):
        path.write_bytes(full[:cut])
        recovered = FileStore.open(tmp_path, "s", T0 + 1, policy)
        complete = sum(1 for b in boundaries[1:] if b <= cut)
        assert snapshot(recovered) == states[complete], f"cut at {cut}"
        assert recovered.recovery.truncated_bytes == cut - boundaries[complete]
        recovered.save(50, b"after recovery")  # the log stays appendable after the repair
        recovered.close()
        again = FileStore.open(tmp_path, "s", T0 + 2, policy)
        assert again.get(50, 50) == [(50, b"after recovery")]
        assert again.recovery.truncated_bytes == 0
        again.close()


def test_corrupted_byte_in_last_record_is_never_misread(tmp_path: Path) -> None:
    build_base(tmp_path, "always")
    path = tmp_path / "s.store"
    base = path.read_bytes()
    store = FileStore.open(tmp_path, "s", T0)
    store.save(2, b"the last message")
    store.close()
    full = path.read_bytes()
    states = expected_states()
    for offset in range(len(base), len(full)):
        damaged = bytearray(full)
        damaged[offset] ^= 0x41
        path.write_bytes(bytes(damaged))
        recovered = FileStore.open(tmp_path, "s", T0)
        assert snapshot(recovered) == states[0], f"flip at {offset}"
        recovered.close()


def test_zero_filled_tail_is_cut(tmp_path: Path) -> None:
    build_base(tmp_path, "always")
    path = tmp_path / "s.store"
    path.write_bytes(path.read_bytes() + bytes(64))  # some filesystems extend with zeros
    store = FileStore.open(tmp_path, "s", T0)
    assert store.recovery.truncated_bytes == 64
    assert snapshot(store) == expected_states()[0]
    store.close()


def test_file_starts_with_magic(tmp_path: Path) -> None:
    FileStore.open(tmp_path, "s", T0).close()
    assert (tmp_path / "s.store").read_bytes().startswith(MAGIC)


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("save"), st.binary(min_size=0, max_size=40)),
        st.tuples(st.just("sender"), st.integers(min_value=1, max_value=50)),
        st.tuples(st.just("target"), st.integers(min_value=1, max_value=50)),
        st.tuples(st.just("reset"), st.just(b"")),
        st.tuples(st.just("commit"), st.just(b"")),
    ),
    max_size=30,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS, policy=st.sampled_from(["always", "commit", "never"]))
def test_file_store_matches_memory_model_across_restarts(
    tmp_path_factory: pytest.TempPathFactory,
    operations: list[tuple[str, bytes | int]],
    policy: FsyncPolicy,
) -> None:
    directory = tmp_path_factory.mktemp("store")
    model = MemoryStore(T0)
    store = FileStore.open(directory, "s", T0, policy)
    for op, arg in operations:
        for target in (model, store):
            if op == "save":
                assert isinstance(arg, bytes)
                target.save(target.next_sender_seq, arg)
            elif op == "sender":
                assert isinstance(arg, int)
                target.set_next_sender_seq(arg)
            elif op == "target":
                assert isinstance(arg, int)
                target.set_next_target_seq(arg)
            elif op == "reset":
                target.reset(T0 + 1)
            else:
                target.commit()
        assert snapshot(store) == snapshot(model)
    store.close()
    reopened = FileStore.open(directory, "s", T0 + 2, policy)
    assert snapshot(reopened) == snapshot(model)
    reopened.close()
