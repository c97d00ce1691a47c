"""Keyless inspection of captured wire bytes: what anyone on the path can see and check.

fixsecure leaves the standard header in clear on purpose (``specs/fixsecure-v1.md`` §13), so a
capture shows who talks to whom, which message types flow, their sizes, and whether the layout of
§4–§8 holds. This module turns a capture into one :class:`MessageReport` per message plus a
:class:`Summary`, without keys and without decrypting anything. It is for operators and incident
responders: a plaintext message in a session already seen encrypted (the downgrade/injection
signal), a clear field smuggled next to SecureData, or a replayed ciphertext all show up here
without access to either endpoint.

Input is either a **raw stream** (wire messages back to back, as a proxy or tcpdump would write
them) or a **line log** (one message per line, after any prefix such as QuickFIX FileLog's
``YYYYMMDD-HH:MM:SS.sss : ``, with SOH written as SOH, ``|`` or ``^A``). :func:`inspect_capture`
picks the format itself: raw if the first complete-looking trailer ``<SOH>10=nnn<SOH>`` is followed
directly by the next ``8=`` (or ends input that starts with ``8=``), lines otherwise.

Framing errors. A line log continues with the next line. In a raw stream a message whose only
fault is its CheckSum still has a trustworthy end (BodyLength led exactly to ``10=nnn<SOH>``), so
it is reported with ``bad-checksum`` and inspection continues right after it. Any other framing
error leaves the boundary unknown: the bytes up to the next point where a message frames again
(an ``8=`` whose framing holds) become one ``unframed`` report, and inspection resumes there.
An endpoint would have closed the connection at the first error (§10); the tool keeps going
because what follows (another connection in the same capture, or what the attacker sent next)
is exactly what an investigation needs to see.

Kinds: ``handshake-1`` (a Logon carrying 25800/25801 and SecureData), ``handshake-2`` (the first
protected message of the acceptor after a handshake-1 of the same CompID pair; the direction comes
from SenderCompID/TargetCompID, and without them such a message is ``protected``), ``protected``,
``plaintext``, and ``unframed`` (bytes that do not frame).

Anomaly codes (:attr:`Finding.code`)::

    bad-framing                    not a FIX message start (§2); resynchronised after it
    bad-bodylength                 BodyLength(9) does not lead to CheckSum(10) (§2)
    bad-checksum                   CheckSum(10) wrong or not three digits (§2)
    truncated                      input ends inside a message
    malformed-message              third field not MsgType(35), or broken field structure
    non-header-field-before-securedata  a field outside the clear header precedes 90 (§8.1);
                                   98/25800/25801 are allowed in a Logon
    clear-field-after-securedata   a field between SecureData(91) and CheckSum(10) (§8.1)
    securedata-layout              90 not immediately followed by 91, or one of them missing
    securedatalen-mismatch         SecureDataLen(90) not canonical or not the length of 91 (§8.2)
    bad-base64                     91 is not strict canonical base64 (§8.2)
    short-securedata               ciphertext shorter than its key and tag alone
    replayed-securedata            the same SecureData seen earlier in the capture (§7, §8.3)
    plaintext-after-handshake      plaintext in a session already seen encrypted (§6.1, §8.1)
    unknown-protocol-label         handshake-1 25800 missing or not ``fixsecure/1`` (§6 step 5)
    unknown-suite                  handshake-1 25801 missing or not a v1 suite (§2.1, §6 step 5)
    handshake-layout               handshake-1 not ``98=0|25800=…|25801=…|`` after H (§6 step 3)
    bad-sendingtime                handshake-1 SendingTime(52) missing or invalid (§6 step 6)

JSON Lines (:func:`render_json`): one object per message, then one summary object. Bytes are
decoded as latin-1 so every value round-trips exactly. Message objects have the keys
``record`` (``"message"``), ``index`` (1-based), ``line`` (line number in a line log, else null),
``offset`` (byte offset of the message in a raw stream, of its line in a line log), ``size``
(bytes), ``kind``, ``msg_type``, ``msg_type_name``, ``sender``, ``target`` (strings or null),
``fields`` (list of ``{"tag": int, "name": str|null, "value": str|null}`` in wire order,
SecureData in full; a password field has ``"value": null`` and ``"masked_bytes": int``),
``framing_ok`` (bool), ``securedata_chars``, ``ciphertext_len``, ``body_len`` (int or null;
body_len is the implied plaintext body: ciphertext − 16 for transport, minus the ephemeral key
for handshake-1, minus the ephemeral key and the authenticated header copy for handshake-2),
``base64_ok`` (bool or null), ``suite`` (string or null) and ``anomalies`` (list of
``{"code": str, "text": str}``). The summary object has ``record`` (``"summary"``), ``format``
(``"raw"`` or ``"lines"``), ``messages``, ``kinds`` (kind → count, every kind present),
``anomalies`` (total), ``anomaly_codes`` (code → count), ``compid_pairs`` (list of
``{"sender", "target", "messages"}``), ``lines_skipped`` and ``exit_status`` (0 or 1).

The text format (:func:`render_text`) never prints SecureData in full (length and the first 16
base64 characters). Both formats mask password fields (554, 925, 1402, 1404) of plaintext
messages: the input may be an engine's own log, not only wire bytes; everything else in the JSON
is a lossless dump of what an on-path observer already has.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from fixsecure import wire
from fixsecure.errors import FramingError
from fixsecure.framing import MESSAGE_PREFIX, SOH, checksum, frame_one, iter_fields
from fixsecure.noise import parse_protocol_name
from fixsecure.suites import SUITES

__all__ = [
    "FIELD_NAMES",
    "KINDS",
    "MSG_TYPE_NAMES",
    "Finding",
    "InputFormat",
    "Inspection",
    "Kind",
    "MessageReport",
    "Summary",
    "inspect_capture",
    "render_json",
    "render_text",
]

Kind = Literal["handshake-1", "handshake-2", "protected", "plaintext", "unframed"]
KINDS: Final[tuple[Kind, ...]] = (
    "handshake-1",
    "handshake-2",
    "protected",
    "plaintext",
    "unframed",
)
InputFormat = Literal["raw", "lines"]

#: FIX field names: the whole standard header and trailer, fixsecure's tags, the session-level
#: (admin) fields and the common application fields.
FIELD_NAMES: Final[dict[int, str]] = {
    1: "Account",
    6: "AvgPx",
    7: "BeginSeqNo",
    8: "BeginString",
    9: "BodyLength",
    10: "CheckSum",
    11: "ClOrdID",
    14: "CumQty",
    15: "Currency",
    16: "EndSeqNo",
    17: "ExecID",
    18: "ExecInst",
    21: "HandlInst",
    31: "LastPx",
    32: "LastQty",
    34: "MsgSeqNum",
    35: "MsgType",
    36: "NewSeqNo",
    37: "OrderID",
    38: "OrderQty",
    39: "OrdStatus",
    40: "OrdType",
    41: "OrigClOrdID",
    43: "PossDupFlag",
    44: "Price",
    45: "RefSeqNum",
    48: "SecurityID",
    49: "SenderCompID",
    50: "SenderSubID",
    52: "SendingTime",
    54: "Side",
    55: "Symbol",
    56: "TargetCompID",
    57: "TargetSubID",
    58: "Text",
    59: "TimeInForce",
    60: "TransactTime",
    64: "SettlDate",
    89: "Signature",
    90: "SecureDataLen",
    91: "SecureData",
    93: "SignatureLength",
    95: "RawDataLength",
    96: "RawData",
    97: "PossResend",
    98: "EncryptMethod",
    99: "StopPx",
    102: "CxlRejReason",
    108: "HeartBtInt",
    112: "TestReqID",
    115: "OnBehalfOfCompID",
    116: "OnBehalfOfSubID",
    117: "QuoteID",
    122: "OrigSendingTime",
    123: "GapFillFlag",
    128: "DeliverToCompID",
    129: "DeliverToSubID",
    131: "QuoteReqID",
    141: "ResetSeqNumFlag",
    142: "SenderLocationID",
    143: "TargetLocationID",
    144: "OnBehalfOfLocationID",
    145: "DeliverToLocationID",
    146: "NoRelatedSym",
    150: "ExecType",
    151: "LeavesQty",
    167: "SecurityType",
    207: "SecurityExchange",
    212: "XmlDataLen",
    213: "XmlData",
    262: "MDReqID",
    263: "SubscriptionRequestType",
    264: "MarketDepth",
    267: "NoMDEntryTypes",
    268: "NoMDEntries",
    269: "MDEntryType",
    270: "MDEntryPx",
    271: "MDEntrySize",
    279: "MDUpdateAction",
    347: "MessageEncoding",
    369: "LastMsgSeqNumProcessed",
    370: "OnBehalfOfSendingTime",
    371: "RefTagID",
    372: "RefMsgType",
    373: "SessionRejectReason",
    379: "BusinessRejectRefID",
    380: "BusinessRejectReason",
    383: "MaxMessageSize",
    434: "CxlRejResponseTo",
    464: "TestMessageIndicator",
    553: "Username",
    554: "Password",
    568: "TradeRequestID",
    571: "TradeReportID",
    627: "NoHops",
    628: "HopCompID",
    629: "HopSendingTime",
    630: "HopRefID",
    789: "NextExpectedMsgSeqNum",
    925: "NewPassword",
    1128: "ApplVerID",
    1129: "CstmApplVerID",
    1137: "DefaultApplVerID",
    1156: "ApplExtID",
    1400: "EncryptedPasswordMethod",
    1401: "EncryptedPasswordLen",
    1402: "EncryptedPassword",
    1403: "EncryptedNewPasswordLen",
    1404: "EncryptedNewPassword",
    1409: "SessionStatus",
    wire.TAG_PROTOCOL: "FixSecureProtocol",
    wire.TAG_SUITE: "FixSecureSuite",
}

#: MsgType(35) names: every session-level (admin) type and the common application types.
MSG_TYPE_NAMES: Final[dict[bytes, str]] = {
    b"0": "Heartbeat",
    b"1": "TestRequest",
    b"2": "ResendRequest",
    b"3": "Reject",
    b"4": "SequenceReset",
    b"5": "Logout",
    b"A": "Logon",
    b"n": "XMLnonFIX",
    b"6": "IOI",
    b"7": "Advertisement",
    b"8": "ExecutionReport",
    b"9": "OrderCancelReject",
    b"B": "News",
    b"C": "Email",
    b"D": "NewOrderSingle",
    b"E": "NewOrderList",
    b"F": "OrderCancelRequest",
    b"G": "OrderCancelReplaceRequest",
    b"H": "OrderStatusRequest",
    b"J": "AllocationInstruction",
    b"P": "AllocationInstructionAck",
    b"Q": "DontKnowTrade",
    b"R": "QuoteRequest",
    b"S": "Quote",
    b"V": "MarketDataRequest",
    b"W": "MarketDataSnapshotFullRefresh",
    b"X": "MarketDataIncrementalRefresh",
    b"Y": "MarketDataRequestReject",
    b"Z": "QuoteCancel",
    b"b": "MassQuoteAcknowledgement",
    b"c": "SecurityDefinitionRequest",
    b"d": "SecurityDefinition",
    b"e": "SecurityStatusRequest",
    b"f": "SecurityStatus",
    b"g": "TradingSessionStatusRequest",
    b"h": "TradingSessionStatus",
    b"i": "MassQuote",
    b"j": "BusinessMessageReject",
    b"q": "OrderMassCancelRequest",
    b"r": "OrderMassCancelReport",
    b"x": "SecurityListRequest",
    b"y": "SecurityList",
    b"AD": "TradeCaptureReportRequest",
    b"AE": "TradeCaptureReport",
    b"AF": "OrderMassStatusRequest",
    b"AI": "QuoteStatusReport",
    b"AR": "TradeCaptureReportAck",
    b"AS": "AllocationReport",
    b"BE": "UserRequest",
    b"BF": "UserResponse",
}

_TAG_LEN: Final = 16  # AEAD tag of every v1 suite (AES-GCM and ChaCha20-Poly1305)
_NO_LIMIT: Final = sys.maxsize  # a capture is inspected whole; the endpoint's size limit is local
_HANDSHAKE_TAGS: Final = frozenset({98, wire.TAG_PROTOCOL, wire.TAG_SUITE})
_PASSWORD_TAGS: Final = frozenset({554, 925, 1402, 1404})
_MAX_LENIENT_FIELDS: Final = 1000  # best-effort view of bytes that do not parse strictly
_MAX_TAG_DIGITS: Final = 10
_TEXT_VALUE_LIMIT: Final = 80
_SECUREDATA_PREVIEW: Final = 16

_TRAILER: Final = re.compile(rb"\x0110=[0-9]{3}\x01")
# Possible message starts, overlapping ones included (a lookahead): the prefix in group 1,
# BodyLength in group 2. Only a pre-filter for _resync; frame_one has the last word.
_CANDIDATE: Final = re.compile(rb"(?=(%b))" % MESSAGE_PREFIX.pattern)
# Where a logged message starts: the first "8=" not glued to a tag or value before it.
_MESSAGE_START: Final = re.compile(rb"(?<![0-9A-Za-z=])8=")


@dataclass(frozen=True)
class Finding:
    """One anomaly: a stable short ``code`` (see the module docstring) and a human ``text``."""

    code: str
    text: str


@dataclass(frozen=True)
class MessageReport:
    """Everything a keyless observer learns from one message (or one run of unframed bytes)."""

    index: int
    offset: int
    line: int | None
    size: int
    kind: Kind
    msg_type: bytes | None
    sender: bytes | None
    target: bytes | None
    fields: tuple[tuple[int, bytes], ...]
    framing_ok: bool
    securedata_chars: int | None = None
    base64_ok: bool | None = None
    ciphertext_len: int | None = None
    body_len: int | None = None
    suite: str | None = None
    anomalies: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class Summary:
    """Counts over a whole capture."""

    input_format: InputFormat
    messages: int
    kinds: tuple[tuple[Kind, int], ...]
    anomalies: int
    anomaly_codes: tuple[tuple[str, int], ...]
    compid_pairs: tuple[tuple[bytes, bytes, int], ...]
    lines_skipped: int

    @property
    def exit_status(self) -> int:
        """0 for a capture without anomalies, 1 otherwise (the CLI uses 2 for unusable input)."""
        return 1 if self.anomalies else 0


@dataclass(frozen=True)
class Inspection:
    reports: tuple[MessageReport, ...]
    summary: Summary


# ------------------------------------------------------------------------------------------
# Finding messages in the input


@dataclass(frozen=True)
class _Chunk:
    """Bytes from a stream: a message whose end is known (``framed``), or unframeable bytes."""

    offset: int
    data: bytes
    framed: bool
    framing: Finding | None


def _detect_format(data: bytes) -> InputFormat:
    """Raw if SOH-framed messages sit back to back; a line log otherwise (module docstring)."""
    if SOH not in data:
        return "lines"
    match = _TRAILER.search(data)
    if match is None:
        return "raw" if data.startswith(b"8=") else "lines"
    follows = data[match.end() : match.end() + 2]
    if follows == b"8=" or (not follows and data.startswith(b"8=")):
        return "raw"
    return "lines"


def _checksum_only_end(data: bytes, start: int, error: FramingError) -> int | None:
    """The end of the message at ``start`` if its CheckSum is the only thing wrong, else None.

    Decided by re-framing the same bytes with the correct CheckSum, so the boundary is one the
    framer itself accepts, not a guess.
    """
    trailer = error.offset
    if trailer is None or trailer <= start or data[trailer : trailer + 3] != b"10=":
        return None
    end = trailer + 7
    if end > len(data) or data[end - 1] != 1:
        return None
    fixed = data[start:trailer] + b"10=%03d\x01" % checksum(data[start:trailer])
    try:
        return end if frame_one(fixed, 0, _NO_LIMIT) == len(fixed) else None
    except FramingError:
        return None


def _resync(data: bytes, after: int) -> int:
    """The first message start after ``after`` where a message frames (or may, if the input
    ends first); ``len(data)`` if there is none.

    :func:`frame_one` decides; its checks (BeginString, canonical BodyLength, ``10=`` exactly
    where BodyLength says, matching CheckSum) make a false start inside base64 or garbage
    vanishingly unlikely. It sums the claimed message before looking for ``10=``, so candidates
    whose BodyLength does not even land on ``<SOH>10=`` are dropped first: a run of fake starts
    would otherwise cost time quadratic in the input.
    """
    for match in _CANDIDATE.finditer(data, after + 1):
        trailer = match.end(1) + int(match[2])
        if trailer + 3 <= len(data) and data[trailer - 1 : trailer + 3] != b"\x0110=":
            continue
        try:
            frame_one(data, match.start(1), _NO_LIMIT)
        except FramingError:
            continue
        return match.start(1)
    return len(data)


def _scan(data: bytes) -> Iterator[_Chunk]:
    """Split a stream into messages and unframeable runs, resynchronising after errors."""
    stop = len(data.rstrip())  # trailing whitespace (a final newline) is not a message
    pos = 0
    while pos < stop:
        try:
            end = frame_one(data, pos, _NO_LIMIT)
        except FramingError as exc:
            known = _checksum_only_end(data, pos, exc)
            if known is not None:
                yield _Chunk(pos, data[pos:known], True, Finding("bad-checksum", str(exc)))
                pos = known
                continue
            code = "bad-bodylength" if "BodyLength(9)" in str(exc) else "bad-framing"
            resume = _resync(data, pos)
            yield _Chunk(pos, data[pos:resume], False, Finding(code, _skipped(exc, resume, stop)))
            pos = resume
            continue
        if end is None:
            resume = _resync(data, pos)
            if resume < stop:
                finding = Finding(
                    "bad-bodylength",
                    "BodyLength(9) runs past the next message; " + _skipped(None, resume, stop),
                )
            else:
                finding = Finding(
                    "truncated", f"the input ends {stop - pos} bytes into this message"
                )
            yield _Chunk(pos, data[pos:resume], False, finding)
            pos = resume
            continue
        yield _Chunk(pos, data[pos:end], True, None)
        pos = end


def _skipped(error: FramingError | None, resume: int, stop: int) -> str:
    head = f"{error}; " if error is not None else ""
    if resume < stop:
        return f"{head}resynchronised at byte {resume}"
    return f"{head}nothing after it frames"


def _normalise(text: bytes) -> bytes:
    """A logged message with its separators turned back into SOH."""
    if SOH in text:
        return text
    if b"^A" in text:
        return text.replace(b"^A", SOH)
    return text.replace(b"|", SOH)


# ------------------------------------------------------------------------------------------
# Looking at one message


def _lenient_fields(message: bytes) -> list[tuple[int, bytes]]:
    """Fields split on SOH, for display when the strict parser refuses (data fields whose
    length is wrong, garbage): stops at the first piece that is not ``tag=value``."""
    fields: list[tuple[int, bytes]] = []
    for piece in message.split(SOH)[:_MAX_LENIENT_FIELDS]:
        tag, eq, value = piece.partition(b"=")
        if not eq or not tag.isdigit() or len(tag) > _MAX_TAG_DIGITS:
            break
        fields.append((int(tag), value))
    return fields


def _strict_fields(message: bytes) -> tuple[list[tuple[int, bytes]], str | None]:
    """The message's fields honouring data-field lengths, or the lenient view and why."""
    try:
        fields = list(iter_fields(message))
    except (FramingError, ValueError) as exc:  # ValueError: a number beyond int()'s digit limit
        return _lenient_fields(message), str(exc)
    if not fields or fields[-1][0] != 10:
        return _lenient_fields(message), "a data field runs into CheckSum(10)"
    return fields, None


