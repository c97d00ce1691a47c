"""FIX 4.2/4.4 vocabulary for the counterparty: tags, message types, a fast parser and encoder.

The counterparty must keep up with thousands of orders a second on one core, so messages are
split on SOH with ``bytes`` operations instead of going through a general FIX library (simplefix
is the independent oracle in the tests). The small "data dictionary" here checks only what a
session layer can check cheaply and what the order simulator relies on; it is not a full FIX
dictionary, and every approximation is stated next to the table it concerns.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "ADMIN_MSG_TYPES",
    "BEGIN_STRINGS",
    "SOH",
    "FieldValue",
    "FixMessage",
    "GarbledMessage",
    "MsgType",
    "OutboundMessage",
    "Problem",
    "RejectReason",
    "Tag",
    "check_message",
    "encode",
    "format_utc_timestamp",
    "parse",
    "parse_utc_timestamp",
]

SOH: Final = b"\x01"

FIX42: Final = "FIX.4.2"
FIX44: Final = "FIX.4.4"
BEGIN_STRINGS: Final = (FIX42, FIX44)


class Tag:
    """Tag numbers used by the session layer and the order simulator."""

    ACCOUNT: Final = 1
    AVG_PX: Final = 6
    BEGIN_SEQ_NO: Final = 7
    BEGIN_STRING: Final = 8
    BODY_LENGTH: Final = 9
    CHECKSUM: Final = 10
    CL_ORD_ID: Final = 11
    CUM_QTY: Final = 14
    END_SEQ_NO: Final = 16
    EXEC_ID: Final = 17
    EXEC_TRANS_TYPE: Final = 20
    HANDL_INST: Final = 21
    LAST_PX: Final = 31
    LAST_QTY: Final = 32
    MSG_SEQ_NUM: Final = 34
    MSG_TYPE: Final = 35
    NEW_SEQ_NO: Final = 36
    ORDER_ID: Final = 37
    ORDER_QTY: Final = 38
    ORD_STATUS: Final = 39
    ORD_TYPE: Final = 40
    ORIG_CL_ORD_ID: Final = 41
    POSS_DUP_FLAG: Final = 43
    PRICE: Final = 44
    REF_SEQ_NUM: Final = 45
    SENDER_COMP_ID: Final = 49
    SENDER_SUB_ID: Final = 50
    SENDING_TIME: Final = 52
    SIDE: Final = 54
    SYMBOL: Final = 55
    TARGET_COMP_ID: Final = 56
    TARGET_SUB_ID: Final = 57
    TEXT: Final = 58
    TIME_IN_FORCE: Final = 59
    TRANSACT_TIME: Final = 60
    SECURE_DATA_LEN: Final = 90
    SECURE_DATA: Final = 91
    POSS_RESEND: Final = 97
    ENCRYPT_METHOD: Final = 98
    CXL_REJ_REASON: Final = 102
    ORD_REJ_REASON: Final = 103
    HEART_BT_INT: Final = 108
    TEST_REQ_ID: Final = 112
    ORIG_SENDING_TIME: Final = 122
    GAP_FILL_FLAG: Final = 123
    RESET_SEQ_NUM_FLAG: Final = 141
    SENDER_LOCATION_ID: Final = 142
    TARGET_LOCATION_ID: Final = 143
    EXEC_TYPE: Final = 150
    LEAVES_QTY: Final = 151
    REF_TAG_ID: Final = 371
    REF_MSG_TYPE: Final = 372
    SESSION_REJECT_REASON: Final = 373
    BUSINESS_REJECT_REASON: Final = 380
    CXL_REJ_RESPONSE_TO: Final = 434
    NEXT_EXPECTED_MSG_SEQ_NUM: Final = 789


class MsgType:
    """MsgType(35) values the counterparty produces or handles itself."""

    HEARTBEAT: Final = b"0"
    TEST_REQUEST: Final = b"1"
    RESEND_REQUEST: Final = b"2"
    REJECT: Final = b"3"
    SEQUENCE_RESET: Final = b"4"
    LOGOUT: Final = b"5"
    EXECUTION_REPORT: Final = b"8"
    ORDER_CANCEL_REJECT: Final = b"9"
    LOGON: Final = b"A"
    NEW_ORDER_SINGLE: Final = b"D"
    ORDER_CANCEL_REQUEST: Final = b"F"
    ORDER_CANCEL_REPLACE_REQUEST: Final = b"G"
    BUSINESS_MESSAGE_REJECT: Final = b"j"


class RejectReason:
    """SessionRejectReason(373) codes, with the Text QuickFIX puts in its Rejects."""

    INVALID_TAG_NUMBER: Final = 0
    REQUIRED_TAG_MISSING: Final = 1
    TAG_NOT_DEFINED_FOR_MESSAGE_TYPE: Final = 2
    TAG_SPECIFIED_WITHOUT_A_VALUE: Final = 4
    VALUE_IS_INCORRECT: Final = 5
    INCORRECT_DATA_FORMAT: Final = 6
    COMPID_PROBLEM: Final = 9
    SENDING_TIME_ACCURACY_PROBLEM: Final = 10
    INVALID_MSG_TYPE: Final = 11
    TAG_APPEARS_MORE_THAN_ONCE: Final = 13
    TAG_OUT_OF_REQUIRED_ORDER: Final = 14

    TEXT: Final[Mapping[int, str]] = {
        0: "Invalid tag number",
        1: "Required tag missing",
        2: "Tag not defined for this message type",
        4: "Tag specified without a value",
        5: "Value is incorrect (out of range) for this tag",
        6: "Incorrect data format for value",
        9: "CompID problem",
        10: "SendingTime accuracy problem",
        11: "Invalid MsgType",
        13: "Tag appears more than once",
        14: "Tag specified out of required order",
    }

    #: FIX 4.2 defines SessionRejectReason values 0-11 only; higher codes go in Text alone.
    MAX_FIX42: Final = 11


ADMIN_MSG_TYPES: Final = frozenset(
    (b"0", b"1", b"2", b"3", b"4", b"5", b"A"),
)

_FIX42_MSG_TYPES: Final = frozenset(
    c.encode() for c in "0123456789ABCDEFGHJKLMNPQRSTVWXYZabcdefghijklm"
)
_FIX44_MSG_TYPES: Final = (
    _FIX42_MSG_TYPES
    | frozenset(c.encode() for c in "nopqrstuvwxyz")
    | frozenset(b"A" + c.encode() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    | frozenset(b"B" + c.encode() for c in "ABCDEFGH")
)
#: Every MsgType each version defines. Types starting with "U" are user-defined and always valid
#: at the session level (the application answers them with a BusinessMessageReject).
MSG_TYPES: Final[Mapping[str, frozenset[bytes]]] = {
    FIX42: _FIX42_MSG_TYPES,
    FIX44: _FIX44_MSG_TYPES,
}

#: Standard header and trailer tags of FIX 4.2 and 4.4 (union). A header tag after the first body
#: tag is "out of required order" (373=14), as QuickFIX reports it.
HEADER_TAGS: Final = frozenset(
    (
        8,
        9,
        35,
        49,
        56,
        115,
        128,
        90,
        91,
        34,
        50,
        142,
        57,
        143,
        116,
        144,
        129,
        145,
        43,
        97,
        52,
        122,
        212,
        213,
        347,
        369,
        370,
        627,
        628,
        629,
        630,
    )
)
TRAILER_TAGS: Final = frozenset((93, 89, 10))

#: Header tags the session layer writes itself; an application may not supply them.
SESSION_OWNED_TAGS: Final = frozenset((8, 9, 10, 34, 35, 43, 49, 52, 56, 90, 91, 122))

#: Highest tag FIX 4.4 defines. Tags above it and below the user-defined range (5000+) are
#: "invalid tag number" for both versions: FIX 4.2 peers routinely send later-version tags such
#: as Username(553), so the 4.4 range is the cheap, interoperable approximation of a dictionary.
MAX_STANDARD_TAG: Final = 956
FIRST_USER_DEFINED_TAG: Final = 5000

#: Length-prefixed data fields (length tag -> data tag): their value may contain SOH.
DATA_LENGTH_TAGS: Final[Mapping[int, int]] = {
    90: 91,
    93: 89,
    95: 96,
    212: 213,
    348: 349,
    350: 351,
    352: 353,
    354: 355,
    356: 357,
    358: 359,
    360: 361,
    362: 363,
    364: 365,
    445: 446,
    618: 619,
    621: 622,
}

#: Body tags each admin message may carry (Logon is left open: venues put their own fields in it).
ADMIN_BODY_TAGS: Final[Mapping[bytes, frozenset[int]]] = {
    b"0": frozenset((112,)),
    b"1": frozenset((112,)),
    b"2": frozenset((7, 16)),
    b"3": frozenset((45, 58, 354, 355, 371, 372, 373)),
    b"4": frozenset((36, 123)),
    b"5": frozenset((58, 354, 355)),
}

#: Required body tags per MsgType. For orders only what the simulator cannot do without and what
#: QuickFIX's own dictionaries require of both versions; conditionally required fields (OrderQty,
#: Price for limit orders) are the simulator's business and get an order-level reject.
REQUIRED_BODY_TAGS: Final[Mapping[bytes, tuple[int, ...]]] = {
    b"1": (112,),
    b"2": (7, 16),
    b"3": (45,),
    b"4": (36,),
    b"A": (98, 108),
    b"D": (11, 54, 55, 60, 40),
    b"F": (41, 11, 55, 54, 60),
    b"G": (41, 11, 55, 54, 60, 40),
}
REQUIRED_HEADER_TAGS: Final = (49, 56, 34, 52)

#: Tags that may appear only once in the messages the simulator reads (outside the header, where
#: every tag is unique, and admin messages, where only Logon has a repeating group).
SCALAR_APP_TAGS: Final = frozenset((1, 11, 21, 37, 38, 40, 41, 44, 54, 55, 59, 60))
_LOGON_GROUP_TAGS: Final = frozenset((372, 385))
_ORDER_MSG_TYPES: Final = frozenset((b"D", b"F", b"G"))

_INT = 1
_BOOL = 2
_TIMESTAMP = 3
_DECIMAL = 4
_CHAR = 5
#: Value syntax of the fields the session and simulator interpret (373=6 when violated).
FIELD_FORMATS: Final[Mapping[int, int]] = {
    7: _INT,
    16: _INT,
    34: _INT,
    36: _INT,
    45: _INT,
    98: _INT,
    108: _INT,
    371: _INT,
    373: _INT,
    380: _INT,
    383: _INT,
    384: _INT,
    789: _INT,
    43: _BOOL,
    97: _BOOL,
    123: _BOOL,
    141: _BOOL,
    464: _BOOL,
    52: _TIMESTAMP,
    60: _TIMESTAMP,
    122: _TIMESTAMP,
    370: _TIMESTAMP,
    6: _DECIMAL,
    14: _DECIMAL,
    31: _DECIMAL,
    32: _DECIMAL,
    38: _DECIMAL,
    44: _DECIMAL,
    151: _DECIMAL,
    21: _CHAR,
    40: _CHAR,
    54: _CHAR,
    59: _CHAR,
}
#: Enumerations checked for a "value is incorrect" (373=5): union of the FIX 4.2 and 4.4 values.
FIELD_ENUMS: Final[Mapping[int, frozenset[bytes]]] = {
    21: frozenset((b"1", b"2", b"3")),
    54: frozenset(x.encode() for x in "123456789ABCDEFG"),
    98: frozenset(x.encode() for x in "0123456"),
}

_INT_RE: Final = re.compile(rb"-?[0-9]+")
_DECIMAL_RE: Final = re.compile(rb"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")

FieldValue = bytes | str | int


class GarbledMessage(ValueError):
    """Bytes that cannot be split into tag=value fields; FIX says: ignore them, log, go on."""


@dataclass(frozen=True, slots=True)
class FixMessage:
    """One parsed FIX message: the raw bytes and every (tag, value) field in wire order.

    ``index`` maps a tag to its first value; ``duplicates`` lists tags seen again, in order.
    Values stay ``bytes`` because FIX is a byte protocol; the helpers decode on demand.
    """

    raw: bytes
    fields: tuple[tuple[int, bytes], ...] = field(repr=False)
    index: Mapping[int, bytes] = field(repr=False, compare=False)
    duplicates: tuple[int, ...] = field(default=(), repr=False, compare=False)

    @property
    def msg_type(self) -> bytes:
        return self.index.get(35, b"")

    def get(self, tag: int) -> bytes | None:
        return self.index.get(tag)

    def get_str(self, tag: int, default: str = "") -> str:
        value = self.index.get(tag)
        return default if value is None else value.decode("utf-8", "replace")

    def get_int(self, tag: int) -> int | None:
        """The value as an int, or None when absent or not an integer."""
        value = self.index.get(tag)
        if value is None or not _INT_RE.fullmatch(value):
            return None
        return int(value)

    def flag(self, tag: int) -> bool:
        """A FIX Boolean: true only for ``Y``."""
        return self.index.get(tag) == b"Y"


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """An application message for the session to send: MsgType and body fields in order.

    The session adds BeginString, BodyLength, the sequenced header and CheckSum; optional header
    fields an application supplies (e.g. OnBehalfOfCompID) are moved into the header.
    """

    msg_type: bytes
    fields: tuple[tuple[int, FieldValue], ...]


def parse(data: bytes) -> FixMessage:
    """Split a complete, framed FIX message into fields. Raises :class:`GarbledMessage`."""
    if not data.endswith(SOH):
        raise GarbledMessage("message does not end with SOH")
    fields: list[tuple[int, bytes]] = []
    index: dict[int, bytes] = {}
    duplicates: list[int] = []
    tags = _TAG_NUMBERS
    for part in data[:-1].split(SOH):
        tag_text, sep, value = part.partition(b"=")
        if not sep:
            raise GarbledMessage(f"field without '=': {part[:32]!r}")
        tag = tags.get(tag_text)
        if tag is None:
            tag = _tag_number(tag_text)
        if tag in DATA_LENGTH_TAGS:
            # A data field may contain SOH: fall back to the length-aware scanner.
            return _parse_with_data_fields(data)
        fields.append((tag, value))
        if tag in index:
            duplicates.append(tag)
        else:
            index[tag] = value
    return FixMessage(data, tuple(fields), index, tuple(duplicates))


#: Tag text -> number for every tag 1-9999 written without leading zeros (the parser's hot path).
_TAG_NUMBERS: Final[Mapping[bytes, int]] = {b"%d" % n: n for n in range(1, 10_000)}


def _tag_number(text: bytes) -> int:
    if text.isdigit():
        return int(text)
    if text[:1] == b"-" and text[1:].isdigit():
        return int(text)  # negative: a well-formed field with an invalid tag number (373=0)
    raise GarbledMessage(f"tag is not a number: {text[:16]!r}")


def _parse_with_data_fields(data: bytes) -> FixMessage:
    fields: list[tuple[int, bytes]] = []
    index: dict[int, bytes] = {}
    duplicates: list[int] = []
    data_length: dict[int, int] = {}  # data tag -> announced length
    pos = 0
    end_of_message = len(data)
    while pos < end_of_message:  # each pass consumes at least one byte
        eq = data.find(b"=", pos)
        if eq < 0:
            raise GarbledMessage(f"field without '=' at byte {pos}")
        tag = _tag_number(data[pos:eq])
        length = data_length.pop(tag, None)
        if length is not None:
            end = eq + 1 + length
            if end >= end_of_message or data[end : end + 1] != SOH:
                raise GarbledMessage(f"data field {tag} does not match its length {length}")
        else:
            end = data.find(SOH, eq + 1)
        value = data[eq + 1 : end]
        if tag in DATA_LENGTH_TAGS and value.isdigit():
            data_length[DATA_LENGTH_TAGS[tag]] = int(value)
        fields.append((tag, value))
        if tag in index:
            duplicates.append(tag)
        else:
            index[tag] = value
        pos = end + 1
    return FixMessage(data, tuple(fields), index, tuple(duplicates))


def _as_bytes(value: FieldValue) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return b"%d" % value


def encode(
    begin_string: bytes,
    msg_type: bytes,
    header: Iterable[tuple[int, bytes]],
    body: Iterable[tuple[int, bytes]],
) -> bytes:
    """A complete message: 8, 9, 35, then ``header`` and ``body`` as given, then CheckSum(10)."""
    parts = [b"35=" + msg_type]
    parts.extend(b"%d=%s" % item for item in header)
    parts.extend(b"%d=%s" % item for item in body)
    payload = SOH.join(parts) + SOH
    head = b"8=%s\x019=%d\x01" % (begin_string, len(payload))
    message = head + payload
    return message + b"10=%03d\x01" % (sum(message) & 0xFF)


def split_outbound(
    fields: Iterable[tuple[int, FieldValue]],
) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    """Separate an application's fields into (optional header fields, body fields) as bytes.

    Raises ValueError for tags the session writes itself and for values containing SOH.
    """
    header: list[tuple[int, bytes]] = []
    body: list[tuple[int, bytes]] = []
    for tag, raw in fields:
        value = raw if type(raw) is bytes else _as_bytes(raw)
        if tag in SESSION_OWNED_TAGS:
            raise ValueError(f"tag {tag} is written by the session layer, not the application")
        if SOH in value and tag not in _DATA_TAGS:
            raise ValueError(f"value of tag {tag} contains SOH")
        (header if tag in HEADER_TAGS else body).append((tag, value))
    return header, body


_DATA_TAGS: Final = frozenset(DATA_LENGTH_TAGS.values())


# --- UTCTimestamp ------------------------------------------------------------------------------

_second_cache: tuple[int, bytes] = (-1, b"")
_day_cache: dict[bytes, int] = {}
_DAY_CACHE_LIMIT: Final = 64


def format_utc_timestamp(now: float, precision: int = 3) -> bytes:
    """``YYYYMMDD-HH:MM:SS[.sss]`` for POSIX time ``now``; precision 0, 3, 6 or 9 digits."""
    global _second_cache  # noqa: PLW0603 - one formatted second cached: most calls share it
    if precision not in (0, 3, 6, 9):
        raise ValueError(f"timestamp precision must be 0, 3, 6 or 9, not {precision}")
    digits = min(precision, 6)
    scaled = round(now * 10**digits)
    second, fraction = divmod(scaled, 10**digits)
    cached_second, prefix = _second_cache
    if second != cached_second:
        prefix = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(second)).encode()
        _second_cache = (second, prefix)
    if precision == 0:
        return prefix
    if precision == 9:
        return prefix + b".%06d000" % fraction
    return prefix + b".%0*d" % (precision, fraction)


_last_parsed: tuple[bytes, float | None] = (b"", None)


def parse_utc_timestamp(value: bytes) -> float | None:
    """POSIX seconds for a FIX UTCTimestamp (0-9 fractional digits), or None if malformed."""
    global _last_parsed  # noqa: PLW0603 - the same SendingTime is checked twice per message
    last_value, last_result = _last_parsed
    if value == last_value:
        return last_result
    result = _parse_utc_timestamp(value)
    _last_parsed = (value, result)
    return result


def _parse_utc_timestamp(value: bytes) -> float | None:
    if len(value) < 17 or value[8:9] != b"-" or value[11:12] != b":" or value[14:15] != b":":
        return None
    day = value[:8]
    base = _day_cache.get(day)
    if base is None:
        if not day.isdigit():
            return None
        try:
            base = calendar.timegm((int(day[:4]), int(day[4:6]), int(day[6:8]), 0, 0, 0))
            time.strptime(day.decode(), "%Y%m%d")  # rejects 20240231 that timegm would accept
        except (ValueError, OverflowError):
            return None
        if len(_day_cache) >= _DAY_CACHE_LIMIT:
            _day_cache.clear()
        _day_cache[day] = base
    hh, mm, ss = value[9:11], value[12:14], value[15:17]
    if not (hh.isdigit() and mm.isdigit() and ss.isdigit()):
        return None
    hours, minutes, seconds = int(hh), int(mm), int(ss)
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    result = float(base + hours * 3600 + minutes * 60 + seconds)
    if len(value) > 17:
        fraction = value[18:]
        if value[17:18] != b"." or not fraction.isdigit() or len(fraction) > 9:
            return None
        result += int(fraction) / 10 ** len(fraction)
    return result


# --- the small data dictionary -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a message deserves a session-level Reject: SessionRejectReason and the tag at fault."""

    reason: int
    tag: int | None = None

    @property
    def text(self) -> str:
        return RejectReason.TEXT.get(self.reason, "Rejected")


