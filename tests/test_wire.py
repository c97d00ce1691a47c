"""fixsecure.wire: the byte layouts of specs/fixsecure-v1.md §4, §5 and §8.

Expected values are computed here from the spec's formulas (by hand, with struct, base64, datetime
and calendar), never by calling the function under test.
"""

from __future__ import annotations

import base64
import calendar
import datetime
import itertools
import json
import re
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixsecure import wire
from fixsecure.errors import FramingError
from fixsecure.framing import (
    DATA_FIELDS,
    DEFAULT_MAX_MESSAGE_SIZE,
    Framer,
    checksum,
    frame_one,
    iter_fields,
)
from fixsecure.memory import fix_message, format_timestamp, session_pair
from fixsecure.session import HandshakeComplete, MessageReceived
from fixsecure.suites import SUITES
from fixsecure.wire import WireError

SOH = b"\x01"
Field = tuple[int, bytes]
VECTORS = Path(__file__).resolve().parent.parent / "specs" / "vectors"

# §4, copied from the spec: the clear header tags (35 is always the first of them).
SPEC_HEADER_TAGS = frozenset(
    {35, 49, 56, 34, 52, 115, 128, 50, 142, 57, 143, 116, 144, 129, 145, 43, 97, 122, 369}
    | {347, 370, 627, 628, 629, 630, 1128, 1129, 1156}
)


def fld(tag: int, value: bytes) -> bytes:
    return b"%d=%s\x01" % (tag, value)


def frame(begin: bytes, fields: Sequence[Field]) -> bytes:
    """A framed message, 9 and 10 computed here from §2's definitions."""
    body = b"".join(fld(tag, value) for tag, value in fields)
    head = b"8=%s\x019=%d\x01%s" % (begin, len(body), body)
    return head + b"10=%03d\x01" % (sum(head) % 256)


def test_clear_header_tags_are_those_of_the_spec() -> None:
    assert wire.CLEAR_HEADER_TAGS == SPEC_HEADER_TAGS


# --------------------------------------------------------------------------------------------
# split / parse: where the clear header ends

QUICKFIX_HEADER = [
    (35, b"D"),
    (34, b"2"),
    (49, b"BANK"),
    (52, b"20240229-12:00:00.000"),
    (56, b"VENUE"),
]
OTHER_HEADER = [
    (35, b"D"),
    (49, b"BANK"),
    (56, b"VENUE"),
    (34, b"2"),
    (52, b"20240229-12:00:00.000"),
]
ORDER = [(11, b"ORD1"), (55, b"EUR/USD"), (54, b"1"), (38, b"1000"), (40, b"1")]

SPLIT_CASES: list[tuple[str, list[Field], list[Field]]] = [
    ("QuickFIX order", QUICKFIX_HEADER, ORDER),
    ("other engines' order", OTHER_HEADER, ORDER),
    (
        "optional header fields",
        [
            *QUICKFIX_HEADER,
            (115, b"CLIENT"),
            (128, b"DESK"),
            (43, b"Y"),
            (97, b"N"),
            (122, b"20240229-11:59:59.000"),
            (50, b"TRADER"),
            (57, b"ALGO"),
            (142, b"LDN"),
            (143, b"NYC"),
            (116, b"SUB"),
            (144, b"PAR"),
            (129, b"DSUB"),
            (145, b"FRA"),
            (369, b"1"),
            (347, b"UTF-8"),
            (370, b"20240229-11:59:58"),
            (1128, b"9"),
            (1129, b"CUSTOM"),
            (1156, b"1"),
        ],
        ORDER,
    ),
    (
        "hops",
        [
            *OTHER_HEADER,
            (627, b"2"),
            (628, b"HUB1"),
            (629, b"20240229-11:59:59.000"),
            (630, b"7"),
            (628, b"HUB2"),
            (629, b"20240229-11:59:59.500"),
            (630, b"8"),
        ],
        ORDER,
    ),
    (
        "header fields after a body field are body",
        QUICKFIX_HEADER,
        [(11, b"ORD1"), (115, b"CLIENT"), (43, b"Y"), (49, b"OTHER")],
    ),
    (
        "an empty-valued header field ends the clear header",
        QUICKFIX_HEADER,
        [(115, b""), (128, b"DESK"), *ORDER],
    ),
    (
        "XmlData in the header is body",
        QUICKFIX_HEADER,
        [(212, b"7"), (213, b"<a\x01=b/>"), (115, b"CLIENT"), *ORDER],
    ),
    (
        "SecureData written by an engine is body",
        QUICKFIX_HEADER,
        [(90, b"4"), (91, b"QUI="), *ORDER],
    ),
    ("no body", QUICKFIX_HEADER, []),
    ("MsgType alone", [(35, b"0")], []),
    ("MsgType then body", [(35, b"0")], [(112, b"TEST")]),
    ("a repeated header field", [*QUICKFIX_HEADER, (49, b"BANK2")], ORDER),
]


