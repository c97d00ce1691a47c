""" "The header stays routable", shown: a keyless FIX router between two banks and two venues.

``examples/keyless_router.py`` routes each connection by the clear TargetCompID(56) of its first
message and forwards framed messages unchanged. Two :class:`OrderClient` initiators (BANK1, BANK2,
each with its own keys) trade through it with two counterparty sessions (VENUE1, VENUE2) of one
:class:`CounterpartyRunner`. Recording relays on both sides of the router capture the wire; a
wrapper around :class:`FixConnection` captures the plaintext each engine sent and was handed.
Shown: the router holds no key, forwards every byte unchanged and sees only clear headers; every
order and fill arrives byte-exact; a router that alters a header field breaks the connection and
nothing of the altered message is delivered or filled.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import importlib.util
import logging
import sys
from collections import Counter
from collections.abc import Awaitable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from fixsecure.asyncio import FixConnection
from fixsecure.benchproxy import free_ports
from fixsecure.counterparty.client import OrderClient, OrderResult
from fixsecure.counterparty.runner import CounterpartyRunner
from fixsecure.keys import PeerKey, StaticKey, write_keypair
from fixsecure.noise import CipherState, HandshakeState, KeyPair
from fixsecure.session import Session, SessionConfig
from fixsecure.sessionid import SessionID
from fixsecure.suites import DEFAULT_SUITE
from fixsecure.wire import CLEAR_HEADER_TAGS

ROUTER_PATH = Path(__file__).resolve().parents[1] / "examples" / "keyless_router.py"
LOOPBACK = "127.0.0.1"
SYMBOL = "ZZROUTED"  # a body field: never in clear on the wire the router reads
PAIRS = (("BANK1", "VENUE1"), ("BANK2", "VENUE2"))
KEY_NAMES = ("bank1", "bank2", "venue1", "venue2")
#: Modules that hold or use keys; the router must import none of them.
KEYED_MODULES = {
    "fixsecure.noise",
    "fixsecure.keys",
    "fixsecure.session",
    "fixsecure.endpoint",
    "fixsecure.settings",
    "fixsecure.asyncio",
    "fixsecure.proxy",
}


pytestmark = pytest.mark.usefixtures("no_asyncio_errors")


@pytest.fixture(scope="module")
def router_module() -> Iterator[ModuleType]:
    """examples/keyless_router.py, imported by path."""
    spec = importlib.util.spec_from_file_location("keyless_router", ROUTER_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@dataclasses.dataclass
class Plaintext:
    """What every engine sent and was handed, per fixsecure session (plaintext FIX messages)."""

    sent: dict[SessionID, list[bytes]] = dataclasses.field(default_factory=dict)
    received: dict[SessionID, list[bytes]] = dataclasses.field(default_factory=dict)


@pytest.fixture
def plaintext(monkeypatch: pytest.MonkeyPatch) -> Plaintext:
    """Wraps :class:`FixConnection` (both the clients' and the runner's) to record plaintext."""
    seen = Plaintext()
    send, send_batch = FixConnection.send, FixConnection.send_batch
    receive_batch = FixConnection.receive_batch

    async def recording_send_batch(self: FixConnection, messages: Iterable[bytes]) -> None:
        batch = list(messages)
        assert self.session_id is not None
        seen.sent.setdefault(self.session_id, []).extend(batch)
        await send_batch(self, batch)

    async def recording_send(self: FixConnection, message: bytes) -> None:
        assert self.session_id is not None
        seen.sent.setdefault(self.session_id, []).append(message)
        await send(self, message)

    async def recording_receive(self: FixConnection) -> list[bytes]:
        batch = await receive_batch(self)
        assert self.session_id is not None
        seen.received.setdefault(self.session_id, []).extend(batch)
        return batch

    monkeypatch.setattr(FixConnection, "send", recording_send)
    monkeypatch.setattr(FixConnection, "send_batch", recording_send_batch)
    monkeypatch.setattr(FixConnection, "receive_batch", recording_receive)
    return seen


def run(coro: Awaitable[None], timeout: float = 60) -> None:
    """Run ``coro`` as the loop's only task (see :func:`settle`), bounded by ``timeout``."""

    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


