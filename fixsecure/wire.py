"""The fixsecure v1 wire format: byte layouts and encodings, nothing stateful.

Everything here is a pure function of bytes (``specs/fixsecure-v1.md`` §3–§8): where the clear
header ends, the prologue and field-list encodings, the associated data, strict base64, and the
assembly of framed messages. :mod:`fixsecure.session` composes them with the Noise state.

Functions raise :class:`WireError` for bytes that break the layout; the session decides whether
that is the local engine's fault or the peer's.
"""

from __future__ import annotations

import binascii
import calendar
import re
from collections.abc import Iterable, Sequence
from typing import Final

from fixsecure.errors import FramingError
from fixsecure.framing import SOH, checksum, frame_one, iter_fields

__all__ = [
    "CLEAR_HEADER_TAGS",
    "IDENTITY_TAGS",
    "PROTOCOL_LABEL",
    "ROUTING_TAGS",
    "TAG_PROTOCOL",
    "TAG_SUITE",
    "Fields",
    "Parts",
    "WireError",
    "assemble",
    "associated_data",
    "b64decode",
    "b64encode",
    "clear_fields",
    "decode_field_list",
    "encode_field_list",
    "header_fields",
    "msg_type",
    "parse",
    "prologue",
    "protected",
    "rebuild",
    "repeated_tags",
    "rest_fields",
    "secure_data",
    "sending_time_ns",
    "split",
    "transport",
    "transport_at",
    "wire_limit",
]

PROTOCOL_LABEL: Final = b"fixsecure/1"
TAG_PROTOCOL: Final = 25800  # FixSecureProtocol, value "fixsecure/1"
TAG_SUITE: Final = 25801  # FixSecureSuite, value the Noise protocol name

#: Standard header fields that stay in clear (§4). Data fields (212/213, 90/91) are excluded:
#: wherever an engine writes them they are encrypted with the body.
CLEAR_HEADER_TAGS: Final = frozenset(
    {35, 49, 56, 34, 52, 115, 128, 50, 142, 57, 143, 116, 144, 129, 145, 43, 97, 122, 369, 347}
    | {370, 627, 628, 629, 630, 1128, 1129, 1156}
)

# The clear header is the longest run of such fields with non-empty values. Longer tags first so
# the alternation never stops at a prefix ("1128" before "11" would not matter, as "=" follows,
# but the order keeps the regex obviously right).
_TAG_ALTERNATION = b"|".join(
    str(t).encode() for t in sorted(CLEAR_HEADER_TAGS, key=lambda t: (-len(str(t)), t))
)
_HEADER_RUN: Final = rb"(?:(?:" + _TAG_ALTERNATION + rb")=[^\x01]+\x01)*"
# One C-level match finds BodyLength, MsgType and the end of the clear header of a framed message;
# for a transport message also SecureDataLen and where SecureData starts.
_HEAD_PATTERN: Final = (
    rb"8=[^\x01]{1,16}\x01(?P<length>9=[0-9]{1,10}\x01)(?P<header>35=(?P<type>[^\x01]+)\x01"
    + _HEADER_RUN
    + rb")"
)
_HEAD: Final = re.compile(_HEAD_PATTERN)
_TRANSPORT: Final = re.compile(_HEAD_PATTERN + rb"90=(?P<size>0|[1-9][0-9]{0,9})\x0191=")
_FIELD: Final = re.compile(rb"(\d+)=([^\x01]*)\x01")

Fields = Sequence[tuple[int, bytes]]


class WireError(ValueError):
    """Bytes that do not have the layout the protocol requires."""


Parts = tuple[int, int, int, int, bytes]
"""Offsets in one framed message, as a plain tuple because it is built for every message:
``(length_start, header_start, header_end, trailer, msg_type)``. ``msg[:length_start]`` is
``8=B|``, ``msg[header_start:header_end]`` the clear header H, ``msg[header_end:trailer]`` the
rest up to ``10=``, and ``msg_type`` the value of MsgType(35)."""


