"""``fixsecure bench core``: the per-message cost of protection, against baselines in the same run.

Measured on one core, in one process, on one 200-byte NewOrderSingle:

- **encrypt path**: plaintext FIX bytes → wire bytes (framing and checksum of the plaintext
  validated, header split, AEAD, base64, new BodyLength and CheckSum);
- **decrypt path**: wire bytes → plaintext bytes (framing and checksum validated, layout checked,
  base64 decoded strictly, AEAD verified, original message rebuilt);
- **stream encrypt / decrypt**: the same work through ``Session.send_data`` and
  ``Session.receive_batch`` on 64 KiB reads, as the proxy does it: whole runs of messages per call
  (``specs/hot-path.md``), in C where the extension is built;
- **naive pipeline** baseline: simplefix parse → AES-GCM → simplefix encode, what a first attempt
  would do;
- **bare AEAD** baseline: one ``AESGCM.encrypt`` of the same body with the same AD;
- the **handshake** of each side.

Each figure is the best of several repeats (the usual way to read a microbenchmark: noise only ever
adds time). Ratios are computed from numbers taken in the same run, so they carry over between
machines better than absolute rates do.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import simplefix
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fixsecure import hotpath, wire
from fixsecure.asyncio import READ_SIZE
from fixsecure.memory import fix_message, order_fields, session_pair
from fixsecure.session import MessageReceived, MessagesReceived
from fixsecure.suites import DEFAULT_SUITE

__all__ = ["CoreResult", "new_order_single", "run_core", "sized"]


def sized(build: Callable[[bytes], bytes], size: int) -> bytes:
    """``build(padding)`` padded to exactly ``size`` bytes; ValueError where no padding can (too
    small, or BodyLength gaining a digit exactly there, as at 1023 bytes)."""
    base = len(build(b""))
    if size < base:
        raise ValueError(f"the message is at least {base} bytes")
    message = build(b"0" * (size - base))
    # BodyLength can gain a digit as the message grows; settle it.
    message = build(b"0" * (size - base - (len(message) - size)))
    if len(message) != size:
        raise ValueError(f"cannot build a {size}-byte message")
    return message


def new_order_single(seq: int = 2, size: int = 200) -> bytes:
    """A NewOrderSingle of exactly ``size`` bytes (padded in ClOrdID), QuickFIX header order."""
    stamp = b"20261125-16:00:00.000"
    return sized(
        lambda pad: fix_message(
            b"D", seq, b"BANK", b"VENUE", order_fields(b"ORD0" + pad, stamp), sending_time=stamp
        ),
        size,
    )


@dataclass(frozen=True)
class CoreResult:
    suite: str
    message_bytes: int
    wire_bytes: int
    messages: int
    encrypt_us: float
    decrypt_us: float
    stream_encrypt_us: float  # Session.send_data over 64 KiB reads, the proxy's path
    stream_decrypt_us: float  # Session.receive_batch over 64 KiB reads
    naive_us: float
    bare_aead_us: float
    handshake_initiator_us: float
    handshake_acceptor_us: float
    hot_path: str = hotpath.IMPLEMENTATION

    @property
    def encrypt_speedup_vs_naive(self) -> float:
        return self.naive_us / self.encrypt_us

    @property
    def decrypt_speedup_vs_naive(self) -> float:
        return self.naive_us / self.decrypt_us

    @property
    def encrypt_vs_bare_aead(self) -> float:
        return self.encrypt_us / self.bare_aead_us

    @property
    def decrypt_vs_bare_aead(self) -> float:
        return self.decrypt_us / self.bare_aead_us

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = asdict(self)
        for name in (
            "encrypt_speedup_vs_naive",
            "decrypt_speedup_vs_naive",
            "encrypt_vs_bare_aead",
            "decrypt_vs_bare_aead",
        ):
            data[name] = round(getattr(self, name), 2)
        return data

    def table(self) -> str:
        def row(name: str, us: float, note: str = "") -> str:
            return f"  {name:<22}{1e6 / us:>12,.0f} msg/s {us:>9.2f} µs/msg  {note}"

        return "\n".join(
            [
                f"fixsecure bench core — {self.suite}, {self.message_bytes}-byte NewOrderSingle "
                f"({self.wire_bytes} bytes on the wire), best of repeats, one core",
                row(
                    "encrypt path",
                    self.encrypt_us,
                    f"{self.encrypt_speedup_vs_naive:.1f}× naive, "
                    f"{self.encrypt_vs_bare_aead:.1f}× bare AEAD",
                ),
                row(
                    "decrypt path",
                    self.decrypt_us,
                    f"{self.decrypt_speedup_vs_naive:.1f}× naive, "
                    f"{self.decrypt_vs_bare_aead:.1f}× bare AEAD",
                ),
                row(
                    "stream encrypt",
                    self.stream_encrypt_us,
                    f"send_data, 64 KiB reads, hot path {self.hot_path}: "
                    f"{self.naive_us / self.stream_encrypt_us:.0f}× naive, "
                    f"{self.stream_encrypt_us / self.bare_aead_us:.1f}× bare AEAD",
                ),
                row(
                    "stream decrypt",
                    self.stream_decrypt_us,
                    f"receive_batch, 64 KiB reads: "
                    f"{self.naive_us / self.stream_decrypt_us:.0f}× naive, "
                    f"{self.stream_decrypt_us / self.bare_aead_us:.1f}× bare AEAD",
                ),
                row("naive pipeline", self.naive_us, "simplefix parse → AES-GCM → encode"),
                row("bare AEAD", self.bare_aead_us, "AESGCM.encrypt of the body, header as AD"),
                f"  handshake: initiator {self.handshake_initiator_us:.0f} µs, "
                f"acceptor {self.handshake_acceptor_us:.0f} µs "
                "(Logon + reply, all DH and checks included)",
            ]
        )


def _stream_run(
    suite: str, logon: bytes, reply: bytes, message: bytes, messages: int
) -> tuple[float, float]:
    """µs per message of send_data and of receive_batch over 64 KiB reads, the way the proxy
    moves a stream (reads end mid-message); the delivered stream is checked byte-exact."""
    pair = session_pair(suite)
    pair.acceptor.receive(pair.initiator.send(logon))
    pair.initiator.receive(pair.acceptor.send(reply))
    stream = message * messages
    reads = [stream[at : at + READ_SIZE] for at in range(0, len(stream), READ_SIZE)]
    t0 = time.perf_counter_ns()
    protected = [pair.initiator.send_data(read) for read in reads]
    t1 = time.perf_counter_ns()
    sent = b"".join(protected)
    arrived = [sent[at : at + READ_SIZE] for at in range(0, len(sent), READ_SIZE)]
    t2 = time.perf_counter_ns()
    events = [event for read in arrived for event in pair.acceptor.receive_batch(read)]
    t3 = time.perf_counter_ns()
    delivered = b"".join(
        e.data if isinstance(e, MessagesReceived) else e.message
        for e in events
        if isinstance(e, MessagesReceived | MessageReceived)
    )
    if delivered != stream:
        raise AssertionError("the stream did not arrive byte-exact")
    return (t1 - t0) / messages / 1000, (t3 - t2) / messages / 1000


def _best(run: Callable[[], None], count: int, repeats: int) -> float:
    """Best per-item time in µs of ``run`` (which processes ``count`` items)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        run()
        best = min(best, (time.perf_counter_ns() - start) / count / 1000)
    return best


