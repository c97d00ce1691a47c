"""An order-sending FIX initiator over fixsecure, for the demo and the tests.

The counterparty answers orders; :class:`OrderClient` is the other side: the same sans-IO session
engine in the initiator role, driven by the runner's :class:`SessionDriver` (so it reconnects after
ReconnectInterval and heals gaps like any session), with an order book that matches
ExecutionReports to the orders it sent::

    async with OrderClient.from_settings("bank.cfg") as client:   # logs on, logs out at the end
        result = await client.send_order(quantity=Decimal(100))    # one round trip, timed
        results = await client.send_orders(1000)                   # one batch, all fills awaited

Every order gets a :class:`OrderResult` when it is done (filled, canceled or rejected), with
``perf_counter`` stamps for its round trip; ``on_result`` is called with each as it completes.
ExecutionReports resent after a reconnect (same ExecID) are counted, never applied twice, and a
fill beyond an order's quantity is counted in :attr:`ClientStats.overfilled` - the tests' "no
order filled twice".
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

from fixsecure.counterparty.engine import Action, Deliver, Role, Session, SessionApplication
from fixsecure.counterparty.fields import (
    FieldValue,
    FixMessage,
    MsgType,
    OutboundMessage,
    Tag,
    format_utc_timestamp,
)
from fixsecure.counterparty.runner import (
    Clock,
    CounterpartySession,
    Observer,
    SessionDriver,
    SessionStatus,
    cancel_tasks,
    counterparty_session,
)
from fixsecure.counterparty.store import MemoryStore, MessageStore
from fixsecure.endpoint import session_config
from fixsecure.errors import ConfigError, LocalProtocolError
from fixsecure.sessionid import SessionID
from fixsecure.settings import load_settings

__all__ = ["BUY", "SELL", "ClientStats", "OrderClient", "OrderResult"]

BUY: Final = "1"
SELL: Final = "2"
_DONE: Final = {b"2": "filled", b"4": "canceled", b"8": "rejected"}
_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class OrderResult:
    """One order, done. Times are ``time.perf_counter()`` values; ``latency`` is the round trip."""

    cl_ord_id: str
    order_id: str
    status: str  # "filled", "canceled" or "rejected"
    quantity: Decimal
    cum_qty: Decimal
    avg_px: Decimal
    fills: int
    sent_at: float
    done_at: float

    @property
    def latency(self) -> float:
        return self.done_at - self.sent_at


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Order-book counters: what a test checks after reconnects and restarts."""

    orders_sent: int
    orders_done: int
    fills: int
    duplicate_reports: int  # an ExecID seen again (a PossDup resend): ignored
    unknown_reports: int  # ExecutionReports for a ClOrdID this client never sent
    overfilled: int  # orders with a fill after they were done or beyond their quantity


@dataclass(slots=True)
class _Order:
    cl_ord_id: str
    quantity: Decimal
    sent_at: float
    future: asyncio.Future[OrderResult]
    exec_ids: set[str] = field(default_factory=set)
    order_id: str = ""
    fills: int = 0
    filled_qty: Decimal = _ZERO
    done: bool = False
    overfilled: bool = False


class _OrderFlow(SessionApplication):
    """The client's session application: the session plus a book that matches each delivered
    ExecutionReport to its order."""

    def __init__(self, session: Session, on_result: Callable[[OrderResult], None] | None) -> None:
        super().__init__(session)
        self.orders: dict[str, _Order] = {}
        self.on_result = on_result
        self.done = 0
        self.fills = 0
        self.duplicates = 0
        self.unknown = 0

    def receive_many(self, messages: Iterable[bytes], now: float) -> list[Action]:
        actions = self.session.receive_many(messages, now)
        stamp = time.perf_counter()
        for action in actions:
            if isinstance(action, Deliver) and action.message.msg_type == MsgType.EXECUTION_REPORT:
                self._report(action.message, stamp)
        return actions

    def _report(self, msg: FixMessage, stamp: float) -> None:
        order = self.orders.get(msg.get_str(Tag.CL_ORD_ID))
        if order is None:
            self.unknown += 1
            return
        exec_id = msg.get_str(Tag.EXEC_ID)
        if exec_id in order.exec_ids:
            self.duplicates += 1
            return
        order.exec_ids.add(exec_id)
        order.order_id = msg.get_str(Tag.ORDER_ID) or order.order_id
        last_qty = _decimal(msg.get(Tag.LAST_QTY))
        if last_qty > 0:
            self.fills += 1
            order.fills += 1
            order.filled_qty += last_qty
            if order.done or order.filled_qty > order.quantity:
                order.overfilled = True
        status = _DONE.get(msg.get(Tag.ORD_STATUS) or b"")
        if status is None or order.done:
            return
        order.done = True
        self.done += 1
        result = OrderResult(
            cl_ord_id=order.cl_ord_id,
            order_id=order.order_id,
            status=status,
            quantity=order.quantity,
            cum_qty=_decimal(msg.get(Tag.CUM_QTY)),
            avg_px=_decimal(msg.get(Tag.AVG_PX)),
            fills=order.fills,
            sent_at=order.sent_at,
            done_at=stamp,
        )
        if not order.future.done():
            order.future.set_result(result)
        if self.on_result is not None:
            self.on_result(result)