def _first(fields: list[tuple[int, bytes]], tag: int) -> bytes | None:
    return next((value for t, value in fields if t == tag), None)


def _tags(fields: list[tuple[int, bytes]]) -> str:
    return ", ".join(f"{tag} ({FIELD_NAMES.get(tag, 'unknown')})" for tag, _ in fields)


def _canonical_number(value: bytes) -> bool:
    return value.isdigit() and (len(value) == 1 or value[0] != 0x30)


@dataclass
class _Pending:
    """A handshake-1 waiting for its answer from ``acceptor``."""

    acceptor: bytes
    suite: str | None


@dataclass
class _Context:
    """What earlier messages of the capture tell about later ones."""

    #: CompID pair (or None for "any") -> index of the first encrypted message seen for it.
    encrypted: dict[frozenset[bytes] | None, int] = field(default_factory=dict)
    pending: dict[frozenset[bytes], _Pending] = field(default_factory=dict)
    #: SHA-256 of each SecureData value -> index of the message that carried it.
    ciphertexts: dict[bytes, int] = field(default_factory=dict)


def _pair(sender: bytes | None, target: bytes | None) -> frozenset[bytes] | None:
    """The session's CompID pair, if the direction is knowable."""
    if sender is None or target is None or sender == target:
        return None
    return frozenset((sender, target))