_IN_HEADER = 1
_IN_BODY = 2
_IN_TRAILER = 3
#: tag -> (format kind or 0, enumeration or None, where it belongs): one lookup per field.
_RULES: Final[Mapping[int, tuple[int, frozenset[bytes] | None, int]]] = {
    tag: (
        FIELD_FORMATS.get(tag, 0),
        FIELD_ENUMS.get(tag),
        _IN_HEADER if tag in HEADER_TAGS else _IN_TRAILER if tag in TRAILER_TAGS else _IN_BODY,
    )
    for tag in HEADER_TAGS | TRAILER_TAGS | FIELD_FORMATS.keys() | FIELD_ENUMS.keys()
}


def _format_ok(kind: int, value: bytes) -> bool:
    if kind == _INT:
        return _INT_RE.fullmatch(value) is not None
    if kind == _BOOL:
        return value in (b"Y", b"N")
    if kind == _TIMESTAMP:
        return parse_utc_timestamp(value) is not None
    if kind == _DECIMAL:
        return _DECIMAL_RE.fullmatch(value) is not None
    return len(value) == 1  # _CHAR


def check_message(msg: FixMessage, begin_string: str) -> Problem | None:
    """The first structural problem of ``msg`` in QuickFIX's order of checks, or None.

    Checked: MsgType defined (11); per field: tag number valid (0), value present (4), syntax
    (6) and enumeration (5) for the fields in :data:`FIELD_FORMATS`/:data:`FIELD_ENUMS`, tag
    allowed in the admin message type (2); header fields before body fields (14); repeated
    header, admin or order-scalar tags (13); required header and body tags (1).
    """
    msg_type = msg.msg_type
    if msg_type not in MSG_TYPES[begin_string] and not msg_type.startswith(b"U"):
        return Problem(RejectReason.INVALID_MSG_TYPE)
    allowed = ADMIN_BODY_TAGS.get(msg_type)
    in_body = False
    rules = _RULES
    for tag, value in msg.fields[3:]:
        if not value:
            if tag <= 0 or MAX_STANDARD_TAG < tag < FIRST_USER_DEFINED_TAG:
                return Problem(RejectReason.INVALID_TAG_NUMBER, tag)
            return Problem(RejectReason.TAG_SPECIFIED_WITHOUT_A_VALUE, tag)
        rule = rules.get(tag)
        if rule is None:  # a plain body field: only its number can be wrong
            if tag <= 0 or MAX_STANDARD_TAG < tag < FIRST_USER_DEFINED_TAG:
                return Problem(RejectReason.INVALID_TAG_NUMBER, tag)
            in_body = True
            if allowed is not None and tag not in allowed and tag < FIRST_USER_DEFINED_TAG:
                return Problem(RejectReason.TAG_NOT_DEFINED_FOR_MESSAGE_TYPE, tag)
            continue
        kind, enum, place = rule
        if kind and not _format_ok(kind, value):
            return Problem(RejectReason.INCORRECT_DATA_FORMAT, tag)
        if enum is not None and value not in enum:
            return Problem(RejectReason.VALUE_IS_INCORRECT, tag)
        if place == _IN_HEADER:
            if in_body:
                return Problem(RejectReason.TAG_OUT_OF_REQUIRED_ORDER, tag)
        elif place == _IN_BODY:
            in_body = True
            if allowed is not None and tag not in allowed and tag < FIRST_USER_DEFINED_TAG:
                return Problem(RejectReason.TAG_NOT_DEFINED_FOR_MESSAGE_TYPE, tag)
    for tag in msg.duplicates:
        if (
            tag in HEADER_TAGS
            or (msg_type in ADMIN_BODY_TAGS)
            or (msg_type == MsgType.LOGON and tag not in _LOGON_GROUP_TAGS)
            or (tag in SCALAR_APP_TAGS and msg_type in _ORDER_MSG_TYPES)
        ):
            return Problem(RejectReason.TAG_APPEARS_MORE_THAN_ONCE, tag)
    index = msg.index
    for tag in REQUIRED_HEADER_TAGS:
        if tag not in index:
            return Problem(RejectReason.REQUIRED_TAG_MISSING, tag)
    for tag in REQUIRED_BODY_TAGS.get(msg_type, ()):
        if tag not in index:
            return Problem(RejectReason.REQUIRED_TAG_MISSING, tag)
    return None
