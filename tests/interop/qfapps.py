"""QuickFIX applications for the interop tests, run as subprocesses by ``harness.py``.

QuickFIX runs its own threads and expects to own the process, which does not mix with pytest, so
each engine runs here in its own interpreter::

    python qfapps.py executor  -c acceptor.cfg  --result executor.json  --ready executor.ready
    python qfapps.py initiator -c initiator.cfg --result initiator.json --ready initiator.ready \\
        --orders 10000 --window 200 --rate 0 --deadline 60

The executor answers every NewOrderSingle with one full-fill ExecutionReport. The initiator sends
N NewOrderSingle (bounded window of unfilled orders, optional rate), pauses while logged out and
resumes after QuickFIX reconnects, and stops when every order is filled or the deadline passes.
Both write a JSON result on exit; SIGTERM logs out and exits 0. Only the standard library and
``quickfix`` are imported: this file must not depend on the test tree.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import quickfix as fix

# Exit codes the harness relies on.
EXIT_OK = 0
EXIT_DEADLINE = 3

# Text(58) filler that brings a NewOrderSingle to about 200 bytes on the wire.
ORDER_TEXT = "fixsecure interop order padding"


def _field(message: fix.FieldMap, tag: int) -> str | None:
    """Value of ``tag`` or None; QuickFIX raises FieldNotFound instead of returning nothing."""
    return message.getField(tag) if message.isSetField(tag) else None


def _msg_type(message: fix.Message) -> str | None:
    return _field(message.getHeader(), 35)


def _is_possdup(message: fix.Message) -> bool:
    return _field(message.getHeader(), 43) == "Y"


def order_terms(index: int) -> tuple[str, str]:
    """Deterministic (OrderQty, Price) for order ``index``; the initiator re-derives them to check
    each fill without storing every order."""
    return str(100 + index % 900), f"{100 + (index % 1000) / 100:.2f}"


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class Executor(fix.Application):  # type: ignore[misc]
    """Acceptor that fills every new ClOrdID exactly once (resent duplicates are counted, not
    filled again), as a venue would."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        # ExecIDs stay unique across restarts of the process on the same store.
        self._run = f"{int(time.time() * 1000):x}"
        self._ids = itertools.count(1)
        self._filled: set[str] = set()
        self.counts = {
            "orders": 0,
            "possdup_orders": 0,
            "duplicate_orders": 0,
            "possdup_duplicate_orders": 0,
            "fills_sent": 0,
            "other_app_messages": 0,
            "logons": 0,
            "logouts": 0,
        }

    def onCreate(self, session_id: fix.SessionID) -> None:
        return None

    def onLogon(self, session_id: fix.SessionID) -> None:
        with self._lock:
            self.counts["logons"] += 1

    def onLogout(self, session_id: fix.SessionID) -> None:
        with self._lock:
            self.counts["logouts"] += 1

    def toAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        return None

    def fromAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        return None

    def toApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        return None

    def fromApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        if _msg_type(message) != "D":
            with self._lock:
                self.counts["other_app_messages"] += 1
            return
        cl_ord_id = message.getField(11)
        possdup = _is_possdup(message)
        with self._lock:
            self.counts["orders"] += 1
            self.counts["possdup_orders"] += possdup
            if cl_ord_id in self._filled:
                key = "possdup_duplicate_orders" if possdup else "duplicate_orders"
                self.counts[key] += 1
                return
            self._filled.add(cl_ord_id)
            n = next(self._ids)
        fix.Session.sendToTarget(self._fill(message, cl_ord_id, n), session_id)
        with self._lock:
            self.counts["fills_sent"] += 1

    def _fill(self, order: fix.Message, cl_ord_id: str, n: int) -> fix.Message:
        qty = order.getField(38)
        px = order.getField(44)
        report = fix.Message()
        report.getHeader().setField(fix.MsgType(fix.MsgType_ExecutionReport))
        for tag, value in (
            (37, f"O{self._run}-{n}"),  # OrderID
            (17, f"E{self._run}-{n}"),  # ExecID
            (11, cl_ord_id),
            (150, "F"),  # ExecType = Trade
            (39, "2"),  # OrdStatus = Filled
            (55, order.getField(55)),
            (54, order.getField(54)),
            (38, qty),
            (32, qty),  # LastQty
            (31, px),  # LastPx
            (151, "0"),  # LeavesQty
            (14, qty),  # CumQty
            (6, px),  # AvgPx
        ):
            report.setField(fix.StringField(tag, value))
        return report

    def result(self) -> dict[str, Any]:
        with self._lock:
            return {"role": "executor", "distinct_orders": len(self._filled), **self.counts}