def _unframed(chunk: _Chunk, index: int, line: int | None, offset: int) -> MessageReport:
    fields = _lenient_fields(chunk.data) if chunk.data.startswith(b"8=") else []
    assert chunk.framing is not None
    return MessageReport(
        index=index,
        offset=offset,
        line=line,
        size=len(chunk.data),
        kind="unframed",
        msg_type=_first(fields, 35),
        sender=_first(fields, 49),
        target=_first(fields, 56),
        fields=tuple(fields),
        framing_ok=False,
        anomalies=(chunk.framing,),
    )


@dataclass(frozen=True)
class _Sizes:
    """What SecureData reveals: its length, and the ciphertext and body lengths it implies."""

    chars: int | None = None
    base64_ok: bool | None = None
    ciphertext_len: int | None = None
    body_len: int | None = None


def _analyse(
    chunk: _Chunk, index: int, line: int | None, offset: int, ctx: _Context
) -> MessageReport:
    """Classify one framed message and check everything §4–§8 let a keyless party check."""
    message = chunk.data
    anomalies: list[Finding] = [chunk.framing] if chunk.framing is not None else []
    fields, parse_error = _strict_fields(message)
    try:
        parts = wire.split(message)
        header_count = len(wire.header_fields(message, parts))
        msg_type: bytes | None = parts[4]
    except wire.WireError as exc:
        anomalies.append(Finding("malformed-message", str(exc)))
        header_count = 0
        msg_type = _first(fields, 35)
    header = fields[2 : 2 + header_count]
    rest = fields[2 + header_count :]
    if rest and rest[-1][0] == 10:  # a lenient view may stop before CheckSum
        rest.pop()
    sender, target = _first(fields, 49), _first(fields, 56)
    pair = _pair(sender, target)
    tags = [tag for tag, _ in rest]
    kind: Kind
    suite: str | None = None
    sizes = _Sizes()
    if 90 not in tags and 91 not in tags:
        kind = "plaintext"
        first = ctx.encrypted.get(pair)
        if first is not None:
            name = MSG_TYPE_NAMES.get(msg_type or b"", "message of unknown type")
            anomalies.append(
                Finding(
                    "plaintext-after-handshake",
                    f"plaintext {name} in a session already seen encrypted (message #{first}): "
                    "an endpoint with keys never sends plaintext, so this was injected or is a "
                    "downgrade attempt",
                )
            )
    else:
        if msg_type == b"A" and (wire.TAG_PROTOCOL in tags or wire.TAG_SUITE in tags):
            kind = "handshake-1"
            suite = _check_handshake_1(header, rest, anomalies)
            if pair is not None and target is not None:
                ctx.pending[pair] = _Pending(target, suite)
        elif (
            pair is not None
            and (pending := ctx.pending.get(pair)) is not None
            and sender == pending.acceptor
        ):
            kind = "handshake-2"
            suite = pending.suite
            del ctx.pending[pair]
        else:
            kind = "protected"
        if pair is not None:
            ctx.encrypted.setdefault(pair, index)
        ctx.encrypted.setdefault(None, index)
        _check_layout(rest, msg_type == b"A", anomalies)
        sizes = _check_secure_data(
            kind, suite, fields, rest, anomalies=anomalies, ctx=ctx, index=index
        )
    if parse_error is not None and not any(a.code == "securedatalen-mismatch" for a in anomalies):
        anomalies.append(Finding("malformed-message", f"field structure: {parse_error}"))
    return MessageReport(
        index=index,
        offset=offset,
        line=line,
        size=len(message),
        kind=kind,
        msg_type=msg_type,
        sender=sender,
        target=target,
        fields=tuple(fields),
        framing_ok=chunk.framing is None,
        securedata_chars=sizes.chars,
        base64_ok=sizes.base64_ok,
        ciphertext_len=sizes.ciphertext_len,
        body_len=sizes.body_len,
        suite=suite,
        anomalies=tuple(anomalies),
    )


