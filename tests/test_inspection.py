"""``fixsecure inspect``: keyless inspection of real captures, clean and tampered.

Captures are the real wire bytes of a session run through :func:`fixsecure.memory.session_pair`
in both directions; each anomaly is produced by tampering with one message of such a capture the
way an on-path attacker would (re-framed so only the intended rule breaks), and must be reported
with its code while the rest of the capture is still classified correctly.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from conftest import STAMP, logon, new_pair, order, receiver_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixsecure import wire
from fixsecure.cli import main
from fixsecure.framing import iter_fields
from fixsecure.inspection import Inspection, inspect_capture, render_json, render_text
from fixsecure.memory import fix_message
from fixsecure.session import Session
from fixsecure.suites import SUITES

Fields = list[tuple[int, bytes]]

MESSAGE_KEYS = {
    "record",
    "index",
    "line",
    "offset",
    "size",
    "kind",
    "msg_type",
    "msg_type_name",
    "sender",
    "target",
    "fields",
    "framing_ok",
    "securedata_chars",
    "ciphertext_len",
    "body_len",
    "base64_ok",
    "suite",
    "anomalies",
}
SUMMARY_KEYS = {
    "record",
    "format",
    "messages",
    "kinds",
    "anomalies",
    "anomaly_codes",
    "compid_pairs",
    "lines_skipped",
    "exit_status",
}
KINDS = ["handshake-1", "handshake-2"] + ["protected"] * 7
FILELOG_PREFIX = b"20261125-16:00:00.000 : "


class Capture:
    """A full session both ways: what each engine sent, and what went over the wire."""

    def __init__(self, suite: str) -> None:
        pair = new_pair(suite)
        self.plain: list[bytes] = []
        self.wire: list[bytes] = []

        def send(side: Session, message: bytes) -> None:
            wire_message = side.send(message)
            receiver_of(pair, side).receive(wire_message)
            self.plain.append(message)
            self.wire.append(wire_message)

        bank, venue = pair.initiator, pair.acceptor
        send(bank, logon())
        send(venue, logon(b"VENUE", b"BANK"))
        send(bank, order(2))
        report = [(37, b"O-1"), (17, b"E-1"), (150, b"0"), (39, b"0"), (55, b"EUR/USD")]
        send(venue, fix_message(b"8", 2, b"VENUE", b"BANK", report, sending_time=STAMP))
        send(bank, fix_message(b"1", 3, b"BANK", b"VENUE", [(112, b"T1")], sending_time=STAMP))
        send(venue, fix_message(b"0", 3, b"VENUE", b"BANK", [(112, b"T1")], sending_time=STAMP))
        resend = fix_message(
            b"D",
            2,
            b"BANK",
            b"VENUE",
            [(11, b"ORD-1"), (55, b"EUR/USD")],
            sending_time=STAMP,
            extra_header=[(43, b"Y"), (122, STAMP)],
        )
        send(bank, resend)
        send(bank, fix_message(b"5", 4, b"BANK", b"VENUE", sending_time=STAMP))
        send(venue, fix_message(b"5", 4, b"VENUE", b"BANK", sending_time=STAMP))

    @property
    def data(self) -> bytes:
        return b"".join(self.wire)


@pytest.fixture(scope="module")
def capture() -> Capture:
    return Capture(SUITES[0])


def rebuild(message: bytes, edit: Callable[[Fields], Fields]) -> bytes:
    """The message with its fields edited, re-framed with a correct BodyLength and CheckSum."""
    fields = edit(list(iter_fields(message)))
    return wire.assemble(b"8=%s\x01" % fields[0][1], [b"%d=%s\x01" % f for f in fields[2:-1]])


def set_secure_data(message: bytes, text: bytes) -> bytes:
    return rebuild(
        message,
        lambda fields: [
            (t, b"%d" % len(text) if t == 90 else text if t == 91 else v) for t, v in fields
        ],
    )


def insert_before(tag: int, new: tuple[int, bytes]) -> Callable[[Fields], Fields]:
    def edit(fields: Fields) -> Fields:
        at = [t for t, _ in fields].index(tag)
        return [*fields[:at], new, *fields[at:]]

    return edit


def replace_value(tag: int, value: bytes) -> Callable[[Fields], Fields]:
    return lambda fields: [(t, value if t == tag else v) for t, v in fields]


def inspect_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, *options: str
) -> tuple[int, str]:
    path = tmp_path / "capture.bin"
    path.write_bytes(data)
    status = main(["inspect", str(path), *options])
    captured = capsys.readouterr()
    assert captured.err == ""
    return status, captured.out


def json_records(out: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    records = [json.loads(line) for line in out.splitlines()]
    for record in records[:-1]:
        assert record["record"] == "message"
        assert set(record) == MESSAGE_KEYS
    assert records[-1]["record"] == "summary"
    assert set(records[-1]) == SUMMARY_KEYS
    return records[:-1], records[-1]


def codes(data: bytes) -> list[list[str]]:
    return [[a.code for a in report.anomalies] for report in inspect_capture(data).reports]


# --------------------------------------------------------------------------------------------
# Clean captures


@pytest.mark.parametrize("suite", SUITES)
def test_clean_capture_is_classified_and_sized_without_anomalies(suite: str) -> None:
    capture = Capture(suite)
    inspection = inspect_capture(capture.data)
    reports = inspection.reports
    assert [r.kind for r in reports] == KINDS
    assert [r.msg_type for r in reports] == [wire.split(m)[4] for m in capture.plain]
    assert all(r.anomalies == () and r.framing_ok and r.base64_ok for r in reports)
    assert [r.offset for r in reports] == [
        sum(map(len, capture.wire[:i])) for i in range(len(capture.wire))
    ]
    # Every clear field is there, in wire order; the implied body length is the engine's body.
    for report, wire_message, plain in zip(reports, capture.wire, capture.plain, strict=True):
        assert report.fields == tuple(iter_fields(wire_message))
        parts = wire.split(plain)
        assert report.body_len == parts[3] - parts[2]
    assert reports[0].suite == reports[1].suite == suite
    summary = inspection.summary
    assert summary.input_format == "raw"
    assert dict(summary.kinds) == {
        "handshake-1": 1,
        "handshake-2": 1,
        "protected": 7,
        "plaintext": 0,
        "unframed": 0,
    }
    assert summary.compid_pairs == ((b"BANK", b"VENUE", 5), (b"VENUE", b"BANK", 4))
    assert summary.anomalies == 0
    assert summary.exit_status == 0


def test_text_output_names_fields_and_hides_securedata(
    capture: Capture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = inspect_file(tmp_path, capsys, capture.data)
    assert status == 0
    lines = out.splitlines()
    headings = [line for line in lines if line.startswith("#")]
    size = len(capture.wire[0])
    assert headings[0] == f"#1  handshake-1  35=A (Logon)  BANK -> VENUE  (byte 0, {size} bytes)"
    assert headings[1].startswith("#2  handshake-2  35=A (Logon)  VENUE -> BANK  ")
    assert headings[2].startswith("#3  protected  35=D (NewOrderSingle)  BANK -> VENUE  ")
    assert "35=1 (TestRequest)" in headings[4]
    assert "35=5 (Logout)" in headings[-1]
    for tag, name in [
        (8, "BeginString"),
        (34, "MsgSeqNum"),
        (49, "SenderCompID"),
        (52, "SendingTime"),
        (56, "TargetCompID"),
        (43, "PossDupFlag"),
        (122, "OrigSendingTime"),
        (98, "EncryptMethod"),
        (25800, "FixSecureProtocol"),
        (25801, "FixSecureSuite"),
        (90, "SecureDataLen"),
        (91, "SecureData"),
    ]:
        assert re.search(rf"^ +{tag}  {name} ", out, re.MULTILINE), name
    for wire_message in capture.wire:
        secure = dict(iter_fields(wire_message))[91].decode()
        assert secure not in out
        assert f"{secure[:16]}... ({len(secure)} chars)" in out
    assert "plaintext body 18 bytes, Noise_KK_25519_AESGCM_SHA256" in out
    assert lines[-4:] == [
        "summary: 9 messages (handshake-1 1, handshake-2 1, protected 7, plaintext 0, unframed 0)",
        "anomalies: none",
        "compids: BANK -> VENUE (5), VENUE -> BANK (4)",
        "input: raw stream",
    ]


def test_json_lines_are_lossless_with_documented_keys(
    capture: Capture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = inspect_file(tmp_path, capsys, capture.data, "--json")
    assert status == 0
    messages, summary = json_records(out)
    assert [m["kind"] for m in messages] == KINDS
    for message, wire_message in zip(messages, capture.wire, strict=True):
        fields = message["fields"]
        assert isinstance(fields, list)
        assert all(isinstance(f["value"], str) for f in fields)
        rebuilt = b"".join(b"%d=%s\x01" % (f["tag"], f["value"].encode("latin-1")) for f in fields)
        assert rebuilt == wire_message
        assert message["framing_ok"] is True
        assert message["base64_ok"] is True
        assert message["anomalies"] == []
    first = messages[0]
    assert (first["msg_type"], first["msg_type_name"]) == ("A", "Logon")
    assert (first["sender"], first["target"], first["line"]) == ("BANK", "VENUE", None)
    assert first["suite"] == SUITES[0]
    assert first["securedata_chars"] == 88
    assert first["ciphertext_len"] == 66
    assert first["body_len"] == 18
    assert summary == {
        "record": "summary",
        "format": "raw",
        "messages": 9,
        "kinds": {
            "handshake-1": 1,
            "handshake-2": 1,
            "protected": 7,
            "plaintext": 0,
            "unframed": 0,
        },
        "anomalies": 0,
        "anomaly_codes": {},
        "compid_pairs": [
            {"sender": "BANK", "target": "VENUE", "messages": 5},
            {"sender": "VENUE", "target": "BANK", "messages": 4},
        ],
        "lines_skipped": 0,
        "exit_status": 0,
    }


def test_without_the_handshake_protected_messages_are_just_protected(capture: Capture) -> None:
    # The acceptor's side only: its Logon reply cannot be told from transport without message 1.
    venue = b"".join(capture.wire[1::2])
    assert [r.kind for r in inspect_capture(venue).reports] == ["protected"] * 4
    # No CompIDs, no direction: a protected message after a handshake-1 stays "protected".
    anonymous = rebuild(
        capture.wire[1], lambda fields: [(t, v) for t, v in fields if t not in (49, 56)]
    )
    reports = inspect_capture(capture.wire[0] + anonymous).reports
    assert [r.kind for r in reports] == ["handshake-1", "protected"]


def test_plaintext_session_is_not_an_anomaly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password_logon = logon(body=[(98, 0), (108, 30), (553, b"trader"), (554, b"hunter2")])
    data = password_logon + logon(b"VENUE", b"BANK") + order(2)
    status, out = inspect_file(tmp_path, capsys, data)
    assert status == 0
    assert out.count("  plaintext  ") == 3
    assert "Username               trader" in out
    assert "hunter2" not in out
    assert "***** (7 bytes, masked)" in out
    status, out = inspect_file(tmp_path, capsys, data, "--json")
    assert "hunter2" not in out  # masked in JSON as well: the input may be an engine's log
    messages, _ = json_records(out)
    password = next(f for f in messages[0]["fields"] if f["tag"] == 554)
    assert password == {"tag": 554, "name": "Password", "value": None, "masked_bytes": 7}


# --------------------------------------------------------------------------------------------
# Anomalies, one tampered capture each


def tampered(capture: Capture, index: int, message: bytes) -> bytes:
    return b"".join([*capture.wire[:index], message, *capture.wire[index + 1 :]])


def test_injected_plaintext_logout_after_the_handshake(
    capture: Capture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logout = fix_message(b"5", 3, b"VENUE", b"BANK", [(58, b"bye")], sending_time=STAMP)
    data = b"".join([*capture.wire[:3], logout, *capture.wire[3:]])
    status, out = inspect_file(tmp_path, capsys, data, "--json")
    assert status == 1
    messages, summary = json_records(out)
    assert [m["kind"] for m in messages] == [*KINDS[:3], "plaintext", *KINDS[3:]]
    injected = messages[3]
    assert [a["code"] for a in injected["anomalies"]] == ["plaintext-after-handshake"]
    assert "message #1" in injected["anomalies"][0]["text"]
    assert all(m["anomalies"] == [] for i, m in enumerate(messages) if i != 3)
    assert summary["anomaly_codes"] == {"plaintext-after-handshake": 1}
    assert summary["exit_status"] == 1


def test_plaintext_downgrade_logon_after_a_handshake(capture: Capture) -> None:
    data = capture.data + logon(seq=5)
    assert codes(data)[-1] == ["plaintext-after-handshake"]


def test_plaintext_of_another_session_is_not_flagged(capture: Capture) -> None:
    other = fix_message(b"0", 1, b"FUND", b"BROKER", sending_time=STAMP)
    assert codes(capture.data + other)[-1] == []


def test_clear_field_after_securedata(capture: Capture) -> None:
    message = rebuild(capture.wire[2], insert_before(10, (58, b"hello")))
    found = codes(tampered(capture, 2, message))
    assert found[2] == ["clear-field-after-securedata"]
    assert [code for found_codes in found for code in found_codes] == [
        "clear-field-after-securedata"
    ]
    report = inspect_capture(message).reports[0]
    assert "58 (Text)" in report.anomalies[0].text


def test_body_field_before_securedata(capture: Capture) -> None:
    message = rebuild(capture.wire[2], insert_before(90, (11, b"ORD-1")))
    found = codes(tampered(capture, 2, message))
    assert found[2] == ["non-header-field-before-securedata"]
    assert [code for found_codes in found for code in found_codes] == [
        "non-header-field-before-securedata"
    ]


def test_header_field_after_a_body_field_is_outside_the_clear_header(capture: Capture) -> None:
    def smuggle(fields: Fields) -> Fields:
        moved = [(t, v) for t, v in fields if t != 56]
        at = [t for t, _ in moved].index(90)
        return [*moved[:at], (58, b"x"), (56, b"VENUE"), *moved[at:]]

    report = inspect_capture(rebuild(capture.wire[2], smuggle)).reports[0]
    assert [a.code for a in report.anomalies] == ["non-header-field-before-securedata"]
    assert "58 (Text), 56 (TargetCompID)" in report.anomalies[0].text


def test_handshake_fields_are_allowed_only_in_a_logon(capture: Capture) -> None:
    message = rebuild(capture.wire[2], insert_before(90, (98, b"0")))
    assert codes(message) == [["non-header-field-before-securedata"]]


B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def set_padding_bit(text: bytes) -> bytes:
    """Same bytes under a lenient decoder: the last character before "==" gets a padding bit."""
    return text[:-3] + bytes([B64[B64.index(text[-3]) ^ 1]]) + b"=="


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda v: b"*" + v[1:], "is not valid base64"),
        (lambda v: v[:-1], "is not valid base64"),
        # binascii's strict mode accepts non-zero padding bits; the library's decoder must not.
        (set_padding_bit, "is not canonical base64"),
    ],
)
def test_bad_base64(capture: Capture, edit: Callable[[bytes], bytes], reason: str) -> None:
    logout = capture.wire[7]  # no body: 16 bytes of tag, so base64 ends in "=="
    secure = dict(iter_fields(logout))[91]
    assert secure.endswith(b"==")
    changed = edit(secure)
    message = set_secure_data(logout, changed)
    report = inspect_capture(tampered(capture, 7, message)).reports[7]
    assert [a.code for a in report.anomalies] == ["bad-base64"]
    assert reason in report.anomalies[0].text
    assert report.base64_ok is False
    assert report.ciphertext_len is None
    assert report.kind == "protected"


@pytest.mark.parametrize(
    ("declared", "text"), [(b"89", "says 89"), (b"088", "not a canonical number")]
)
def test_securedatalen_mismatch(capture: Capture, declared: bytes, text: str) -> None:
    message = capture.wire[2].replace(b"\x0190=88\x01", b"\x0190=" + declared + b"\x01")
    message = rebuild_checksums(message)
    report = inspect_capture(tampered(capture, 2, message)).reports[2]
    assert [a.code for a in report.anomalies] == ["securedatalen-mismatch"]
    assert text in report.anomalies[0].text
    assert report.kind == "protected"
    assert report.ciphertext_len == 66  # the SecureData itself is fine


def rebuild_checksums(message: bytes) -> bytes:
    """Fix BodyLength and CheckSum of a message edited in place (fields may not parse)."""
    body = message[message.index(b"\x01", message.index(b"\x019=") + 1) + 1 : -7]
    return wire.assemble(message[: message.index(b"\x01") + 1], [body])


def test_missing_securedata_and_split_pair(capture: Capture) -> None:
    no_data = rebuild(capture.wire[2], lambda f: [(t, v) for t, v in f if t != 91])
    assert codes(no_data) == [["securedata-layout"]]
    split_pair = rebuild(
        capture.wire[2],
        lambda f: [
            (t, v) for field in f for t, v in ([field, (58, b"x")] if field[0] == 90 else [field])
        ],
    )
    found = codes(split_pair)[0]
    assert "securedata-layout" in found


def test_wrong_checksum_is_reported_and_the_stream_continues(
    capture: Capture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = capture.wire[2]
    wrong = b"%03d" % ((int(message[-4:-1]) + 1) % 256)
    data = tampered(capture, 2, message[:-4] + wrong + b"\x01")
    status, out = inspect_file(tmp_path, capsys, data, "--json")
    assert status == 1
    messages, summary = json_records(out)
    assert [m["kind"] for m in messages] == KINDS  # its end was known: nothing else is lost
    assert messages[2]["framing_ok"] is False
    assert [a["code"] for a in messages[2]["anomalies"]] == ["bad-checksum"]
    assert summary["anomaly_codes"] == {"bad-checksum": 1}


def test_wrong_bodylength_resynchronises_at_the_next_message(capture: Capture) -> None:
    message = re.sub(
        rb"\x019=(\d+)\x01", lambda m: b"\x019=%d\x01" % (int(m[1]) - 3), capture.wire[2], count=1
    )
    reports = inspect_capture(tampered(capture, 2, message)).reports
    assert [r.kind for r in reports] == [*KINDS[:2], "unframed", *KINDS[3:]]
    assert [a.code for a in reports[2].anomalies] == ["bad-bodylength"]
    assert f"resynchronised at byte {reports[3].offset}" in reports[2].anomalies[0].text
    assert reports[2].size == len(message)
    assert reports[2].msg_type == b"D"  # a best-effort view of what it was
    assert all(not r.anomalies for i, r in enumerate(reports) if i != 2)


def test_garbage_and_truncation_in_a_raw_stream(capture: Capture) -> None:
    data = capture.wire[0] + b"\x00garbage" + capture.wire[1] + capture.wire[2][:50]
    reports = inspect_capture(data).reports
    assert [r.kind for r in reports] == ["handshake-1", "unframed", "handshake-2", "unframed"]
    assert [a.code for a in reports[1].anomalies] == ["bad-framing"]
    assert reports[1].size == len(b"\x00garbage")
    assert [a.code for a in reports[3].anomalies] == ["truncated"]


def test_replayed_securedata(capture: Capture) -> None:
    data = capture.data + capture.wire[0] + capture.wire[2]
    found = codes(data)
    assert found[-2:] == [["replayed-securedata"], ["replayed-securedata"]]
    assert "message #1" in inspect_capture(data).reports[-2].anomalies[0].text


@pytest.mark.parametrize(
    ("tag", "value", "code"),
    [
        (25801, b"Noise_KK_448_AESGCM_SHA512", "unknown-suite"),
        (25801, b"noise_kk_25519_aesgcm_sha256", "unknown-suite"),
        (25800, b"fixsecure/2", "unknown-protocol-label"),
        (98, b"1", "handshake-layout"),
        (52, b"20261125-25:00:00.000", "bad-sendingtime"),
    ],
)
def test_handshake_1_checks(
    capture: Capture,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tag: int,
    value: bytes,
    code: str,
) -> None:
    message = rebuild(capture.wire[0], replace_value(tag, value))
    status, out = inspect_file(tmp_path, capsys, tampered(capture, 0, message))
    assert status == 1
    reports = inspect_capture(tampered(capture, 0, message)).reports
    assert [r.kind for r in reports] == KINDS
    assert [a.code for a in reports[0].anomalies] == [code]
    assert f"! {code}: " in out


def test_handshake_1_without_protocol_fields_in_order(capture: Capture) -> None:
    def reorder(fields: Fields) -> Fields:
        tags = [t for t, _ in fields]
        i, j = tags.index(25800), tags.index(25801)
        fields[i], fields[j] = fields[j], fields[i]
        return fields

    assert codes(rebuild(capture.wire[0], reorder)) == [["handshake-layout"]]
    missing = rebuild(capture.wire[0], lambda f: [(t, v) for t, v in f if t != 25800])
    assert codes(missing) == [["unknown-protocol-label"]]


def test_short_securedata(capture: Capture) -> None:
    heartbeat = capture.wire[5]
    short = set_secure_data(heartbeat, b"AAAA")
    report = inspect_capture(short).reports[0]
    assert [a.code for a in report.anomalies] == ["short-securedata"]
    assert (report.ciphertext_len, report.body_len) == (3, None)


def test_malformed_message_is_reported_not_raised(capture: Capture) -> None:
    no_msgtype = rebuild(capture.wire[2], lambda f: [(t, v) for t, v in f if t != 35])
    report = inspect_capture(no_msgtype).reports[0]
    assert "malformed-message" in [a.code for a in report.anomalies]
    # Numbers beyond int()'s 4300-digit limit make the library's parsers raise ValueError.
    huge_tag = rebuild(capture.wire[2], insert_before(10, (1, b"x")))
    huge_tag = rebuild_checksums(
        huge_tag.replace(b"\x011=x\x01", b"\x01" + b"1" * 5000 + b"=x\x01")
    )
    report = inspect_capture(huge_tag).reports[0]
    assert [a.code for a in report.anomalies] == ["malformed-message"]
    assert report.kind == "protected"
    year_zero = rebuild(capture.wire[0], replace_value(52, b"00000101-00:00:00"))
    assert codes(year_zero) == [["bad-sendingtime"]]


# --------------------------------------------------------------------------------------------
# Line logs and input handling


def filelog(messages: list[bytes], separator: bytes = b"\x01") -> bytes:
    return b"".join(FILELOG_PREFIX + m.replace(b"\x01", separator) + b"\n" for m in messages)


@pytest.mark.parametrize("separator", [b"\x01", b"|", b"^A"])
def test_line_logs_parse_like_raw_captures(
    capture: Capture, separator: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = b"20261125-15:59:59.000 : Connecting to 127.0.0.1 port 9876\n\n"
    data += filelog(capture.wire, separator).replace(b"\n", b"\r\n", 3)
    status, out = inspect_file(tmp_path, capsys, data, "--json")
    assert status == 0
    messages, summary = json_records(out)
    assert [m["kind"] for m in messages] == KINDS
    assert [m["line"] for m in messages] == list(range(3, 3 + len(capture.wire)))
    assert all(m["framing_ok"] and m["anomalies"] == [] for m in messages)
    assert messages[0]["fields"][0] == {"tag": 8, "name": "BeginString", "value": "FIX.4.4"}
    assert summary["format"] == "lines"
    assert summary["lines_skipped"] == 1


def test_line_log_continues_after_a_bad_line(capture: Capture) -> None:
    bad = capture.wire[2][:-4] + b"999\x01"
    lines = [*capture.wire[:2], capture.wire[2][:60], bad, *capture.wire[3:]]
    reports = inspect_capture(filelog(lines, b"|")).reports
    assert [r.kind for r in reports] == [*KINDS[:2], "unframed", "protected", *KINDS[3:]]
    assert [r.line for r in reports] == list(range(1, len(lines) + 1))
    assert [a.code for a in reports[2].anomalies] == ["truncated"]
    assert [a.code for a in reports[3].anomalies] == ["bad-checksum"]
    assert sum(len(r.anomalies) for r in reports) == 2


def test_line_log_with_an_injected_plaintext_message(capture: Capture) -> None:
    logout = fix_message(b"5", 3, b"VENUE", b"BANK", sending_time=STAMP)
    found = codes(filelog([*capture.wire[:4], logout], b"|"))
    assert found == [[], [], [], [], ["plaintext-after-handshake"]]


def test_stdin(
    capture: Capture, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Stdin:
        buffer = BytesIO(filelog(capture.wire[:3]))

    monkeypatch.setattr(sys, "stdin", Stdin)
    assert main(["inspect"]) == 0
    assert "summary: 3 messages" in capsys.readouterr().out


def test_stdin_through_python_dash_m(capture: Capture) -> None:
    data = capture.data + fix_message(b"5", 9, b"BANK", b"VENUE", sending_time=STAMP)
    result = subprocess.run(
        [sys.executable, "-m", "fixsecure", "inspect", "-", "--json"],
        input=data,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    messages, summary = json_records(result.stdout.decode())
    assert [m["kind"] for m in messages] == [*KINDS, "plaintext"]
    assert summary["anomaly_codes"] == {"plaintext-after-handshake": 1}


def test_unusable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.pcap"
    assert main(["inspect", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"fixsecure inspect: cannot read {missing}: No such file or directory\n"
    assert main(["inspect", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"session started\nno messages today\n")
    assert main(["inspect", str(empty), "--json"]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "",
        f"fixsecure inspect: no FIX message found in {empty}\n",
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["set", "cut", "add"])
        ),
        max_size=4,
    ),
    as_lines=st.booleans(),
)
def test_tampered_captures_never_crash(
    capture: Capture, edits: list[tuple[int, int, str]], as_lines: bool
) -> None:
    data = bytearray(filelog(capture.wire, b"|") if as_lines else capture.data)
    for position, byte, how in edits:
        at = position % (len(data) + 1)
        if how == "set" and at < len(data):
            data[at] = byte
        elif how == "cut":
            del data[at : at + byte]
        else:
            data[at:at] = bytes([byte])
    inspection = inspect_capture(bytes(data))
    summary = inspection.summary
    assert summary.messages == len(inspection.reports)
    assert summary.anomalies == sum(len(r.anomalies) for r in inspection.reports)
    assert all(r.anomalies for r in inspection.reports if r.kind == "unframed")
    assert "".join(render_all(inspection))


def render_all(inspection: Inspection) -> list[str]:
    lines = [*render_text(inspection), *render_json(inspection)]
    for line in lines[-(len(inspection.reports) + 1) :]:
        json.loads(line)
    return lines