class Initiator(fix.Application):  # type: ignore[misc]
    """Order sender; every counter it keeps is one the tests assert on."""

    def __init__(self, orders: int, run_id: str) -> None:
        super().__init__()
        self.orders = orders
        # ClOrdIDs are "<run_id>-<index>", so a second run on the same stores never reuses one.
        self.prefix = f"{run_id}-"
        self.cond = threading.Condition()
        self.logged_on = threading.Event()
        self.session_id: fix.SessionID | None = None
        self.filled: set[str] = set()
        self._exec_ids: set[str] = set()
        self.last_fill_at = 0.0
        self.counts = {
            "fills": 0,
            "possdup_fills": 0,
            "duplicate_fills": 0,
            "possdup_duplicate_fills": 0,
            "duplicate_exec_ids": 0,
            "unknown_fills": 0,
            "bad_fills": 0,
            "resent_orders": 0,
            "rejects": 0,
            "other_app_messages": 0,
            "logons": 0,
            "logouts": 0,
        }

    def onCreate(self, session_id: fix.SessionID) -> None:
        self.session_id = session_id

    def onLogon(self, session_id: fix.SessionID) -> None:
        with self.cond:
            self.counts["logons"] += 1
        self.logged_on.set()

    def onLogout(self, session_id: fix.SessionID) -> None:
        self.logged_on.clear()
        with self.cond:
            self.counts["logouts"] += 1

    def toAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        return None

    def fromAdmin(self, message: fix.Message, session_id: fix.SessionID) -> None:
        if _msg_type(message) == "3":
            with self.cond:
                self.counts["rejects"] += 1

    def toApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        # QuickFIX calls toApp again, with PossDupFlag set, when it resends from its store.
        if _is_possdup(message):
            with self.cond:
                self.counts["resent_orders"] += 1

    def fromApp(self, message: fix.Message, session_id: fix.SessionID) -> None:
        msg_type = _msg_type(message)
        if msg_type != "8":
            with self.cond:
                self.counts["rejects" if msg_type == "j" else "other_app_messages"] += 1
            return
        cl_ord_id = _field(message, 11) or ""
        exec_id = _field(message, 17) or ""
        possdup = _is_possdup(message)
        good = self._consistent(message, cl_ord_id)
        with self.cond:
            c = self.counts
            c["fills"] += 1
            c["possdup_fills"] += possdup
            if exec_id in self._exec_ids and not possdup:
                c["duplicate_exec_ids"] += 1
            self._exec_ids.add(exec_id)
            if good is None:
                c["unknown_fills"] += 1
            elif not good:
                c["bad_fills"] += 1
            elif cl_ord_id in self.filled:
                c["possdup_duplicate_fills" if possdup else "duplicate_fills"] += 1
            else:
                self.filled.add(cl_ord_id)
                self.last_fill_at = time.monotonic()
                self.cond.notify_all()

    def _consistent(self, report: fix.Message, cl_ord_id: str) -> bool | None:
        """True for a full fill matching the order, False if inconsistent, None if the ClOrdID
        is not one this process sent."""
        digits = cl_ord_id.removeprefix(self.prefix)
        if not cl_ord_id.startswith(self.prefix) or not digits.isdigit():
            return None
        index = int(digits)
        if index >= self.orders:
            return None
        qty, px = order_terms(index)
        try:
            return (
                _field(report, 150) == "F"
                and _field(report, 39) == "2"
                and Decimal(report.getField(14)) == Decimal(qty)
                and Decimal(report.getField(32)) == Decimal(qty)
                and Decimal(report.getField(151)) == 0
                and Decimal(report.getField(6)) == Decimal(px)
            )
        except (fix.FieldNotFound, ArithmeticError):
            return False

    def build_order(self, index: int) -> fix.Message:
        qty, px = order_terms(index)
        order = fix.Message()
        order.getHeader().setField(fix.MsgType(fix.MsgType_NewOrderSingle))
        order.setField(fix.ClOrdID(f"{self.prefix}{index:08d}"))
        order.setField(fix.Account("ACCT-0001"))
        order.setField(fix.HandlInst("1"))
        order.setField(fix.Symbol("EUR/USD"))
        order.setField(fix.Side(fix.Side_BUY if index % 2 == 0 else fix.Side_SELL))
        order.setField(fix.TransactTime())
        order.setField(fix.StringField(38, qty))
        order.setField(fix.OrdType(fix.OrdType_LIMIT))
        order.setField(fix.StringField(44, px))
        order.setField(fix.TimeInForce(fix.TimeInForce_DAY))
        order.setField(fix.Text(ORDER_TEXT))
        return order


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _install_stop_handlers(stop: threading.Event) -> None:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Block the stop signals while QuickFIX starts its threads, which inherit the mask, so a
    SIGTERM only ever interrupts the main thread (where Python runs the handler) and never a
    QuickFIX socket thread's poll."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _engine_files(config: Path) -> tuple[fix.SessionSettings, Any, Any]:
    settings = fix.SessionSettings(str(config))
    return settings, fix.FileStoreFactory(settings), fix.FileLogFactory(settings)