def _check_layout(rest: list[tuple[int, bytes]], is_logon: bool, anomalies: list[Finding]) -> None:
    """§8.1: after the clear header only ``90=N|91=…|`` (a Logon may add its 98/25800/25801)."""
    tags = [tag for tag, _ in rest]
    i90 = tags.index(90) if 90 in tags else None
    i91 = tags.index(91) if 91 in tags else None
    first = min(i for i in (i90, i91) if i is not None)
    allowed = _HANDSHAKE_TAGS if is_logon else frozenset()
    smuggled = [(tag, value) for tag, value in rest[:first] if tag not in allowed]
    if smuggled:
        anomalies.append(
            Finding(
                "non-header-field-before-securedata",
                f"before SecureDataLen(90), outside the clear header: {_tags(smuggled)}",
            )
        )
    if i90 is None:
        anomalies.append(Finding("securedata-layout", "SecureData(91) without SecureDataLen(90)"))
    elif i91 is None:
        anomalies.append(Finding("securedata-layout", "SecureDataLen(90) without SecureData(91)"))
    elif i91 != i90 + 1:
        anomalies.append(
            Finding("securedata-layout", "SecureData(91) does not immediately follow 90")
        )
    last = i91 if i91 is not None else first
    if rest[last + 1 :]:
        anomalies.append(
            Finding(
                "clear-field-after-securedata",
                f"in clear after SecureData(91): {_tags(rest[last + 1 :])}",
            )
        )


