"""FIX framing: a byte stream in, complete validated messages out.

A message is ``8=<BeginString><SOH>9=<BodyLength><SOH>`` + BodyLength bytes + ``10=<nnn><SOH>``.
The framer trusts nothing: BeginString must come first and BodyLength second, BodyLength must be
canonical decimal (no sign, no leading zero) and the CheckSum three digits matching the sum of
every preceding byte modulo 256. A message larger than ``max_message_size`` is refused as soon as
its BodyLength is read, so a peer cannot make the framer buffer more than that.

Values are never split on SOH here: BodyLength alone delimits a message, so data fields containing
SOH pass through untouched. :func:`iter_fields` is the (slower) field-level view used by tools and
tests; it follows FIX's length-prefixed data fields.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import Final

from fixsecure.errors import FramingError

__all__ = [
    "DATA_FIELDS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MESSAGE_PREFIX",
    "SOH",
    "Framer",
    "checksum",
    "frame_one",
    "iter_fields",
]

SOH: Final = b"\x01"
DEFAULT_MAX_MESSAGE_SIZE: Final = 1 << 20

#: Length field -> the data field it announces. The data field must follow it immediately and
#: may contain any byte, SOH included.
DATA_FIELDS: Final[dict[int, int]] = {
    90: 91,  # SecureDataLen / SecureData
    93: 89,  # SignatureLength / Signature
    95: 96,  # RawDataLength / RawData
    212: 213,  # XmlDataLen / XmlData
    348: 349,  # EncodedIssuerLen / EncodedIssuer
    350: 351,  # EncodedSecurityDescLen / EncodedSecurityDesc
    352: 353,  # EncodedListExecInstLen / EncodedListExecInst
    354: 355,  # EncodedTextLen / EncodedText
    356: 357,  # EncodedSubjectLen / EncodedSubject
    358: 359,  # EncodedHeadlineLen / EncodedHeadline
    360: 361,  # EncodedAllocTextLen / EncodedAllocText
    362: 363,  # EncodedUnderlyingIssuerLen / EncodedUnderlyingIssuer
    364: 365,  # EncodedUnderlyingSecurityDescLen / EncodedUnderlyingSecurityDesc
    445: 446,  # EncodedListStatusTextLen / EncodedListStatusText
    618: 619,  # EncodedLegIssuerLen / EncodedLegIssuer
    621: 622,  # EncodedLegSecurityDescLen / EncodedLegSecurityDesc
    1184: 1185,  # SecurityXMLLen / SecurityXML
}

_MAX_BEGIN_STRING: Final = 16  # "FIXT.1.1" is 8; a little slack, then it is garbage
_MAX_LENGTH_DIGITS: Final = 10
_MAX_TAG_DIGITS: Final = 9
_TRAILER_LEN: Final = 7  # b"10=nnn\x01"
_MAX_PREFIX: Final = 2 + _MAX_BEGIN_STRING + 1 + 2 + _MAX_LENGTH_DIGITS + 1  # 8=…|9=…|
_CHUNK: Final = 256  # adler32's first sum is exact below 65521: 256 * 255 + 1 fits
_ASCII_CHUNK: Final = 515  # 515 * 127 + 1 fits as well


def checksum(data: bytes | bytearray) -> int:
    """Sum of all bytes modulo 256 (FIX CheckSum), computed in C.

    adler32's first sum is 1 + the byte sum modulo 65521, so it is exact for up to 256 arbitrary
    bytes, or 515 ASCII bytes (every wire message, being base64, and nearly every plaintext one).
    """
    size = len(data)
    chunk = _ASCII_CHUNK if data.isascii() else _CHUNK
    if size <= chunk:
        return ((zlib.adler32(data) & 0xFFFF) - 1) & 0xFF
    total = 0
    for start in range(0, size, chunk):
        total += (zlib.adler32(data[start : start + chunk]) & 0xFFFF) - 1
    return total & 0xFF


#: The usual case in one C call: BeginString, then canonical BodyLength (group 1). Where a
#: message may start, for anything that scans for one (the inspector's resync).
MESSAGE_PREFIX: Final = re.compile(rb"8=[^\x01]{1,%d}\x019=(0|[1-9][0-9]{0,%d})\x01" % (
    _MAX_BEGIN_STRING, _MAX_LENGTH_DIGITS - 1))


def _diagnose_prefix(buf: bytes | bytearray, start: int) -> None:
    """Slow path when :data:`MESSAGE_PREFIX` does not match: None if the bytes so far could
    still become a valid start (wait for more), else the precise :class:`FramingError`."""
    available = len(buf) - start
    prefix = b"8="[:available]
    if buf[start : start + len(prefix)] != prefix:
        raise FramingError("message does not start with BeginString(8)", start)
    soh = buf.find(SOH, start, start + 2 + _MAX_BEGIN_STRING + 1)
    if soh < 0:
        if available > 2 + _MAX_BEGIN_STRING:
            raise FramingError("BeginString(8) is not terminated", start)
        return
    if soh == start + 2:
        raise FramingError("BeginString(8) is empty", start)
    length_start = soh + 1
    prefix = b"9="[: len(buf) - length_start]
    if buf[length_start : length_start + len(prefix)] != prefix:
        raise FramingError("second field is not BodyLength(9)", length_start)
    length_end = buf.find(SOH, length_start + 2, length_start + 2 + _MAX_LENGTH_DIGITS + 1)
    if length_end < 0:
        digits = buf[length_start + 2 :]
        if len(digits) > _MAX_LENGTH_DIGITS or (digits and not digits.isdigit()):
            raise FramingError("BodyLength(9) is not a canonical decimal number", length_start)
        return
    raise FramingError("BodyLength(9) is not a canonical decimal number", length_start)


def frame_one(buf: bytes | bytearray, start: int, max_message_size: int) -> int | None:
    """Validate the message starting at ``buf[start]``; return its end, or None if incomplete.

    Raises :class:`FramingError` as soon as the available bytes cannot be the start of a valid
    message, before waiting for more of them.
    """
    match = MESSAGE_PREFIX.match(buf, start)
    if match is None:
        _diagnose_prefix(buf, start)
        return None
    trailer = match.end() + int(match.group(1))
    end = trailer + _TRAILER_LEN
    if end - start > max_message_size:
        raise FramingError(
            f"message of {end - start} bytes exceeds the limit of {max_message_size}", start
        )
    if len(buf) < end:
        return None
    if buf[trailer - 1 : trailer + 3] == b"\x0110=" and buf[trailer + 3 : end] == (
        b"%03d\x01" % checksum(buf[start:trailer])
    ):
        return end
    if buf[trailer : trailer + 3] != b"10=" or buf[end - 1] != 1:
        raise FramingError("BodyLength(9) does not end at CheckSum(10)", trailer)
    if buf[trailer - 1] != 1:
        raise FramingError("field before CheckSum(10) is not terminated", trailer - 1)
    if not buf[trailer + 3 : end - 1].isdigit():
        raise FramingError("CheckSum(10) is not three digits", trailer)
    raise FramingError("CheckSum(10) does not match", trailer)


class Framer:
    """Incremental framer: :meth:`feed` bytes, then take messages with :meth:`next_message`.

    Messages come out one at a time so that a malformed message never costs the valid ones before
    it. Errors are sticky: after a :class:`FramingError` the stream cannot be resynchronised
    safely, so every later call raises the same error.
    """

    __slots__ = ("_buf", "_consumed", "_error", "_pos", "max_message_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 32:
            raise ValueError("max_message_size is too small for any FIX message")
        self.max_message_size = max_message_size
        # Bytes as received while they are consumed without a partial message left over (the
        # common case: no copy at all); a bytearray only while a message spans several reads.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._consumed = 0  # stream offset of self._buf[0], so errors report stream positions
        self._error: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buf) - self._pos

    def needed(self, head: bytes | bytearray = b"") -> int | None:
        """How many more bytes complete the message being assembled, once its BodyLength is
        known: from the buffered bytes or, while those are too few, from them followed by
        ``head``, the start of what comes next. None before that, or when nothing is buffered."""
        buffered = self.buffered
        if self._error is not None or not buffered:
            return None
        if buffered < _MAX_PREFIX and head:  # too few bytes for BodyLength: look ahead
            match = MESSAGE_PREFIX.match(bytes(self._buf[self._pos :]) + head[:_MAX_PREFIX])
            start = 0
        else:
            match = MESSAGE_PREFIX.match(self._buf, self._pos)
            start = self._pos
        if match is None:
            return None
        return match.end() - start + int(match.group(1)) + _TRAILER_LEN - buffered

    def skip(self, count: int) -> None:
        """``count`` stream bytes were consumed without the framer (an empty framer only): keep
        the stream offsets of later errors right."""
        if self.buffered:
            raise ValueError("skip() is only for bytes that never entered the framer")
        self._consumed += self._pos + count
        self._buf, self._pos = b"", 0

    def take(self) -> bytes:
        """Every byte received and not yet returned as a message, leaving the framer empty:
        the rest of the stream, for another reader."""
        if self._error is not None:
            raise self._error
        rest = bytes(self._buf[self._pos :])
        self._consumed += len(self._buf)
        self._buf, self._pos = b"", 0
        return rest

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes from the stream."""
        buf, pos = self._buf, self._pos
        self._consumed += pos
        if pos >= len(buf):
            self._buf = bytes(data)
        else:  # keep the unread tail in a bytearray that is never handed out, then append
            if isinstance(buf, bytes):
                buf = bytearray(memoryview(buf)[pos:])
            elif pos:
                del buf[:pos]
            buf += data
            self._buf = buf
        self._pos = 0

    def next_message(self) -> bytes | None:
        """The next complete message, or None until more bytes are fed."""
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            return None
        try:
            end = frame_one(buf, pos, self.max_message_size)
        except FramingError as exc:
            offset = None if exc.offset is None else exc.offset + self._consumed
            self._error = FramingError(exc.reason, offset)
            raise self._error from None
        if end is None:
            return None
        self._pos = end
        if pos == 0 and end == len(buf) and isinstance(buf, bytes):
            return buf
        return bytes(buf[pos:end])

    def close(self) -> None:
        """End of stream: raise :class:`FramingError` if a partial message is buffered."""
        if self._error is not None:
            raise self._error
        if self.buffered:
            self._error = FramingError(
                f"stream ended inside a message ({self.buffered} bytes buffered)"
            )
            raise self._error


