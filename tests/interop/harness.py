"""Harness for tests that run real FIX engines: QuickFIX processes, a recording TCP relay, stunnel.

Topology of a run, from the initiator side (``hops`` are inserted in the middle)::

    initiator engine --> hop[0] --> hop[1] --> ... --> executor engine (acceptor)

Everything is built for pytest: a :class:`Harness` owns a per-test directory and every process
and hop it started, and :meth:`Harness.close` stops them all (SIGTERM, bounded wait, SIGKILL).
Children also get ``PR_SET_PDEATHSIG`` (via ``setpriv``) so a killed pytest leaves no orphan.

Typical use (the ``harness`` fixture of ``conftest.py`` is ``Harness(tmp_path)``)::

    relay = TcpRelay()
    pair = harness.start_pair(hops=[relay], orders=10_000)
    relay.wait_for(lambda s: s.up_bytes > 500_000, timeout=20)
    relay.drop()
    ini, exe = pair.wait(timeout=60)
    assert pair.initiator.messages().sent == pair.executor.messages().received

A hop is anything with ``start(upstream) -> Address`` and ``close()`` (:class:`Hop`); it listens
on the address it returns and forwards to ``upstream``. :class:`TcpRelay` and
:class:`StunnelPair` are hops; a fixsecure proxy pair is written the same way, starting its
processes with :meth:`Harness.spawn` so that teardown covers them.

Exact bytes: QuickFIX's FileLog writes every message as ``<UTC timestamp> : <message>\\n`` in the
order the session handled it: outgoing messages as the string handed to the socket, incoming
ones as the string its parser cut from the socket buffer, SOH and all, with no direction marker.
:class:`MessageLog` frames each message by its BodyLength (so a newline inside a data field
cannot split it) and tells direction by SenderCompID(49). ``test_harness.py`` checks the logs
against the bytes the relay saw on the wire. One caveat: a message is logged as sent when it is
handed to the socket, so across a dropped connection the sender's log can hold messages the peer
never got (FIX recovery then resends them with PossDupFlag=Y: new bytes, new log entries).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import socket
import struct
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fixsecure.benchproxy import (
    Address,
    ManagedProcess,
    free_port,
    free_ports,
    stunnel_binary,
    stunnel_config,
)
from fixsecure.benchproxy import ThrowawayPki as TestPki
from fixsecure.benchproxy import (
    make_throwaway_pki as make_test_pki,
)
from fixsecure.benchproxy import (
    tail as _tail,
)

LOOPBACK = "127.0.0.1"
QFAPPS = Path(__file__).with_name("qfapps.py")
BEGIN_STRING = "FIX.4.4"
INITIATOR_ID = "CLIENT"
EXECUTOR_ID = "EXEC"
SOH = b"\x01"

# QuickFIX event-log lines marking a completed logon, per role.
LOGON_EVENT = {"initiator": "Received logon response", "acceptor": "Responding to logon request"}

T = TypeVar("T")


class Closeable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closeable)


class HarnessError(AssertionError):
    """A process or hop misbehaved; the message carries the diagnostics (log tails)."""


def wait_until(
    predicate: Callable[[], T | None], timeout: float, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what or predicate}")
        time.sleep(interval)


# --- ports and settings ------------------------------------------------------------------------


def write_settings(
    path: Path, default: Mapping[str, object], sessions: Sequence[Mapping[str, object]]
) -> Path:
    """Write a QuickFIX settings file: one ``[DEFAULT]`` and one ``[SESSION]`` per mapping.

    ``True``/``False`` become ``Y``/``N``; keys QuickFIX does not know (fixsecure's) are allowed.
    """

    def value(v: object) -> str:
        text = ("Y" if v else "N") if isinstance(v, bool) else str(v)
        if "\n" in text or "\r" in text:
            raise ValueError(f"settings value {text!r} contains a line break")
        return text

    lines = ["[DEFAULT]", *(f"{k}={value(v)}" for k, v in default.items())]
    for session in sessions:
        lines += ["", "[SESSION]", *(f"{k}={value(v)}" for k, v in session.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def quickfix_import_error() -> str | None:
    """None if the ``quickfix`` binding imports in this interpreter, else why not."""
    try:
        import quickfix  # noqa: F401, PLC0415
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def data_dictionary(name: str = "FIX44.xml") -> Path | None:
    """The data dictionary shipped by the quickfix wheel (installed under ``<prefix>/share``)."""
    for base in dict.fromkeys((sysconfig.get_path("data"), sys.prefix)):
        path = Path(base) / "share" / "quickfix" / name
        if path.is_file():
            return path
    return None


# --- FIX framing and message logs --------------------------------------------------------------

_BODY_LENGTH = re.compile(rb"8=[^\x01]{1,32}\x019=(\d{1,9})\x01")
_LOG_PREFIX = re.compile(rb"\d{8}-\d{2}:\d{2}:\d{2}(?:\.\d{1,9})? : ")
_TRAILER = re.compile(rb"10=\d{3}\x01")


def frame_length(data: bytes | bytearray, start: int = 0) -> int | None:
    """Length of the FIX message beginning at ``data[start]``, None if it is not complete yet.

    Framing follows BodyLength(9), as engines do. Raises ValueError if the bytes there cannot
    start a FIX message or CheckSum(10) is not where BodyLength puts it.
    """
    head = _BODY_LENGTH.match(data, start)
    if head is None:
        rest = bytes(data[start : start + 64])
        if len(rest) < 64 and rest.count(SOH) < 2 and b"8=".startswith(rest[:2]):
            return None  # a header still arriving
        raise ValueError(f"no FIX header at offset {start}: {rest[:40]!r}")
    end_body = head.end() + int(head.group(1))
    if len(data) < end_body + 7:
        return None
    if not _TRAILER.match(data, end_body):
        raise ValueError(f"no CheckSum where BodyLength puts it at offset {end_body}")
    return end_body + 7 - start


def split_messages(data: bytes | bytearray) -> tuple[list[bytes], bytes]:
    """Cut a byte stream into complete FIX messages; returns them and the incomplete tail."""
    messages: list[bytes] = []
    pos = 0
    while pos < len(data):
        n = frame_length(data, pos)
        if n is None:
            break
        messages.append(bytes(data[pos : pos + n]))
        pos += n
    return messages, bytes(data[pos:])


def header_field(message: bytes, tag: int) -> bytes | None:
    """First value of ``tag`` in a raw FIX message.

    A plain scan, meant for header fields: they come first, so a data field later in the body
    that happens to contain ``<SOH>tag=`` cannot shadow them.
    """
    key = b"%d=" % tag
    if message.startswith(key):
        start = len(key)
    else:
        pos = message.find(SOH + key)
        if pos < 0:
            return None
        start = pos + 1 + len(key)
    end = message.find(SOH, start)
    return message[start:end] if end >= 0 else None


def msg_type(message: bytes) -> bytes | None:
    return header_field(message, 35)


def checksum_ok(message: bytes) -> bool:
    return message[-7:-4] == b"10=" and int(message[-4:-1]) == sum(message[:-7]) % 256


def first_difference(expected: Sequence[bytes], actual: Sequence[bytes]) -> str | None:
    """None if both message lists are equal, else a short description of the first difference
    (pytest's own diff of two 10,000-message lists is unreadable)."""
    for i, (a, b) in enumerate(zip(expected, actual, strict=False)):
        if a != b:
            return f"message {i} differs:\n expected {a!r}\n actual   {b!r}"
    if len(expected) != len(actual):
        return f"{len(expected)} messages expected, {len(actual)} found"
    return None


@dataclass(frozen=True)
class LoggedMessage:
    timestamp: str
    outgoing: bool
    raw: bytes


@dataclass(frozen=True)
class MessageLog:
    """The messages of one QuickFIX session, read from its FileLog, in logged order."""

    entries: tuple[LoggedMessage, ...]

    @property
    def sent(self) -> list[bytes]:
        return [e.raw for e in self.entries if e.outgoing]

    @property
    def received(self) -> list[bytes]:
        return [e.raw for e in self.entries if not e.outgoing]

    def of_type(self, msg_type_: bytes, *, outgoing: bool) -> list[bytes]:
        return [
            e.raw for e in self.entries if e.outgoing is outgoing and msg_type(e.raw) == msg_type_
        ]

    @classmethod
    def parse(cls, data: bytes, sender_comp_id: str, *, live: bool = False) -> MessageLog:
        """Parse FileLog content; every byte must belong to an entry, or ValueError says where.

        ``live``: the engine may still be writing, so an incomplete last entry is ignored.
        """
        sender = sender_comp_id.encode()
        entries: list[LoggedMessage] = []
        pos = 0
        while pos < len(data):
            prefix = _LOG_PREFIX.match(data, pos)
            if prefix is None:
                if live and len(data) - pos < 32 and b"\n" not in data[pos:]:
                    break
                raise ValueError(f"no log timestamp at offset {pos}: {data[pos : pos + 40]!r}")
            n = frame_length(data, prefix.end())
            end = prefix.end() + (n or 0)
            if live and (n is None or end == len(data)):
                break
            if n is None or data[end : end + 1] != b"\n":
                raise ValueError(f"log entry at offset {pos} is not one FIX message and a newline")
            raw = data[prefix.end() : end]
            entries.append(
                LoggedMessage(prefix.group()[:-3].decode(), header_field(raw, 49) == sender, raw)
            )
            pos = end + 1
        return cls(tuple(entries))

    @classmethod
    def read(
        cls, log_dir: Path, begin: str, sender: str, target: str, *, live: bool = False
    ) -> MessageLog:
        """Read a session's message log, backups (``messages.backup.N.log``) first."""
        stem = f"{begin}-{sender}-{target}.messages"
        backups = sorted(
            log_dir.glob(f"{stem}.backup.*.log"), key=lambda p: int(p.name.split(".")[-2])
        )
        current = log_dir / f"{stem}.current.log"
        data = b"".join(p.read_bytes() for p in [*backups, current] if p.exists())
        return cls.parse(data, sender, live=live)


# --- processes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionKey:
    begin: str
    sender: str
    target: str

    @property
    def prefix(self) -> str:
        return f"{self.begin}-{self.sender}-{self.target}"


class EngineProcess(ManagedProcess):
    """One QuickFIX engine from ``qfapps.py``, with its settings, stores, logs and result."""

    def __init__(
        self,
        name: str,
        role: str,
        settings_path: Path,
        session: SessionKey,
        workdir: Path,
        *,
        log_dir: Path,
        store_dir: Path,
        extra_args: Sequence[str] = (),
        address: Address | None = None,
    ) -> None:
        self.role = role
        # Where an acceptor listens; None for an initiator.
        self.address = address
        self.settings_path = settings_path
        self.session = session
        self.log_dir = log_dir
        self.store_dir = store_dir
        self.result_path = workdir / f"{name}.result.json"
        self.ready_path = workdir / f"{name}.ready"
        app = "executor" if role == "acceptor" else "initiator"
        argv = [sys.executable, str(QFAPPS), app, "-c", str(settings_path)]
        argv += ["--result", str(self.result_path), "--ready", str(self.ready_path), *extra_args]
        super().__init__(name, argv, workdir, {"PYTHONUNBUFFERED": "1"})

    @property
    def event_log(self) -> Path:
        return self.log_dir / f"{self.session.prefix}.event.current.log"

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the engine has started (an acceptor is then listening)."""

        def ready() -> bool:
            if not self.running and not self.ready_path.exists():
                raise HarnessError(f"{self.name} exited before it was ready\n{self.diagnostics()}")
            return self.ready_path.exists()

        try:
            wait_until(ready, timeout, what=f"{self.name} ready")
        except TimeoutError as exc:
            raise HarnessError(f"{exc}\n{self.diagnostics()}") from None

    def events(self) -> list[str]:
        try:
            return self.event_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def count_events(self, text: str) -> int:
        return sum(text in line for line in self.events())

    def wait_for_event(self, text: str, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until ``text`` occurs in ``count`` lines of the session's event log."""
        try:
            wait_until(lambda: self.count_events(text) >= count, timeout, interval=0.05, what=text)
        except TimeoutError as exc:
            raise HarnessError(f"{self.name}: {exc}\n{self.diagnostics()}") from None

    def logons(self) -> int:
        return self.count_events(LOGON_EVENT[self.role])

    def wait_for_logon(self, count: int = 1, timeout: float = 20.0) -> None:
        """Wait for the ``count``-th completed logon, as the event log records it."""
        self.wait_for_event(LOGON_EVENT[self.role], count, timeout)

    def result(self) -> dict[str, Any]:
        """The JSON the app writes on exit."""
        try:
            data: dict[str, Any] = json.loads(self.result_path.read_text())
        except FileNotFoundError:
            raise HarnessError(f"{self.name} wrote no result\n{self.diagnostics()}") from None
        return data

    def messages(self, *, live: bool = False) -> MessageLog:
        """The session's message log; ``live`` while the engine may still be writing it."""
        s = self.session
        return MessageLog.read(self.log_dir, s.begin, s.sender, s.target, live=live)

    def wait_for_messages(
        self, predicate: Callable[[MessageLog], bool], timeout: float = 20.0
    ) -> MessageLog:
        """Wait until ``predicate`` holds for the live message log, e.g.
        ``lambda log: len(log.of_type(b"8", outgoing=False)) >= 100``."""

        def check() -> MessageLog | None:
            log = self.messages(live=True)
            return log if predicate(log) else None

        try:
            return wait_until(check, timeout, interval=0.05, what=f"{self.name} messages")
        except TimeoutError as exc:
            raise HarnessError(f"{exc}\n{self.diagnostics()}") from None

    def diagnostics(self) -> str:
        events = "\n".join(self.events()[-15:])
        return f"{super().diagnostics()}\nevents:\n{events}"


# --- hops --------------------------------------------------------------------------------------


class Hop(Protocol):
    """Something between the engines: listens on the address ``start`` returns, forwards to
    ``upstream`` (toward the acceptor)."""

    def start(self, upstream: Address) -> Address: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RelayConnection:
    """One relayed TCP connection. ``up`` = initiator to acceptor, ``down`` = the reverse;
    each holds every byte the relay read from that side and passed on (a drop may cut the last
    ones before they reach the other side)."""

    index: int
    up: bytes
    down: bytes
    open: bool
    dropped: bool


@dataclass(frozen=True)
class RelayStats:
    connections: int
    open_connections: int
    up_bytes: int
    down_bytes: int


@dataclass
class _Link:
    index: int
    down_writer: asyncio.StreamWriter
    up_writer: asyncio.StreamWriter | None = None
    up: bytearray = dataclasses.field(default_factory=bytearray)
    down: bytearray = dataclasses.field(default_factory=bytearray)
    open: bool = True
    dropped: bool = False


class TcpRelay:
    """Recording TCP relay on its own asyncio thread; a :class:`Hop`.

    Listens on ``listen`` (port 0 = any free port), connects each accepted connection to the
    upstream address, forwards both ways (half-closes are passed on), records every byte, and
    drops all open connections when told to, which is how tests cut a FIX session mid-flow.
    """

    def __init__(self, listen: Address | None = None, name: str = "relay") -> None:
        self.name = name
        self._listen = listen or Address(LOOPBACK, 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: list[_Link] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._up_bytes = 0
        self._down_bytes = 0
        self._accepting = True
        self._final: tuple[RelayStats, list[RelayConnection]] | None = None
        self.address: Address | None = None
        self.upstream: Address | None = None

    # Everything touching _links runs on the relay's loop; callers go through _call.
    def _call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        if self._loop is None:
            raise RuntimeError(f"{self.name} is not started")

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def start(self, upstream: Address) -> Address:
        if self._loop is not None:
            raise RuntimeError(f"{self.name} already started")
        self.upstream = upstream
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._on_accept, self._listen.host, self._listen.port), loop
        ).result(10)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = Address(host, port)
        return self.address

    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._accepting:
            writer.transport.abort()
            return
        link = _Link(len(self._links), writer)
        self._links.append(link)
        assert self.upstream is not None
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream.host, self.upstream.port), 10
            )
        except (OSError, TimeoutError):
            link.open = False
            writer.transport.abort()
            return
        link.up_writer = up_writer
        for sock_writer in (writer, up_writer):
            sock = sock_writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer, link.up, up=True)),
            asyncio.ensure_future(self._pump(up_reader, writer, link.down, up=False)),
        ]
        try:
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            link.open = False
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: bytearray,
        *,
        up: bool,
    ) -> None:
        while data := await reader.read(65536):
            record += data
            if up:
                self._up_bytes += len(data)
            else:
                self._down_bytes += len(data)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof() and not writer.transport.is_closing():
            writer.write_eof()

    def drop(self, *, reset: bool = False, timeout: float = 10.0) -> int:
        """Abort every open connection (both sides); ``reset`` sends RST instead of FIN.

        Bytes the relay had read but not yet passed on are lost, as on a real network failure.
        Returns how many connections were dropped.
        """

        def abort_all() -> int:
            dropped = 0
            for link in self._links:
                if not link.open:
                    continue
                for w in (link.down_writer, link.up_writer):
                    if w is None:
                        continue
                    sock = w.get_extra_info("socket")
                    if reset and sock is not None:
                        linger = struct.pack("ii", 1, 0)  # on, 0 s: close() sends RST
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    w.transport.abort()
                link.open = False
                link.dropped = True
                dropped += 1
            return dropped

        return self._call(abort_all, timeout)

    def set_accepting(self, accepting: bool) -> None:
        """While False, new connections are closed at once (an outage longer than one drop)."""

        def apply() -> None:
            self._accepting = accepting

        self._call(apply)

    def stats(self) -> RelayStats:
        if self._final is not None:
            return self._final[0]

        def read() -> RelayStats:
            return RelayStats(
                len(self._links),
                sum(link.open for link in self._links),
                self._up_bytes,
                self._down_bytes,
            )

        return self._call(read)

    def connections(self) -> list[RelayConnection]:
        """Snapshot of every connection so far, with a copy of its recorded bytes (still
        available after close())."""
        if self._final is not None:
            return self._final[1]

        def read() -> list[RelayConnection]:
            return [
                RelayConnection(
                    link.index, bytes(link.up), bytes(link.down), link.open, link.dropped
                )
                for link in self._links
            ]

        return self._call(read)

    def wait_for(self, predicate: Callable[[RelayStats], bool], timeout: float) -> RelayStats:
        """Wait until ``predicate(stats())`` holds, e.g. ``lambda s: s.up_bytes > 100_000``."""

        def check() -> RelayStats | None:
            stats = self.stats()
            return stats if predicate(stats) else None

        return wait_until(check, timeout, what=f"{self.name} stats")

    def close(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self.drop(timeout=5)
            self._final = (self.stats(), self.connections())
        loop, self._loop = self._loop, None

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for link in self._links:
                for w in (link.down_writer, link.up_writer):
                    if w is not None:
                        w.transport.abort()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=2)
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        if not loop.is_running():
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