def sid(sender: str, target: str) -> SessionID:
    return SessionID("FIX.4.4", sender, target)


def venues_cfg(directory: Path, ports: dict[str, int]) -> Path:
    """One counterparty file, one acceptor session per venue, each on its own port."""
    sections = "".join(
        f"""
[SESSION]
SenderCompID={venue}
TargetCompID={bank}
SocketAcceptPort={ports[venue]}
FixSecurePrivateKeyFile=keys/{venue.lower()}.key
FixSecurePeerPublicKeyFile=keys/{bank.lower()}.pub
"""
        for bank, venue in PAIRS
    )
    path = directory / "venues.cfg"
    path.write_text(
        f"""[DEFAULT]
ConnectionType=acceptor
BeginString=FIX.4.4
SocketAcceptHost={LOOPBACK}
FixSecureStatePath=state
FixSecureHandshakeTimeout=5
FixSecureDrainTimeout=2
{sections}"""
    )
    return path


def bank_cfg(directory: Path, bank: str, venue: str, port: int, reconnect: float = 0.1) -> Path:
    path = directory / f"{bank.lower()}.cfg"
    path.write_text(
        f"""[DEFAULT]
ConnectionType=initiator
BeginString=FIX.4.4
SenderCompID={bank}
TargetCompID={venue}
SocketConnectHost={LOOPBACK}
SocketConnectPort={port}
HeartBtInt=30
ReconnectInterval={reconnect}
FixSecurePrivateKeyFile=keys/{bank.lower()}.key
FixSecurePeerPublicKeyFile=keys/{venue.lower()}.pub

[SESSION]
"""
    )
    return path


def make_keys(directory: Path) -> None:
    for name in KEY_NAMES:
        write_keypair(name, DEFAULT_SUITE, directory / "keys")


def key_material(directory: Path) -> list[bytes]:
    """Every key's raw private and public bytes (and their hex), to look for in the router."""
    found: list[bytes] = []
    for name in KEY_NAMES:
        key = load_pem_private_key((directory / "keys" / f"{name}.key").read_bytes(), None)
        raw = [
            key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()),
            key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
        ]
        found += raw + [r.hex().encode() for r in raw]
    return found


# --- helpers: the wire and the router -------------------------------------------------------------


def split_frames(data: bytes) -> list[bytes]:
    """Complete messages of a recorded stream, by BodyLength; the stream must end on a message."""
    messages: list[bytes] = []
    start = 0
    while start < len(data):
        length_at = data.index(b"\x019=", start)
        length_end = data.index(b"\x01", length_at + 3)
        end = length_end + 1 + int(data[length_at + 3 : length_end]) + len(b"10=nnn\x01")
        assert end <= len(data), "the stream ends inside a message"
        messages.append(data[start:end])
        start = end
    return messages


def fields(message: bytes) -> list[tuple[int, bytes]]:
    """(tag, value) of every field of a wire message; 91's value is base64, without SOH."""
    return [
        (int(tag), value)
        for tag, _, value in (f.partition(b"=") for f in message[:-1].split(b"\x01"))
    ]


def tag_value(message: bytes, tag: int) -> bytes | None:
    return next((value for t, value in fields(message) if t == tag), None)


def msg_type(message: bytes) -> str:
    return (tag_value(message, 35) or b"?").decode()


def assert_only_headers_in_clear(message: bytes) -> None:
    """8, 9, clear header fields, (Logon: 98, 25800, 25801,) 90, 91, 10 - nothing else."""
    tags = [tag for tag, _ in fields(message)]
    assert tags[:3] == [8, 9, 35]
    assert tags[-3:] == [90, 91, 10]
    extra = [t for t in tags[3:-3] if t not in CLEAR_HEADER_TAGS]
    assert extra in ([], [98], [98, 25800, 25801]), tags