def _decimal(value: bytes | None) -> Decimal:
    if not value:
        return _ZERO
    try:
        return Decimal(value.decode("ascii", "replace"))
    except InvalidOperation:
        return _ZERO


class OrderClient:
    """A FIX initiator that sends NewOrderSingles and awaits their ExecutionReports.

    ``config`` is an initiator session of a counterparty-format settings file (see
    :func:`~fixsecure.counterparty.runner.counterparty_session`); its keys are loaded here.
    Without a ``store`` the session lives in memory and its first Logon resets both sides'
    sequence numbers (ResetSeqNumFlag=Y), so a fresh client can log on to a counterparty that
    remembers an earlier one; later Logons of the same client recover gaps instead.
    """

    def __init__(
        self,
        config: CounterpartySession,
        *,
        store: MessageStore | None = None,
        clock: Clock = time.time,
        on_result: Callable[[OrderResult], None] | None = None,
        observer: Observer | None = None,
    ) -> None:
        if config.role is not Role.INITIATOR:
            raise config.settings.error("ConnectionType", "the order client is an initiator")
        now = clock()
        secure = session_config(config.settings)  # key files first: nothing to clean up yet
        fresh = store is None
        self.store = store if store is not None else config.open_store(now)
        self._flow = _OrderFlow(Session(config.engine, self.store), on_result)
        self._driver = SessionDriver(
            config,
            self._flow,
            secure=secure,
            clock=clock,
            reset_first_logon=fresh and isinstance(self.store, MemoryStore),
            observer=observer,
        )
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._prefix = f"C{int(now * 1000):x}"
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        path: Path | str,
        session_id: SessionID | None = None,
        *,
        clock: Clock = time.time,
        on_result: Callable[[OrderResult], None] | None = None,
        observer: Observer | None = None,
    ) -> OrderClient:
        """The client of the file's initiator session (``session_id`` picks one of several)."""
        settings = load_settings(path)
        candidates = [
            s for s in settings.initiators() if session_id is None or s.session_id == session_id
        ]
        if len(candidates) != 1:
            which = "no" if not candidates else "more than one"
            wanted = f" for {session_id}" if session_id is not None else ""
            raise ConfigError(f"{which} initiator [SESSION]{wanted}", path=settings.path)
        return cls(
            counterparty_session(candidates[0]),
            clock=clock,
            on_result=on_result,
            observer=observer,
        )

    async def __aenter__(self) -> OrderClient:
        try:
            await self.logon()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- inspection -----------------------------------------------------------------------

    @property
    def session(self) -> Session:
        return self._flow.session

    @property
    def session_id(self) -> SessionID:
        return self._driver.config.session_id

    @property
    def driver(self) -> SessionDriver:
        return self._driver

    def status(self) -> SessionStatus:
        return self._driver.status()

    def stats(self) -> ClientStats:
        flow = self._flow
        return ClientStats(
            orders_sent=len(flow.orders),
            orders_done=flow.done,
            fills=flow.fills,
            duplicate_reports=flow.duplicates,
            unknown_reports=flow.unknown,
            overfilled=sum(1 for order in flow.orders.values() if order.overfilled),
        )

    # --- session --------------------------------------------------------------------------

    async def logon(self, timeout: float = 10.0) -> None:
        """Connect (reconnecting every ReconnectInterval) and wait until logged on."""
        if self._closed:
            raise LocalProtocolError("the client is closed")
        self._stopping.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._driver.run_initiator(self._stopping))
        try:
            await self._driver.wait_for(lambda: self.session.is_logged_on, timeout)
        except TimeoutError:
            last = self._driver.last_disconnect or "no answer"
            raise TimeoutError(
                f"{self.session_id}: not logged on within {timeout:g} s ({last})"
            ) from None

    async def logout(self, timeout: float = 5.0) -> None:
        """Log out, wait for the exchange to end, and stop reconnecting."""
        self._stopping.set()
        await self._driver.logout("", timeout)

    async def close(self) -> None:
        """Log out if logged on, stop the connection task and close the store."""
        if self._closed:
            return
        self._closed = True
        if self._driver.connected:
            await self.logout()
        self._stopping.set()
        await cancel_tasks(self._task)  # run_initiator logs its own failures
        for order in self._flow.orders.values():
            if not order.future.done():
                order.future.cancel()
        self.store.close()

    # --- orders ---------------------------------------------------------------------------

    async def send_order(
        self,
        *,
        symbol: str = "EUR/USD",
        side: str = BUY,
        quantity: Decimal = Decimal(100),
        price: Decimal | None = None,
        timeout: float = 10.0,
    ) -> OrderResult:
        """One NewOrderSingle (market unless ``price``), awaited until done."""
        (future,) = await self.submit(1, symbol=symbol, side=side, quantity=quantity, price=price)
        async with asyncio.timeout(timeout):
            return await future

    async def send_orders(
        self,
        count: int,
        *,
        symbol: str = "EUR/USD",
        side: str = BUY,
        quantity: Decimal = Decimal(100),
        price: Decimal | None = None,
        timeout: float = 30.0,
    ) -> list[OrderResult]:
        """``count`` NewOrderSingles in one store commit and one write; awaits every result."""
        futures = await self.submit(count, symbol=symbol, side=side, quantity=quantity, price=price)
        async with asyncio.timeout(timeout):
            return list(await asyncio.gather(*futures))

    async def submit(
        self,
        count: int,
        *,
        symbol: str = "EUR/USD",
        side: str = BUY,
        quantity: Decimal = Decimal(100),
        price: Decimal | None = None,
    ) -> list[asyncio.Future[OrderResult]]:
        """Send ``count`` orders in one store commit and one write; one future per order.

        While not logged on the orders are stored and reach the counterparty by gap recovery
        on the next Logon.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        if quantity <= 0 or (price is not None and price <= 0):
            raise ValueError("quantity and price must be positive")
        loop = asyncio.get_running_loop()
        session = self.session
        orders = [
            _Order(f"{self._prefix}-{next(self._ids)}", quantity, 0.0, loop.create_future())
            for _ in range(count)
        ]

        def send_all(now: float) -> list[Action]:
            transact_time = format_utc_timestamp(now)
            stamp = time.perf_counter()
            actions: list[Action] = []
            with session.batch():
                for order in orders:
                    order.sent_at = stamp
                    self._flow.orders[order.cl_ord_id] = order
                    actions += session.send(
                        _new_order(order, symbol, side, price, transact_time), now
                    )
            return actions

        await self._driver.execute(send_all)
        return [order.future for order in orders]


def _new_order(
    order: _Order, symbol: str, side: str, price: Decimal | None, transact_time: bytes
) -> OutboundMessage:
    fields: list[tuple[int, FieldValue]] = [
        (Tag.CL_ORD_ID, order.cl_ord_id),
        (Tag.HANDL_INST, b"1"),
        (Tag.SYMBOL, symbol),
        (Tag.SIDE, side),
        (Tag.TRANSACT_TIME, transact_time),
        (Tag.ORDER_QTY, format(order.quantity, "f")),
    ]
    if price is None:
        fields.append((Tag.ORD_TYPE, b"1"))
    else:
        fields += [(Tag.ORD_TYPE, b"2"), (Tag.PRICE, format(price, "f"))]
    return OutboundMessage(MsgType.NEW_ORDER_SINGLE, tuple(fields))
