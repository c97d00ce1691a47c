"""A small FIX initiator built on simplefix that speaks fixsecure through the asyncio transport.

It logs on, sends NewOrderSingles, reads the ExecutionReports, logs out. Run it against the test
counterparty, after creating the keys both files name (see examples/counterparty.cfg)::

    fixsecure counterparty -c examples/counterparty.cfg
    python examples/asyncio_initiator.py -c examples/asyncio-initiator.cfg --orders 5

This is a sketch of what a Python engine does, not an engine: no resends, no heartbeats, no
persistence. The point is the shape: plaintext FIX in, plaintext FIX out, fixsecure in between.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

import simplefix

from fixsecure.asyncio import FixConnection, connect
from fixsecure.endpoint import session_config
from fixsecure.settings import load_settings


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]


class Initiator:
    """Builds messages with simplefix, numbers them, parses what comes back."""

    def __init__(self, conn: FixConnection, begin: str, sender: str, target: str) -> None:
        self.conn = conn
        self.begin, self.sender, self.target = begin, sender, target
        self.seq = 0
        self.parser = simplefix.FixParser()

    def message(self, msg_type: str) -> simplefix.FixMessage:
        self.seq += 1
        msg = simplefix.FixMessage()
        msg.append_pair(8, self.begin, header=True)
        msg.append_pair(35, msg_type, header=True)
        msg.append_pair(34, self.seq, header=True)
        msg.append_pair(49, self.sender, header=True)
        msg.append_pair(52, stamp(), header=True)
        msg.append_pair(56, self.target, header=True)
        return msg

    async def send(self, msg: simplefix.FixMessage) -> None:
        await self.conn.send(msg.encode())

    async def receive(self) -> simplefix.FixMessage:
        while True:
            parsed = self.parser.get_message()
            if parsed is not None:
                return parsed
            self.parser.append_buffer(await self.conn.receive())


async def run(path: str, orders: int) -> None:
    settings = load_settings(path).initiators()[0]
    host = settings.get("SocketConnectHost") or "127.0.0.1"
    port = settings.get_int("SocketConnectPort")
    assert port is not None, "SocketConnectPort must be set"
    conn = await connect(session_config(settings), host, port)
    sid = settings.session_id
    fix = Initiator(conn, sid.begin_string, sid.sender_comp_id, sid.target_comp_id)

    logon = fix.message("A")
    logon.append_pair(98, 0)
    logon.append_pair(108, 30)
    logon.append_pair(141, "Y")
    await fix.send(logon)  # handshake message 1
    reply = await fix.receive()
    print(f"logged on ({'encrypted' if conn.encrypted else 'PLAINTEXT'}): 35={reply.get(35)!r}")

    for number in range(1, orders + 1):
        order = fix.message("D")
        order.append_pair(11, f"EX-{int(time.time())}-{number}")
        order.append_pair(21, 1)
        order.append_pair(55, "EUR/USD")
        order.append_pair(54, 1)
        order.append_pair(60, stamp())
        order.append_pair(38, 100)
        order.append_pair(40, 2)
        order.append_pair(44, "1.085")
        await fix.send(order)
        while True:  # read reports until this order is filled
            report = await fix.receive()
            if report.get(35) != b"8":
                continue
            print(
                f"  order {number}: ExecType {report.get(150).decode()} "
                f"CumQty {report.get(14).decode()} AvgPx {report.get(6).decode()}"
            )
            if report.get(39) == b"2":
                break

    await fix.send(fix.message("5"))
    while (await fix.receive()).get(35) != b"5":
        pass
    await conn.close()
    print(f"logged out; the session ended {'cleanly' if conn.ended and conn.ended.clean else ''}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True, help="settings file of this initiator")
    parser.add_argument("--orders", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.config, arguments.orders))