def _check_split(begin: bytes, header: list[Field], body: list[Field]) -> None:
    message = frame(begin, [*header, *body])
    head_bytes = b"".join(fld(t, v) for t, v in header)
    body_bytes = b"".join(fld(t, v) for t, v in body)
    parts = wire.split(message)
    length_start, header_start, header_end, trailer, msg_type = parts
    assert message[:length_start] == b"8=" + begin + SOH
    assert message[length_start:header_start] == b"9=%d\x01" % (len(head_bytes) + len(body_bytes))
    assert message[header_start:header_end] == head_bytes
    assert message[header_end:trailer] == body_bytes
    assert message[trailer:] == b"10=%03d\x01" % (sum(message[:trailer]) % 256)
    assert msg_type == header[0][1]
    assert wire.parse(message, DEFAULT_MAX_MESSAGE_SIZE) == parts
    assert wire.header_fields(message, parts) == header
    assert wire.rest_fields(message, parts) == body
    assert wire.associated_data(message, parts) == b"8=" + begin + SOH + head_bytes
    assert wire.rebuild(message, parts, body_bytes) == message


@pytest.mark.parametrize(
    ("header", "body"), [c[1:] for c in SPLIT_CASES], ids=[c[0] for c in SPLIT_CASES]
)
@pytest.mark.parametrize("begin", [b"FIX.4.2", b"FIX.4.4", b"FIXT.1.1"])
def test_split(begin: bytes, header: list[Field], body: list[Field]) -> None:
    _check_split(begin, header, body)


def test_split_fix_message_output() -> None:
    message = fix_message(b"0", 7, b"BANK", b"VENUE", [(112, b"T")], sending_time=b"X")
    parts = wire.split(message)
    assert message[parts[1] : parts[2]] == b"35=0\x0134=7\x0149=BANK\x0152=X\x0156=VENUE\x01"
    assert message[parts[2] : parts[3]] == b"112=T\x01"


# Hypothesis: any clear header run, then a body that starts with something that ends the run.

header_tags = st.sampled_from(sorted(SPEC_HEADER_TAGS - {35}))
values = st.binary(min_size=1, max_size=16).map(lambda b: b.replace(SOH, b"\x02"))
_NOT_BODY_TAGS = SPEC_HEADER_TAGS | {8, 9, 10} | set(DATA_FIELDS) | set(DATA_FIELDS.values())
body_tags = st.integers(1, 40_000).filter(lambda t: t not in _NOT_BODY_TAGS)
data_values = st.binary(min_size=0, max_size=16)
data_pairs = st.tuples(st.sampled_from([(90, 91), (95, 96), (212, 213), (354, 355)]), data_values)


def _data(pair_and_value: tuple[tuple[int, int], bytes]) -> list[Field]:
    (length_tag, value_tag), value = pair_and_value
    return [(length_tag, b"%d" % len(value)), (value_tag, value)]


run_breakers = st.one_of(
    st.tuples(body_tags, values).map(lambda f: [f]),  # a non-header field
    st.tuples(header_tags, st.just(b"")).map(lambda f: [f]),  # an empty header field
    data_pairs.map(_data),  # XmlData, SecureData, ... wherever they are
)
any_field = st.one_of(
    st.tuples(body_tags, values).map(lambda f: [f]),
    st.tuples(header_tags, values).map(lambda f: [f]),
    st.tuples(header_tags, st.just(b"")).map(lambda f: [f]),
    data_pairs.map(_data),
)


@st.composite
def split_messages(draw: st.DrawFn) -> tuple[bytes, list[Field], list[Field]]:
    begin = draw(st.sampled_from([b"FIX.4.2", b"FIX.4.4", b"FIXT.1.1"]))
    header = [(35, draw(values)), *draw(st.lists(st.tuples(header_tags, values), max_size=10))]
    body: list[Field] = []
    if draw(st.booleans()):
        body = draw(run_breakers) + [
            f for item in draw(st.lists(any_field, max_size=6)) for f in item
        ]
    return begin, header, body


@given(split_messages())
def test_split_property(spec: tuple[bytes, list[Field], list[Field]]) -> None:
    _check_split(*spec)


