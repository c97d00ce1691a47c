"""The order simulator and the Counterparty that binds it to a session."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixsecure.counterparty.engine import Deliver, Role, Send, Session, SessionConfig, SessionEvent
from fixsecure.counterparty.fields import FixMessage, OutboundMessage, parse
from fixsecure.counterparty.orders import Counterparty, OrderSimulator, SimulatorConfig
from fixsecure.counterparty.store import FileStore, MemoryStore

from .conftest import T0, Peer, converse, fields, pump, sent, stamp


def inbound(msg_type: str, body: list[tuple[int, str | int]], **kw: object) -> FixMessage:
    return parse(Peer().build(msg_type, body, seq=2, **kw))  # type: ignore[arg-type]


def new_order(
    cl_ord_id: str = "C1",
    qty: str = "100",
    price: str | None = "10.5",
    ord_type: str = "2",
    **kw: object,
) -> FixMessage:
    body: list[tuple[int, str | int]] = [
        (11, cl_ord_id),
        (21, 1),
        (55, "INTC"),
        (54, 1),
        (60, stamp(T0)),
        (38, qty),
        (40, ord_type),
    ]
    if price is not None:
        body.append((44, price))
    return inbound("D", body, **kw)


def cancel(cl_ord_id: str, orig: str, **kw: object) -> FixMessage:
    body: list[tuple[int, str | int]] = [
        (41, orig),
        (11, cl_ord_id),
        (55, "INTC"),
        (54, 1),
        (60, stamp(T0)),
    ]
    return inbound("F", body, **kw)


def replace(cl_ord_id: str, orig: str, qty: str, price: str = "11") -> FixMessage:
    body: list[tuple[int, str | int]] = [
        (41, orig),
        (11, cl_ord_id),
        (55, "INTC"),
        (54, 1),
        (60, stamp(T0)),
        (40, 2),
        (38, qty),
        (44, price),
    ]
    return inbound("G", body)


def f(message: OutboundMessage) -> dict[int, str]:
    out: dict[int, str] = {}
    for tag, value in message.fields:
        out.setdefault(tag, value.decode() if isinstance(value, bytes) else str(value))
    return out


def simulator(begin: str = "FIX.4.4", **config: object) -> OrderSimulator:
    return OrderSimulator(SimulatorConfig(begin, **config), T0)  # type: ignore[arg-type]


def check_consistent(report: dict[int, str]) -> None:
    """The invariants every ExecutionReport of a live or finished order must satisfy."""
    for tag in (37, 11, 17, 39, 150, 55, 54, 38, 32, 31, 151, 14, 6):
        assert tag in report, tag
    qty, cum, leaves = (Decimal(report[t]) for t in (38, 14, 151))
    if report[39] in ("0", "1", "5"):
        assert cum + leaves == qty
    else:
        assert leaves == 0
    assert Decimal(report[6]) >= 0


# --- new orders and fills --------------------------------------------------------------------


def test_fix44_new_then_fill() -> None:
    new, fill = (f(m) for m in simulator().on_message(new_order(), T0))
    assert (new[150], new[39]) == ("0", "0")
    assert (new[14], new[151], new[32], new[31]) == ("0", "100", "0", "0")
    assert (fill[150], fill[39], fill[32], fill[31], fill[14], fill[151], fill[6]) == (
        "F",
        "2",
        "100",
        "10.5",
        "100",
        "0",
        "10.5",
    )
    for report in (new, fill):
        check_consistent(report)
        assert (report[11], report[55], report[54], report[38], report[44]) == (
            "C1",
            "INTC",
            "1",
            "100",
            "10.5",
        )
        assert 20 not in report
    assert new[37] == fill[37]
    assert new[17] != fill[17]


def test_fix42_new_then_fill_uses_exec_trans_type() -> None:
    new, fill = (f(m) for m in simulator("FIX.4.2").on_message(new_order(), T0))
    assert (new[20], new[150], new[39]) == ("0", "0", "0")
    assert (fill[20], fill[150], fill[39]) == ("0", "2", "2")


@pytest.mark.parametrize(
    ("begin", "partial", "last"), [("FIX.4.4", "F", "F"), ("FIX.4.2", "1", "2")]
)
def test_partial_fills_add_up(begin: str, partial: str, last: str) -> None:
    reports = [f(m) for m in simulator(begin, fill_parts=3).on_message(new_order(qty="100"), T0)]
    fills = reports[1:]
    assert [r[32] for r in fills] == ["33", "33", "34"]
    assert [r[150] for r in fills] == [partial, partial, last]
    assert [r[39] for r in fills] == ["1", "1", "2"]
    assert [r[14] for r in fills] == ["33", "66", "100"]
    assert [r[151] for r in fills] == ["67", "34", "0"]
    assert len({r[17] for r in reports}) == 4
    for report in reports:
        check_consistent(report)


def test_fractional_quantity_is_split_on_its_own_increment() -> None:
    reports = [f(m) for m in simulator(fill_parts=3).on_message(new_order(qty="2000.00"), T0)]
    assert [r[32] for r in reports[1:]] == ["666.66", "666.67", "666.67"]
    assert reports[-1][14] == "2000.00"


def test_market_order_fills_at_configured_price() -> None:
    sim = simulator(market_price=Decimal("42.25"))
    new, fill = (f(m) for m in sim.on_message(new_order(price=None, ord_type="1"), T0))
    assert 44 not in new
    assert (fill[31], fill[6]) == ("42.25", "42.25")


def test_timed_fills_come_from_tick() -> None:
    sim = simulator(fill_parts=2, fill_interval=1.0)
    (new,) = sim.on_message(new_order(), T0)
    assert f(new)[150] == "0"
    assert sim.next_deadline() == T0 + 1
    assert sim.tick(T0 + 0.5) == []
    (first,) = sim.tick(T0 + 1)
    assert (f(first)[39], f(first)[32]) == ("1", "50")
    (second,) = sim.tick(T0 + 2)
    assert (f(second)[39], f(second)[14]) == ("2", "100")
    assert sim.next_deadline() is None


@pytest.mark.parametrize(
    ("order", "reason_44", "reason_42"),
    [
        (new_order(ord_type="3"), "11", "0"),
        (new_order(qty="0"), "13", "0"),
        (new_order(price=None), "99", "0"),
    ],
    ids=["stop order", "zero quantity", "limit without price"],
)
def test_unacceptable_orders_are_rejected(
    order: FixMessage, reason_44: str, reason_42: str
) -> None:
    for begin, reason in (("FIX.4.4", reason_44), ("FIX.4.2", reason_42)):
        (report,) = (f(m) for m in simulator(begin).on_message(order, T0))
        assert (report[150], report[39], report[103], report[37]) == ("8", "8", reason, "NONE")
        assert report[58]
        check_consistent(report)


# --- duplicates ------------------------------------------------------------------------------


def test_poss_dup_of_a_known_order_gets_its_status_not_a_second_fill() -> None:
    sim = simulator()
    sim.on_message(new_order(), T0)
    (status,) = sim.on_message(new_order(poss_dup=True, orig_sending_time=T0), T0)
    report = f(status)
    assert (report[150], report[39], report[14], report[32]) == ("I", "2", "100", "0")
    assert len(sim.orders) == 1
    sim42 = simulator("FIX.4.2")
    sim42.on_message(new_order(), T0)
    (status42,) = sim42.on_message(
        parse(Peer("FIX.4.2").order("C1", poss_dup=True, orig_sending_time=T0)), T0
    )
    assert (f(status42)[20], f(status42)[150]) == ("3", "2")


def test_duplicate_cl_ord_id_without_poss_dup_is_rejected() -> None:
    sim = simulator()
    sim.on_message(new_order(), T0)
    (report,) = sim.on_message(new_order(), T0)
    assert (f(report)[150], f(report)[103]) == ("8", "6")
    assert len(sim.orders) == 1


# --- cancel and replace ----------------------------------------------------------------------


def test_cancel_live_order() -> None:
    sim = simulator(fill_parts=0)
    (new,) = sim.on_message(new_order(), T0)
    (canceled,) = sim.on_message(cancel("C2", "C1"), T0)
    report = f(canceled)
    assert (report[150], report[39], report[11], report[41]) == ("4", "4", "C2", "C1")
    assert (report[151], report[14], report[37]) == ("0", "0", f(new)[37])
    check_consistent(report)


def test_cancel_partially_filled_order() -> None:
    sim = simulator(fill_parts=2, fill_interval=10)
    sim.on_message(new_order(), T0)
    sim.tick(T0 + 10)
    (canceled,) = sim.on_message(cancel("C2", "C1"), T0 + 11)
    assert (f(canceled)[39], f(canceled)[14], f(canceled)[151]) == ("4", "50", "0")
    assert sim.next_deadline() is None


def test_cancel_unknown_order_is_refused() -> None:
    (refusal,) = simulator().on_message(cancel("C2", "nope"), T0)
    r = f(refusal)
    assert refusal.msg_type == b"9"
    assert (r[37], r[11], r[41], r[39], r[434], r[102]) == ("NONE", "C2", "nope", "8", "1", "1")


def test_cancel_filled_order_is_too_late() -> None:
    sim = simulator()
    sim.on_message(new_order(), T0)
    (refusal,) = sim.on_message(cancel("C2", "C1"), T0)
    assert (f(refusal)[39], f(refusal)[102], f(refusal)[434]) == ("2", "0", "1")


def test_cancel_with_a_used_cl_ord_id_is_refused() -> None:
    sim = simulator(fill_parts=0)
    sim.on_message(new_order("C1"), T0)
    sim.on_message(new_order("C2"), T0)
    (refusal,) = sim.on_message(cancel("C2", "C1"), T0)
    assert (refusal.msg_type, f(refusal)[102]) == (b"9", "6")


@pytest.mark.parametrize(("begin", "status"), [("FIX.4.4", "0"), ("FIX.4.2", "5")])
def test_replace_live_order(begin: str, status: str) -> None:
    sim = simulator(begin, fill_parts=0)
    sim.on_message(new_order(qty="100", price="10"), T0)
    (replaced,) = sim.on_message(replace("C2", "C1", qty="150", price="11"), T0)
    report = f(replaced)
    assert (report[150], report[39], report[11], report[41]) == ("5", status, "C2", "C1")
    assert (report[38], report[44], report[151]) == ("150", "11", "150")
    (canceled,) = sim.on_message(cancel("C3", "C2"), T0)
    assert f(canceled)[39] == "4"


def test_fills_after_replace_use_new_price_and_average() -> None:
    sim = simulator(fill_parts=2, fill_interval=1)
    sim.on_message(new_order(qty="100", price="10"), T0)
    sim.tick(T0 + 1)  # 50 @ 10
    sim.on_message(replace("C2", "C1", qty="200", price="13"), T0 + 1.5)
    (last,) = sim.tick(T0 + 2)  # the remaining 150 @ 13
    report = f(last)
    assert (report[32], report[31], report[14], report[39], report[6]) == (
        "150",
        "13",
        "200",
        "2",
        "12.25",
    )


def test_replace_refused_when_filled_unknown_or_too_small() -> None:
    sim = simulator()
    sim.on_message(new_order(), T0)
    (filled,) = sim.on_message(replace("C2", "C1", qty="200"), T0)
    assert (f(filled)[434], f(filled)[102], f(filled)[39]) == ("2", "0", "2")
    (unknown,) = sim.on_message(replace("C3", "zz", qty="200"), T0)
    assert (f(unknown)[434], f(unknown)[102]) == ("2", "1")
    partial = simulator(fill_parts=2, fill_interval=1)
    partial.on_message(new_order(qty="100"), T0)
    partial.tick(T0 + 1)
    (small,) = partial.on_message(replace("C2", "C1", qty="50"), T0 + 1)
    assert (small.msg_type, f(small)[102]) == (b"9", "2")


# --- other messages --------------------------------------------------------------------------


def test_unsupported_message_type_gets_business_reject() -> None:
    (reject,) = simulator().on_message(inbound("R", [(131, "Q1")]), T0)
    r = f(reject)
    assert reject.msg_type == b"j"
    assert (r[45], r[58], r[372], r[380]) == ("2", "Unsupported Message Type", "R", "3")
    assert simulator().on_message(inbound("j", [(45, 1), (372, "D"), (380, 3)]), T0) == []


def test_ids_are_unique_across_restarts() -> None:
    first = OrderSimulator(SimulatorConfig("FIX.4.4"), T0)
    second = OrderSimulator(SimulatorConfig("FIX.4.4"), T0 + 0.001)
    ids = {f(m)[17] for m in first.on_message(new_order(), T0)}
    ids |= {f(m)[17] for m in second.on_message(new_order(), T0)}
    assert len(ids) == 4


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="fill"):
        SimulatorConfig("FIX.4.4", fill_parts=-1)
    with pytest.raises(ValueError, match="market_price"):
        SimulatorConfig("FIX.4.4", market_price=Decimal(0))


# --- the counterparty: session + simulator ---------------------------------------------------


def counterparty(
    begin: str = "FIX.4.4", store: MemoryStore | FileStore | None = None, **config: object
) -> tuple[Session, Counterparty]:
    """An initiator TW logged on to a Counterparty ISLD."""
    initiator = Session(SessionConfig(begin, "TW", "ISLD", Role.INITIATOR), MemoryStore(T0))
    session = Session(
        SessionConfig(begin, "ISLD", "TW", Role.ACCEPTOR),
        store if store is not None else MemoryStore(T0),
    )
    cp = Counterparty(session, OrderSimulator(SimulatorConfig(begin, **config), T0))  # type: ignore[arg-type]
    initiator.connection_made(T0)
    cp.connection_made(T0)
    pump(pump(initiator.logon(T0), cp.session, T0), initiator, T0)
    assert initiator.is_logged_on
    return initiator, cp


def send_order(initiator: Session, cl_ord_id: str, now: float = T0, qty: str = "100") -> list[Send]:
    message = OutboundMessage(
        b"D",
        (
            (11, cl_ord_id),
            (21, "1"),
            (55, "IBM"),
            (54, "1"),
            (60, stamp(now)),
            (38, qty),
            (40, "2"),
            (44, "10"),
        ),
    )
    return [a for a in initiator.send(message, now) if isinstance(a, Send)]


def test_counterparty_answers_orders_over_the_wire() -> None:
    initiator, cp = counterparty()
    got: list[dict[int, str]] = []
    for n in range(1000):
        actions = []
        for s in send_order(initiator, f"o{n}"):
            actions += cp.receive(s.data, T0)
        got += [fields(m) for m in sent(actions)]
        pump(actions, initiator, T0)
    assert len(got) == 2000
    assert [r[150] for r in got[:2]] == ["0", "F"]
    assert {r[35] for r in got} == {"8"}
    assert len({r[17] for r in got}) == 2000
    assert [int(r[34]) for r in got] == list(range(2, 2002))
    assert initiator.next_target_seq == cp.session.next_sender_seq == 2002


def test_counterparty_timed_fills_are_sent_by_tick() -> None:
    initiator, cp = counterparty(fill_parts=2, fill_interval=5)
    (data,) = send_order(initiator, "o1")
    assert [fields(m)[150] for m in sent(cp.receive(data.data, T0))] == ["0"]
    assert cp.next_deadline() == T0 + 5
    assert [fields(m)[39] for m in sent(cp.tick(T0 + 5))] == ["1"]
    assert [fields(m)[39] for m in sent(cp.tick(T0 + 10))] == ["2"]
    assert cp.next_deadline() == cp.session.next_deadline()


def test_counterparty_commits_an_order_and_its_reports_before_returning(tmp_path: Path) -> None:
    store = FileStore.open(tmp_path, "ISLD", T0, "commit")
    initiator, cp = counterparty(store=store)
    (d,) = send_order(initiator, "o1")
    reports = [a.data for a in cp.receive(d.data, T0) if isinstance(a, Send)]
    (tmp_path / "copy.store").write_bytes((tmp_path / "ISLD.store").read_bytes())
    disk = FileStore.open(tmp_path, "copy", T0)
    assert [data for _, data in disk.get(2, 3)] == reports
    assert disk.next_target_seq == 3  # the order itself is accounted for
    disk.close()
    store.close()


def test_counterparty_receive_many_answers_a_whole_read(tmp_path: Path) -> None:
    store = FileStore.open(tmp_path, "ISLD", T0, "commit")
    initiator, cp = counterparty(store=store)
    frames = [s.data for n in range(5) for s in send_order(initiator, f"o{n}")]
    actions = cp.receive_many(frames, T0)
    assert [fields(m)[11] for m in sent(actions)] == [f"o{n // 2}" for n in range(10)]
    assert cp.session.next_target_seq == 7
    store.close()


def test_counterparty_reset_starts_a_new_session_and_an_empty_book() -> None:
    initiator, cp = counterparty(fill_parts=2, fill_interval=5)
    (d,) = send_order(initiator, "o1")
    cp.receive(d.data, T0)
    old = cp.simulator
    assert len(old.orders) == 1
    cp.connection_lost(T0 + 1)
    assert [a.text for a in cp.reset(T0 + 60) if isinstance(a, SessionEvent)] == [
        "Session reset: sequence numbers back to 1"
    ]
    assert (cp.session.next_sender_seq, cp.session.next_target_seq) == (1, 1)
    assert cp.simulator is not old
    assert cp.simulator.config is old.config
    assert not cp.simulator.orders
    assert cp.simulator.next_deadline() is None  # the old book's timed fill is gone with it


def test_counterparty_restart_never_fills_twice(tmp_path: Path) -> None:
    store = FileStore.open(tmp_path, "ISLD", T0, "never")
    initiator, cp = counterparty(store=store)
    (d,) = send_order(initiator, "o1")
    answers = cp.receive(d.data, T0)
    assert len(sent(answers)) == 2
    pump(answers, initiator, T0)
    store.close()  # the counterparty process restarts

    store = FileStore.open(tmp_path, "ISLD", T0 + 60, "never")
    session = Session(SessionConfig("FIX.4.4", "ISLD", "TW", Role.ACCEPTOR), store)
    sim = OrderSimulator(SimulatorConfig("FIX.4.4"), T0 + 60)
    assert sim.restore((m for _, m in store.get(1, store.next_sender_seq - 1)), T0 + 60) == 1
    restarted = Counterparty(session, sim)
    restarted.connection_made(T0 + 60)
    initiator.connection_lost(T0 + 60)
    initiator.connection_made(T0 + 60)
    converse(initiator, session, initiator.logon(T0 + 60), T0 + 60)
    assert initiator.next_target_seq == session.next_sender_seq
    # The client's engine resends the order (PossDupFlag=Y): the simulator knows it already.
    resend = Peer().build(
        "D",
        [(11, "o1"), (55, "IBM"), (54, 1), (60, stamp(T0)), (38, 100), (40, 2), (44, 10)],
        seq=initiator.next_sender_seq,
        now=T0 + 60,
        poss_dup=True,
        orig_sending_time=T0,
    )
    (status,) = [fields(m) for m in sent(restarted.receive(resend, T0 + 60))]
    assert (status[150], status[39], status[14]) == ("I", "2", "100")
    store.close()


@settings(max_examples=30, deadline=None)
@given(
    parts=st.integers(min_value=1, max_value=6),
    qty=st.integers(min_value=1, max_value=10_000),
    begin=st.sampled_from(["FIX.4.2", "FIX.4.4"]),
)
def test_every_execution_report_on_the_wire_is_consistent(parts: int, qty: int, begin: str) -> None:
    initiator, cp = counterparty(begin, fill_parts=parts)
    reports: list[dict[int, str]] = []
    for n in range(3):
        for s in send_order(initiator, f"o{n}", qty=str(qty)):
            actions = cp.receive(s.data, T0)
            assert [a for a in actions if isinstance(a, Deliver)]
            reports += [fields(m) for m in sent(actions)]
    for report in reports:
        check_consistent(report)
    fills = [r for r in reports if Decimal(r[32]) > 0]
    assert sum(Decimal(r[32]) for r in fills) == 3 * qty
    assert len(fills) == 3 * min(parts, qty)
    assert len({r[17] for r in reports}) == len(reports)