def run_executor(args: argparse.Namespace) -> int:
    stop = threading.Event()
    _install_stop_handlers(stop)
    app = Executor()
    settings, store, logs = _engine_files(args.config)
    # ThreadedSocketAcceptor: with quickfix 1.16.0, SocketAcceptor.stop() after a SIGTERM crashed
    # (SIGSEGV in SocketServer::close, racing its own socket thread) in most of our trials.
    acceptor = fix.ThreadedSocketAcceptor(app, store, settings, logs)
    with _signals_blocked():
        acceptor.start()
    _write_json_atomic(args.ready, {"pid": os.getpid()})
    try:
        while not stop.wait(0.2):
            pass
    finally:
        acceptor.stop()
        _write_json_atomic(args.result, {**app.result(), "stopped_by_signal": stop.is_set()})
    return EXIT_OK


def _send_orders(
    app: Initiator, args: argparse.Namespace, stop: threading.Event, deadline: float
) -> tuple[int, float | None]:
    """Send until every order is filled, the deadline passes or a signal arrives; returns the
    number of orders handed to QuickFIX and when the first one was."""
    orders: int = args.orders
    window: int = args.window
    rate: float = args.rate
    sent = 0
    first: float | None = None
    # Log on first, even with --orders 0.
    while not stop.is_set() and time.monotonic() < deadline and not app.logged_on.wait(0.05):
        pass

    def may_send() -> bool:
        return sent < orders and sent - len(app.filled) < window

    def done() -> bool:
        return len(app.filled) >= orders

    while not stop.is_set() and not done() and time.monotonic() < deadline:
        if not app.logged_on.wait(0.05):
            continue
        with app.cond:
            if not app.cond.wait_for(lambda: may_send() or done(), timeout=0.05) or done():
                continue
        if rate > 0 and first is not None:
            delay = first + sent / rate - time.monotonic()
            if delay > 0:
                stop.wait(min(delay, 0.05))
                continue
        if first is None:
            first = time.monotonic()
        # Once handed over the order is stored by QuickFIX even if the session dropped a moment
        # ago: it reaches the executor through the resend on the next logon, so it counts as sent.
        assert app.session_id is not None
        fix.Session.sendToTarget(app.build_order(sent), app.session_id)
        sent += 1
    return sent, first


def run_initiator(args: argparse.Namespace) -> int:
    stop = threading.Event()
    _install_stop_handlers(stop)
    app = Initiator(args.orders, args.run_id or f"R{int(time.time() * 1000):x}")
    settings, store, logs = _engine_files(args.config)
    initiator = fix.ThreadedSocketInitiator(app, store, settings, logs)
    started = time.monotonic()
    deadline = started + args.deadline
    with _signals_blocked():
        initiator.start()
    _write_json_atomic(args.ready, {"pid": os.getpid()})
    sent, first = 0, None
    try:
        sent, first = _send_orders(app, args, stop, deadline)
        if args.hold:
            while not stop.is_set() and time.monotonic() < deadline:
                stop.wait(0.1)
    finally:
        initiator.stop()
        with app.cond:
            filled = len(app.filled)
            elapsed = (app.last_fill_at - first) if first is not None and filled else 0.0
            result = {
                "role": "initiator",
                "orders_requested": args.orders,
                "orders_sent": sent,
                "distinct_filled": filled,
                "complete": filled == args.orders and app.counts["logons"] > 0,
                "stopped_by_signal": stop.is_set(),
                "elapsed_s": round(elapsed, 6),
                "orders_per_s": round(filled / elapsed, 1) if elapsed > 0 else 0.0,
                "run_s": round(time.monotonic() - started, 3),
                **app.counts,
            }
        _write_json_atomic(args.result, result)
    if result["complete"] or stop.is_set():
        return EXIT_OK
    return EXIT_DEADLINE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    for role in ("executor", "initiator"):
        p = sub.add_parser(role)
        p.add_argument("-c", "--config", type=Path, required=True, help="QuickFIX settings file")
        p.add_argument("--result", type=Path, required=True, help="JSON result written on exit")
        p.add_argument("--ready", type=Path, required=True, help="written once the engine runs")
    ini = sub.choices["initiator"]
    ini.add_argument("--orders", type=int, default=1000, help="NewOrderSingle to send")
    ini.add_argument("--window", type=int, default=200, help="max unfilled orders in flight")
    ini.add_argument("--rate", type=float, default=0.0, help="orders/s, 0 = as fast as possible")
    ini.add_argument("--deadline", type=float, default=60.0, help="seconds before giving up")
    ini.add_argument("--hold", action="store_true", help="stay logged on until SIGTERM/deadline")
    ini.add_argument("--run-id", default="", help="ClOrdID prefix (default: from the clock)")
    args = parser.parse_args(argv)
    if args.role == "initiator" and (args.orders < 0 or args.window < 1):
        parser.error("--orders must be >= 0 and --window >= 1")
    runners: dict[str, Callable[[argparse.Namespace], int]] = {
        "executor": run_executor,
        "initiator": run_initiator,
    }
    return runners[args.role](args)


if __name__ == "__main__":
    sys.exit(main())