def _naive_pipeline(message: bytes, aead: AESGCM) -> bytes:
    parser = simplefix.FixParser()
    parser.append_buffer(message)
    parsed = parser.get_message()
    header_tags = {b"8", b"9", b"35", b"34", b"49", b"52", b"56"}
    out = simplefix.FixMessage()
    body = simplefix.FixMessage()
    header = b""
    for tag, value in parsed.pairs:
        if tag in header_tags:
            if tag not in (b"8", b"9"):
                out.append_pair(tag, value, header=True)
            header += tag + b"=" + value + b"\x01"
        elif tag != b"10":
            body.append_pair(tag, value)
    plaintext = b"".join(tag + b"=" + value + b"\x01" for tag, value in body.pairs)
    sealed = aead.encrypt(bytes(12), plaintext, header)
    text = wire.b64encode(sealed)
    out.append_pair(8, parsed.get(8), header=True)
    out.append_pair(90, len(text))
    out.append_pair(91, text)
    encoded: bytes = out.encode()
    return encoded


def run_core(
    suite: str = DEFAULT_SUITE, *, messages: int = 50_000, repeats: int = 5, size: int = 200
) -> CoreResult:
    """Run the core benchmark; ``messages`` per repeat (bounded work, no timing thresholds)."""
    message = new_order_single(size=size)
    logon = fix_message(b"A", 1, b"BANK", b"VENUE", [(98, 0), (108, 30)])
    reply = fix_message(b"A", 1, b"VENUE", b"BANK", [(98, 0), (108, 30)])
    handshake_i = handshake_a = float("inf")
    encrypt_us = decrypt_us = stream_encrypt_us = stream_decrypt_us = float("inf")
    wire_bytes = 0
    for _ in range(repeats):
        pair = session_pair(suite)
        t0 = time.perf_counter_ns()
        first = pair.initiator.send(logon)
        t1 = time.perf_counter_ns()
        pair.acceptor.receive(first)
        second = pair.acceptor.send(reply)
        t2 = time.perf_counter_ns()
        pair.initiator.receive(second)
        t3 = time.perf_counter_ns()
        handshake_i = min(handshake_i, ((t1 - t0) + (t3 - t2)) / 1000)
        handshake_a = min(handshake_a, (t2 - t1) / 1000)

        send, receive = pair.initiator.send, pair.acceptor.receive
        t0 = time.perf_counter_ns()
        wires = [send(message) for _ in range(messages)]
        t1 = time.perf_counter_ns()
        for item in wires:
            receive(item)
        t2 = time.perf_counter_ns()
        encrypt_us = min(encrypt_us, (t1 - t0) / messages / 1000)
        decrypt_us = min(decrypt_us, (t2 - t1) / messages / 1000)
        wire_bytes = len(wires[0])
        stream = _stream_run(suite, logon, reply, message, messages)
        stream_encrypt_us = min(stream_encrypt_us, stream[0])
        stream_decrypt_us = min(stream_decrypt_us, stream[1])

    parts = wire.parse(message, len(message))
    ad = wire.associated_data(message, parts)
    body = message[parts[2] : parts[3]]
    aead = AESGCM(os.urandom(32))
    nonce = bytes(12)

    def bare_run() -> None:
        encrypt = aead.encrypt
        for _ in range(messages):
            encrypt(nonce, body, ad)

    naive_count = max(messages // 10, 1000)

    def naive_run() -> None:
        for _ in range(naive_count):
            _naive_pipeline(message, aead)

    return CoreResult(
        suite=suite,
        message_bytes=len(message),
        wire_bytes=wire_bytes,
        messages=messages,
        encrypt_us=round(encrypt_us, 3),
        decrypt_us=round(decrypt_us, 3),
        stream_encrypt_us=round(stream_encrypt_us, 3),
        stream_decrypt_us=round(stream_decrypt_us, 3),
        naive_us=round(_best(naive_run, naive_count, repeats), 3),
        bare_aead_us=round(_best(bare_run, messages, repeats), 3),
        handshake_initiator_us=round(handshake_i, 1),
        handshake_acceptor_us=round(handshake_a, 1),
    )


def print_core(result: CoreResult, *, as_json: bool) -> None:
    print(json.dumps(result.to_json(), indent=2) if as_json else result.table())