# --- TLS material and stunnel ------------------------------------------------------------------


class StunnelPair:
    """Two stunnel processes, TLS 1.3 between them: client side (plain in) -> server side
    (plain out to ``upstream``); a :class:`Hop`."""

    # Logged (at info level) once the accept socket is bound; "Configuration successful" comes
    # before the bind.
    READY_LINE = "Accepting new connections"

    def __init__(
        self, harness: Harness, name: str = "stunnel", *, tls_version: str = "TLSv1.3"
    ) -> None:
        self.harness = harness
        self.name = name
        self.tls_version = tls_version
        self.dir = harness.workdir / name
        self.client: ManagedProcess | None = None
        self.server: ManagedProcess | None = None
        self.pki: TestPki | None = None
        self.tls_address: Address | None = None

    def start(self, upstream: Address) -> Address:
        binary = stunnel_binary()
        if binary is None:
            raise HarnessError("stunnel4 is not installed: run `make sysdeps`")
        self.pki = make_test_pki(self.dir / "pki")
        plain_port, tls_port = free_ports(2)
        entry, self.tls_address = Address(LOOPBACK, plain_port), Address(LOOPBACK, tls_port)
        self.server = self._launch(binary, "server", self.tls_address, upstream)
        self.client = self._launch(binary, "client", entry, self.tls_address)
        return entry

    def _launch(self, binary: str, side: str, accept: Address, connect: Address) -> ManagedProcess:
        assert self.pki is not None
        conf = self.dir / f"{side}.conf"
        conf.write_text(
            stunnel_config(
                client=side == "client",
                accept=accept,
                connect=connect,
                pki=self.pki,
                tls_version=self.tls_version,
            )
        )
        proc = self.harness.spawn(f"{self.name}-{side}", [binary, str(conf)], cwd=self.dir)

        def ready() -> bool:
            if not proc.running:
                raise HarnessError(f"stunnel {side} exited at startup\n{proc.diagnostics()}")
            return self.READY_LINE in _tail(proc.stderr_path, 100_000)

        try:
            wait_until(ready, 10, what=f"stunnel {side} startup")
        except TimeoutError as exc:
            raise HarnessError(f"{exc}\n{proc.diagnostics()}") from None
        return proc

    def log(self, side: str) -> str:
        proc = self.client if side == "client" else self.server
        return "" if proc is None else proc.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        for proc in (self.client, self.server):
            if proc is not None:
                proc.stop(5)