class Recorder:
    """A transparent TCP relay that records every connection's bytes both ways."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.links: list[tuple[bytearray, bytearray]] = []
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._on_client, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def up(self) -> bytes:
        (link,) = self.links
        return bytes(link[0])

    @property
    def down(self) -> bytes:
        (link,) = self.links
        return bytes(link[1])

    async def close(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        link = (bytearray(), bytearray())
        self.links.append(link)
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pump(reader, up_writer, link[0]),
            self._pump(up_reader, writer, link[1]),
            return_exceptions=True,
        )
        writer.close()
        up_writer.close()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray
    ) -> None:
        while data := await reader.read(1 << 16):
            record += data
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def settle(timeout: float = 5.0) -> None:
    """Wait until every other task (the router's and relays' connection handlers) has ended."""
    current = asyncio.current_task()
    async with asyncio.timeout(timeout):
        while others := [t for t in asyncio.all_tasks() if t is not current and not t.done()]:
            await asyncio.wait(others, timeout=0.05)


FORBIDDEN_TYPES: tuple[type, ...] = (
    KeyPair,
    StaticKey,
    PeerKey,
    SessionConfig,
    Session,
    CipherState,
    HandshakeState,
    Path,
    x25519.X25519PrivateKey,
    x25519.X25519PublicKey,
    ec.EllipticCurvePrivateKey,
    ec.EllipticCurvePublicKey,
)


def assert_keyless(value: object, secrets: list[bytes], path: str = "router") -> None:
    """No key object, no key bytes and no file path anywhere in the router's state."""
    assert not isinstance(value, FORBIDDEN_TYPES), f"{path} is a {type(value).__name__}"
    if isinstance(value, bytes | bytearray | str):
        data = value.encode() if isinstance(value, str) else bytes(value)
        assert not any(secret in data for secret in secrets if data), path
        assert not data.endswith((b".key", b".pub", b".pem")), path
    elif isinstance(value, dict):
        for key, item in value.items():
            assert_keyless(key, secrets, f"{path} key")
            assert_keyless(item, secrets, f"{path}[{key!r}]")
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            assert_keyless(item, secrets, f"{path}[{index}]")
    elif dataclasses.is_dataclass(value) or hasattr(value, "__dict__"):
        if isinstance(value, asyncio.Server):  # sockets and the loop: nothing of ours
            return
        for name, item in vars(value).items():
            assert_keyless(item, secrets, f"{path}.{name}")
    else:
        assert isinstance(value, int | float | type(None)), f"{path}: {type(value).__name__}"