def _check_secure_data(
    kind: Kind,
    suite: str | None,
    fields: list[tuple[int, bytes]],
    rest: list[tuple[int, bytes]],
    *,
    anomalies: list[Finding],
    ctx: _Context,
    index: int,
) -> _Sizes:
    """§8.2 encodings, replays, and the sizes the ciphertext gives away."""
    text = _first(rest, 91)
    if text is None:
        return _Sizes()
    declared = _first(rest, 90)
    if declared is not None and not _canonical_number(declared):
        anomalies.append(
            Finding(
                "securedatalen-mismatch",
                f"SecureDataLen(90) {_show(declared)!r} is not a canonical number",
            )
        )
    elif declared is not None and int(declared) != len(text):
        anomalies.append(
            Finding(
                "securedatalen-mismatch",
                f"SecureDataLen(90) says {int(declared)}, SecureData(91) has {len(text)} bytes",
            )
        )
    seen = ctx.ciphertexts.setdefault(hashlib.sha256(text).digest(), index)
    if seen != index and text:
        anomalies.append(
            Finding(
                "replayed-securedata",
                f"the same SecureData(91) as message #{seen}: a replay, which the receiver "
                "refuses (fresh keys per connection, implicit nonces, Logon anti-replay)",
            )
        )
    try:
        ciphertext = wire.b64decode(text)
    except wire.WireError as exc:
        anomalies.append(Finding("bad-base64", str(exc)))
        return _Sizes(len(text), False)
    overhead = _TAG_LEN
    if kind in ("handshake-1", "handshake-2"):
        if suite is None:  # the ephemeral key's size depends on the suite
            return _Sizes(len(text), True, len(ciphertext))
        overhead += parse_protocol_name(suite).dh.publen
    if kind == "handshake-2":  # PAYLOAD2 starts with an authenticated copy of the clear fields
        copied = [(tag, value) for tag, value in fields if tag not in (9, 90, 91, 10)]
        overhead += len(wire.encode_field_list(copied))
    if len(ciphertext) < overhead:
        anomalies.append(
            Finding(
                "short-securedata",
                f"SecureData(91) decodes to {len(ciphertext)} bytes, less than the "
                f"{overhead} a {kind} message needs before any body",
            )
        )
        return _Sizes(len(text), True, len(ciphertext))
    return _Sizes(len(text), True, len(ciphertext), len(ciphertext) - overhead)