@given(split_messages(), st.binary(max_size=64).map(lambda b: b.replace(SOH, b"\x02") + SOH))
def test_rebuild_with_another_body_is_a_valid_message(
    spec: tuple[bytes, list[Field], list[Field]], new_body: bytes
) -> None:
    begin, header, body = spec
    message = frame(begin, [*header, *body])
    parts = wire.split(message)
    rebuilt = wire.rebuild(message, parts, new_body)
    head_bytes = message[parts[1] : parts[2]]
    expected_head = b"8=%s\x019=%d\x01%s%s" % (begin, len(head_bytes) + len(new_body),
                                                head_bytes, new_body)
    assert rebuilt == expected_head + b"10=%03d\x01" % (sum(expected_head) % 256)
    assert frame_one(rebuilt, 0, DEFAULT_MAX_MESSAGE_SIZE) == len(rebuilt)


# --------------------------------------------------------------------------------------------
# parse: rejects what the framer rejects, and more

_VALID = frame(b"FIX.4.4", [(35, b"0"), (112, b"TEST")])


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (b"9=5\x0135=0\x0110=000\x01", "message does not start with BeginString(8)"),
        (b"8=\x01" + _VALID[10:], "BeginString(8) is empty"),
        (b"8=FIX.4.4\x0135=0\x0110=000\x01", "second field is not BodyLength(9)"),
        (_VALID.replace(b"9=14", b"9=014"), "BodyLength(9) is not a canonical decimal number"),
        (_VALID.replace(b"9=14", b"9=+14"), "BodyLength(9) is not a canonical decimal number"),
        (_VALID.replace(b"9=14", b"9=13"), "BodyLength(9) does not end at CheckSum(10)"),
        (_VALID.replace(b"9=14", b"9=15") + b"8", "BodyLength(9) does not end at CheckSum(10)"),
        (_VALID[:-4] + b"1x3\x01", "CheckSum(10) is not three digits"),
        (_VALID[:-4] + b"%03d\x01" % ((checksum(_VALID[:-7]) + 1) % 256),
         "CheckSum(10) does not match"),
        (_VALID[:-1], "incomplete FIX message"),
        (_VALID.replace(b"9=14", b"9=15"), "incomplete FIX message"),
        (b"", "incomplete FIX message"),
        (_VALID + _VALID, f"more than one FIX message (at byte {len(_VALID)})"),
        (_VALID + b"8", f"more than one FIX message (at byte {len(_VALID)})"),
    ],
)
def test_parse_framing_errors(message: bytes, text: str) -> None:
    with pytest.raises(FramingError, match=re.escape(text)):
        wire.parse(message, DEFAULT_MAX_MESSAGE_SIZE)


def test_parse_size_limit() -> None:
    assert wire.parse(_VALID, len(_VALID))[4] == b"0"
    with pytest.raises(FramingError, match=f"exceeds the limit of {len(_VALID) - 1}"):
        wire.parse(_VALID, len(_VALID) - 1)


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (frame(b"FIX.4.4", [(49, b"BANK"), (35, b"0")]), "third field is not MsgType(35)"),
        (frame(b"FIX.4.4", [(112, b"TEST")]), "third field is not MsgType(35)"),
        (frame(b"FIX.4.4", [(350, b"0")]), "third field is not MsgType(35)"),
        (frame(b"FIX.4.4", [(35, b""), (49, b"BANK")]), "MsgType(35) is empty"),
        (frame(b"FIX.4.4", [(35, b"")]), "MsgType(35) is empty"),
        (frame(b"FIX.4.4", []), "third field is not MsgType(35)"),
    ],
)
def test_parse_and_split_msgtype_errors(message: bytes, text: str) -> None:
    assert frame_one(message, 0, DEFAULT_MAX_MESSAGE_SIZE) == len(message)
    with pytest.raises(WireError, match=re.escape(text)):
        wire.parse(message, DEFAULT_MAX_MESSAGE_SIZE)
    with pytest.raises(WireError, match=re.escape(text)):
        wire.split(message)


def _framer_verdict(data: bytes, limit: int) -> bool:
    """True if the framer finds exactly one complete valid message in ``data``."""
    try:
        return frame_one(data, 0, limit) == len(data)
    except FramingError:
        return False


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    begin, header, body = draw(split_messages())
    data = bytearray(frame(begin, [*header, *body]))
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "digit"]))
        if kind == "flip" and pos < len(data):
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[pos:pos] = draw(
                st.sampled_from([b"0", b"1", b"=", SOH, b"8=", b"10=000\x01", b"X" * 10])
            )
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "digit" and pos < len(data) and chr(data[pos]).isdigit():
            data[pos] = draw(st.sampled_from(b"0123456789"))
    return bytes(data)