def test_the_router_module_imports_nothing_that_holds_keys(router_module: ModuleType) -> None:
    """Only the framer and the wire-format helpers; neither imports a keyed module itself."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(ROUTER_PATH.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "fixsecure":
            imported |= {f"fixsecure.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module)
    ours = {name for name in imported if name.split(".")[0] == "fixsecure"}
    assert ours == {"fixsecure.wire", "fixsecure.framing"}
    for name, value in vars(router_module).items():
        origin = (
            value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", "")
        )
        assert origin not in KEYED_MODULES, name
    for module in ours:
        path = ROUTER_PATH.parents[1] / Path(*module.split(".")).with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {node.module or ""}
            elif isinstance(node, ast.Import):
                names = {alias.name for alias in node.names}
            else:
                continue
            assert not names & KEYED_MODULES, (module, names)


# --- the happy path -------------------------------------------------------------------------------


def test_orders_and_fills_cross_the_keyless_router_byte_exact(
    tmp_path: Path, router_module: ModuleType, plaintext: Plaintext
) -> None:
    """BANK1 -> VENUE1 and BANK2 -> VENUE2 at once through one router: 25 orders each, every
    one filled once; each engine was handed exactly the bytes its peer's engine wrote; the router
    forwarded every wire byte unchanged, held no key, and saw only the clear headers."""
    make_keys(tmp_path)
    venue_ports = dict(zip(("VENUE1", "VENUE2"), free_ports(2), strict=True))
    runner_cfg = venues_cfg(tmp_path, venue_ports)
    count = 25
    secrets = key_material(tmp_path)

    async def main_() -> None:
        async with CounterpartyRunner(runner_cfg) as runner:
            outside = {v: Recorder((LOOPBACK, p)) for v, p in venue_ports.items()}
            routes = {v: (LOOPBACK, await r.start()) for v, r in outside.items()}
            router = router_module.Router(routes)
            router_port = await router.start(LOOPBACK, 0)
            inside = {b: Recorder((LOOPBACK, router_port)) for b, _ in PAIRS}
            clients = {
                b: OrderClient.from_settings(bank_cfg(tmp_path, b, v, await inside[b].start()))
                for b, v in PAIRS
            }
            results: dict[str, list[OrderResult]] = {}
            try:
                for client in clients.values():
                    await client.logon()
                assert_keyless(router, secrets)  # while both routes carry traffic
                batches = await asyncio.gather(
                    *(c.send_orders(count, symbol=SYMBOL) for c in clients.values())
                )
                results = dict(zip(clients, batches, strict=True))
                for client in clients.values():
                    await client.logout()
            finally:
                for client in clients.values():
                    await client.close()
                await router.close()
                for recorder in (*inside.values(), *outside.values()):
                    await recorder.close()
            await settle()
            for bank, venue in PAIRS:
                served = runner.status(sid(venue, bank))
                assert (served.logons, served.orders_received, served.fills_sent) == (
                    1,
                    count,
                    count,
                )
                book = runner.counterparty(sid(venue, bank)).simulator.orders.values()
                assert sorted(o.cl_ord_id for o in book) == sorted(
                    r.cl_ord_id for r in results[bank]
                )
                assert all(
                    r.status == "filled" and r.fills == 1 and r.cum_qty == Decimal(100)
                    for r in results[bank]
                )
                stats = clients[bank].stats()
                assert stats.duplicate_reports == stats.unknown_reports == stats.overfilled == 0
        assert_keyless(router, secrets)

        wire: list[bytes] = []
        for bank, venue in PAIRS:
            mine, theirs = sid(bank, venue), sid(venue, bank)
            # Byte-exact, both ways: what one engine wrote is what the other was handed.
            assert plaintext.sent[mine] == plaintext.received[theirs]
            assert plaintext.sent[theirs] == plaintext.received[mine]
            assert len(plaintext.sent[mine]) == count + 2  # Logon, orders, Logout
            assert len(plaintext.sent[theirs]) == 2 * count + 2  # Logon, New + Fill each, Logout
            # The router forwarded every byte unchanged, both ways.
            assert inside[bank].up == outside[venue].up
            assert inside[bank].down == outside[venue].down
            # Message for message, the router saw the engines' own headers, field for field.
            for stream, sent in ((inside[bank].up, mine), (inside[bank].down, theirs)):
                messages = split_frames(stream)
                for on_wire, engine in zip(messages, plaintext.sent[sent], strict=True):
                    assert header_of(on_wire) == header_of(engine)
                wire += messages
        # What the router could see: clear headers; bodies only as SecureData.
        for message in wire:
            assert_only_headers_in_clear(message)
            assert SYMBOL.encode() not in message
        all_plaintext = [m for batch in plaintext.sent.values() for m in batch]
        assert SYMBOL.encode() in b"".join(all_plaintext)
        stats = router.stats
        assert stats.routed == {"VENUE1": 1, "VENUE2": 1}
        assert stats.seen_msg_types == Counter(map(msg_type, all_plaintext))
        assert stats.seen_msg_types == {"A": 4, "D": 2 * count, "8": 4 * count, "5": 4}
        assert 0 < stats.secure_data_bytes < sum(map(len, wire))

    run(main_())


def header_of(message: bytes) -> list[tuple[int, bytes]]:
    """The clear header run: the fields after 9 whose tags are clear-header tags."""
    out = []
    for tag, value in fields(message)[2:]:
        if tag not in CLEAR_HEADER_TAGS:
            break
        out.append((tag, value))
    return out


# --- a router that rewrites a header field --------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "value"),
    [(56, b"VENUE9"), (49, b"BANK9"), (34, b"999"), (52, b"20200101-00:00:00.000")],
    ids=["TargetCompID", "SenderCompID", "MsgSeqNum", "SendingTime"],
)
def test_a_router_that_alters_a_header_field_breaks_the_connection(
    tmp_path: Path,
    router_module: ModuleType,
    plaintext: Plaintext,
    tag: int,
    value: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Logon passes (the router rewrites only later messages); the first order, its header
    altered, fails authentication at VENUE1, which closes the connection: nothing of it is
    delivered or filled, and the client sees the connection end."""
    make_keys(tmp_path)
    venue_ports = dict(zip(("VENUE1", "VENUE2"), free_ports(2), strict=True))
    runner_cfg = venues_cfg(tmp_path, venue_ports)
    bank, venue = PAIRS[0]
    caplog.set_level(logging.INFO, logger="fixsecure")

    async def main_() -> None:
        async with CounterpartyRunner(runner_cfg) as runner:
            outside = Recorder((LOOPBACK, venue_ports[venue]))
            router = router_module.Router(
                {venue: (LOOPBACK, await outside.start())}, rewrite=(tag, value)
            )
            inside = Recorder((LOOPBACK, await router.start(LOOPBACK, 0)))
            client = OrderClient.from_settings(
                bank_cfg(tmp_path, bank, venue, await inside.start(), reconnect=30)
            )
            try:
                await client.logon()
                (order,) = await client.submit(1, symbol=SYMBOL)
                await client.driver.wait_for(lambda: not client.status().connected, 5)
                assert not order.done()
                served = await runner.wait_for(sid(venue, bank), lambda s: not s.connected, 5)
            finally:
                await client.close()
                await router.close()
                await inside.close()
                await outside.close()
            await settle()
            assert (served.logons, served.orders_received, served.fills_sent) == (1, 0, 0)
            assert served.last_disconnect.startswith("protocol failure")
            assert not runner.counterparty(sid(venue, bank)).simulator.orders
        # VENUE1's engine was handed the Logon and nothing else; the client got no report.
        assert [msg_type(m) for m in plaintext.received[sid(venue, bank)]] == ["A"]
        assert [msg_type(m) for m in plaintext.received[sid(bank, venue)]] == ["A"]
        assert [msg_type(m) for m in plaintext.sent[sid(bank, venue)]] == ["A", "D"]
        ended = client.status()
        assert not ended.last_disconnect.startswith("closed locally after the peer's Logout")
        assert client.stats().fills == 0
        # On the wire: the Logon forwarded as is, the order with exactly that field changed.
        logon, sent_order = split_frames(inside.up)
        forwarded_logon, altered = split_frames(outside.up)
        assert forwarded_logon == logon
        old = tag_value(sent_order, tag)
        assert old is not None
        assert old != value
        assert altered == reframe(
            sent_order, b"\x01%d=%s\x01" % (tag, old), b"\x01%d=%s\x01" % (tag, value)
        )
        reasons = [r.getMessage() for r in caplog.records if "rejected:" in r.getMessage()]
        assert len(reasons) == 1
        assert f"{sid(venue, bank)}: connection from" in reasons[0]
        assert reasons[0].endswith("rejected: authentication failed")

    run(main_())


def reframe(message: bytes, old: bytes, new: bytes) -> bytes:
    """Replace bytes inside a message and fix BodyLength and CheckSum."""
    length_end = message.index(b"\x01", 12) + 1
    inner = message[length_end : -len(b"10=nnn\x01")].replace(old, new, 1)
    head = b"8=FIX.4.4\x019=%d\x01" % len(inner) + inner
    return head + b"10=%03d\x01" % (sum(head) % 256)