def _check_handshake_1(
    header: list[tuple[int, bytes]], rest: list[tuple[int, bytes]], anomalies: list[Finding]
) -> str | None:
    """§6 steps 3, 5 and 6 as far as they need no configuration; returns the suite if known."""
    label = _first(rest, wire.TAG_PROTOCOL)
    if label != wire.PROTOCOL_LABEL:
        what = "is missing" if label is None else f"is {_show(label)!r}"
        anomalies.append(
            Finding(
                "unknown-protocol-label",
                f"FixSecureProtocol(25800) {what}; version 1 is {wire.PROTOCOL_LABEL.decode()!r}",
            )
        )
    raw_suite = _first(rest, wire.TAG_SUITE)
    suite = raw_suite.decode("latin-1") if raw_suite is not None else None
    if suite not in SUITES:
        what = "is missing" if suite is None else f"{_show(raw_suite or b'')!r} is unknown"
        anomalies.append(
            Finding("unknown-suite", f"FixSecureSuite(25801) {what}; v1: {', '.join(SUITES)}")
        )
        suite = None
    if label is not None and raw_suite is not None:
        handshake = [(t, v) for t, v in rest if t in _HANDSHAKE_TAGS]
        layout = [t for t, _ in rest[: len(handshake)]]
        if layout != [98, wire.TAG_PROTOCOL, wire.TAG_SUITE] or handshake[0][1] != b"0":
            found = " ".join(f"{t}={_show(v)}" for t, v in handshake) or "none"
            anomalies.append(
                Finding(
                    "handshake-layout",
                    "message 1 must carry exactly 98=0, 25800, 25801 right after the clear "
                    f"header; found {found}",
                )
            )
    stamp = _first(header, 52)
    if stamp is None:
        anomalies.append(Finding("bad-sendingtime", "SendingTime(52) is not in the clear header"))
        return suite
    try:
        wire.sending_time_ns(stamp)
    except wire.WireError as exc:  # year 0 included: refused before calendar sees it
        anomalies.append(Finding("bad-sendingtime", str(exc)))
    return suite


