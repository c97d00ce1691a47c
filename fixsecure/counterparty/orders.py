"""The counterparty's application: an order simulator, and :class:`Counterparty`, which binds it to
a :class:`~fixsecure.counterparty.engine.Session`.

What the simulator does, per FIX 4.2/4.4:

- NewOrderSingle(D): ExecutionReport New, then fills. ``fill_parts`` splits the quantity (0: the
  order rests until canceled); ``fill_interval`` spaces the fills in time (0: New and every fill
  in the same breath). Limit orders fill at their Price(44), market orders at ``market_price``.
  Unsupported or incomplete orders get an ExecutionReport Rejected (150=8/39=8, OrdRejReason).
- OrderCancelRequest(F): ExecutionReport Canceled for a live order; otherwise OrderCancelReject
  (434=1) with CxlRejReason 1 (unknown order) or 0 (too late: filled, canceled or rejected).
- OrderCancelReplaceRequest(G): ExecutionReport Replaced (150=5) with the new OrderQty/Price;
  OrderCancelReject (434=2) when unknown, no longer live or the new quantity is not above CumQty.
- Any other application message: BusinessMessageReject(j) with 380=3, except an inbound
  BusinessMessageReject itself (answering it could make two simulators reject each other forever).

Duplicates: a ClOrdID is never used twice. A NewOrderSingle with PossDupFlag(43) or
PossResend(97)=Y for a known ClOrdID is answered with an order-status ExecutionReport (150=I in
4.4, ExecTransType=3 in 4.2) describing the order as it is - never a second fill; without those
flags it is a duplicate order and is rejected (OrdRejReason 6).

Order state lives in memory and is reconstructable: :meth:`OrderSimulator.restore` rebuilds it
from the ExecutionReports in the session's store (they carry every field an order needs), so a
restarted counterparty does not fill a known order again.

Every ExecutionReport carries OrderID, ExecID (unique across restarts: the prefix is derived from
the start time), ClOrdID, Symbol, Side, OrderQty, OrdType, LastQty/LastPx (0 when nothing traded),
LeavesQty, CumQty and AvgPx, and LeavesQty + CumQty = OrderQty while the order is live.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Final

from fixsecure.counterparty.engine import Action, Deliver, Session, SessionApplication
from fixsecure.counterparty.fields import (
    FIX42,
    FieldValue,
    FixMessage,
    GarbledMessage,
    MsgType,
    OutboundMessage,
    Tag,
    format_utc_timestamp,
    parse,
)

__all__ = ["Counterparty", "Order", "OrderSimulator", "SimulatorConfig"]

_ZERO: Final = Decimal(0)
_AVG_PX_PLACES: Final = Decimal("1e-8")

# OrdStatus(39) values
NEW: Final = b"0"
PARTIALLY_FILLED: Final = b"1"
FILLED: Final = b"2"
CANCELED: Final = b"4"
REPLACED_42: Final = b"5"  # FIX 4.2 only; 4.4 reports the order's current status instead
REJECTED: Final = b"8"
_LIVE: Final = frozenset((NEW, PARTIALLY_FILLED))

MARKET: Final = b"1"
LIMIT: Final = b"2"


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How orders are treated. ``market_price`` is the fill price of market orders."""

    begin_string: str
    fill_parts: int = 1
    fill_interval: float = 0.0
    market_price: Decimal = Decimal(100)

    def __post_init__(self) -> None:
        if self.fill_parts < 0 or self.fill_interval < 0:
            raise ValueError("fill_parts and fill_interval must be >= 0")
        if self.market_price <= 0:
            raise ValueError("market_price must be positive")