def iter_fields(message: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield ``(tag, value)`` for every field of one framed message, data fields included."""
    pos = 0
    end = len(message)
    data_length: int | None = None
    data_tag = 0
    while pos < end:
        eq = message.find(b"=", pos)
        if eq < 0:
            raise FramingError("field without '='", pos)
        raw_tag = message[pos:eq]
        if not raw_tag.isdigit() or raw_tag[0] == 0x30 or len(raw_tag) > _MAX_TAG_DIGITS:
            # No excerpt: this may be the body of a Logon, with a password in it.
            raise FramingError("a tag is not a positive number", pos)
        tag = int(raw_tag)
        if data_length is not None and tag == data_tag:
            stop = eq + 1 + data_length
            if message[stop : stop + 1] != SOH:
                raise FramingError(f"data field {tag} does not match its declared length", eq)
            yield tag, message[eq + 1 : stop]
            pos = stop + 1
            data_length = None
            continue
        soh = message.find(SOH, eq)
        if soh < 0:
            raise FramingError(f"field {tag} is not terminated", pos)
        value = message[eq + 1 : soh]
        yield tag, value
        if tag in DATA_FIELDS:
            if not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
                raise FramingError(f"length field {tag} is not a number", eq)
            data_length = int(value)
            data_tag = DATA_FIELDS[tag]
        else:
            data_length = None
        pos = soh + 1