@given(mutated_messages(), st.integers(64, 400))
def test_parse_rejects_whatever_the_framer_rejects(data: bytes, limit: int) -> None:
    if not _framer_verdict(data, limit):
        with pytest.raises(FramingError):
            wire.parse(data, limit)
        return
    # Framed: parse splits it exactly like split() does, or both refuse its MsgType.
    try:
        expected = wire.split(data)
    except WireError as exc:
        with pytest.raises(WireError, match=re.escape(str(exc))):
            wire.parse(data, limit)
    else:
        assert wire.parse(data, limit) == expected


@pytest.mark.parametrize("size", [16, 17, 40])
def test_parse_and_framer_agree_on_begin_string_length(size: int) -> None:
    """Regression: parse()'s fast path once accepted any BeginString length, the framer 16."""
    message = frame(b"F" * size, [(35, b"0")])
    if size <= 16:
        assert frame_one(message, 0, DEFAULT_MAX_MESSAGE_SIZE) == len(message)
        assert wire.parse(message, DEFAULT_MAX_MESSAGE_SIZE)[4] == b"0"
        return
    with pytest.raises(FramingError, match=re.escape("BeginString(8) is not terminated")):
        frame_one(message, 0, DEFAULT_MAX_MESSAGE_SIZE)
    with pytest.raises(FramingError, match=re.escape("BeginString(8) is not terminated")):
        wire.parse(message, DEFAULT_MAX_MESSAGE_SIZE)


# --------------------------------------------------------------------------------------------
# Strict, canonical base64 (§8.2)

ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _canonical(text: bytes) -> bytes | None:
    """The oracle: RFC 4648 text is canonical iff re-encoding its decoding gives it back."""
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    return data if base64.b64encode(data) == text else None


def test_b64_round_trip_every_length_to_200() -> None:
    for size in range(201):
        spread = bytes((7 * i + 3) % 256 for i in range(size))
        for data in (bytes(range(size)), b"\xff" * size, spread):
            text = wire.b64encode(data)
            assert text == base64.b64encode(data)
            assert wire.b64decode(text) == data


@given(st.binary(max_size=300))
def test_b64_round_trip(data: bytes) -> None:
    assert wire.b64decode(wire.b64encode(data)) == data


@pytest.mark.parametrize(
    "text",
    [
        b"QUI*", b"QU-_", b"QUJD\x00", b"QUJ\x01", b"\xc3\x84UJD",  # outside the alphabet
        b"QUI= ", b" QUI=", b"QU I=", b"QUJD\nQUJD", b"QUJD\r\n", b"\tQUJD",  # whitespace
        b"QUI", b"QQ", b"Q", b"QUJDQ",  # missing padding, or a lone sextet
        b"QUI==", b"QQ===", b"QUJD=", b"=", b"==", b"QQ=",  # excess padding
        b"QQ==QUI=", b"Q=Q=", b"=QUJ",  # padding elsewhere than at the end
        b"QUJ=", b"QR==", b"QUJD/w=/",  # non-canonical padding bits, or worse
    ],
)
def test_b64decode_rejects(text: bytes) -> None:
    assert _canonical(text) is None
    with pytest.raises(WireError, match=r"SecureData\(91\) is not (valid|canonical) base64"):
        wire.b64decode(text)


def test_b64decode_rejects_every_non_canonical_alias() -> None:
    """For every encoding of 1 or 2 final bytes, each other last character that decodes to the
    same bytes (same high bits, non-zero padding bits) is refused; the canonical one is not."""
    checked = 0
    for size, position, unused in ((1, -3, 0x0F), (2, -2, 0x03)):  # "XY==" / "XYZ="
        for data in itertools.product(range(256), repeat=size):
            raw = bytes(data)
            text = base64.b64encode(raw)
            value = ALPHABET.index(text[position])
            assert value & unused == 0
            for alias in range(value + 1, value + unused + 1):
                candidate = bytearray(text)
                candidate[position] = ALPHABET[alias]
                alias_text = bytes(candidate)
                assert base64.b64decode(alias_text) == raw  # the same bytes, leniently
                with pytest.raises(WireError, match="not canonical"):
                    wire.b64decode(alias_text)
                checked += 1
            assert wire.b64decode(text) == raw
    assert checked == 256 * 15 + 65536 * 3
    # Only the final quantum can carry padding bits, and it is checked at the end of long texts.
    for alias_text in (b"QUJ=", b"QR=="):
        with pytest.raises(WireError, match="not canonical"):
            wire.b64decode(b"AAAA" * 50 + alias_text)