@dataclass(slots=True)
class Order:
    """One order as the simulator sees it (mutable: fills, cancels and replaces change it)."""

    order_id: str
    cl_ord_id: str
    symbol: str
    side: bytes
    ord_type: bytes
    order_qty: Decimal
    price: Decimal | None
    status: bytes = NEW
    cum_qty: Decimal = _ZERO
    notional: Decimal = _ZERO  # sum of LastQty * LastPx, for AvgPx
    fills: int = 0
    next_fill_at: float | None = None

    @property
    def leaves_qty(self) -> Decimal:
        return self.order_qty - self.cum_qty if self.status in _LIVE else _ZERO

    @property
    def avg_px(self) -> Decimal:
        if not self.cum_qty:
            return _ZERO
        return (self.notional / self.cum_qty).quantize(_AVG_PX_PLACES).normalize()


class OrderSimulator:
    """Answers order flow with ExecutionReports; sans-IO like the session (time is passed in)."""

    def __init__(self, config: SimulatorConfig, start_time: float) -> None:
        self.config = config
        self._is42 = config.begin_string == FIX42
        self._prefix = _base36(int(start_time * 1000))
        self._next_order = 1
        self._next_exec = 1
        self._by_cl_ord_id: dict[str, Order] = {}
        self._scheduled: dict[str, Order] = {}  # order id -> live order with a pending fill
        self.orders: dict[str, Order] = {}  # order id -> order

    # --- inputs ----------------------------------------------------------------------------

    def on_message(self, msg: FixMessage, now: float) -> list[OutboundMessage]:
        """The replies to one delivered application message."""
        msg_type = msg.msg_type
        if msg_type == MsgType.NEW_ORDER_SINGLE:
            return self._new_order(msg, now)
        if msg_type == MsgType.ORDER_CANCEL_REQUEST:
            return self._cancel(msg, now)
        if msg_type == MsgType.ORDER_CANCEL_REPLACE_REQUEST:
            return self._replace(msg, now)
        if msg_type == MsgType.BUSINESS_MESSAGE_REJECT:
            return []
        return [
            OutboundMessage(
                MsgType.BUSINESS_MESSAGE_REJECT,
                (
                    (Tag.REF_SEQ_NUM, msg.get(Tag.MSG_SEQ_NUM) or b"0"),
                    (Tag.TEXT, "Unsupported Message Type"),
                    (Tag.REF_MSG_TYPE, msg_type),
                    (Tag.BUSINESS_REJECT_REASON, 3),
                ),
            )
        ]

    def tick(self, now: float) -> list[OutboundMessage]:
        """Fills that have come due (timed mode); each due order fills one part."""
        due = [o for o in self._scheduled.values() if o.next_fill_at and o.next_fill_at <= now]
        return [self._fill(order, now) for order in due]

    def next_deadline(self) -> float | None:
        due = [o.next_fill_at for o in self._scheduled.values() if o.next_fill_at is not None]
        return min(due, default=None)

    def restore(self, sent_messages: Iterable[bytes], now: float) -> int:
        """Rebuild orders from our own ExecutionReports (e.g. ``store.get(1, next - 1)``).

        Returns the number of orders known afterwards. Live orders resume their fill schedule.
        """
        for data in sent_messages:
            try:
                msg = parse(data)
            except GarbledMessage:
                continue
            if msg.msg_type == MsgType.EXECUTION_REPORT:
                self._apply_report(msg)
        for order in self.orders.values():
            if order.status in _LIVE:
                self._schedule(order, now)
        return len(self.orders)

    # --- order flow ------------------------------------------------------------------------

    def _new_order(self, msg: FixMessage, now: float) -> list[OutboundMessage]:
        cl_ord_id = msg.get_str(Tag.CL_ORD_ID)
        known = self._by_cl_ord_id.get(cl_ord_id)
        if known is not None:
            if msg.flag(Tag.POSS_DUP_FLAG) or msg.flag(Tag.POSS_RESEND):
                return [self._status_report(known, now)]
            return [self._reject_order(msg, now, 6, f"Duplicate ClOrdID {cl_ord_id}")]
        ord_type = msg.get(Tag.ORD_TYPE) or b""
        qty = _decimal(msg.get(Tag.ORDER_QTY))
        price = _decimal(msg.get(Tag.PRICE))
        if ord_type not in (MARKET, LIMIT):
            return [self._reject_order(msg, now, 11, "Only market and limit orders supported")]
        if qty is None or qty <= 0:
            return [self._reject_order(msg, now, 13, "OrderQty must be present and positive")]
        if ord_type == LIMIT and (price is None or price <= 0):
            return [self._reject_order(msg, now, 99, "Limit order needs a positive Price")]
        order = Order(
            order_id=self._new_order_id(),
            cl_ord_id=cl_ord_id,
            symbol=msg.get_str(Tag.SYMBOL),
            side=msg.get(Tag.SIDE) or b"1",
            ord_type=ord_type,
            order_qty=qty,
            price=price if ord_type == LIMIT else None,
        )
        self.orders[order.order_id] = order
        self._by_cl_ord_id[cl_ord_id] = order
        out = [self._report(order, now, exec_type=NEW)]
        if self.config.fill_parts and self.config.fill_interval == 0:
            for _ in range(self.config.fill_parts):  # the last part fills all that is left
                out.append(self._fill(order, now))
                if order.status not in _LIVE:
                    break
        else:
            self._schedule(order, now)
        return out

    def _cancel(self, msg: FixMessage, now: float) -> list[OutboundMessage]:
        order, refusal = self._find_amendable(msg, now, response_to=1)
        if order is None:
            return refusal
        orig_cl_ord_id = order.cl_ord_id
        order.status = CANCELED
        order.next_fill_at = None
        self._scheduled.pop(order.order_id, None)
        self._rename(order, msg.get_str(Tag.CL_ORD_ID))
        return [self._report(order, now, exec_type=CANCELED, orig_cl_ord_id=orig_cl_ord_id)]

    def _replace(self, msg: FixMessage, now: float) -> list[OutboundMessage]:
        order, refusal = self._find_amendable(msg, now, response_to=2)
        if order is None:
            return refusal
        qty = _decimal(msg.get(Tag.ORDER_QTY))
        price = _decimal(msg.get(Tag.PRICE))
        ord_type = msg.get(Tag.ORD_TYPE) or order.ord_type
        new_qty = order.order_qty if qty is None else qty
        problem = None
        if ord_type not in (MARKET, LIMIT):
            problem = "Only market and limit orders supported"
        elif new_qty <= order.cum_qty:
            problem = f"OrderQty {new_qty} not above CumQty {order.cum_qty}"
        elif ord_type == LIMIT and (price or order.price or _ZERO) <= 0:
            problem = "Limit order needs a positive Price"
        if problem is not None:
            return [self._cancel_reject(msg, order, 2, reason=2, text=problem)]
        orig_cl_ord_id = order.cl_ord_id
        order.order_qty = new_qty
        order.ord_type = ord_type
        order.price = (price or order.price) if ord_type == LIMIT else None
        self._rename(order, msg.get_str(Tag.CL_ORD_ID))
        return [self._report(order, now, exec_type=b"5", orig_cl_ord_id=orig_cl_ord_id)]

    def _find_amendable(
        self, msg: FixMessage, now: float, response_to: int
    ) -> tuple[Order | None, list[OutboundMessage]]:
        """The live order a cancel/replace names, or the refusal to send instead."""
        new_cl_ord_id = msg.get_str(Tag.CL_ORD_ID)
        seen = self._by_cl_ord_id.get(new_cl_ord_id)
        if seen is not None:
            if msg.flag(Tag.POSS_DUP_FLAG) or msg.flag(Tag.POSS_RESEND):
                return None, [self._status_report(seen, now)]
            reason = 2 if self._is42 else 6  # 4.2 has no "duplicate ClOrdID" reason
            text = f"Duplicate ClOrdID {new_cl_ord_id}"
            return None, [self._cancel_reject(msg, seen, response_to, reason=reason, text=text)]
        order = self._by_cl_ord_id.get(msg.get_str(Tag.ORIG_CL_ORD_ID))
        order_id = msg.get_str(Tag.ORDER_ID)
        if order is None or (order_id and order_id != order.order_id):
            return None, [
                self._cancel_reject(msg, None, response_to, reason=1, text="Unknown order")
            ]
        if order.status not in _LIVE:
            text = f"Too late: order is {_STATUS_NAME.get(order.status, 'done')}"
            return None, [self._cancel_reject(msg, order, response_to, reason=0, text=text)]
        return order, []

    def _rename(self, order: Order, cl_ord_id: str) -> None:
        order.cl_ord_id = cl_ord_id
        self._by_cl_ord_id[cl_ord_id] = order

    def _schedule(self, order: Order, now: float) -> None:
        if self.config.fill_parts and order.status in _LIVE:
            order.next_fill_at = now + self.config.fill_interval
            self._scheduled[order.order_id] = order

    def _fill(self, order: Order, now: float) -> OutboundMessage:
        leaves = order.order_qty - order.cum_qty
        parts_left = max(self.config.fill_parts - order.fills, 1)
        if parts_left == 1:
            qty = leaves
        else:
            unit = _unit(order.order_qty)
            qty = min(max((leaves / parts_left).quantize(unit, ROUND_DOWN), unit), leaves)
        price = order.price if order.price is not None else self.config.market_price
        order.cum_qty += qty
        order.notional += qty * price
        order.fills += 1
        order.status = FILLED if order.cum_qty >= order.order_qty else PARTIALLY_FILLED
        if order.status in _LIVE:
            self._schedule(order, now)
        else:
            order.next_fill_at = None
            self._scheduled.pop(order.order_id, None)
        exec_type = order.status if self._is42 else b"F"  # 4.2: partial fill/fill; 4.4: trade
        return self._report(order, now, exec_type=exec_type, last_qty=qty, last_px=price)

    # --- messages --------------------------------------------------------------------------

    def _report(
        self,
        order: Order,
        now: float,
        *,
        exec_type: bytes,
        last_qty: Decimal = _ZERO,
        last_px: Decimal = _ZERO,
        orig_cl_ord_id: str | None = None,
        exec_trans_type: bytes = b"0",
    ) -> OutboundMessage:
        ord_status = order.status
        if exec_type == b"5" and self._is42:
            ord_status = REPLACED_42
        fields: list[tuple[int, FieldValue]] = [
            (Tag.ORDER_ID, order.order_id),
            (Tag.CL_ORD_ID, order.cl_ord_id),
        ]
        if orig_cl_ord_id is not None:
            fields.append((Tag.ORIG_CL_ORD_ID, orig_cl_ord_id))
        fields.append((Tag.EXEC_ID, self._new_exec_id()))
        if self._is42:
            fields.append((Tag.EXEC_TRANS_TYPE, exec_trans_type))
        fields += [
            (Tag.EXEC_TYPE, exec_type),
            (Tag.ORD_STATUS, ord_status),
            (Tag.SYMBOL, order.symbol),
            (Tag.SIDE, order.side),
            (Tag.ORDER_QTY, _fmt(order.order_qty)),
            (Tag.ORD_TYPE, order.ord_type),
        ]
        if order.price is not None:
            fields.append((Tag.PRICE, _fmt(order.price)))
        fields += [
            (Tag.LAST_QTY, _fmt(last_qty)),
            (Tag.LAST_PX, _fmt(last_px)),
            (Tag.LEAVES_QTY, _fmt(order.leaves_qty)),
            (Tag.CUM_QTY, _fmt(order.cum_qty)),
            (Tag.AVG_PX, _fmt(order.avg_px)),
            (Tag.TRANSACT_TIME, format_utc_timestamp(now)),
        ]
        return OutboundMessage(MsgType.EXECUTION_REPORT, tuple(fields))

    def _status_report(self, order: Order, now: float) -> OutboundMessage:
        if self._is42:
            return self._report(order, now, exec_type=order.status, exec_trans_type=b"3")
        return self._report(order, now, exec_type=b"I")

    def _reject_order(self, msg: FixMessage, now: float, reason: int, text: str) -> OutboundMessage:
        """ExecutionReport Rejected for an order that was never accepted (OrderID NONE)."""
        reason = reason if not self._is42 or reason <= 8 else 0  # 4.2: reasons 0-8 only
        fields: list[tuple[int, FieldValue]] = [
            (Tag.ORDER_ID, "NONE"),
            (Tag.CL_ORD_ID, msg.get(Tag.CL_ORD_ID) or b"NONE"),
            (Tag.EXEC_ID, self._new_exec_id()),
        ]
        if self._is42:
            fields.append((Tag.EXEC_TRANS_TYPE, b"0"))
        fields += [
            (Tag.EXEC_TYPE, REJECTED),
            (Tag.ORD_STATUS, REJECTED),
            (Tag.SYMBOL, msg.get(Tag.SYMBOL) or b"NONE"),
            (Tag.SIDE, msg.get(Tag.SIDE) or b"1"),
        ]
        qty = _decimal(msg.get(Tag.ORDER_QTY))
        if qty is not None:
            fields.append((Tag.ORDER_QTY, _fmt(qty)))
        ord_type = msg.get(Tag.ORD_TYPE)
        if ord_type is not None:
            fields.append((Tag.ORD_TYPE, ord_type))
        fields += [
            (Tag.ORD_REJ_REASON, reason),
            (Tag.LAST_QTY, "0"),
            (Tag.LAST_PX, "0"),
            (Tag.LEAVES_QTY, "0"),
            (Tag.CUM_QTY, "0"),
            (Tag.AVG_PX, "0"),
            (Tag.TRANSACT_TIME, format_utc_timestamp(now)),
            (Tag.TEXT, text),
        ]
        return OutboundMessage(MsgType.EXECUTION_REPORT, tuple(fields))

    def _cancel_reject(
        self, msg: FixMessage, order: Order | None, response_to: int, reason: int, text: str
    ) -> OutboundMessage:
        return OutboundMessage(
            MsgType.ORDER_CANCEL_REJECT,
            (
                (Tag.ORDER_ID, order.order_id if order is not None else "NONE"),
                (Tag.CL_ORD_ID, msg.get(Tag.CL_ORD_ID) or b"NONE"),
                (Tag.ORIG_CL_ORD_ID, msg.get(Tag.ORIG_CL_ORD_ID) or b"NONE"),
                (Tag.ORD_STATUS, order.status if order is not None else REJECTED),
                (Tag.CXL_REJ_RESPONSE_TO, response_to),
                (Tag.CXL_REJ_REASON, reason),
                (Tag.TEXT, text),
            ),
        )

    def _new_order_id(self) -> str:
        number = self._next_order
        self._next_order += 1
        return f"{self._prefix}-O{number}"

    def _new_exec_id(self) -> str:
        number = self._next_exec
        self._next_exec += 1
        return f"{self._prefix}-E{number}"

    # --- restore ---------------------------------------------------------------------------

    def _apply_report(self, msg: FixMessage) -> None:
        order_id = msg.get_str(Tag.ORDER_ID)
        qty = _decimal(msg.get(Tag.ORDER_QTY))
        if not order_id or order_id == "NONE" or qty is None:
            return
        order = self.orders.get(order_id)
        if order is None:
            order = Order(
                order_id=order_id,
                cl_ord_id=msg.get_str(Tag.CL_ORD_ID),
                symbol=msg.get_str(Tag.SYMBOL),
                side=msg.get(Tag.SIDE) or b"1",
                ord_type=msg.get(Tag.ORD_TYPE) or MARKET,
                order_qty=qty,
                price=None,
            )
            self.orders[order_id] = order
        order.cl_ord_id = msg.get_str(Tag.CL_ORD_ID)
        order.order_qty = qty
        order.ord_type = msg.get(Tag.ORD_TYPE) or order.ord_type
        order.price = _decimal(msg.get(Tag.PRICE))
        status = msg.get(Tag.ORD_STATUS) or order.status
        order.status = NEW if status == REPLACED_42 else status
        cum_qty = _decimal(msg.get(Tag.CUM_QTY)) or _ZERO
        if cum_qty > order.cum_qty:
            order.fills += 1
        order.cum_qty = cum_qty
        order.notional = (_decimal(msg.get(Tag.AVG_PX)) or _ZERO) * cum_qty
        if order.status == NEW and cum_qty:
            order.status = PARTIALLY_FILLED
        for tag in (Tag.CL_ORD_ID, Tag.ORIG_CL_ORD_ID):
            cl_ord_id = msg.get_str(tag)
            if cl_ord_id:
                self._by_cl_ord_id[cl_ord_id] = order


