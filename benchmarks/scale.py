"""One acceptor proxy, many concurrent sessions: a Logon storm, traffic on every session, memory.

    python benchmarks/scale.py                      # 1,000 sessions, 10 messages each
    python benchmarks/scale.py --sessions 200 --json

Setup, all on loopback:

- one ``python -m fixsecure proxy -c venue.cfg`` process whose settings file has one ``[SESSION]``
  per initiator (TargetCompID ``BANK0001`` …), all on one ``FixSecureAcceptPort``, each pinning its
  own initiator public key (one key pair per session is generated: that is what a venue has);
  the venue's own key is shared, as a venue's is;
- a tiny acceptor engine behind it (asyncio, this process): answers each Logon with a Logon and
  every later message with an ExecutionReport acknowledging it;
- the initiators (this process, ``fixsecure.asyncio.connect`` with ``session_config`` of each
  session): the load, not the thing measured. They all connect at once.

Reported: the storm's duration (first connect until the last initiator holds its Logon reply),
the traffic phase (``--messages`` NewOrderSingle per session, all sessions at once, every one and
every acknowledgement compared byte for byte), and the proxy process's memory (VmRSS from
``/proc/PID/status``) before the storm, after it (every session idle and logged on) and after the
traffic, as KiB per session.

Settings the storm needs, and why:

- ``FixSecureMaxHalfOpen`` = sessions + 64: every initiator is half-open at once during the storm;
  with the default 64 the rest would be refused and have to retry (as QuickFIX does after
  ReconnectInterval), which measures the retry policy, not the proxy;
- ``FixSecureLogonRatePerSource`` = 2 × sessions: every initiator here comes from 127.0.0.1; in
  production each counterparty has its own address, and a venue whose counterparties share one
  address (a NAT, an extranet provider) must raise it the same way;
- ``FixSecureLogonRatePerSession`` stays at its default (12/min): each session logs on once;
- ``FixSecureHandshakeTimeout`` = ``--timeout``: the clock starts when the proxy accepts a
  connection, and on a loaded 2-CPU machine the last handshakes of the storm complete more than the
  default 10 s after their connection was accepted. (It also keeps clear of a bug found with this
  script: an acceptor connection whose handshake completed still ends at this timeout if the
  initiator has sent nothing since its Logon, because the read armed during the handshake keeps
  its deadline; see the report that came with this file.)

File descriptors: each session holds two sockets in the proxy (network and engine side) and two
in this process (initiator and engine), so the soft ``RLIMIT_NOFILE`` is raised in-process (up to
the hard limit) before the proxy is started; the proxy inherits it.

Timing varies with the machine and its load; nothing here is a pass/fail threshold. The exit
status is 1 if any session failed to log on or any byte differed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from fixsecure.asyncio import FixConnection, connect
from fixsecure.benchproxy import ManagedProcess, free_ports, logon
from fixsecure.endpoint import session_config
from fixsecure.framing import Framer, iter_fields
from fixsecure.keys import write_keypair
from fixsecure.memory import fix_message, format_timestamp
from fixsecure.session import SessionConfig
from fixsecure.settings import load_settings
from fixsecure.suites import DEFAULT_SUITE, SUITES

LOOPBACK = "127.0.0.1"
ACK_TIME = b"20261125-16:00:00.000"
T = TypeVar("T")


def comp_id(index: int) -> bytes:
    return b"BANK%04d" % index


def order(sender: bytes, seq: int) -> bytes:
    stamp = format_timestamp(time.time_ns())
    return fix_message(
        b"D",
        seq,
        sender,
        b"VENUE",
        [(11, b"%s-%d" % (sender, seq)), (55, b"EUR/USD"), (54, 1), (38, 100), (44, b"1.1")],
        sending_time=stamp,
    )


def ack(sender: bytes, seq: int, cl_ord_id: bytes) -> bytes:
    """The engine's acknowledgement of an order; the initiator rebuilds it to compare."""
    body = [(11, cl_ord_id), (150, b"0"), (39, b"0")]
    return fix_message(b"8", seq, b"VENUE", sender, body, sending_time=ACK_TIME)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in KiB, and the number of open file descriptors, of ``pid``."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    values["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return values


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (children inherit it); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(
                f"need {needed} file descriptors but the hard limit is {hard}: raise it "
                "(ulimit -Hn, or LimitNOFILE= in a systemd unit)"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    return soft, hard


def write_settings(
    workdir: Path,
    sessions: int,
    suite: str,
    *,
    network_port: int,
    engine_port: int,
    handshake_timeout: float,
) -> tuple[Path, Path]:
    """The venue's acceptor file (the proxy's) and the banks' initiator file (this process's)."""
    keys = workdir / "keys"
    write_keypair("venue", suite, keys)
    venue = [
        "[DEFAULT]",
        "ConnectionType=acceptor",
        f"FixSecureSuite={suite}",
        "FixSecurePrivateKeyFile=keys/venue.key",
        "FixSecureStatePath=state",
        f"FixSecureAcceptHost={LOOPBACK}",
        f"FixSecureAcceptPort={network_port}",
        f"SocketAcceptHost={LOOPBACK}",
        f"SocketAcceptPort={engine_port}",
        f"FixSecureMaxHalfOpen={sessions + 64}",
        f"FixSecureLogonRatePerSource={2 * sessions}",
        f"FixSecureHandshakeTimeout={handshake_timeout:g}",
        "FixSecureDrainTimeout=2",
    ]
    banks = [
        "[DEFAULT]",
        "ConnectionType=initiator",
        f"FixSecureSuite={suite}",
        "FixSecurePeerPublicKeyFile=keys/venue.pub",
    ]
    for index in range(1, sessions + 1):
        name = comp_id(index).decode()
        write_keypair(name.lower(), suite, keys)
        venue += [
            "[SESSION]",
            "BeginString=FIX.4.4",
            "SenderCompID=VENUE",
            f"TargetCompID={name}",
            f"FixSecurePeerPublicKeyFile=keys/{name.lower()}.pub",
        ]
        banks += [
            "[SESSION]",
            "BeginString=FIX.4.4",
            f"SenderCompID={name}",
            "TargetCompID=VENUE",
            f"FixSecurePrivateKeyFile=keys/{name.lower()}.key",
        ]
    venue_cfg, banks_cfg = workdir / "venue.cfg", workdir / "banks.cfg"
    venue_cfg.write_text("\n".join(venue) + "\n")
    banks_cfg.write_text("\n".join(banks) + "\n")
    return venue_cfg, banks_cfg


@dataclass
class Engine:
    """The acceptor engine behind the proxy: Logon reply, then one ack per message."""

    received: dict[bytes, list[bytes]] = field(default_factory=dict)
    logons: int = 0
    errors: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def close(self, timeout: float) -> None:
        """Abort every connection still open and wait (bounded) for the handlers to end."""
        for writer in self.writers:
            writer.transport.abort()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        framer = Framer()
        sender = b""
        try:
            while data := await reader.read(65536):
                framer.feed(data)
                replies = []
                while (message := framer.next_message()) is not None:
                    fields = dict(iter_fields(message))
                    if fields[35] == b"A":
                        sender = fields[49]
                        self.logons += 1
                        self.received.setdefault(sender, [])
                        replies.append(logon(b"VENUE", sender))
                    else:
                        self.received[sender].append(message)
                        replies.append(ack(sender, int(fields[34]), fields[11]))
                writer.write(b"".join(replies))
                await writer.drain()
        except (ConnectionError, KeyError, ValueError) as exc:
            self.errors.append(f"{sender!r}: {exc!r}")
        finally:
            writer.close()
            self.writers.discard(writer)
            self.tasks.discard(task)


@dataclass
class Initiator:
    config: SessionConfig
    conn: FixConnection | None = None
    logged_on_at: float = 0.0
    sent: list[bytes] = field(default_factory=list)
    acks_ok: int = 0
    error: str = ""

    @property
    def sender(self) -> bytes:
        return self.config.session_id.sender_comp_id.encode()

    async def log_on(self, port: int, timeout: float) -> None:
        try:
            self.conn = await connect(
                self.config, LOOPBACK, port, handshake_timeout=timeout, connect_timeout=timeout
            )
            await self.conn.send(logon(self.sender, b"VENUE"))
            reply = await self.conn.receive()
            if b"\x0135=A\x01" not in reply:
                raise ConnectionError("the reply is not a Logon")
            self.logged_on_at = time.perf_counter()
        except Exception as exc:
            self.error = f"logon: {exc!r}"

    async def trade(self, messages: int) -> None:
        if self.conn is None or self.error:
            return
        try:
            self.sent = [order(self.sender, seq) for seq in range(2, messages + 2)]
            await self.conn.send_batch(self.sent)
            for seq, sent in enumerate(self.sent, start=2):
                expected = ack(self.sender, seq, dict(iter_fields(sent))[11])
                if await self.conn.receive() == expected:
                    self.acks_ok += 1
        except Exception as exc:
            self.error = f"traffic: {exc!r}"


@dataclass
class ScaleResult:
    sessions: int
    messages_per_session: int
    suite: str
    cpus: int
    fd_limit: int
    key_and_settings_s: float
    proxy_start_s: float
    logged_on: int
    storm_s: float
    logon_p50_ms: float
    logon_p99_ms: float
    traffic_s: float
    proxy_cpu_ms_per_logon: float
    proxy_cpu_us_per_message: float
    delivered: int
    delivered_byte_exact: int
    acks_byte_exact: int
    rss_before_kib: int
    rss_after_storm_kib: int
    rss_after_traffic_kib: int
    rss_peak_kib: int
    kib_per_idle_session: float
    kib_per_session_after_traffic: float
    proxy_fds_after_storm: int
    errors: list[str]

    @property
    def ok(self) -> bool:
        total = self.sessions * self.messages_per_session
        return (
            self.logged_on == self.sessions
            and self.delivered == self.delivered_byte_exact == self.acks_byte_exact == total
            and not self.errors
        )

    def table(self) -> str:
        total = self.sessions * self.messages_per_session
        return "\n".join(
            [
                f"fixsecure scale — one acceptor proxy, {self.sessions:,} sessions on one port, "
                f"{self.suite}, {self.cpus} CPUs (initiators and engine share them)",
                f"  setup: keys and settings {self.key_and_settings_s:.1f} s, proxy start (reads "
                f"{self.sessions:,} sessions) {self.proxy_start_s:.1f} s, fd limit {self.fd_limit}",
                f"  Logon storm: {self.logged_on:,}/{self.sessions:,} logged on in "
                f"{self.storm_s:.2f} s; per initiator p50 {self.logon_p50_ms:.0f} ms, "
                f"p99 {self.logon_p99_ms:.0f} ms; proxy CPU {self.proxy_cpu_ms_per_logon:.2f} ms "
                "per Logon",
                f"  traffic: {self.delivered:,}/{total:,} orders delivered "
                f"({self.delivered_byte_exact:,} byte-exact), {self.acks_byte_exact:,} "
                f"acknowledgements byte-exact, in {self.traffic_s:.2f} s; proxy CPU "
                f"{self.proxy_cpu_us_per_message:.0f} µs per message (either direction)",
                f"  proxy RSS: {self.rss_before_kib:,} KiB before, {self.rss_after_storm_kib:,} "
                f"after the storm, {self.rss_after_traffic_kib:,} after traffic "
                f"(peak {self.rss_peak_kib:,}); {self.kib_per_idle_session:.1f} KiB per idle "
                f"session, {self.kib_per_session_after_traffic:.1f} after traffic; "
                f"{self.proxy_fds_after_storm:,} fds open",
                *(f"  error: {e}" for e in self.errors[:20]),
                f"  result: {'OK' if self.ok else 'FAILED'}",
            ]
        )


async def bounded(work: Awaitable[T], timeout: float, what: str) -> T:
    try:
        return await asyncio.wait_for(work, timeout)
    except TimeoutError:
        raise SystemExit(f"{what} did not finish within {timeout:.0f} s") from None


def percentile_ms(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, max(int(fraction * len(ordered) + 0.5) - 1, 0))]