def _decodes_as_canonical(text: bytes) -> bool:
    """Assert ``b64decode`` refuses ``text`` unless canonical, else matches; True if accepted."""
    expected = _canonical(text)
    if expected is None:
        with pytest.raises(WireError):
            wire.b64decode(text)
        return False
    assert wire.b64decode(text) == expected
    return True


@given(st.lists(st.sampled_from(b"AQgw/+=9 -"), max_size=9).map(bytes))
def test_b64decode_accepts_exactly_canonical_base64(text: bytes) -> None:
    _decodes_as_canonical(text)


def test_b64decode_every_short_text() -> None:
    checked = 0
    for size in range(7):
        for chars in itertools.product(b"AQw=!" if size > 4 else b"AQgw/=!", repeat=size):
            checked += _decodes_as_canonical(bytes(chars))
    assert checked > 100  # canonical texts were among them, not only refusals


@pytest.mark.parametrize(
    "text",
    [b"AAAA=", b"AAAA==", b"QUJA==", b"AAAA===", b"QUJD====", b"QQ==AAAA=", b"QUJD" * 9 + b"="],
)
def test_b64decode_refuses_padding_after_a_full_quantum(text: bytes) -> None:
    """Regression: binascii's strict mode accepts these; they once passed (a second wire form of
    the same ciphertext) or raised KeyError."""
    assert _canonical(text) is None
    with pytest.raises(WireError, match=r"SecureData\(91\) is not (valid|canonical) base64"):
        wire.b64decode(text)


# --------------------------------------------------------------------------------------------
# Field lists and the prologue (§5)

field_lists = st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=40)), max_size=8)


@given(field_lists, st.binary(max_size=20))
def test_field_list_round_trip(fields: list[Field], tail: bytes) -> None:
    encoded = wire.encode_field_list(fields)
    expected = struct.pack(">I", len(fields)) + b"".join(
        struct.pack(">II", tag, len(value)) + value for tag, value in fields
    )
    assert encoded == expected
    assert wire.decode_field_list(encoded + tail) == (fields, tail)


@given(field_lists)
def test_field_list_every_truncation_is_refused(fields: list[Field]) -> None:
    encoded = wire.encode_field_list(fields)
    for size in range(len(encoded)):
        with pytest.raises(WireError, match="field list truncated"):
            wire.decode_field_list(encoded[:size])


def test_field_list_huge_count_or_length_is_refused() -> None:
    with pytest.raises(WireError, match="truncated"):
        wire.decode_field_list(b"\xff\xff\xff\xff")
    with pytest.raises(WireError, match="truncated"):
        wire.decode_field_list(b"\x00\x00\x00\x01" + b"\x00\x00\x00\x08" + b"\xff\xff\xff\xff")


def test_prologue_hand_computed() -> None:
    # P = lp("fixsecure/1") || lp(SUITE) || u32(n) || F(f1) || ... ; F(tag, value) = u32(tag) ||
    # lp(value). Written out byte by byte.
    expected = (
        b"\x00\x00\x00\x0b" b"fixsecure/1"
        b"\x00\x00\x00\x1c" b"Noise_KK_25519_AESGCM_SHA256"
        b"\x00\x00\x00\x04"
        b"\x00\x00\x00\x08" b"\x00\x00\x00\x07" b"FIX.4.4"
        b"\x00\x00\x00\x23" b"\x00\x00\x00\x01" b"A"
        b"\x00\x00\x00\x31" b"\x00\x00\x00\x04" b"BANK"
        b"\x00\x00\x64\xc9" b"\x00\x00\x00\x1c" b"Noise_KK_25519_AESGCM_SHA256"
    )
    fields = [(8, b"FIX.4.4"), (35, b"A"), (49, b"BANK"), (25801, b"Noise_KK_25519_AESGCM_SHA256")]
    assert wire.prologue("Noise_KK_25519_AESGCM_SHA256", fields) == expected


@pytest.mark.parametrize("suite", SUITES)
def test_prologue_of_the_worked_example(suite: str) -> None:
    data = json.loads((VECTORS / f"transcript-{suite}.json").read_text(encoding="ascii"))
    one = data["handshake"]["message1"]
    message = one["wire"].encode("latin-1")
    # §5.1: all fields of message 1 except 9, 90, 91 and 10, in wire order.
    clear = [(t, v) for t, v in iter_fields(message) if t not in (9, 90, 91, 10)]
    assert clear[-3:] == [(98, b"0"), (25800, b"fixsecure/1"), (25801, suite.encode())]
    expected = b"".join(
        [
            struct.pack(">I", 11) + b"fixsecure/1",
            struct.pack(">I", len(suite)) + suite.encode(),
            struct.pack(">I", len(clear)),
            *(struct.pack(">II", t, len(v)) + v for t, v in clear),
        ]
    )
    assert expected.hex() == one["prologue"]
    assert wire.prologue(suite, clear) == expected


