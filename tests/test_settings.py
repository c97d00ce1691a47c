"""The settings reader: QuickFIX's format rules, fixsecure's stricter ones, typed values, check."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixsecure.cli import main
from fixsecure.errors import ConfigError
from fixsecure.keys import KeyPairFiles, load_public_key, write_keypair
from fixsecure.settings import (
    SECURE_KEYS,
    CheckResult,
    SectionValues,
    SecureSettings,
    SessionID,
    Settings,
    check_settings,
    load_settings,
    parse_settings,
)
from fixsecure.suites import DEFAULT_SUITE, SUITES

CHACHA = "Noise_KK_25519_ChaChaPoly_SHA256"
P256 = "Noise_KK_P256_AESGCM_SHA256"

PLAIN_SESSION = """\
[SESSION]
BeginString=FIX.4.4
SenderCompID=BANK
TargetCompID=VENUE
ConnectionType=initiator
FixSecureRequired=N
"""


def cfg(tmp_path: Path, text: str, name: str = "fix.cfg") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def session(
    sender: str = "BANK",
    target: str = "VENUE",
    kind: str = "initiator",
    extra: str = "",
    begin: str = "FIX.4.4",
) -> str:
    return (
        f"[SESSION]\nBeginString={begin}\nSenderCompID={sender}\nTargetCompID={target}\n"
        f"ConnectionType={kind}\n{extra}"
    )


def parse_error(text: str, path: str = "etc/venue.cfg") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, path)
    return info.value


# --------------------------------------------------------------------------------------------------
# Format: QuickFIX's rules


def test_minimal_file_and_every_default() -> None:
    settings = parse_settings("[DEFAULT]\nFixSecureRequired=N\n" + session(), "/etc/fix/a.cfg")
    assert isinstance(settings, Settings)
    assert settings.path == Path("/etc/fix/a.cfg")
    (only,) = settings.sessions
    assert only.session_id == SessionID("FIX.4.4", "BANK", "VENUE")
    assert only.connection_type == "initiator"
    assert only.section == "[SESSION] #1 (line 3)"
    assert only.line == 3
    assert only.path == Path("/etc/fix/a.cfg")
    assert only.secure == SecureSettings(
        required=False,
        suite=DEFAULT_SUITE,
        private_key_files=(),
        peer_public_key_files=(),
        logon_window=60.0,
        logon_future_skew=10.0,
        state_path=None,
        max_message_size=1_048_576,
        connect_host=None,
        connect_port=None,
        accept_host="0.0.0.0",
        accept_port=None,
        handshake_timeout=10.0,
        max_half_open=64,
        logon_rate_per_source=30,
        logon_rate_per_session=12,
        drain_timeout=5.0,
        stats_interval=0.0,
        busy_poll=0.0,
    )


def test_every_secure_key_is_read() -> None:
    extra = """\