# ------------------------------------------------------------------------------------------
# The whole capture


def inspect_capture(data: bytes) -> Inspection:
    """Inspect a raw stream or line log (format detected, see the module docstring).

    The whole capture is held in memory: the reports refer to each other (a handshake-2 to its
    handshake-1, a replay to its original), and captures worth reading by hand are small.
    """
    input_format = _detect_format(data)
    ctx = _Context()
    reports: list[MessageReport] = []
    skipped = 0

    def add(chunk: _Chunk, line: int | None, offset: int) -> None:
        index = len(reports) + 1
        if chunk.framed:
            reports.append(_analyse(chunk, index, line, offset, ctx))
        else:
            reports.append(_unframed(chunk, index, line, offset))

    if input_format == "raw":
        for chunk in _scan(data):
            add(chunk, None, chunk.offset)
    else:
        line_offset = 0
        for number, line in enumerate(data.split(b"\n"), 1):
            start = _MESSAGE_START.search(line)
            if start is None:
                skipped += bool(line.strip())
            else:
                for chunk in _scan(_normalise(line[start.start() :].rstrip())):
                    add(chunk, number, line_offset)
            line_offset += len(line) + 1
    return Inspection(tuple(reports), _summarise(input_format, reports, skipped))


def _summarise(
    input_format: InputFormat, reports: list[MessageReport], lines_skipped: int
) -> Summary:
    kinds = Counter(report.kind for report in reports)
    codes = Counter(finding.code for report in reports for finding in report.anomalies)
    pairs: Counter[tuple[bytes, bytes]] = Counter()
    for report in reports:
        if report.sender is not None and report.target is not None:
            pairs[report.sender, report.target] += 1
    return Summary(
        input_format=input_format,
        messages=len(reports),
        kinds=tuple((kind, kinds[kind]) for kind in KINDS),
        anomalies=sum(codes.values()),
        anomaly_codes=tuple(sorted(codes.items())),
        compid_pairs=tuple((sender, target, n) for (sender, target), n in sorted(pairs.items())),
        lines_skipped=lines_skipped,
    )


# ------------------------------------------------------------------------------------------
# Rendering


def _show(value: bytes, limit: int | None = None) -> str:
    """Printable ASCII for a terminal: other bytes as ``\\xNN``, long values cut."""
    cut = value if limit is None else value[:limit]
    text = "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in cut)
    return text if len(cut) == len(value) else f"{text}... ({len(value)} bytes)"


def _msg_type_label(msg_type: bytes | None) -> str:
    if msg_type is None:
        return "no MsgType"
    return f"35={_show(msg_type)} ({MSG_TYPE_NAMES.get(msg_type, 'unknown type')})"