def split(message: bytes) -> Parts:
    """Locate BodyLength, the clear header and the trailer of a framed message."""
    match = _HEAD.match(message)
    trailer = len(message) - 7
    if match is None or match.end() > trailer:
        if message[message.find(b"\x01", message.find(b"\x01") + 1) + 1 :][:3] != b"35=":
            raise WireError("third field is not MsgType(35)")
        raise WireError("MsgType(35) is empty")
    _, (length_start, _), (header_start, header_end), (type_start, type_end) = match.regs
    return length_start, header_start, header_end, trailer, message[type_start:type_end]


def parse(message: bytes, max_message_size: int) -> Parts:
    """Validate one complete framed message (framing rules of §2, size limit) and split it.

    The fast path is one regex match and a checksum; anything unusual falls back to the framer
    and :func:`split` so the error says precisely what is wrong.
    """
    match = _HEAD.match(message)
    size = len(message)
    if match is not None and size <= max_message_size:
        _, (length_start, header_start), (_, header_end), (type_start, type_end) = match.regs
        trailer = size - 7
        digits = message[length_start + 2 : header_start - 1]
        if (
            (digits[0] != 0x30 or len(digits) == 1)
            and int(digits) == trailer - header_start
            and header_end <= trailer
            and message[trailer - 1 : trailer + 3] == b"\x0110="
            and message[trailer + 3 :] == b"%03d\x01" % checksum(message[:trailer])
        ):
            return length_start, header_start, header_end, trailer, message[type_start:type_end]
    end = frame_one(message, 0, max_message_size)
    if end is None:
        raise FramingError("incomplete FIX message")
    if end != size:
        raise FramingError("more than one FIX message", end)
    return split(message)


def msg_type(message: bytes) -> bytes:
    """MsgType(35) of a framed message whose third field it is, as in every message a session
    delivers (BeginString and BodyLength hold no SOH, so the first SOH "35=" is that field)."""
    start = message.index(b"\x0135=") + 4
    return message[start : message.index(SOH, start)]


def header_fields(message: bytes, parts: Parts) -> list[tuple[int, bytes]]:
    """The clear header as (tag, value) pairs, in wire order."""
    return [(int(tag), value) for tag, value in _FIELD.findall(message, parts[1], parts[2])]


def clear_fields(message: bytes, parts: Parts) -> list[tuple[int, bytes]]:
    """BeginString and the clear header as (tag, value) pairs: what §5 binds and copies."""
    return [(8, message[2 : parts[0] - 1]), *header_fields(message, parts)]


def repeated_tags(fields: Iterable[tuple[int, bytes]], tags: frozenset[int]) -> set[int]:
    """Which of ``tags`` occur more than once among ``fields``."""
    seen: set[int] = set()
    twice: set[int] = set()
    for tag, _ in fields:
        if tag in tags:
            (twice if tag in seen else seen).add(tag)
    return twice


#: The fields that say who a message is from and for, and which message it is: an identity must
#: not be ambiguous, so a Logon repeating one of them is refused (§6), and the encrypted Logon body
#: must not carry the routing ones (an engine would read them as the sender's identity).
IDENTITY_TAGS: Final = frozenset({8, 35, 34, 52, 49, 56, 50, 57, 142, 143, 115, 128, 116, 129})
ROUTING_TAGS: Final = frozenset({49, 56, 50, 57, 142, 143, 115, 128, 116, 129, 144, 145})


def rest_fields(message: bytes, parts: Parts) -> list[tuple[int, bytes]]:
    """The fields between the clear header and CheckSum, data fields honoured."""
    try:
        return list(iter_fields(message[parts[2] : parts[3]]))
    except FramingError as exc:
        raise WireError(f"malformed field after the clear header: {exc}") from None


def associated_data(message: bytes, parts: Parts) -> bytes:
    """AD = ``8=B|`` followed by the clear header bytes (§8.2)."""
    return message[: parts[0]] + message[parts[1] : parts[2]]


def encode_field_list(fields: Iterable[tuple[int, bytes]]) -> bytes:
    """``u32(n) || (u32(tag) || lp(value))*`` — the unambiguous encoding of §5."""
    items = list(fields)
    out = [len(items).to_bytes(4, "big")]
    for tag, value in items:
        out.append(tag.to_bytes(4, "big"))
        out.append(len(value).to_bytes(4, "big"))
        out.append(value)
    return b"".join(out)


