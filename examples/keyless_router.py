"""A keyless FIX router: it routes fixsecure traffic by the clear header, and can read nothing else.

Run it between initiators and their counterparties::

    python examples/keyless_router.py --listen 127.0.0.1:7000 \\
        --route VENUE1=127.0.0.1:7101 --route VENUE2=127.0.0.1:7102

Each inbound connection's first message (the initiator's Logon, handshake message 1) is routed by
its clear TargetCompID(56); after that the router frames every message in both directions with
fixsecure's framer and forwards it unchanged. It holds no key and sees only what any router sees:
the standard header (CompIDs, MsgType, MsgSeqNum, SendingTime, PossDupFlag …) and the length of
SecureData. ``--rewrite TAG=VALUE`` makes it a misbehaving router that changes a clear header field
on every message after the Logon: the receiving fixsecure endpoint then rejects the message and
closes the connection, which is the point of authenticating the header.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from fixsecure import wire
from fixsecure.framing import Framer

log = logging.getLogger("keyless_router")


@dataclass
class RouterStats:
    routed: dict[str, int] = field(default_factory=dict)
    seen_msg_types: dict[str, int] = field(default_factory=dict)
    secure_data_bytes: int = 0


class Router:
    """Routes by TargetCompID(56) of the first message; forwards framed messages both ways."""

    def __init__(
        self, routes: Mapping[str, tuple[str, int]], *, rewrite: tuple[int, bytes] | None = None
    ) -> None:
        self.routes = dict(routes)
        self.rewrite = rewrite
        self.stats = RouterStats()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._client, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _observe(self, message: bytes) -> dict[int, bytes]:
        """Everything a router can know about a message: its clear header, nothing more."""
        parts = wire.split(message)
        header = dict(wire.header_fields(message, parts))
        kind = header[35].decode()
        self.stats.seen_msg_types[kind] = self.stats.seen_msg_types.get(kind, 0) + 1
        if b"\x0190=" in message:
            self.stats.secure_data_bytes += len(message) - parts[2]
        return header

    def _rewritten(self, message: bytes) -> bytes:
        if self.rewrite is None:
            return message
        tag, value = self.rewrite
        parts = wire.split(message)
        header = message[parts[1] : parts[2]]
        fields = [
            (t, value if t == tag else v) for t, v in wire.header_fields(message, parts)
        ]
        new_header = b"".join(b"%d=%s\x01" % f for f in fields)
        if new_header == header:
            return message
        return wire.assemble(message[: parts[0]], [new_header, message[parts[2] : parts[3]]])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = Framer(1 << 21)
        first = None
        try:
            while first is None:
                data = await reader.read(65536)
                if not data:
                    return
                framer.feed(data)
                first = framer.next_message()
            target = self._observe(first).get(56, b"").decode()
            if target not in self.routes:
                log.warning("no route for TargetCompID %r", target)
                return
            self.stats.routed[target] = self.stats.routed.get(target, 0) + 1
            up_reader, up_writer = await asyncio.open_connection(*self.routes[target])
            up_writer.write(first)
            pending = []
            while (message := framer.next_message()) is not None:
                pending.append(message)
            up_writer.write(b"".join(self._rewritten(m) for m in pending))
            await asyncio.gather(
                self._forward(reader, up_writer, framer, rewrite=True),
                self._forward(up_reader, writer, Framer(1 << 21), rewrite=False),
            )
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        framer: Framer,
        *,
        rewrite: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                framer.feed(data)
                out = []
                while (message := framer.next_message()) is not None:
                    self._observe(message)
                    out.append(self._rewritten(message) if rewrite else message)
                writer.write(b"".join(out))
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _main(args: argparse.Namespace) -> None:
    routes = {}
    for item in args.route:
        name, _, address = item.partition("=")
        routes[name] = _address(address)
    rewrite = None
    if args.rewrite:
        tag, _, value = args.rewrite.partition("=")
        rewrite = (int(tag), value.encode())
    router = Router(routes, rewrite=rewrite)
    host, port = _address(args.listen)
    await router.start(host, port)
    log.info("routing on %s to %s", args.listen, routes)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--route", action="append", default=[], metavar="COMPID=HOST:PORT")
    parser.add_argument("--rewrite", metavar="TAG=VALUE", help="misbehave: rewrite a header field")
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))