async def run(args: argparse.Namespace, workdir: Path, fd_limit: int) -> ScaleResult:
    engine = Engine()
    server = await asyncio.start_server(engine.serve, LOOPBACK, 0, backlog=4096)
    engine_port = server.sockets[0].getsockname()[1]
    (network_port,) = free_ports(1)
    started = time.perf_counter()
    venue_cfg, banks_cfg = write_settings(
        workdir,
        args.sessions,
        args.suite,
        network_port=network_port,
        engine_port=engine_port,
        handshake_timeout=args.timeout,
    )
    configs = [session_config(s) for s in load_settings(banks_cfg).sessions]
    setup_s = time.perf_counter() - started
    proxy = ManagedProcess(
        "proxy",
        [sys.executable, "-m", "fixsecure", "proxy", "-c", str(venue_cfg), "--log-level", "INFO"],
        workdir,
        {"PYTHONUNBUFFERED": "1"},
    )
    try:
        started = time.perf_counter()
        await bounded(proxy.wait_for_output("fixsecure proxy ready", 300), 310, "proxy start")
        proxy_start_s = time.perf_counter() - started
        await asyncio.sleep(0.5)
        before = proc_status(proxy.pid)

        initiators = [Initiator(config) for config in configs]
        cpu_before = proxy.cpu_seconds()
        storm_start = time.perf_counter()
        await bounded(
            asyncio.gather(*(i.log_on(network_port, args.timeout) for i in initiators)),
            args.timeout + 10,
            "the Logon storm",
        )
        logged = [i for i in initiators if not i.error]
        storm_s = max((i.logged_on_at for i in logged), default=storm_start) - storm_start
        cpu_storm = proxy.cpu_seconds() - cpu_before
        await asyncio.sleep(0.5)
        after_storm = proc_status(proxy.pid)
        cpu_before = proxy.cpu_seconds()

        traffic_start = time.perf_counter()
        await bounded(
            asyncio.gather(*(i.trade(args.messages) for i in logged)),
            args.timeout + 10,
            "the traffic phase",
        )
        traffic_s = time.perf_counter() - traffic_start
        cpu_traffic = proxy.cpu_seconds() - cpu_before
        after_traffic = proc_status(proxy.pid)
        delivered = sum(len(v) for v in engine.received.values())
        exact = sum(
            len(i.sent) for i in logged if engine.received.get(i.sender, []) == i.sent and i.sent
        )
        for initiator in initiators:
            if initiator.conn is not None:
                await initiator.conn.close()
    finally:
        server.close()
        await asyncio.to_thread(proxy.stop, 15)
        await engine.close(5)
        await server.wait_closed()
    sessions = args.sessions
    return ScaleResult(
        sessions=sessions,
        messages_per_session=args.messages,
        suite=args.suite,
        cpus=os.cpu_count() or 1,
        fd_limit=fd_limit,
        key_and_settings_s=round(setup_s, 2),
        proxy_start_s=round(proxy_start_s, 2),
        logged_on=len(logged),
        storm_s=round(storm_s, 3),
        logon_p50_ms=round(percentile_ms([i.logged_on_at - storm_start for i in logged], 0.5), 1),
        logon_p99_ms=round(percentile_ms([i.logged_on_at - storm_start for i in logged], 0.99), 1),
        traffic_s=round(traffic_s, 3),
        proxy_cpu_ms_per_logon=round(cpu_storm * 1000 / max(len(logged), 1), 2),
        proxy_cpu_us_per_message=round(
            cpu_traffic * 1e6 / max(2 * sessions * args.messages, 1), 1
        ),
        delivered=delivered,
        delivered_byte_exact=exact,
        acks_byte_exact=sum(i.acks_ok for i in initiators),
        rss_before_kib=before["VmRSS"],
        rss_after_storm_kib=after_storm["VmRSS"],
        rss_after_traffic_kib=after_traffic["VmRSS"],
        rss_peak_kib=after_traffic["VmHWM"],
        kib_per_idle_session=round((after_storm["VmRSS"] - before["VmRSS"]) / sessions, 1),
        kib_per_session_after_traffic=round(
            (after_traffic["VmRSS"] - before["VmRSS"]) / sessions, 1
        ),
        proxy_fds_after_storm=after_storm["fds"],
        errors=[i.error for i in initiators if i.error] + engine.errors,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000, help="default: %(default)s")
    parser.add_argument("--messages", type=int, default=10, help="per session (%(default)s)")
    parser.add_argument("--suite", choices=SUITES, default=DEFAULT_SUITE, metavar="SUITE")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per phase (%(default)s)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temp dir)")
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= 9999 or args.messages < 1:
        parser.error("--sessions must be 1..9999 and --messages positive")
    fd_limit, _ = raise_fd_limit(4 * args.sessions + 256)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run(args, workdir, fd_limit))
    if args.json:
        print(json.dumps({**asdict(result), "ok": result.ok}, indent=2))
    else:
        print(result.table())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