# --------------------------------------------------------------------------------------------
# SendingTime (§6 step 6)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _expected_ns(moment: datetime.datetime, nanos: int) -> int:
    whole = moment.replace(microsecond=0, tzinfo=datetime.UTC)
    return calendar.timegm(whole.timetuple()) * 10**9 + nanos


@given(
    st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)),
    st.sampled_from([0, 3, 6, 9]),
    st.integers(0, 999),
)
def test_sending_time_ns_matches_datetime(
    moment: datetime.datetime, digits: int, extra_nanos: int
) -> None:
    nanos = moment.microsecond * 1000 + extra_nanos
    fraction = b"" if digits == 0 else b".%s" % (b"%09d" % nanos)[:digits]
    kept = 0 if digits == 0 else int((b"%09d" % nanos)[:digits].ljust(9, b"0"))
    text = b"%04d%02d%02d-%02d:%02d:%02d%s" % (
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, fraction
    )
    ns = wire.sending_time_ns(text)
    assert ns == _expected_ns(moment, kept)
    # datetime, an independent calendar, agrees.
    whole_seconds = (moment.replace(microsecond=0, tzinfo=datetime.UTC) - _EPOCH).total_seconds()
    assert ns == int(whole_seconds) * 10**9 + kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"19700101-00:00:00", 0),
        (b"19700101-00:00:00.001", 1_000_000),
        (b"19700101-00:00:00.000001", 1_000),
        (b"19700101-00:00:00.000000001", 1),
        (b"19691231-23:59:59.999", -1_000_000),
        (b"20240229-12:34:56.789", 1709210096_789_000_000),
        (b"20000229-00:00:00", 951782400 * 10**9),
        (b"20261125-16:00:00.000", 1795622400 * 10**9),
    ],
)
def test_sending_time_ns_examples(text: bytes, expected: int) -> None:
    assert wire.sending_time_ns(text) == expected