FixSecureRequired=Y
FixSecureSuite=Noise_KK_P256_AESGCM_SHA256
FixSecurePrivateKeyFile=/k/venue-old.key,/k/venue-new.key
FixSecurePeerPublicKeyFile=/k/bank.pub
FixSecureLogonWindow=30.5
FixSecureLogonFutureSkew=0
FixSecureStatePath=/var/lib/fixsecure
FixSecureMaxMessageSize=4096
FixSecureConnectHost=unused.example
FixSecureConnectPort=1
FixSecureAcceptHost=10.1.2.3
FixSecureAcceptPort=65535
FixSecureHandshakeTimeout=2
FixSecureMaxHalfOpen=1
FixSecureLogonRatePerSource=5
FixSecureLogonRatePerSession=2
FixSecureDrainTimeout=0
FixSecureStatsInterval=15
FixSecureBusyPoll=250
"""
    secure = parse_settings(session("VENUE", "BANK", "acceptor", extra)).sessions[0].secure
    assert secure == SecureSettings(
        required=True,
        suite=P256,
        private_key_files=(Path("/k/venue-old.key"), Path("/k/venue-new.key")),
        peer_public_key_files=(Path("/k/bank.pub"),),
        logon_window=30.5,
        logon_future_skew=0.0,
        state_path=Path("/var/lib/fixsecure"),
        max_message_size=4096,
        connect_host="unused.example",
        connect_port=1,
        accept_host="10.1.2.3",
        accept_port=65535,
        handshake_timeout=2.0,
        max_half_open=1,
        logon_rate_per_source=5,
        logon_rate_per_session=2,
        drain_timeout=0.0,
        stats_interval=15.0,
        busy_poll=0.00025,
    )
    assert len(SECURE_KEYS) == len(SecureSettings.__dataclass_fields__)


def test_sessions_inherit_default_and_override_it() -> None:
    text = (
        "[DEFAULT]\nConnectionType=initiator\nBeginString=FIX.4.2\nFixSecureRequired=N\n"
        "HeartBtInt=30\n"
        + "[SESSION]\nSenderCompID=A\nTargetCompID=B\n"
        + "[SESSION]\nSenderCompID=A\nTargetCompID=C\nheartbtint=5\nBeginString=FIX.4.4\n"
    )
    first, second = parse_settings(text).sessions
    assert first.session_id == SessionID("FIX.4.2", "A", "B")
    assert first.get("HeartBtInt") == "30"
    assert second.session_id == SessionID("FIX.4.4", "A", "C")
    assert second.get("HEARTBTINT") == "5"
    assert second.get_int("HeartBtInt") == 5
    assert second.secure.required is False


def test_default_after_the_sessions_still_applies() -> None:
    """QuickFIX finds [DEFAULT] wherever it is; so must we."""
    text = session(extra="") + "[DEFAULT]\nFixSecureRequired=N\nHeartBtInt=30\n"
    settings = parse_settings(text)
    assert settings.sessions[0].secure.required is False
    assert settings.default["heartbtint"] == "30"


def test_keys_are_case_insensitive_and_keep_their_spelling() -> None:
    text = (
        "[SESSION]\nbeginstring=FIX.4.4\nSENDERCOMPID=BANK\nTargetCompId=VENUE\n"
        "connectiontype=initiator\nfixsecurerequired=N\nSocketConnectHOST=127.0.0.1\n"
    )
    only = parse_settings(text).sessions[0]
    assert only.session_id == SessionID("FIX.4.4", "BANK", "VENUE")
    assert only.get("SocketConnectHost") == "127.0.0.1"
    assert "socketconnecthost" in only.values
    assert only.values["SOCKETCONNECTHOST"] == "127.0.0.1"
    assert "SocketConnectHOST" in list(only.values)
    assert only.key_name("socketconnecthost") == "SocketConnectHOST"
    assert only.key_name("Missing") == "Missing"
    assert only.get("Missing") is None
    assert only.get("Missing", "x") == "x"


def test_comments_blank_lines_whitespace_and_crlf() -> None:
    text = (
        "# a comment\r\n"
        "   \r\n"
        "  [ DEFAULT ]  \r\n"
        "\t# indented comment\r\n"
        "  FixSecureRequired =  N  \r\n"
        "[SESSION]\r\n"
        "BeginString=FIX.4.4\r\nSenderCompID = BANK\r\nTargetCompID=VENUE\r\n"
        "ConnectionType=initiator\r\n"
        "Password=a=b # not a comment\r\n"
    )
    only = parse_settings(text).sessions[0]
    assert only.session_id.sender_comp_id == "BANK"
    assert only.secure.required is False
    assert only.get("Password") == "a=b # not a comment"


def test_no_end_of_line_comments_as_in_quickfix() -> None:
    err = parse_error(session(extra="FixSecureRequired=N # plaintext for now\n"))
    assert "FixSecureRequired: must be Y or N" in str(err)


def test_unicode_key_is_upper_cased_like_c_toupper() -> None:
    only = parse_settings(session(extra="FixSecureRequired=N\nStraße=1\n")).sessions[0]
    assert only.get("STRAßE") == "1"
    assert only.get("STRASSE") is None


# --------------------------------------------------------------------------------------------------
# Format: stricter than QuickFIX


def test_line_without_equals_is_an_error() -> None:
    err = parse_error(session(extra="FixSecureRequired N\n"))
    assert err.path == Path("etc/venue.cfg")
    assert err.section == "[SESSION] #1 (line 1)"
    assert "line 6 is neither a comment (#), a [section] header nor Key=Value" in err.message
    assert "QuickFIX would skip it silently" in err.message


def test_section_header_with_trailing_comment_is_an_error() -> None:
    err = parse_error("[SESSION] # venue\n" + session()[10:])
    assert "line 1 is neither a comment" in str(err)


def test_key_value_before_any_section() -> None:
    err = parse_error("FixSecureRequired=N\n" + session())
    assert str(err) == (
        "etc/venue.cfg: FixSecureRequired: line 1: Key=Value before the first [DEFAULT] or "
        "[SESSION] header (QuickFIX would silently drop it)"
    )


def test_duplicate_key_in_one_section_names_both_lines() -> None:
    err = parse_error(session(extra="FixSecureSuite=a\nfixsecuresuite=b\n"))
    assert err.section == "[SESSION] #1 (line 1)"
    assert err.key == "FixSecureSuite"
    assert err.message == "set twice in this section, at line 6 and line 7"


def test_same_key_in_default_and_session_is_fine() -> None:
    text = "[DEFAULT]\nSenderCompID=X\nFixSecureRequired=N\n" + session()
    assert parse_settings(text).sessions[0].session_id.sender_comp_id == "BANK"


def test_second_default_section() -> None:
    err = parse_error("[DEFAULT]\nA=1\n" + session() + "[DEFAULT]\nB=2\n")
    assert err.section == "[DEFAULT] (line 8)"
    assert "a second [DEFAULT] section; the first starts at line 1" in err.message


@pytest.mark.parametrize(
    ("header", "hint"),
    [("[SESSIONS]", False), ("[Session]", True), ("[default]", True), ("[]", False)],
)
def test_unknown_section(header: str, hint: bool) -> None:
    err = parse_error(session() + header + "\nA=1\n")
    name = header[1:-1]
    assert f"line 6: unknown section [{name}]; only [DEFAULT] and [SESSION] exist" in err.message
    assert ("case-sensitive" in err.message) is hint


def test_empty_key() -> None:
    err = parse_error(session(extra="=value\n"))
    assert "line 6: '=' with no key before it" in str(err)


def test_no_session_section() -> None:
    err = parse_error("[DEFAULT]\nConnectionType=initiator\n")
    assert str(err) == "etc/venue.cfg: has no [SESSION] section"


def test_line_length_limit_of_quickfix() -> None:
    ok = "HeartBtInt=" + "1" * (1023 - len("HeartBtInt="))
    assert parse_settings(session(extra=f"FixSecureRequired=N\n{ok}\n")).sessions
    err = parse_error(session(extra=f"{ok}1\n"))
    assert "line 6 is longer than 1023 bytes" in str(err)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.cfg"
    path.write_bytes(session(extra="# caf\xe9\n").encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == f"{path}: line 6: not valid UTF-8; save the file as UTF-8"


def test_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.cfg"
    path.write_bytes(b"\xef\xbb\xbf" + session().encode())
    with pytest.raises(ConfigError, match="byte-order mark"):
        load_settings(path)
    with pytest.raises(ConfigError, match="byte-order mark"):
        parse_settings("\ufeff" + session())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.cfg")
    assert str(info.value) == (
        f"{tmp_path / 'nope.cfg'}: cannot read the settings file: No such file or directory"
    )


def test_unknown_fixsecure_key_is_a_typo() -> None:
    err = parse_error(session(extra="FixSecureRequired=N\nFixSecureLogonWindw=5\n"))
    assert err.key == "FixSecureLogonWindw"
    assert "is not a fixsecure setting; did you mean FixSecureLogonWindow?" in err.message


def test_unknown_engine_keys_are_left_alone() -> None:
    text = session(extra="FixSecureRequired=N\nSomeVendorKey=whatever\nUseDataDictionary=maybe\n")
    assert parse_settings(text).sessions[0].get("somevendorkey") == "whatever"


# --------------------------------------------------------------------------------------------------
# Session identity and types


@pytest.mark.parametrize("key", ["BeginString", "SenderCompID", "TargetCompID", "ConnectionType"])
def test_required_engine_keys(key: str) -> None:
    lines = [
        line for line in session(extra="FixSecureRequired=N\n").splitlines() if key not in line
    ]
    err = parse_error("\n".join(lines) + "\n")
    assert err.section == "[SESSION] #1 (line 1)"
    assert err.key == key
    assert "is required but not set" in err.message


def test_empty_required_value() -> None:
    err = parse_error(session(sender=""))
    assert err.key == "SenderCompID"
    assert "is empty" in err.message


def test_begin_string_must_be_known() -> None:
    err = parse_error(session(begin="FIX.5.0"))
    assert str(err) == (
        "etc/venue.cfg: [SESSION] #1 (line 1): BeginString: must be one of FIX.4.0, FIX.4.1, "
        "FIX.4.2, FIX.4.3, FIX.4.4, FIXT.1.1, not 'FIX.5.0'"
    )


@pytest.mark.parametrize(
    "begin", ["FIX.4.0", "FIX.4.1", "FIX.4.2", "FIX.4.3", "FIX.4.4", "FIXT.1.1"]
)
def test_every_begin_string(begin: str) -> None:
    text = session(begin=begin, extra="FixSecureRequired=N\n")
    assert parse_settings(text).sessions[0].session_id.begin_string == begin


@pytest.mark.parametrize(("value", "hint"), [("server", False), ("Initiator", True)])
def test_connection_type(value: str, hint: bool) -> None:
    err = parse_error(session(kind=value))
    assert err.key == "ConnectionType"
    assert "must be initiator or acceptor" in err.message
    assert ("lower case" in err.message) is hint


def test_session_id_with_sub_location_and_qualifier() -> None:
    extra = (
        "FixSecureRequired=N\nSenderSubID=DESK\nSenderLocationID=LDN\nTargetSubID=GW\n"
        "SessionQualifier=Q1\n"
    )
    sid = parse_settings(session(extra=extra)).sessions[0].session_id
    assert sid == SessionID("FIX.4.4", "BANK", "VENUE", "DESK", "LDN", "GW", "", "Q1")
    assert str(sid) == "FIX.4.4:BANK/DESK/LDN->VENUE/GW:Q1"
    assert str(sid.reversed()) == "FIX.4.4:VENUE/GW->BANK/DESK/LDN:Q1"


def test_session_id_str() -> None:
    assert str(SessionID("FIX.4.4", "BANK", "VENUE")) == "FIX.4.4:BANK->VENUE"
    assert SessionID("FIX.4.4", "BANK", "VENUE").reversed() == SessionID("FIX.4.4", "VENUE", "BANK")


_ids = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/:>"), max_size=6
)


@given(
    st.builds(
        SessionID,
        st.sampled_from(["FIX.4.2", "FIXT.1.1"]),
        _ids,
        _ids,
        _ids,
        _ids,
        _ids,
        _ids,
        _ids,
    )
)
def test_reversed_is_an_involution(sid: SessionID) -> None:
    assert sid.reversed().reversed() == sid
    assert sid.reversed().sender_comp_id == sid.target_comp_id
    assert sid.reversed().qualifier == sid.qualifier


def test_duplicate_session() -> None:
    text = session(extra="FixSecureRequired=N\n") + session(extra="FixSecureRequired=N\n")
    err = parse_error(text)
    assert err.section == "[SESSION] #2 (line 7)"
    assert "duplicate session FIX.4.4:BANK->VENUE: [SESSION] #1 (line 1) defines it already" in (
        err.message
    )


def test_initiators_may_differ_only_by_qualifier() -> None:
    text = session(extra="FixSecureRequired=N\nSessionQualifier=A\n") + session(
        extra="FixSecureRequired=N\nSessionQualifier=B\n"
    )
    settings = parse_settings(text)
    assert [str(s.session_id) for s in settings.initiators()] == [
        "FIX.4.4:BANK->VENUE:A",
        "FIX.4.4:BANK->VENUE:B",
    ]
    assert settings.acceptors() == ()


def test_acceptors_that_differ_only_by_qualifier_are_ambiguous() -> None:
    one = session("VENUE", "BANK", "acceptor", "FixSecureRequired=N\nSessionQualifier=A\n")
    two = session("VENUE", "BANK", "acceptor", "FixSecureRequired=N\nSessionQualifier=B\n")
    err = parse_error(one + two)
    assert err.section == "[SESSION] #2 (line 8)"
    assert "ambiguous with [SESSION] #1 (line 1)" in err.message
    assert "CompIDs of the incoming Logon" in err.message


def test_find_initiators_acceptors() -> None:
    text = session(extra="FixSecureRequired=N\n") + session(
        "VENUE", "BANK", "acceptor", "FixSecureRequired=N\n"
    )
    settings = parse_settings(text)
    first, second = settings.sessions
    assert settings.initiators() == (first,)
    assert settings.acceptors() == (second,)
    assert settings.find(SessionID("FIX.4.4", "VENUE", "BANK")) is second
    assert settings.find(SessionID("FIX.4.4", "VENUE", "BANK", qualifier="X")) is None


# --------------------------------------------------------------------------------------------------
# FixSecure keys


def test_unknown_suite_message_reads_like_the_brief() -> None:
    text = session(extra="FixSecureRequired=N\n") + session(
        "B", "C", extra="FixSecureRequired=N\nFixSecureSuite=Noise_XX_25519_AESGCM_SHA256\n"
    )
    err = parse_error(text)
    assert str(err) == (
        "etc/venue.cfg: [SESSION] #2 (line 7): FixSecureSuite: unknown suite "
        f"'Noise_XX_25519_AESGCM_SHA256'; expected one of {', '.join(SUITES)}"
    )


@pytest.mark.parametrize(("value", "expected"), [("Y", True), ("N", False)])
def test_required_flag(value: str, expected: bool) -> None:
    extra = (
        f"FixSecureRequired={value}\n"
        "FixSecurePrivateKeyFile=a.key\nFixSecurePeerPublicKeyFile=b.pub\n"
    )
    assert parse_settings(session(extra=extra)).sessions[0].secure.required is expected


@pytest.mark.parametrize("value", ["y", "n", "Yes", "true", "1", ""])
def test_required_flag_accepts_only_y_or_n(value: str) -> None:
    err = parse_error(session(extra=f"FixSecureRequired={value}\n"))
    assert err.key == "FixSecureRequired"
    assert "must be Y or N" in err.message or "is empty" in err.message


def test_required_session_needs_a_private_key() -> None:
    err = parse_error(session(extra="FixSecurePeerPublicKeyFile=venue.pub\n"))
    assert err.key == "FixSecurePrivateKeyFile"
    assert err.message.startswith("is not set; with FixSecureRequired=Y the session needs")
    assert "fixsecure keygen" in err.message


def test_required_session_needs_a_peer_key() -> None:
    err = parse_error(session(extra="FixSecurePrivateKeyFile=bank.key\n"))
    assert err.key == "FixSecurePeerPublicKeyFile"
    assert "the counterparty's public key" in err.message


def test_optional_session_with_half_the_keys() -> None:
    err = parse_error(session(extra="FixSecureRequired=N\nFixSecurePeerPublicKeyFile=v.pub\n"))
    assert err.key == "FixSecurePrivateKeyFile"
    assert "FixSecurePeerPublicKeyFile is set and a handshake needs both" in err.message


def test_initiator_names_exactly_one_key_of_each() -> None:
    extra = "FixSecurePrivateKeyFile=old.key,new.key\nFixSecurePeerPublicKeyFile=venue.pub\n"
    err = parse_error(session(extra=extra))
    assert err.key == "FixSecurePrivateKeyFile"
    assert "an initiator session names exactly one file here, not 2" in err.message
    assert "the acceptor" in err.message
    assert "tries each" in err.message
    extra = "FixSecurePrivateKeyFile=bank.key\nFixSecurePeerPublicKeyFile=old.pub, new.pub\n"
    assert parse_error(session(extra=extra)).key == "FixSecurePeerPublicKeyFile"


def test_acceptor_may_name_two_keys_but_not_three() -> None:
    base = "FixSecureStatePath=state\nFixSecurePeerPublicKeyFile=a.pub,b.pub\n"
    ok = session("VENUE", "BANK", "acceptor", base + "FixSecurePrivateKeyFile=1.key,2.key\n")
    assert len(parse_settings(ok).sessions[0].secure.private_key_files) == 2
    bad = session("VENUE", "BANK", "acceptor", base + "FixSecurePrivateKeyFile=1.key,2.key,3.key\n")
    err = parse_error(bad)
    assert err.key == "FixSecurePrivateKeyFile"
    assert "lists 3 files; at most 2" in err.message


def test_key_file_list_errors() -> None:
    err = parse_error(
        session(extra="FixSecurePrivateKeyFile=a.key,,\nFixSecurePeerPublicKeyFile=b\n")
    )
    assert "empty entry" in err.message
    err = parse_error(
        session(
            "V",
            "B",
            "acceptor",
            "FixSecurePrivateKeyFile=a.key, a.key\nFixSecurePeerPublicKeyFile=b\n",
        )
    )
    assert "lists a.key twice" in err.message


def test_acceptor_requiring_encryption_needs_a_state_path() -> None:
    extra = "FixSecurePrivateKeyFile=v.key\nFixSecurePeerPublicKeyFile=b.pub\n"
    err = parse_error(session("VENUE", "BANK", "acceptor", extra))
    assert err.key == "FixSecureStatePath"
    assert "is required for an acceptor session that accepts encrypted Logons" in err.message
    plain = session("VENUE", "BANK", "acceptor", "FixSecureRequired=N\n")
    assert parse_settings(plain).sessions[0].secure.state_path is None
    # Encryption optional but possible (keys present): replays must still be refused.
    optional = session("VENUE", "BANK", "acceptor", "FixSecureRequired=N\n" + extra)
    assert parse_error(optional).key == "FixSecureStatePath"


def test_relative_paths_resolve_against_the_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    extra = (
        "FixSecurePrivateKeyFile=keys/venue.key\nFixSecurePeerPublicKeyFile=/abs/bank.pub\n"
        "FixSecureStatePath=../var/state\n"
    )
    path = cfg(etc, session("VENUE", "BANK", "acceptor", extra))
    monkeypatch.chdir(tmp_path)
    secure = load_settings(Path("etc") / "fix.cfg").sessions[0].secure
    assert secure.private_key_files == (etc / "keys" / "venue.key",)
    assert secure.peer_public_key_files == (Path("/abs/bank.pub"),)
    assert secure.state_path == etc / ".." / "var" / "state"
    assert all(p.is_absolute() for p in (*secure.private_key_files, secure.state_path))
    assert load_settings(path).sessions[0].secure == secure


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("FixSecureLogonWindow=0", "must be greater than 0, not 0"),
        ("FixSecureLogonWindow=-5", "must be greater than 0, not -5"),
        ("FixSecureLogonWindow=1e3", "must be a number such as 2.5, not '1e3'"),
        ("FixSecureLogonWindow=inf", "must be a number such as 2.5, not 'inf'"),
        ("FixSecureLogonWindow=", "is empty"),
        ("FixSecureLogonFutureSkew=-1", "must be between 0 and 86400, not -1"),
        ("FixSecureMaxMessageSize=4095", "must be between 4096 and 67108864, not 4095"),
        ("FixSecureMaxMessageSize=1MB", "must be a whole number, not '1MB'"),
        ("FixSecureMaxMessageSize=1_000_000", "must be a whole number, not '1_000_000'"),
        ("FixSecureConnectPort=0", "must be between 1 and 65535, not 0"),
        ("FixSecureAcceptPort=65536", "must be between 1 and 65535, not 65536"),
        ("FixSecureAcceptPort=http", "must be a whole number, not 'http'"),
        ("SocketAcceptPort=70000", "must be between 1 and 65535, not 70000"),
        ("SocketConnectPort=x", "must be a whole number, not 'x'"),
        ("FixSecureHandshakeTimeout=0", "must be greater than 0"),
        ("FixSecureMaxHalfOpen=0", "must be at least 1, not 0"),
        ("FixSecureLogonRatePerSource=0", "must be at least 1"),
        ("FixSecureLogonRatePerSession=-2", "must be at least 1"),
        ("FixSecureDrainTimeout=-0.5", "must be between 0 and 3600, not -0.5"),
        ("FixSecureStatsInterval=soon", "must be a number"),
        ("FixSecureBusyPoll=-1", "must be between 0 and 1000000, not -1"),
        ("FixSecureBusyPoll=1000001", "must be between 0 and 1000000, not 1000001"),
        ("FixSecureBusyPoll=0.5", "must be a whole number, not '0.5'"),
        ("FixSecureAcceptHost=a b", "must be a host name or address"),
    ],
)
def test_number_and_port_errors_name_the_key(line: str, message: str) -> None:
    err = parse_error(session(extra=f"FixSecureRequired=N\n{line}\n"))
    assert err.path == Path("etc/venue.cfg")
    assert err.section == "[SESSION] #1 (line 1)"
    assert err.key == line.split("=", maxsplit=1)[0]
    assert message in err.message


def test_connect_host_and_port_go_together() -> None:
    err = parse_error(session(extra="FixSecureRequired=N\nFixSecureConnectHost=venue.example\n"))
    assert err.key == "FixSecureConnectPort"
    assert "is not set but FixSecureConnectHost is" in err.message


def test_error_in_an_inherited_value_points_at_default() -> None:
    text = "[DEFAULT]\nFixSecureRequired=N\nfixsecurelogonwindow=soon\n" + session()
    err = parse_error(text)
    assert err.section == "[SESSION] #1 (line 4)"
    assert err.key == "fixsecurelogonwindow"
    assert err.message.endswith("(inherited from [DEFAULT], line 3)")


# --------------------------------------------------------------------------------------------------
# Helpers for other modules


def test_typed_getters_for_engine_keys() -> None:
    extra = "FixSecureRequired=N\nHeartBtInt=30\nResetOnLogon=Y\nLatency=1.5\nBad=x\n"
    only = parse_settings(session(extra=extra), "etc/bank.cfg").sessions[0]
    assert only.get_int("heartbtint") == 30
    assert only.get_int("Missing", 7) == 7
    assert only.get_int("Missing") is None
    assert only.get_bool("ResetOnLogon") is True
    assert only.get_bool("Missing", False) is False
    assert only.get_float("Latency") == 1.5
    assert only.get_float("Missing", 2.0) == 2.0
    with pytest.raises(ConfigError) as info:
        only.get_int("HeartBtInt", minimum=31)
    assert str(info.value) == (
        "etc/bank.cfg: [SESSION] #1 (line 1): HeartBtInt: must be at least 31, not 30"
    )
    with pytest.raises(ConfigError, match=r"Bad: must be Y or N"):
        only.get_bool("bad")
    with pytest.raises(ConfigError, match=r"Latency: must be at most 1, not 1.5"):
        only.get_float("Latency", maximum=1)
    err = only.error("heartbtint", "too slow for this venue")
    assert str(err) == "etc/bank.cfg: [SESSION] #1 (line 1): HeartBtInt: too slow for this venue"


def test_values_repr_hides_passwords() -> None:
    extra = "FixSecureRequired=N\nPassword=hunter2\nSSLKeyPassphrase=swordfish\n"
    only = parse_settings(session(extra=extra)).sessions[0]
    for text in (repr(only.values), repr(only), repr(parse_settings(session(extra=extra)))):
        assert "hunter2" not in text
        assert "swordfish" not in text
    assert "'SenderCompID': 'BANK'" in repr(only.values)
    with pytest.raises(ConfigError) as info:
        only.get_int("Password")
    assert "hunter2" not in str(info.value)
    assert "(value hidden)" in str(info.value)


def test_section_values_mapping() -> None:
    values = SectionValues({"SenderCompID": "BANK", "HeartBtInt": "30"})
    assert values["sendercompid"] == "BANK"
    assert list(values) == ["SenderCompID", "HeartBtInt"]
    assert len(values) == 2
    assert not values.__contains__(3)
    assert values.spelling("HEARTBTINT") == "HeartBtInt"
    assert values.line("HeartBtInt") is None
    assert values.inherited("HeartBtInt") is False
    assert hash(values) == hash(SectionValues({"SenderCompID": "BANK", "HeartBtInt": "30"}))
    with pytest.raises(KeyError):
        values["missing"]


_key = st.text(st.sampled_from("abcXYZ"), min_size=1, max_size=8).map(lambda k: "K" + k)
_value = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12).map(
    lambda v: v.strip(" ")
)


@given(st.dictionaries(_key, _value, max_size=8), st.data())
def test_round_trip_with_any_spelling_and_padding(
    pairs: dict[str, str], data: st.DataObject
) -> None:
    unique: dict[str, tuple[str, str]] = {}
    for key, value in pairs.items():
        unique.setdefault(key.upper(), (key, value))
    lines = []
    for key, value in unique.values():
        if data.draw(st.booleans()):
            lines.append("# " + key)
        pad = data.draw(st.sampled_from(["", " ", "\t", "  "]))
        lines.append(f"{pad}{key}{pad}={pad}{value}{pad}")
    text = session(extra="FixSecureRequired=N\n") + "\n".join(lines) + "\n"
    only = parse_settings(text).sessions[0]
    for key, value in unique.values():
        shuffled = "".join(c.lower() if data.draw(st.booleans()) else c.upper() for c in key)
        assert only.get(shuffled) == value
        assert only.key_name(shuffled) == key


# --------------------------------------------------------------------------------------------------
# fixsecure check


@pytest.fixture
def keydir(tmp_path: Path) -> dict[str, KeyPairFiles]:
    keys_dir = tmp_path / "keys"
    return {
        "bank": write_keypair("bank", DEFAULT_SUITE, keys_dir),
        "venue": write_keypair("venue", DEFAULT_SUITE, keys_dir),
        "venue2": write_keypair("venue2", DEFAULT_SUITE, keys_dir),
        "p256": write_keypair("p256", P256, keys_dir),
    }


def good_file(tmp_path: Path, initiator_extra: str = "", acceptor_extra: str = "") -> Path:
    text = f"""\