_STATUS_NAME: Final = {FILLED: "filled", CANCELED: "canceled", REJECTED: "rejected"}


def _decimal(value: bytes | None) -> Decimal | None:
    if value is None:
        return None
    with suppress(InvalidOperation, ValueError):
        number = Decimal(value.decode("ascii", "replace"))
        if number.is_finite():
            return number
    return None


def _unit(qty: Decimal) -> Decimal:
    """The smallest increment the quantity is written with (1 for "100", 0.01 for "2000.00")."""
    exponent = qty.as_tuple().exponent
    return Decimal(1).scaleb(exponent) if isinstance(exponent, int) and exponent < 0 else Decimal(1)


def _fmt(value: Decimal) -> str:
    return format(value, "f")


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out: list[str] = []
    for _ in range(32):  # 36**32 is far beyond any millisecond timestamp
        number, digit = divmod(number, 36)
        out.append(digits[digit])
        if not number:
            break
    return "".join(reversed(out))


class Counterparty(SessionApplication):
    """A :class:`Session` whose application is an :class:`OrderSimulator`: the test counterparty.

    Same inputs as the session; every :class:`Deliver` is answered here (the replies follow it in
    the returned actions, which keep the Deliver for logging). One store commit covers each call,
    so with the ``"commit"`` policy :meth:`receive_many` costs one fsync per socket read however
    many orders it carried.
    """

    def __init__(self, session: Session, simulator: OrderSimulator) -> None:
        super().__init__(session)
        self.simulator = simulator

    def reset(self, now: float) -> list[Action]:
        """Reset the session, then start an empty book: a new session period trades afresh."""
        actions = self.session.reset(now)
        self.simulator = OrderSimulator(self.simulator.config, start_time=now)
        return actions

    def receive(self, data: bytes, now: float) -> list[Action]:
        return self.receive_many((data,), now)

    def receive_many(self, messages: Iterable[bytes], now: float) -> list[Action]:
        """Every message of one read, answered, under one store commit (one fsync per read)."""
        with self.session.batch():
            return [
                action
                for data in messages
                for action in self._answer(self.session.receive(data, now), now)
            ]

    def tick(self, now: float) -> list[Action]:
        with self.session.batch():
            actions = self.session.tick(now)
            if self.session.is_logged_on:
                for reply in self.simulator.tick(now):
                    actions += self.session.send(reply, now)
            return actions

    def next_deadline(self) -> float | None:
        deadlines = [self.session.next_deadline()]
        if self.session.is_logged_on:
            deadlines.append(self.simulator.next_deadline())
        return min((d for d in deadlines if d is not None), default=None)

    def _answer(self, actions: list[Action], now: float) -> Iterator[Action]:
        for action in actions:
            yield action
            if isinstance(action, Deliver):
                for reply in self.simulator.on_message(action.message, now):
                    yield from self.session.send(reply, now)