def test_leap_second_is_accepted_as_the_following_instant() -> None:
    last = wire.sending_time_ns(b"20161231-23:59:59.999")
    leap = wire.sending_time_ns(b"20161231-23:59:60.000")
    after = wire.sending_time_ns(b"20170101-00:00:00.000")
    assert last < leap
    assert leap == after == calendar.timegm((2017, 1, 1, 0, 0, 0)) * 10**9


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b"20230229-00:00:00", "invalid date"),  # not a leap year
        (b"19000229-00:00:00", "invalid date"),  # centuries are not leap years...
        (b"20240230-00:00:00", "invalid date"),
        (b"20240431-00:00:00", "invalid date"),
        (b"20240001-00:00:00", "invalid date"),
        (b"20241301-00:00:00", "invalid date"),
        (b"20240100-00:00:00", "invalid date"),
        (b"20240132-00:00:00", "invalid date"),
        (b"20240101-24:00:00", "invalid time of day"),
        (b"20240101-23:60:00", "invalid time of day"),
        (b"20240101-23:59:61", "invalid time of day"),
        (b"20240101-99:99:99", "invalid time of day"),
        (b"", "not a FIX UTCTimestamp"),
        (b"20240101", "not a FIX UTCTimestamp"),
        (b"20240101-00:00", "not a FIX UTCTimestamp"),
        (b"20240101-00:00:00.", "not a FIX UTCTimestamp"),
        (b"20240101-00:00:00.1", "not a FIX UTCTimestamp"),
        (b"20240101-00:00:00.12", "not a FIX UTCTimestamp"),
        (b"20240101-00:00:00.1234", "not a FIX UTCTimestamp"),
        (b"20240101-00:00:00.1234567890", "not a FIX UTCTimestamp"),
        (b"20240101T00:00:00", "not a FIX UTCTimestamp"),
        (b"2024-01-01-00:00:00", "not a FIX UTCTimestamp"),
        (b"20240101-00:00:00Z", "not a FIX UTCTimestamp"),
        (b"20240101-00:00:00 ", "not a FIX UTCTimestamp"),
        (b" 20240101-00:00:00", "not a FIX UTCTimestamp"),
        (b"20240101-00:00:00\n", "not a FIX UTCTimestamp"),
        (b"+2024010-00:00:00", "not a FIX UTCTimestamp"),
        (b"20240101-0:00:00.000", "not a FIX UTCTimestamp"),
        ("２０２４0101-00:00:00".encode(), "not a FIX UTCTimestamp"),
        (b"20240101-00:00:00.00a", "not a FIX UTCTimestamp"),
        (b"\xff" * 40, "not a FIX UTCTimestamp"),
    ],
)
def test_sending_time_ns_rejects(text: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        wire.sending_time_ns(text)


@pytest.mark.parametrize("text", [b"00000101-00:00:00", b"00001231-23:59:59.999"])
def test_sending_time_ns_year_zero_is_a_wire_error(text: bytes) -> None:
    """Regression: calendar.timegm once raised a plain ValueError for year 0000."""
    with pytest.raises(WireError, match="invalid date"):
        wire.sending_time_ns(text)


def test_sending_time_ns_extremes() -> None:
    assert wire.sending_time_ns(b"00010101-00:00:00") == calendar.timegm((1, 1, 1, 0, 0, 0)) * 10**9
    assert wire.sending_time_ns(b"99991231-23:59:60.999999999") == (
        calendar.timegm((9999, 12, 31, 23, 59, 60)) * 10**9 + 999_999_999
    )


@given(st.binary(max_size=30))
def test_sending_time_ns_garbage_raises_only_wire_error(text: bytes) -> None:
    try:
        ns = wire.sending_time_ns(text)
    except WireError:
        return
    assert re.fullmatch(rb"\d{8}-\d\d:\d\d:\d\d(\.(\d{3}|\d{6}|\d{9}))?", text)
    assert isinstance(ns, int)


# --------------------------------------------------------------------------------------------
# wire_limit (§8.4): every protected message of a plaintext of at most M bytes fits

CLOCK_NS = 1_800_000_000_000_000_000
STAMP = format_timestamp(CLOCK_NS)


def sized_message(
    size: int,
    msg_type: bytes,
    sender: bytes,
    target: bytes,
    body: Sequence[Field] = (),
    extra_header: Sequence[Field] = (),
    filler: bytes = b"x",
) -> bytes:
    """A QuickFIX-style message padded with Text(58) to ``size`` bytes, or ``size - 1`` where
    BodyLength gains a digit exactly there (e.g. no message of 1023 bytes has BodyLength 999)."""

    def build(pad: int) -> bytes:
        text = (filler * (pad // len(filler) + 1))[:pad]
        return fix_message(
            msg_type, 1, sender, target, [*body, (58, text)], sending_time=STAMP,
            extra_header=extra_header,
        )

    pad = 1
    for _ in range(4):  # the digits of BodyLength settle within a few rounds
        pad += size - len(build(pad))
        assert pad >= 1, "size too small for this header"
    message = build(pad)
    if len(message) > size:
        message = build(pad - 1)
    assert size - 1 <= len(message) <= size
    return message


def test_sized_message() -> None:
    for size in (120, 999, 1000, 1001, 1022, 1023, 1024, 10_000):
        message = sized_message(size, b"0", b"BANK", b"VENUE")
        assert len(message) == size or (size, len(message)) == (1023, 1022)
        assert frame_one(message, 0, size) == len(message)


LOGON_BODY = [(98, b"0"), (108, b"30")]
extra_headers = st.lists(
    st.tuples(st.sampled_from([50, 57, 142, 143, 115, 128, 1128, 43, 97]), values.filter(
        lambda v: v.isalnum())),
    max_size=3,
    unique_by=lambda field: field[0],  # a Logon may not repeat an identity field (spec §6)
)


def _transport_bound(limit: int) -> int:
    """§8.4: transport messages stay below M + ceil(M/3) + 64."""
    return limit + -(-limit // 3) + 64


@given(
    st.integers(300, 5000),
    st.integers(0, 40),
    st.sampled_from(SUITES),
    extra_headers,
    st.sampled_from([b"x", b"\xff\x00\x80", b"="]),
)
def test_wire_limit_holds_for_transport_messages(
    limit: int, below: int, suite: str, extra: list[Field], filler: bytes
) -> None:
    pair = session_pair(suite, clock=lambda: CLOCK_NS, max_message_size=limit)
    logon = fix_message(b"A", 1, b"BANK", b"VENUE", LOGON_BODY, sending_time=STAMP)
    assert len(pair.transfer(pair.initiator, logon)) == 1
    reply = fix_message(b"A", 1, b"VENUE", b"BANK", LOGON_BODY, sending_time=STAMP)
    assert pair.transfer(pair.acceptor, reply) == [reply]
    for sender, (own, peer) in ((pair.initiator, (b"BANK", b"VENUE")),
                                (pair.acceptor, (b"VENUE", b"BANK"))):
        message = sized_message(limit - below, b"8", own, peer, extra_header=extra, filler=filler)
        protected = sender.send(message)
        assert len(protected) < _transport_bound(limit) <= wire.wire_limit(limit)
        receiver = pair.acceptor if sender is pair.initiator else pair.initiator
        events = receiver.receive(protected)
        assert events == [MessageReceived(message, b"8")]


@given(st.integers(300, 5000), st.integers(0, 40), st.sampled_from(SUITES), extra_headers)
def test_wire_limit_holds_for_message_1(
    limit: int, below: int, suite: str, extra: list[Field]
) -> None:
    pair = session_pair(suite, clock=lambda: CLOCK_NS, max_message_size=limit)
    logon = sized_message(limit - below, b"A", b"BANK", b"VENUE", LOGON_BODY, extra)
    message_1 = pair.initiator.send(logon)
    assert len(message_1) <= wire.wire_limit(limit)
    events = pair.acceptor.receive(message_1)
    assert events[1:] == [MessageReceived(logon, b"A")]


@pytest.mark.parametrize("limit", [256, 300, 1000, 5000, 65536])
def test_wire_limit_p256_logon_of_exactly_the_limit(limit: int) -> None:
    """The P256 ephemeral key is 65 bytes: the largest message 1 overhead."""
    suite = "Noise_KK_P256_AESGCM_SHA256"
    pair = session_pair(suite, clock=lambda: CLOCK_NS, max_message_size=limit)
    logon = sized_message(limit, b"A", b"BANK", b"VENUE", LOGON_BODY)
    message_1 = pair.initiator.send(logon)
    assert len(message_1) <= wire.wire_limit(limit)
    assert pair.acceptor.receive(message_1)[1:] == [MessageReceived(logon, b"A")]
    # Message 1 does not fit the transport bound: the receive limit must be larger than that.
    assert len(message_1) > _transport_bound(limit)


# Many short clear header fields: the worst case for message 2's authenticated header copy.
short_header_fields = st.lists(
    st.tuples(
        st.sampled_from([43, 97, 50, 57, 142, 143, 627, 628, 629, 630, 1128, 115, 128]),
        st.sampled_from([b"Y", b"N", b"9", b"AB", b"XYZ"]),
    ),
    max_size=400,
)


@given(
    st.integers(300, 3000),
    st.sampled_from(SUITES),
    short_header_fields,
    st.sampled_from([b"A", b"5"]),
)
def test_wire_limit_holds_for_message_2(
    limit: int, suite: str, extra: list[Field], msg_type: bytes
) -> None:
    """Regression: a Logon reply (or Logout) of the limit with a rich header was refused."""
    while extra and sum(len(b"%d=%s\x01" % f) for f in extra) > limit - 150:
        extra = extra[:-1]  # keep room for the standard header and some body
    pair = session_pair(suite, clock=lambda: CLOCK_NS, max_message_size=limit)
    logon = fix_message(b"A", 1, b"BANK", b"VENUE", LOGON_BODY, sending_time=STAMP)
    assert len(pair.transfer(pair.initiator, logon)) == 1
    body = LOGON_BODY if msg_type == b"A" else []
    reply = sized_message(limit, msg_type, b"VENUE", b"BANK", body, extra)
    message_2 = pair.acceptor.send(reply)
    assert len(message_2) <= wire.wire_limit(limit)
    events = pair.initiator.receive(message_2)
    assert isinstance(events[0], HandshakeComplete)
    assert events[1:] == [MessageReceived(reply, msg_type)]


def test_wire_limit_is_what_the_framers_use() -> None:
    pair = session_pair(max_message_size=1000)
    assert pair.directory.max_wire_size == wire.wire_limit(1000)
    limit = wire.wire_limit(1000)
    framer = Framer(limit)
    # A wire message one byte over the limit is refused as soon as its BodyLength is read.
    prefix = b"8=FIX.4.4\x019=%d\x01" % (limit + 1 - 7 - len(b"8=FIX.4.4\x019=0000\x01"))
    assert len(prefix) == len(b"8=FIX.4.4\x019=0000\x01")
    framer.feed(prefix)
    with pytest.raises(FramingError, match=f"message of {limit + 1} bytes exceeds"):
        framer.next_message()


def test_msg_type_is_the_third_field_of_a_delivered_message() -> None:
    for kind in (b"D", b"0", b"AE", b"5"):
        message = fix_message(kind, 2, b"BANK", b"VENUE", [(11, b"35=X"), (58, b"\x0135=Y")])
        assert wire.msg_type(message) == kind