def decode_field_list(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Inverse of :func:`encode_field_list`; returns the fields and the bytes after them."""
    if len(data) < 4:
        raise WireError("field list truncated")
    count = int.from_bytes(data[:4], "big")
    pos = 4
    fields: list[tuple[int, bytes]] = []
    for _ in range(count):
        if pos + 8 > len(data):
            raise WireError("field list truncated")
        tag = int.from_bytes(data[pos : pos + 4], "big")
        size = int.from_bytes(data[pos + 4 : pos + 8], "big")
        pos += 8
        if pos + size > len(data):
            raise WireError("field list truncated")
        fields.append((tag, data[pos : pos + size]))
        pos += size
    return fields, data[pos:]


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def prologue(suite: str, clear_fields: Iterable[tuple[int, bytes]]) -> bytes:
    """P = lp("fixsecure/1") || lp(suite) || field list of message 1's clear fields (§5.1)."""
    return _lp(PROTOCOL_LABEL) + _lp(suite.encode("ascii")) + encode_field_list(clear_fields)


def b64encode(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False)


def b64decode(text: bytes) -> bytes:
    """Strict, canonical base64: alphabet, padding, and zero padding bits (§8.2).

    Exactly one text encodes each byte string: whole 4-character quanta, ``=`` only as the one or
    two characters the length requires, and zero bits where padding leaves bits unused. binascii's
    strict mode alone accepts ``AAAA=`` and non-zero padding bits.
    """
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        raise WireError("SecureData(91) is not valid base64") from None
    if len(text) & 3:
        raise WireError("SecureData(91) is not canonical base64")
    if text[-1:] == b"=":  # a padded last quantum: it must be the one encoding of its bytes
        last = data[len(data) - len(data) % 3 :]
        if not last or binascii.b2a_base64(last, newline=False) != text[-4:]:
            raise WireError("SecureData(91) is not canonical base64")
    return data


def assemble(begin: bytes, parts: Iterable[bytes]) -> bytes:
    """A framed message from ``8=B|`` and the bytes between BodyLength and CheckSum."""
    body = b"".join(parts)
    head = b"%s9=%d\x01%s" % (begin, len(body), body)
    return b"%s10=%03d\x01" % (head, checksum(head))


def protected(begin: bytes, header: bytes, extra: bytes, sealed: bytes) -> bytes:
    """``8=B|9=L|`` H extra ``90=N|91=base64|10=CCC|`` — message 1, 2 and transport layouts."""
    text = binascii.b2a_base64(sealed, newline=False)
    size = b"%d" % len(text)
    length = len(header) + len(extra) + len(size) + len(text) + 8  # "90=" "|91=" "|"
    head = b"".join((begin, b"9=%d\x01" % length, header, extra, b"90=", size, b"\x0191=", text))
    return head + b"\x0110=%03d\x01" % ((checksum(head) + 1) & 0xFF)


def rebuild(message: bytes, parts: Parts, body: bytes) -> bytes:
    """The engine's original message: ``8=B|`` + recomputed 9 + H + body + recomputed 10."""
    header = message[parts[1] : parts[2]]
    head = b"".join((message[: parts[0]], b"9=%d\x01" % (len(header) + len(body)), header, body))
    return head + b"10=%03d\x01" % checksum(head)


def transport(message: bytes) -> tuple[Parts, bytes]:
    """Split a transport message (§8.1) and return its parts and decoded SecureData."""
    match = _TRANSPORT.match(message)
    trailer = len(message) - 7
    if match is not None:
        start = match.end()
        end = start + int(match.group("size"))
        if end + 1 == trailer and message[end] == 1:
            _, (length_start, header_start), (_, header_end), (type_start, type_end) = (
                match.regs[:4]
            )
            parts = (length_start, header_start, header_end, trailer, message[type_start:type_end])
            return parts, b64decode(message[start:end])
    parts = split(message)  # the slow path names exactly what is wrong
    return parts, secure_data(message, parts, parts[2])


def transport_at(
    buf: bytes, start: int, max_message_size: int
) -> tuple[int, Parts, bytes] | None:
    """The receive fast path: frame *and* split the transport message at ``buf[start]`` in one
    regex match, validating BodyLength, CheckSum and the §8.1 layout.

    Returns ``(end, parts, sealed)`` with ``parts`` relative to ``start``, or None whenever the
    bytes are anything but a complete, well-formed transport message (incomplete, oversized,
    malformed): the caller then takes the slow path (:class:`~fixsecure.framing.Framer` and
    :func:`transport`), which waits for more bytes or names the exact problem.
    """
    match = _TRANSPORT.match(buf, start)
    if match is None:
        return None
    _, (length_start, header_start), (_, header_end), (type_start, type_end), _ = match.regs
    digits = buf[length_start + 2 : header_start - 1]
    if digits[0] == 0x30:
        return None
    trailer = header_start + int(digits)
    end = trailer + 7
    sealed_start = match.end()
    sealed_end = sealed_start + int(match.group("size"))
    if (
        end - start > max_message_size
        or end > len(buf)
        or sealed_end + 1 != trailer
        or buf[sealed_end : sealed_end + 4] != b"\x0110="
        or buf[trailer + 3 : end] != b"%03d\x01" % checksum(buf[start:trailer])
    ):
        return None
    parts = (
        length_start - start,
        header_start - start,
        header_end - start,
        trailer - start,
        buf[type_start:type_end],
    )
    return end, parts, b64decode(buf[sealed_start:sealed_end])


def secure_data(message: bytes, parts: Parts, offset: int) -> bytes:
    """Check ``90=N|91=<N bytes>|`` sits exactly from ``offset`` to the trailer; return the
    decoded SecureData."""
    if message[offset : offset + 3] != b"90=":
        rest = message[offset - 1 : parts[3]]
        if b"\x0190=" not in rest and b"\x0191=" not in rest:
            raise WireError("a plaintext message where a protected one is required")
        raise WireError("a clear field that is not a header field precedes SecureDataLen(90)")
    trailer = parts[3]
    length_end = message.find(SOH, offset + 3, trailer)
    digits = message[offset + 3 : length_end]
    if length_end < 0 or not digits.isdigit() or (len(digits) > 1 and digits[0] == 0x30):
        raise WireError("SecureDataLen(90) is not a canonical number")
    start = length_end + 4
    end = start + int(digits)
    if message[length_end + 1 : start] != b"91=":
        raise WireError("SecureData(91) does not follow SecureDataLen(90)")
    if end + 1 != trailer or message[end] != 1:
        raise WireError("SecureData(91) does not end right before CheckSum(10)")
    return b64decode(message[start:end])


def wire_limit(max_message_size: int) -> int:
    """Largest wire message a receiver accepts for a plaintext limit ``M`` (§8.4).

    Message 2 is the largest protected form of a plaintext: its payload repeats the clear header
    as a field list (at most 2.25 bytes per header byte) before base64's 4/3 expansion, so no
    protected message of a plaintext of ``M`` bytes exceeds ``4 M + 1024``.
    """
    return 4 * max_message_size + 1024


_TIMESTAMP: Final = re.compile(
    rb"(\d{4})(\d{2})(\d{2})-(\d{2}):(\d{2}):(\d{2})(?:\.(\d{3}|\d{6}|\d{9}))?"
)


def sending_time_ns(value: bytes) -> int:
    """A FIX UTCTimestamp (``YYYYMMDD-HH:MM:SS[.sss|.ssssss|.sssssssss]``) as ns since the epoch."""
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise WireError(f"SendingTime {value[:32]!r} is not a FIX UTCTimestamp")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match.group(7) or b""
    if year < 1 or not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise WireError(f"SendingTime {value!r} has an invalid date")
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second
        raise WireError(f"SendingTime {value!r} has an invalid time of day")
    seconds = calendar.timegm((year, month, day, hour, minute, second))
    return seconds * 1_000_000_000 + int(fraction.ljust(9, b"0"))