# one file, both ends (as in a loopback test)
[DEFAULT]
SocketConnectHost=127.0.0.1
HeartBtInt=30

[SESSION]
BeginString=FIX.4.4
SenderCompID=BANK
TargetCompID=VENUE
ConnectionType=initiator
SocketConnectPort=5001
FixSecurePrivateKeyFile=keys/bank.key
FixSecurePeerPublicKeyFile=keys/venue.pub
FixSecureConnectHost=venue.example
FixSecureConnectPort=9443
{initiator_extra}
[SESSION]
BeginString=FIX.4.4
SenderCompID=VENUE
TargetCompID=BANK
ConnectionType=acceptor
SocketAcceptPort=6001
FixSecurePrivateKeyFile=keys/venue.key,keys/venue2.key
FixSecurePeerPublicKeyFile=keys/bank.pub
FixSecureStatePath=state
FixSecureAcceptPort=9443
{acceptor_extra}
"""
    return cfg(tmp_path, text)


def test_check_good_file(tmp_path: Path, keydir: dict[str, KeyPairFiles]) -> None:
    path = good_file(tmp_path)
    results = check_settings(path)
    bank, venue, venue2 = (keydir[n].fingerprint for n in ("bank", "venue", "venue2"))
    assert results == [
        CheckResult(
            SessionID("FIX.4.4", "BANK", "VENUE"),
            "[SESSION] #1 (line 6)",
            True,
            f"initiator {DEFAULT_SUITE} key {bank} peer {venue} -> venue.example:9443",
        ),
        CheckResult(
            SessionID("FIX.4.4", "VENUE", "BANK"),
            "[SESSION] #2 (line 17)",
            True,
            f"acceptor {DEFAULT_SUITE} key {venue},{venue2} peer {bank} listens on 0.0.0.0:9443",
        ),
    ]
    assert str(results[0]) == (
        f"ok   FIX.4.4:BANK->VENUE initiator {DEFAULT_SUITE} key {bank} peer {venue} "
        "-> venue.example:9443"
    )
    assert not (tmp_path / "state").exists(), "check must not create the state directory"


def test_cli_check_ok(
    tmp_path: Path, keydir: dict[str, KeyPairFiles], capsys: pytest.CaptureFixture[str]
) -> None:
    path = good_file(tmp_path)
    assert main(["check", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("ok   FIX.4.4:BANK->VENUE initiator ")
    assert lines[1].startswith("ok   FIX.4.4:VENUE->BANK acceptor ")
    assert err == ""


def test_cli_check_reports_each_session(
    tmp_path: Path, keydir: dict[str, KeyPairFiles], capsys: pytest.CaptureFixture[str]
) -> None:
    keydir["venue2"].private_path.chmod(0o640)
    path = good_file(tmp_path)
    assert main(["check", "-c", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ok   FIX.4.4:BANK->VENUE")
    assert lines[1] == (
        f"FAIL FIX.4.4:VENUE->BANK {keydir['venue2'].private_path}: [SESSION] #2 (line 17): "
        "FixSecurePrivateKeyFile: has mode 0640: group or others can access this private key; "
        f"it must be readable by its owner only: run `chmod 600 {keydir['venue2'].private_path}`"
    )


def test_cli_check_unparsable_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cfg(tmp_path, "[SESSION]\nnot a setting\n")
    assert main(["check", "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"fixsecure check: {path}: [SESSION] #1 (line 1): line 2 is neither")


def test_cli_check_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(tmp_path / "none.cfg")]) == 2
    assert "cannot read the settings file" in capsys.readouterr().err


def test_check_invalid_session_fails_alone(tmp_path: Path, keydir: dict[str, KeyPairFiles]) -> None:
    path = good_file(tmp_path, initiator_extra="FixSecureSuite=Noise_XX\n")
    first, second = check_settings(path)
    assert not first.ok
    assert first.session_id == SessionID("FIX.4.4", "BANK", "VENUE")
    assert first.message == (
        f"{path}: [SESSION] #1 (line 6): FixSecureSuite: unknown suite 'Noise_XX'; "
        f"expected one of {', '.join(SUITES)}"
    )
    assert second.ok


def test_check_session_without_id(tmp_path: Path) -> None:
    path = cfg(tmp_path, "[SESSION]\nConnectionType=initiator\n" + PLAIN_SESSION)
    first, second = check_settings(path)
    assert first.session_id is None
    assert str(first).startswith("FAIL [SESSION] #1 (line 1) ")
    assert "BeginString: is required" in first.message
    assert str(second) == "ok   FIX.4.4:BANK->VENUE initiator plaintext (FixSecureRequired=N)"


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        (
            "FixSecurePeerPublicKeyFile",
            "keys/missing.pub",
            "missing.pub: [SESSION] #1 (line 6): FixSecurePeerPublicKeyFile: does not exist",
        ),
        ("FixSecurePeerPublicKeyFile", "keys/bank.pub", "same key configured on both ends"),
        (
            "FixSecurePeerPublicKeyFile",
            "keys/p256.pub",
            f"contains a P-256 key but suite {DEFAULT_SUITE} needs an X25519 key",
        ),
        ("FixSecurePrivateKeyFile", "keys/bank.pub", "FixSecurePrivateKeyFile: holds a public key"),
    ],
)
def test_check_key_problems(
    tmp_path: Path, keydir: dict[str, KeyPairFiles], setting: str, value: str, expected: str
) -> None:
    text = good_file(tmp_path).read_text()
    replaced = re.sub(
        rf"(?m)^{setting}=keys/(bank\.key|venue\.pub)$", f"{setting}={value}", text, count=1
    )
    assert replaced != text
    path = cfg(tmp_path, replaced)
    first, second = check_settings(path)
    assert not first.ok
    assert expected in first.message
    assert second.ok


def test_check_one_key_with_two_suites(tmp_path: Path, keydir: dict[str, KeyPairFiles]) -> None:
    path = good_file(tmp_path, acceptor_extra=f"FixSecureSuite={CHACHA}\n")
    first, second = check_settings(path)
    assert first.ok
    assert not second.ok
    assert "uses with suite Noise_KK_25519_AESGCM_SHA256; a key is used with exactly one suite" in (
        second.message
    )


def test_check_proxy_port_taken_by_the_engine(
    tmp_path: Path, keydir: dict[str, KeyPairFiles]
) -> None:
    text = good_file(tmp_path).read_text().replace("SocketAcceptPort=6001", "SocketAcceptPort=9443")
    first, second = check_settings(cfg(tmp_path, text))
    assert first.ok
    assert not second.ok
    assert second.message.endswith(
        "FixSecureAcceptPort: the proxy listens on 0.0.0.0:9443, which is also the engine's "
        "SocketAcceptPort of this session; they cannot both listen there"
    )


def test_check_ports_on_different_hosts_do_not_conflict(
    tmp_path: Path, keydir: dict[str, KeyPairFiles]
) -> None:
    text = good_file(
        tmp_path, acceptor_extra="SocketAcceptHost=127.0.0.1\nFixSecureAcceptHost=10.0.0.5\n"
    ).read_text()
    text = text.replace("SocketAcceptPort=6001", "SocketAcceptPort=9443")
    assert all(result.ok for result in check_settings(cfg(tmp_path, text)))


def test_check_initiator_proxy_port_taken_by_an_acceptor_engine(
    tmp_path: Path, keydir: dict[str, KeyPairFiles]
) -> None:
    text = good_file(tmp_path).read_text().replace("SocketAcceptPort=6001", "SocketAcceptPort=5001")
    first, second = check_settings(cfg(tmp_path, text))
    assert not first.ok
    assert first.message.endswith(
        "SocketConnectPort: the proxy listens on 127.0.0.1:5001, which is also the engine's "
        "SocketAcceptPort of [SESSION] #2 (line 17); they cannot both listen there"
    )
    assert second.ok


def test_check_state_path_is_a_file(tmp_path: Path, keydir: dict[str, KeyPairFiles]) -> None:
    (tmp_path / "state").write_text("")
    first, second = check_settings(good_file(tmp_path))
    assert first.ok
    assert not second.ok
    assert (
        f"FixSecureStatePath: {tmp_path / 'state'} exists but is not a directory" in second.message
    )


def test_check_state_path_under_a_file(tmp_path: Path, keydir: dict[str, KeyPairFiles]) -> None:
    (tmp_path / "var").write_text("")
    path = (
        good_file(tmp_path)
        .read_text()
        .replace("FixSecureStatePath=state", "FixSecureStatePath=var/lib/state")
    )
    _, second = check_settings(cfg(tmp_path, path))
    assert not second.ok
    assert "cannot be created" in second.message
    assert "is not a directory" in second.message


def test_check_state_path_existing_dir(tmp_path: Path, keydir: dict[str, KeyPairFiles]) -> None:
    (tmp_path / "state").mkdir()
    assert all(result.ok for result in check_settings(good_file(tmp_path)))


def test_check_state_path_not_writable(
    tmp_path: Path, keydir: dict[str, KeyPairFiles], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "state").mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere: make access() answer as it would for a user
        real_access = os.access
        state = tmp_path / "state"
        monkeypatch.setattr(
            os, "access", lambda p, mode: False if Path(p) == state else real_access(p, mode)
        )
    _, second = check_settings(good_file(tmp_path))
    assert "is not writable by this user" in second.message


def test_check_duplicate_sessions(tmp_path: Path) -> None:
    path = cfg(tmp_path, PLAIN_SESSION + PLAIN_SESSION)
    first, second = check_settings(path)
    assert first.ok
    assert not second.ok
    assert second.session_id == SessionID("FIX.4.4", "BANK", "VENUE")
    assert "duplicate session" in second.message


# --------------------------------------------------------------------------------------------------
# fixsecure keygen


def test_cli_keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "bank", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"private key  {tmp_path / 'bank.key'}  (mode 0600")
    assert out[1].startswith(f"public key   {tmp_path / 'bank.pub'}  ")
    match = re.match(r"fingerprint  (SHA256:[A-Za-z0-9+/]{43})  \(X25519;", out[2])
    assert match is not None
    assert load_public_key(tmp_path / "bank.pub", "25519").fingerprint == match.group(1)
    assert stat.S_IMODE((tmp_path / "bank.key").stat().st_mode) == 0o600


def test_cli_keygen_p256_and_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "venue", "--suite", P256, "--out", str(tmp_path)]) == 0
    assert "(P-256;" in capsys.readouterr().out
    assert main(["keygen", "venue", "--suite", P256, "--out", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"fixsecure keygen: {tmp_path / 'venue.key'}: already exists; use --force to replace it "
        "(every session that pins the old key stops working until the counterparty pins the new "
        "one)\n"
    )
    assert main(["keygen", "venue", "--out", str(tmp_path), "--force"]) == 0
    assert "(X25519;" in capsys.readouterr().out


def test_cli_keygen_bad_name_and_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "../bank", "--out", str(tmp_path)]) == 2
    assert "invalid key name '../bank'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["keygen", "bank", "--suite", "Noise_XX"])
    assert info.value.code == 2
    assert "invalid choice: 'Noise_XX'" in capsys.readouterr().err


def test_check_refuses_sessions_disagreeing_on_a_shared_listener(tmp_path: Path) -> None:
    for name in ("venue", "bank", "broker", "desk"):
        write_keypair(name, "Noise_KK_25519_AESGCM_SHA256", tmp_path)
    config = tmp_path / "shared.cfg"
    config.write_text(
        "[DEFAULT]\nConnectionType=acceptor\nSenderCompID=VENUE\nBeginString=FIX.4.4\n"
        "FixSecurePrivateKeyFile=venue.key\nFixSecureStatePath=state\n"
        "FixSecureAcceptPort=9443\nSocketAcceptPort=5002\n"
        "[SESSION]\nTargetCompID=BANK\nFixSecurePeerPublicKeyFile=bank.pub\n"
        "[SESSION]\nTargetCompID=BROKER\nFixSecurePeerPublicKeyFile=broker.pub\n"
        "FixSecureLogonRatePerSession=99\n"
        "[SESSION]\nTargetCompID=DESK\nFixSecurePeerPublicKeyFile=desk.pub\n"
    )
    first, second, third = check_settings(config)
    assert first.ok
    assert not second.ok
    assert "FixSecureLogonRatePerSession: is 99 but 12" in second.message
    assert "one listener has one value" in second.message
    assert third.ok, third.message  # agrees with the first; the second's mistake is not its own


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("FixSecureLogonWindow=1e400", "FixSecureLogonWindow"),
        ("FixSecureLogonWindow=100000", "FixSecureLogonWindow"),
        ("FixSecureLogonFutureSkew=90000", "FixSecureLogonFutureSkew"),
        ("FixSecureMaxMessageSize=99999999999", "FixSecureMaxMessageSize"),
        ("FixSecureHandshakeTimeout=7200", "FixSecureHandshakeTimeout"),
    ],
)
def test_unbounded_values_are_refused(line: str, key: str) -> None:
    err = parse_error(session("VENUE", "BANK", "acceptor", f"FixSecureRequired=N\n{line}\n"))
    assert err.key == key