def _text_value(tag: int, value: bytes) -> str:
    if tag == 91:
        preview = _show(value[:_SECUREDATA_PREVIEW])
        return f"{preview}... ({len(value)} chars)" if len(value) > _SECUREDATA_PREVIEW else preview
    if tag in _PASSWORD_TAGS:
        return f"***** ({len(value)} bytes, masked)"
    if tag == 35:
        return f"{_show(value)} ({MSG_TYPE_NAMES.get(value, 'unknown type')})"
    return _show(value, _TEXT_VALUE_LIMIT)


def _text_report(report: MessageReport) -> Iterator[str]:
    where = f"line {report.line}" if report.line is not None else f"byte {report.offset}"
    route = ""
    if report.sender is not None or report.target is not None:
        route = f"  {_show(report.sender or b'?')} -> {_show(report.target or b'?')}"
    yield (
        f"#{report.index}  {report.kind}  {_msg_type_label(report.msg_type)}{route}  "
        f"({where}, {report.size} bytes)"
    )
    for tag, value in report.fields:
        yield f"    {tag:>5}  {FIELD_NAMES.get(tag, ''):<22} {_text_value(tag, value)}"
    status = ["framing ok" if report.framing_ok else "framing FAILED"]
    if report.securedata_chars is not None:
        status.append(f"SecureData {report.securedata_chars} chars")
    if report.base64_ok is not None:
        status.append("base64 ok" if report.base64_ok else "base64 BAD")
    if report.ciphertext_len is not None:
        status.append(f"ciphertext {report.ciphertext_len} bytes")
    if report.body_len is not None:
        status.append(f"plaintext body {report.body_len} bytes")
    if report.suite is not None:
        status.append(report.suite)
    yield "    " + ", ".join(status)
    for finding in report.anomalies:
        yield f"    ! {finding.code}: {finding.text}"


def render_text(inspection: Inspection) -> Iterator[str]:
    """Human-readable lines: each message with named fields and checks, then the summary."""
    for report in inspection.reports:
        yield from _text_report(report)
        yield ""
    summary = inspection.summary
    kinds = ", ".join(f"{kind} {count}" for kind, count in summary.kinds)
    yield f"summary: {summary.messages} messages ({kinds})"
    if summary.anomalies:
        codes = ", ".join(f"{code} {count}" for code, count in summary.anomaly_codes)
        yield f"anomalies: {summary.anomalies} ({codes})"
    else:
        yield "anomalies: none"
    pairs = ", ".join(
        f"{_show(sender)} -> {_show(target)} ({count})"
        for sender, target, count in summary.compid_pairs
    )
    yield f"compids: {pairs or 'none seen'}"
    source = "raw stream" if summary.input_format == "raw" else "line log"
    if summary.lines_skipped:
        source += f", {summary.lines_skipped} lines without a FIX message skipped"
    yield f"input: {source}"


def _latin1(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def render_json(inspection: Inspection) -> Iterator[str]:
    """JSON Lines with the keys documented in the module docstring."""
    for report in inspection.reports:
        yield json.dumps(
            {
                "record": "message",
                "index": report.index,
                "line": report.line,
                "offset": report.offset,
                "size": report.size,
                "kind": report.kind,
                "msg_type": _latin1(report.msg_type),
                "msg_type_name": MSG_TYPE_NAMES.get(report.msg_type or b""),
                "sender": _latin1(report.sender),
                "target": _latin1(report.target),
                "fields": [
                    {
                        "tag": tag,
                        "name": FIELD_NAMES.get(tag),
                        # Passwords stay masked here too: a plaintext engine log may be the input.
                        "value": None if tag in _PASSWORD_TAGS else value.decode("latin-1"),
                        **({"masked_bytes": len(value)} if tag in _PASSWORD_TAGS else {}),
                    }
                    for tag, value in report.fields
                ],
                "framing_ok": report.framing_ok,
                "securedata_chars": report.securedata_chars,
                "ciphertext_len": report.ciphertext_len,
                "body_len": report.body_len,
                "base64_ok": report.base64_ok,
                "suite": report.suite,
                "anomalies": [{"code": f.code, "text": f.text} for f in report.anomalies],
            }
        )
    summary = inspection.summary
    yield json.dumps(
        {
            "record": "summary",
            "format": summary.input_format,
            "messages": summary.messages,
            "kinds": dict(summary.kinds),
            "anomalies": summary.anomalies,
            "anomaly_codes": dict(summary.anomaly_codes),
            "compid_pairs": [
                {"sender": _latin1(sender), "target": _latin1(target), "messages": count}
                for sender, target, count in summary.compid_pairs
            ],
            "lines_skipped": summary.lines_skipped,
            "exit_status": summary.exit_status,
        }
    )