# --- the harness -------------------------------------------------------------------------------


@dataclass
class FixPair:
    """An executor and an initiator started by :meth:`Harness.start_pair`."""

    executor: EngineProcess
    initiator: EngineProcess
    entry: Address
    hops: tuple[Hop, ...]

    def messages(self) -> tuple[MessageLog, MessageLog]:
        """(initiator log, executor log)."""
        return self.initiator.messages(), self.executor.messages()

    def wait(self, timeout: float = 120.0) -> tuple[dict[str, Any], dict[str, Any]]:
        """Wait for the initiator to finish (it logs out itself), then stop the executor.

        Returns (initiator result, executor result); raises HarnessError with the diagnostics
        of both engines if either did not exit 0.
        """
        try:
            ini_code = self.initiator.wait_exit(timeout)
        finally:
            exe_code = self.executor.stop()
        if ini_code != 0 or exe_code != 0:
            raise HarnessError(
                f"initiator exit {ini_code}, executor exit {exe_code}\n"
                f"{self.initiator.diagnostics()}\n{self.executor.diagnostics()}"
            )
        return self.initiator.result(), self.executor.result()


class Harness:
    """Owns a test directory and everything started in it; ``close()`` stops it all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._processes: list[ManagedProcess] = []
        self._closeables: list[Closeable] = []

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- generic building blocks

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ManagedProcess:
        """Start any process (a fixsecure proxy, stunnel, ...) that teardown must stop."""
        workdir = cwd or self.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        proc = ManagedProcess(name, argv, workdir, env or {})
        self._processes.append(proc)
        return proc

    def add(self, closeable: C) -> C:
        """Register something with a ``close()`` (e.g. a hop) to be closed at teardown."""
        self._closeables.append(closeable)
        return closeable

    def chain(self, upstream: Address, hops: Iterable[Hop]) -> Address:
        """Start ``hops`` (listed from the initiator side) toward ``upstream``; returns the
        address the initiator must connect to."""
        address = upstream
        for hop in reversed(list(hops)):
            self.add(hop)
            address = hop.start(address)
        return address

    # -- QuickFIX engines

    def engine_settings(
        self, name: str, role: str, session: SessionKey, port_setting: Mapping[str, object]
    ) -> tuple[dict[str, object], dict[str, object]]:
        """Default ([DEFAULT], [SESSION]) settings of one engine; callers may add keys."""
        dictionary = data_dictionary()
        default: dict[str, object] = {
            "ConnectionType": role,
            "FileStorePath": self.workdir / f"{name}-store",
            "FileLogPath": self.workdir / f"{name}-log",
            "StartTime": "00:00:00",
            "EndTime": "00:00:00",
            "HeartBtInt": 30,
            "ReconnectInterval": 1,
            "SocketNodelay": True,
            "PersistMessages": True,
            "UseDataDictionary": dictionary is not None,
            **({"DataDictionary": dictionary} if dictionary else {}),
            **port_setting,
        }
        sess: dict[str, object] = {
            "BeginString": session.begin,
            "SenderCompID": session.sender,
            "TargetCompID": session.target,
        }
        return default, sess

    def start_executor(
        self,
        name: str = "executor",
        *,
        port: int | None = None,
        default: Mapping[str, object] | None = None,
        session: Mapping[str, object] | None = None,
        ready_timeout: float = 20.0,
    ) -> EngineProcess:
        """Start the acceptor app on ``port`` (default: a free one) and wait until it listens.

        QuickFIX 1.16 has no SocketAcceptHost and binds every interface; AllowedRemoteAddresses
        makes it refuse anything but loopback peers.
        """
        key = SessionKey(BEGIN_STRING, EXECUTOR_ID, INITIATOR_ID)
        port = port or free_port()
        d, s = self.engine_settings(name, "acceptor", key, {"SocketAcceptPort": port})
        s["AllowedRemoteAddresses"] = LOOPBACK
        return self._start_engine(
            name,
            "acceptor",
            key,
            {**d, **(default or {})},
            {**s, **(session or {})},
            address=Address(LOOPBACK, port),
            ready_timeout=ready_timeout,
        )

    def _start_engine(
        self,
        name: str,
        role: str,
        key: SessionKey,
        default: dict[str, object],
        session: dict[str, object],
        *,
        extra_args: Sequence[str] = (),
        address: Address | None = None,
        ready_timeout: float,
    ) -> EngineProcess:
        settings = write_settings(self.workdir / f"{name}.cfg", default, [session])
        merged = {**default, **session}
        proc = EngineProcess(
            name,
            role,
            settings,
            key,
            self.workdir,
            log_dir=Path(str(merged["FileLogPath"])),
            store_dir=Path(str(merged["FileStorePath"])),
            extra_args=extra_args,
            address=address,
        )
        self._processes.append(proc)
        proc.wait_ready(ready_timeout)
        return proc

    def start_initiator(
        self,
        connect: Address,
        name: str = "initiator",
        *,
        orders: int = 1000,
        window: int = 200,
        rate: float = 0.0,
        deadline: float = 60.0,
        hold: bool = False,
        run_id: str = "",
        default: Mapping[str, object] | None = None,
        session: Mapping[str, object] | None = None,
        ready_timeout: float = 20.0,
    ) -> EngineProcess:
        """Start the order-sending app toward ``connect``; it exits by itself when done."""
        key = SessionKey(BEGIN_STRING, INITIATOR_ID, EXECUTOR_ID)
        d, s = self.engine_settings(
            name,
            "initiator",
            key,
            {"SocketConnectHost": connect.host, "SocketConnectPort": connect.port},
        )
        args = ["--orders", str(orders), "--window", str(window), "--rate", str(rate)]
        args += ["--deadline", str(deadline), *(["--hold"] if hold else [])]
        args += ["--run-id", run_id] if run_id else []
        return self._start_engine(
            name,
            "initiator",
            key,
            {**d, **(default or {})},
            {**s, **(session or {})},
            extra_args=args,
            ready_timeout=ready_timeout,
        )

    def start_pair(
        self,
        hops: Sequence[Hop] = (),
        *,
        executor_default: Mapping[str, object] | None = None,
        executor_session: Mapping[str, object] | None = None,
        **initiator_kwargs: Any,
    ) -> FixPair:
        """Executor, then the hops (acceptor side first), then the initiator through them."""
        executor = self.start_executor(default=executor_default, session=executor_session)
        assert executor.address is not None
        entry = self.chain(executor.address, hops)
        initiator = self.start_initiator(entry, **initiator_kwargs)
        return FixPair(executor, initiator, entry, tuple(hops))

    # -- teardown

    def processes(self) -> list[ManagedProcess]:
        return list(self._processes)

    def close(self) -> None:
        """Stop initiators first (their Logout can still pass), then hops, then the rest.

        Every step is bounded; anything still alive at the end is killed.
        """
        errors: list[BaseException] = []
        initiators = [p for p in self._processes if getattr(p, "role", "") == "initiator"]
        for proc in initiators:
            with _collect(errors):
                proc.stop(15)
        for closeable in reversed(self._closeables):
            with _collect(errors):
                closeable.close()
        for proc in reversed(self._processes):
            with _collect(errors):
                proc.stop(15)
        for proc in self._processes:
            with _collect(errors):
                proc.kill()
        self._closeables.clear()
        if errors:
            raise HarnessError(f"teardown failed: {errors!r}")


@contextlib.contextmanager
def _collect(errors: list[BaseException]) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        errors.append(exc)
