"""The sans-IO FIX session, scenario by scenario after QuickFIX's acceptance tests.

Test names carry the QuickFIX definition they follow (e.g. ``2c`` for 2c_MsgSeqNumTooLow.def).
Every sent message is parsed by simplefix, not by the engine's own parser.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import simplefix
from hypothesis import given, settings
from hypothesis import strategies as st

from fixsecure.counterparty.engine import (
    TRANSITIONS,
    Deliver,
    Disconnect,
    Input,
    LoggedOut,
    Role,
    Send,
    Session,
    SessionConfig,
    State,
)
from fixsecure.counterparty.fields import (
    DATA_LENGTH_TAGS,
    HEADER_TAGS,
    GarbledMessage,
    OutboundMessage,
    encode,
    format_utc_timestamp,
    parse,
    parse_utc_timestamp,
)
from fixsecure.counterparty.store import FileStore, MemoryStore
from fixsecure.errors import LocalProtocolError

from .conftest import (
    T0,
    Peer,
    acceptor,
    check_framing,
    converse,
    delivered,
    disconnected,
    events,
    fields,
    frame,
    logged_on,
    logged_on_acceptor,
    logged_out,
    pump,
    sent,
    stamp,
    types,
)


def order(cl_ord_id: str) -> OutboundMessage:
    return OutboundMessage(
        b"D",
        ((11, cl_ord_id), (55, "IBM"), (54, "1"), (38, "100"), (40, "1"), (60, stamp(T0))),
    )


def pair(
    begin: str = "FIX.4.4",
    store_i: MemoryStore | FileStore | None = None,
    store_a: MemoryStore | FileStore | None = None,
    **config: object,
) -> tuple[Session, Session]:
    """An initiator TW and an acceptor ISLD, connected and logged on."""
    initiator = Session(
        SessionConfig(begin, "TW", "ISLD", Role.INITIATOR, **config),  # type: ignore[arg-type]
        store_i if store_i is not None else MemoryStore(T0),
    )
    acc = Session(
        SessionConfig(begin, "ISLD", "TW", Role.ACCEPTOR, **config),  # type: ignore[arg-type]
        store_a if store_a is not None else MemoryStore(T0),
    )
    initiator.connection_made(T0)
    acc.connection_made(T0)
    converse(initiator, acc, initiator.logon(T0), T0)
    assert initiator.is_logged_on
    assert acc.is_logged_on
    return initiator, acc


# --- the state table -------------------------------------------------------------------------


def test_state_table_is_complete_and_closed() -> None:
    for role, table in TRANSITIONS.items():
        reachable = {State.DISCONNECTED}
        for _ in range(len(State)):
            reachable |= {table[(s, i)] for s in reachable for i in Input if (s, i) in table}
        assert reachable == set(State) - ({State.LOGON_SENT} if role is Role.ACCEPTOR else set())
        for state in reachable - {State.DISCONNECTED}:
            assert table[(state, Input.CLOSE)] is State.DISCONNECTED


def test_local_misuse_raises() -> None:
    session = acceptor()
    with pytest.raises(LocalProtocolError):
        session.logon(T0)  # an acceptor never sends the first Logon
    with pytest.raises(LocalProtocolError):
        session.connection_made(T0)  # already connected
    with pytest.raises(LocalProtocolError):
        session.send(OutboundMessage(b"0", ()), T0)  # admin messages belong to the session
    with pytest.raises(LocalProtocolError):
        session.send(OutboundMessage(b"D", ((34, "7"),)), T0)  # the session owns MsgSeqNum
    with pytest.raises(LocalProtocolError):
        session.reset(T0)  # only while disconnected


# --- 1: Logon --------------------------------------------------------------------------------


@pytest.mark.parametrize("begin", ["FIX.4.2", "FIX.4.4"])
def test_1a_valid_logon_is_answered_with_a_logon(begin: str) -> None:
    session = acceptor(begin)
    actions = session.receive(Peer(begin).logon(heart_bt_int=45), T0)
    (reply,) = sent(actions)
    f = fields(reply)
    assert f[8] == begin
    assert f[35] == "A"
    assert f[34] == "1"
    assert (f[49], f[56]) == ("ISLD", "TW")
    assert f[52] == "20231114-22:13:20.000"
    assert (f[98], f[108]) == ("0", "45")
    assert [int(t) for t, _ in reply][:7] == [8, 9, 35, 34, 49, 52, 56]
    assert logged_on(actions)[0].heart_bt_int == 45
    assert session.heart_bt_int == 45
    assert (session.next_sender_seq, session.next_target_seq) == (2, 2)


def test_1a_logon_seq_too_high_gets_logon_then_resend_request() -> None:
    session = acceptor()
    actions = session.receive(Peer().logon(seq=5), T0)
    assert types(actions) == ["A", "2"]
    resend = fields(sent(actions)[1])
    assert (resend[7], resend[16]) == ("1", "0")
    assert session.next_target_seq == 1  # still waiting for 1..4


def test_1a_logon_seq_too_high_then_gap_fill_completes() -> None:
    session = acceptor()
    peer = Peer()
    session.receive(peer.logon(seq=5), T0)
    gap_fill = peer.build("4", [(123, "Y"), (36, 5)], seq=1, poss_dup=True, orig_sending_time=T0)
    actions = session.receive(gap_fill, T0)
    assert "Processing QUEUED message: 5" in events(actions)
    assert session.next_target_seq == 6


@pytest.mark.parametrize(
    ("sender", "target"),
    [("TX", "ISLD"), ("TW", "DLSI"), ("WT", "DLSI")],
    ids=["sender", "target", "both"],
)
def test_1c_logon_with_wrong_comp_id_disconnects_without_a_word(sender: str, target: str) -> None:
    session = acceptor()
    actions = session.receive(Peer(sender=sender, target=target).logon(), T0)
    assert sent(actions) == []
    assert disconnected(actions)
    assert "CompID" in actions[-1].reason  # type: ignore[union-attr]
    assert session.state is State.DISCONNECTED


def test_1d_logon_with_bad_sending_time_disconnects() -> None:
    session = acceptor()
    actions = session.receive(Peer().logon(sending_time="20010101-00:00:00"), T0)
    assert sent(actions) == []
    assert disconnected(actions)


def test_1d_logon_with_wrong_begin_string_disconnects() -> None:
    session = acceptor("FIX.4.4")
    actions = session.receive(Peer("FIX.4.2").logon(), T0)
    assert sent(actions) == []
    assert disconnected(actions)


@pytest.mark.parametrize(
    "body",
    [[(98, "0")], [(108, "30")], [(98, "0"), (108, "x")], [(98, "2"), (108, "30")]],
    ids=["no HeartBtInt", "no EncryptMethod", "bad HeartBtInt", "EncryptMethod 2"],
)
def test_1d_invalid_logon_disconnects(body: list[tuple[int, str]]) -> None:
    session = acceptor()
    actions = session.receive(Peer().build("A", body), T0)
    assert sent(actions) == []
    assert disconnected(actions)


@pytest.mark.parametrize("msg_type", ["0", "D", "5"])
def test_1e_first_message_not_a_logon_disconnects(msg_type: str) -> None:
    session = acceptor()
    actions = session.receive(Peer().build(msg_type), T0)
    assert sent(actions) == []
    assert disconnected(actions)
    assert "not a Logon" in actions[-1].reason  # type: ignore[union-attr]


def test_garbled_first_message_disconnects() -> None:
    session = acceptor()
    assert disconnected(session.receive(b"8=FIX.4.4\x019=3\x01garbage\x0110=000\x01", T0))


def test_logon_seq_too_low_logs_out_with_quickfix_text() -> None:
    store = MemoryStore(T0)
    store.set_next_target_seq(5)
    session = acceptor(store=store)
    actions = session.receive(Peer().logon(seq=2), T0)
    (logout,) = sent(actions)
    assert fields(logout)[58] == "MsgSeqNum too low, expecting 5 but received 2"
    assert disconnected(actions)


def test_reset_seq_num_flag_resets_both_sides() -> None:
    store = MemoryStore(T0)
    store.save(1, b"old")
    store.set_next_sender_seq(10)
    store.set_next_target_seq(20)
    session = acceptor(store=store)
    actions = session.receive(Peer().logon(reset=True), T0)
    (reply,) = sent(actions)
    assert (fields(reply)[34], fields(reply)[141]) == ("1", "Y")
    assert logged_on(actions)[0].reset
    assert (session.next_sender_seq, session.next_target_seq) == (2, 2)
    assert store.get(1, 1)[0][1] != b"old"


def test_reset_flag_requires_seq_one() -> None:
    session = acceptor()
    assert disconnected(session.receive(Peer().logon(reset=True, seq=3), T0))


def test_reset_on_logon_acceptor_resets_before_processing() -> None:
    store = MemoryStore(T0)
    store.set_next_sender_seq(7)
    store.set_next_target_seq(7)
    session = acceptor(store=store, reset_on_logon=True)
    (reply,) = sent(session.receive(Peer().logon(seq=1), T0))
    assert fields(reply)[34] == "1"
    assert session.next_target_seq == 2


def test_in_session_reset_logon(  # SessionReset.def
) -> None:
    session, peer = logged_on_acceptor()
    for _ in range(8):
        session.receive(peer.build("0"), T0)
    assert types(session.receive(peer.build("1", [(112, "1")]), T0)) == ["0"]
    peer.next_seq = 1
    actions = session.receive(peer.logon(reset=True), T0)
    (reply,) = sent(actions)
    assert (fields(reply)[34], fields(reply)[141]) == ("1", "Y")
    (heartbeat,) = sent(session.receive(peer.build("1", [(112, "1")]), T0))
    assert (fields(heartbeat)[34], fields(heartbeat)[112]) == ("2", "1")


def test_already_logged_on_second_logon_disconnects() -> None:
    session, peer = logged_on_acceptor()
    actions = session.receive(peer.logon(), T0)
    assert disconnected(actions)
    assert logged_out(actions) == [LoggedOut("Received Logon while already logged on", clean=False)]


def test_initiator_logon_exchange_and_reset_options() -> None:
    initiator, acc = pair(reset_on_logout=True)
    assert initiator.next_sender_seq == 2
    assert acc.heart_bt_int == 30


def test_initiator_with_reset_option_sends_reset_flag() -> None:
    store = MemoryStore(T0)
    store.set_next_sender_seq(9)
    session = Session(
        SessionConfig("FIX.4.4", "TW", "ISLD", Role.INITIATOR, reset_on_logon=True), store
    )
    session.connection_made(T0)
    (logon,) = sent(session.logon(T0))
    assert (fields(logon)[34], fields(logon)[141]) == ("1", "Y")


def test_initiator_logon_timeout_and_unexpected_logon() -> None:
    session = Session(SessionConfig("FIX.4.4", "TW", "ISLD", Role.INITIATOR), MemoryStore(T0))
    session.connection_made(T0)
    assert disconnected(session.receive(Peer("FIX.4.4", "ISLD", "TW").logon(), T0))
    session.connection_made(T0 + 1)
    session.logon(T0 + 1)
    assert session.next_deadline() == T0 + 11
    assert session.tick(T0 + 10.9) == []
    actions = session.tick(T0 + 11)
    assert disconnected(actions)
    assert "logon response" in actions[-1].reason  # type: ignore[union-attr]


def test_acceptor_logon_timeout() -> None:
    session = acceptor(logon_timeout=5)
    assert session.tick(T0 + 4.9) == []
    assert disconnected(session.tick(T0 + 5))


def test_logon_refused_by_peer() -> None:
    session = Session(SessionConfig("FIX.4.4", "TW", "ISLD", Role.INITIATOR), MemoryStore(T0))
    session.connection_made(T0)
    session.logon(T0)
    refusal = Peer("FIX.4.4", "ISLD", "TW").build("5", [(58, "unknown user")])
    actions = session.receive(refusal, T0)
    assert types(actions) == ["5"]
    assert disconnected(actions)
    assert "unknown user" in actions[-1].reason  # type: ignore[union-attr]


# --- NextExpectedMsgSeqNum (FIX 4.4) ---------------------------------------------------------


def test_789_sent_when_configured() -> None:
    store = MemoryStore(T0)
    store.set_next_target_seq(4)
    session = acceptor(store=store, send_next_expected_msg_seq_num=True)
    (reply,) = sent(session.receive(Peer().logon(seq=4), T0))
    assert fields(reply)[789] == "5"  # counts the Logon just received


def test_789_lower_than_next_sender_resends_what_the_peer_missed() -> None:
    session, peer = logged_on_acceptor()
    for n in range(3):
        session.send(order(f"o{n}"), T0)  # ISLD sends 2, 3, 4; TW never sees them
    session.connection_lost(T0)
    session.connection_made(T0)
    actions = session.receive(peer.logon(next_expected=2), T0)
    msgs = sent(actions)
    assert [fields(m)[35] for m in msgs] == ["A", "D", "D", "D"]
    assert [fields(m)[34] for m in msgs] == ["5", "2", "3", "4"]
    assert all(fields(m)[43] == "Y" for m in msgs[1:])


def test_789_higher_than_next_sender_is_fatal() -> None:
    session = acceptor()
    actions = session.receive(Peer().logon(next_expected=9), T0)
    (logout,) = sent(actions)
    assert "NextExpectedMsgSeqNum 9" in fields(logout)[58]
    assert disconnected(actions)


def test_789_both_sides_recover_without_resend_request() -> None:
    initiator, acc = pair(send_next_expected_msg_seq_num=True)
    for n in range(3):
        acc.send(order(f"a{n}"), T0)  # lost
        initiator.send(order(f"i{n}"), T0)  # lost
    initiator.connection_lost(T0)
    acc.connection_lost(T0)
    initiator.connection_made(T0 + 1)
    acc.connection_made(T0 + 1)
    to_acc = initiator.logon(T0 + 1)
    to_initiator = pump(to_acc, acc, T0 + 1)
    assert types(to_initiator) == ["A", "D", "D", "D"]  # acceptor resends at once
    back = pump(to_initiator, initiator, T0 + 1)
    assert types(back) == ["D", "D", "D"]  # initiator resends what 789 said was missing
    assert "2" not in types(to_initiator) + types(back)
    assert delivered(back) == ["a0", "a1", "a2"]
    assert delivered(pump(back, acc, T0 + 1)) == ["i0", "i1", "i2"]
    assert initiator.next_target_seq == acc.next_sender_seq
    assert acc.next_target_seq == initiator.next_sender_seq


def test_789_rejected_for_fix42_config() -> None:
    with pytest.raises(ValueError, match=r"4\.4"):
        SessionConfig("FIX.4.2", "A", "B", Role.ACCEPTOR, send_next_expected_msg_seq_num=True)


# --- 2: sequence numbers ---------------------------------------------------------------------


def test_2b_gap_queues_and_processes_in_order() -> None:
    session, peer = logged_on_acceptor()
    assert delivered(session.receive(peer.order("o2"), T0)) == ["o2"]
    peer.next_seq = 5
    actions = session.receive(peer.order("o5"), T0)
    assert delivered(actions) == []
    (resend,) = sent(actions)
    assert (fields(resend)[35], fields(resend)[7], fields(resend)[16]) == ("2", "3", "0")
    peer.next_seq = 6
    actions = session.receive(peer.order("o6"), T0)
    assert sent(actions) == []  # one ResendRequest per gap
    assert "Already sent ResendRequest" in " ".join(events(actions))
    peer.next_seq = 3
    actions = session.receive(peer.order("o3", poss_dup=True, orig_sending_time=T0), T0)
    assert delivered(actions) == ["o3"]
    actions = session.receive(peer.order("o4", poss_dup=True, orig_sending_time=T0), T0)
    assert delivered(actions) == ["o4", "o5", "o6"]
    assert session.next_target_seq == 7


def test_receive_many_stops_at_a_disconnect() -> None:
    session, peer = logged_on_acceptor()
    frames = [peer.order("o2"), peer.build("5"), peer.order("o4")]
    actions = session.receive_many(frames, T0)
    assert delivered(actions) == ["o2"]
    assert disconnected(actions)  # o4 arrived after the Logout: ignored


def test_2c_seq_too_low_without_poss_dup_logs_out() -> None:
    session, peer = logged_on_acceptor()
    for _ in range(3):
        session.receive(peer.build("0"), T0)
    actions = session.receive(peer.build("0", seq=2), T0)
    (logout,) = sent(actions)
    assert fields(logout)[58] == "MsgSeqNum too low, expecting 5 but received 2"
    assert disconnected(actions)
    assert logged_out(actions)[0].clean is False


def test_2e_poss_dup_already_received_is_ignored() -> None:
    session, peer = logged_on_acceptor()
    session.receive(peer.order("o2"), T0)
    actions = session.receive(peer.order("o2", seq=2, poss_dup=True, orig_sending_time=T0), T0)
    assert sent(actions) == []
    assert delivered(actions) == []
    assert session.next_target_seq == 3


def test_2f_orig_sending_time_after_sending_time_rejects_and_logs_out() -> None:
    session, peer = logged_on_acceptor()
    session.receive(peer.order("o2"), T0)
    session.receive(peer.order("o3"), T0)
    actions = session.receive(peer.order("o2", seq=2, poss_dup=True, orig_sending_time=T0 + 10), T0)
    reject, logout = sent(actions)
    r = fields(reject)
    assert (r[35], r[45], r[58], r[372], r[373]) == (
        "3",
        "2",
        "SendingTime accuracy problem",
        "D",
        "10",
    )
    assert fields(logout)[35] == "5"
    assert session.state is State.LOGOUT_SENT
    done = session.receive(peer.build("5"), T0)
    assert disconnected(done)
    assert logged_out(done)[0].clean


def test_2g_poss_dup_without_orig_sending_time_is_rejected_without_consuming() -> None:
    session, peer = logged_on_acceptor()
    session.receive(peer.order("o2"), T0)
    session.receive(peer.order("o3"), T0)
    (reject,) = sent(session.receive(peer.order("o2", seq=2, poss_dup=True), T0))
    r = fields(reject)
    assert (r[45], r[58], r[371], r[372], r[373]) == ("2", "Required tag missing", "122", "D", "1")
    (heartbeat,) = sent(session.receive(peer.build("1", [(112, "HELLO")]), T0))
    assert fields(heartbeat)[112] == "HELLO"
    assert session.next_target_seq == 5


def test_10_gap_fill_ahead_of_sequence_asks_once_and_queues() -> None:  # 10_MsgSeqNumGreater
    session, peer = logged_on_acceptor()
    actions = session.receive(peer.build("4", [(36, 20), (123, "Y")], seq=10), T0)
    assert [(fields(m)[35], fields(m)[7], fields(m)[16]) for m in sent(actions)] == [
        ("2", "2", "0")
    ]
    assert sent(session.receive(peer.build("1", [(112, "HELLO")], seq=20), T0)) == []
    (logout,) = sent(session.receive(peer.build("5", seq=2), T0))
    assert fields(logout)[34] == "3"


def test_11a_sequence_reset_reset_mode_moves_expected_number() -> None:
    session, peer = logged_on_acceptor()
    assert sent(session.receive(peer.build("4", [(36, 25)], seq=0), T0)) == []
    (hb,) = sent(session.receive(peer.build("1", [(112, "HELLO")], seq=25), T0))
    assert (fields(hb)[34], fields(hb)[112]) == ("2", "HELLO")
    session.receive(peer.build("4", [(36, 50), (123, "N")], seq=0), T0)
    assert session.next_target_seq == 50


def test_11b_sequence_reset_to_expected_number_changes_nothing() -> None:
    session, peer = logged_on_acceptor()
    assert sent(session.receive(peer.build("4", [(36, 2)], seq=0), T0)) == []
    assert session.next_target_seq == 2


def test_11c_sequence_reset_lower_is_rejected_value_incorrect() -> None:
    session, peer = logged_on_acceptor()
    for gap_fill in ("", "N"):
        body: list[tuple[int, str | int]] = [(36, 1)] + ([(123, gap_fill)] if gap_fill else [])
        (reject,) = sent(session.receive(peer.build("4", body, seq=0), T0))
        r = fields(reject)
        assert (r[45], r[58], r[371], r[372], r[373]) == (
            "0",
            "Value is incorrect (out of range) for this tag",
            "36",
            "4",
            "5",
        )
        (hb,) = sent(session.receive(peer.build("1", [(112, "HELLO")]), T0))
        assert fields(hb)[112] == "HELLO"


def test_sequence_reset_past_a_pending_gap_allows_the_next_resend_request() -> None:
    session, peer = logged_on_acceptor()
    assert types(session.receive(peer.build("0", seq=5), T0)) == ["2"]  # asks for 2..4
    session.receive(peer.build("4", [(36, 10)], seq=0), T0)  # Reset mode jumps past 5
    assert session.next_target_seq == 10
    session.receive(peer.build("0", seq=10), T0)
    actions = session.receive(peer.build("0", seq=14), T0)  # a new gap: 11..13
    assert [(fields(m)[35], fields(m)[7]) for m in sent(actions)] == [("2", "11")]


def test_gap_fill_in_sequence_and_duplicate() -> None:
    session, peer = logged_on_acceptor()
    gap_fill = peer.build("4", [(36, 10), (123, "Y")], poss_dup=True, orig_sending_time=T0)
    assert sent(session.receive(gap_fill, T0)) == []
    assert session.next_target_seq == 10
    again = peer.build("4", [(36, 10), (123, "Y")], seq=2, poss_dup=True, orig_sending_time=T0)
    assert sent(session.receive(again, T0)) == []
    assert session.next_target_seq == 10


def test_queue_is_bounded() -> None:
    session, peer = logged_on_acceptor(max_queued_messages=3)
    for seq in range(10, 13):
        session.receive(peer.build("0", seq=seq), T0)
    actions = session.receive(peer.build("0", seq=13), T0)
    assert types(actions) == ["5"]
    assert disconnected(actions)


# --- resend ----------------------------------------------------------------------------------


def test_resend_request_answered_from_store_with_collapsed_gap_fills() -> None:
    session, peer = logged_on_acceptor()  # ISLD's 1 is its Logon
    session.send(order("a"), T0 + 1)  # 2
    session.send(order("b"), T0 + 1)  # 3
    session.tick(T0 + 40)  # 4 Heartbeat
    session.receive(peer.build("1", [(112, "x")], now=T0 + 40), T0 + 40)  # 5 Heartbeat
    session.send(order("c"), T0 + 41)  # 6
    session.tick(T0 + 80)  # 7 Heartbeat
    actions = session.receive(peer.build("2", [(7, 1), (16, 0)], now=T0 + 90), T0 + 90)
    msgs = [fields(m) for m in sent(actions)]
    assert [(m[35], m[34]) for m in msgs] == [
        ("4", "1"),
        ("D", "2"),
        ("D", "3"),
        ("4", "4"),
        ("D", "6"),
        ("4", "7"),
    ]
    assert [m[36] for m in msgs if m[35] == "4"] == ["2", "6", "8"]
    assert all(m[123] == "Y" for m in msgs if m[35] == "4")
    assert all(m[43] == "Y" for m in msgs)
    resent = msgs[1]
    assert resent[122] == stamp(T0 + 1)  # original SendingTime
    assert resent[52] == stamp(T0 + 90)
    assert resent[11] == "a"
    assert session.next_sender_seq == 8  # resends do not consume numbers


def test_resend_request_range_is_capped_and_empty_ranges_are_harmless() -> None:
    session, peer = logged_on_acceptor()
    session.send(order("a"), T0)
    msgs = sent(session.receive(peer.build("2", [(7, 2), (16, 99)]), T0))
    assert [(fields(m)[35], fields(m)[34]) for m in msgs] == [("D", "2")]
    actions = session.receive(peer.build("2", [(7, 50), (16, 0)]), T0)
    assert sent(actions) == []
    assert "Nothing to resend" in " ".join(events(actions))


def test_resend_request_without_persisted_messages_gap_fills_everything() -> None:
    session, peer = logged_on_acceptor(persist_messages=False)
    session.send(order("a"), T0)
    msgs = [fields(m) for m in sent(session.receive(peer.build("2", [(7, 1), (16, 0)]), T0))]
    assert [(m[35], m[34], m[36]) for m in msgs] == [("4", "1", "3")]


def test_20_simultaneous_resend_request() -> None:
    session, peer = logged_on_acceptor()
    assert delivered(session.receive(peer.order("o2"), T0)) == ["o2"]
    session.send(order("isld2"), T0)
    session.send(order("isld3"), T0)
    peer.next_seq = 7
    (resend_request,) = sent(session.receive(peer.build("0"), T0))
    assert (fields(resend_request)[7], fields(resend_request)[16]) == ("3", "0")
    # TW's own ResendRequest arrives ahead of sequence too: it is answered at once.
    actions = session.receive(peer.build("2", [(7, 2), (16, 3)]), T0)
    assert [(fields(m)[35], fields(m)[34], fields(m).get(43)) for m in sent(actions)] == [
        ("D", "2", "Y"),
        ("D", "3", "Y"),
    ]
    peer.next_seq = 3
    for _ in range(4):  # TW gap-fills 3..6
        session.receive(peer.build("0", poss_dup=True, orig_sending_time=T0), T0)
    assert session.next_target_seq == 9  # 7 (queued Heartbeat) and 8 (ResendRequest) consumed
    (logout,) = sent(session.receive(peer.build("5"), T0))
    assert fields(logout)[34] == "5"


# --- 4, 6: heartbeats and test requests ------------------------------------------------------


def test_4a_heartbeat_after_heart_bt_int_of_send_idleness() -> None:
    session, peer = logged_on_acceptor()
    assert session.next_deadline() == T0 + 30
    assert session.tick(T0 + 29.9) == []
    (hb,) = sent(session.tick(T0 + 30))
    assert (fields(hb)[35], fields(hb)[34]) == ("0", "2")
    assert 112 not in fields(hb)
    session.receive(peer.build("0", now=T0 + 30), T0 + 30)
    assert session.tick(T0 + 59) == []
    assert types(session.tick(T0 + 60)) == ["0"]


def test_4b_test_request_is_answered_with_its_id() -> None:
    session, peer = logged_on_acceptor()
    (hb,) = sent(session.receive(peer.build("1", [(112, "HELLO")]), T0))
    assert (fields(hb)[35], fields(hb)[112]) == ("0", "HELLO")


def test_6_test_request_after_silence_then_disconnect() -> None:
    session, peer = logged_on_acceptor(heart_bt_int=0)  # acceptor takes the peer's 30
    assert types(session.tick(T0 + 30)) == ["0"]
    assert session.next_deadline() == pytest.approx(T0 + 36)
    (test_request,) = sent(session.tick(T0 + 36))
    assert fields(test_request)[35] == "1"
    assert fields(test_request)[112]
    assert session.tick(T0 + 70) == []  # no Heartbeat while a TestRequest is outstanding
    answer = peer.build("0", [(112, fields(test_request)[112])], now=T0 + 71)
    session.receive(answer, T0 + 71)
    assert types(session.tick(T0 + 71 + 36)) == ["1"]
    actions = session.tick(T0 + 71 + 72)
    assert disconnected(actions)
    assert actions[-1] == Disconnect("Timed out waiting for heartbeat")
    assert logged_out(actions)[0].clean is False


def test_heart_bt_int_zero_means_no_timers() -> None:
    session = acceptor()
    session.receive(Peer().logon(heart_bt_int=0), T0)
    assert session.next_deadline() is None
    assert session.tick(T0 + 10_000) == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=50), min_size=1, max_size=20))
def test_next_deadline_is_exactly_when_tick_acts(steps: list[float]) -> None:
    session, peer = logged_on_acceptor()
    now = T0
    for step in steps:
        if not session.is_logged_on:
            break
        deadline = session.next_deadline()
        assert deadline is not None
        assert session.tick(min(now + step, deadline) - 1e-3) == []
        now = deadline
        assert session.tick(now) != []
        if random.Random(step).random() < 0.5:
            session.receive(peer.build("0", now=now), now)


# --- 13: Logout ------------------------------------------------------------------------------


def test_13b_logout_from_peer_is_answered() -> None:
    session, peer = logged_on_acceptor()
    actions = session.receive(peer.build("5", [(58, "bye")]), T0)
    (logout,) = sent(actions)
    assert (fields(logout)[35], fields(logout)[34]) == ("5", "2")
    assert logged_out(actions) == [LoggedOut("Logout by peer: bye", clean=True)]
    assert disconnected(actions)
    assert session.state is State.DISCONNECTED
    assert session.receive(peer.build("0"), T0) == []  # input after Disconnect is ignored


def test_local_logout_waits_for_reply() -> None:
    session, peer = logged_on_acceptor()
    (logout,) = sent(session.logout(T0, "done"))
    assert fields(logout)[58] == "done"
    assert session.state is State.LOGOUT_SENT
    assert session.logout(T0) == []  # already asked
    actions = session.receive(peer.build("5"), T0)
    assert sent(actions) == []
    assert logged_out(actions)[0].clean
    assert disconnected(actions)


def test_local_logout_times_out() -> None:
    session, _ = logged_on_acceptor(logout_timeout=2)
    session.logout(T0)
    assert session.next_deadline() == T0 + 2
    assert session.tick(T0 + 1.9) == []
    actions = session.tick(T0 + 2)
    assert actions[-1] == Disconnect("Timed out waiting for logout response")


def test_reset_on_logout_and_on_disconnect() -> None:
    session, peer = logged_on_acceptor(reset_on_logout=True)
    session.receive(peer.build("5"), T0)
    assert (session.next_sender_seq, session.next_target_seq) == (1, 1)
    session, _ = logged_on_acceptor(reset_on_disconnect=True)
    session.connection_lost(T0)
    assert (session.next_sender_seq, session.next_target_seq) == (1, 1)


def test_connection_lost_reports_unclean_logout() -> None:
    session, _ = logged_on_acceptor()
    actions = session.connection_lost(T0)
    assert logged_out(actions) == [LoggedOut("connection lost without Logout", clean=False)]
    assert session.connection_lost(T0) == []


# --- 14, 2: session-level rejects ------------------------------------------------------------

REJECTS = [
    # (name, fields after 8/9, RefTagID, SessionRejectReason, Text)
    (
        "14a undefined tag",
        [(35, "0"), (34, "2"), (49, "TW"), (52, "@"), (56, "ISLD"), (999, "HI")],
        "999",
        "0",
        "Invalid tag number",
    ),
    (
        "14a tag zero",
        [(35, "0"), (34, "2"), (49, "TW"), (52, "@"), (56, "ISLD"), (0, "HI")],
        "0",
        "0",
        "Invalid tag number",
    ),
    (
        "14a negative tag",
        [(35, "0"), (34, "2"), (49, "TW"), (52, "@"), (56, "ISLD"), (-1, "HI")],
        "-1",
        "0",
        "Invalid tag number",
    ),
    (
        "14b header tag missing",
        [(35, "0"), (34, "2"), (49, "TW"), (52, "@")],
        "56",
        "1",
        "Required tag missing",
    ),
    (
        "14b body tag missing",
        [
            (35, "D"),
            (49, "TW"),
            (34, "2"),
            (56, "ISLD"),
            (52, "@"),
            (40, "1"),
            (60, "@"),
            (54, "1"),
            (21, "3"),
            (11, "id"),
        ],
        "55",
        "1",
        "Required tag missing",
    ),
    (
        "14c tag not for type",
        [(35, "0"), (34, "2"), (49, "TW"), (52, "@"), (56, "ISLD"), (55, "MSFT")],
        "55",
        "2",
        "Tag not defined for this message type",
    ),
    (
        "14d tag without value",
        [(35, "1"), (34, "2"), (49, "TW"), (52, "@"), (56, "ISLD"), (112, "")],
        "112",
        "4",
        "Tag specified without a value",
    ),
    (
        "14e incorrect enum",
        [
            (35, "D"),
            (34, "2"),
            (49, "TW"),
            (52, "@"),
            (56, "ISLD"),
            (11, "ID"),
            (21, "4"),
            (40, "1"),
            (54, "1"),
            (38, "100"),
            (55, "INTC"),
            (60, "@"),
        ],
        "21",
        "5",
        "Value is incorrect (out of range) for this tag",
    ),
    (
        "14f incorrect format",
        [
            (35, "D"),
            (34, "2"),
            (49, "TW"),
            (52, "@"),
            (56, "ISLD"),
            (11, "ID"),
            (21, "1"),
            (40, "1"),
            (54, "1"),
            (38, "+200.00"),
            (55, "INTC"),
            (60, "@"),
        ],
        "38",
        "6",
        "Incorrect data format for value",
    ),
    (
        "14g body before header",
        [
            (35, "D"),
            (11, "id"),
            (21, "3"),
            (40, "1"),
            (54, "1"),
            (55, "MSFT"),
            (60, "@"),
            (34, "2"),
            (49, "TW"),
            (52, "@"),
            (56, "ISLD"),
        ],
        "34",
        "14",
        "Tag specified out of required order",
    ),
    (
        "14h repeated tag",
        [
            (35, "D"),
            (34, "2"),
            (49, "TW"),
            (52, "@"),
            (56, "ISLD"),
            (11, "ID"),
            (21, "1"),
            (40, "1"),
            (40, "2"),
            (54, "1"),
            (38, "200"),
            (55, "INTC"),
            (60, "@"),
        ],
        "40",
        "13",
        "Tag appears more than once",
    ),
    (
        "2q invalid MsgType",
        [(35, "*"), (34, "2"), (49, "TW"), (52, "@"), (56, "ISLD")],
        None,
        "11",
        "Invalid MsgType",
    ),
]


@pytest.mark.parametrize(
    ("wire", "ref_tag", "reason", "text"),
    [pytest.param(w, t, r, x, id=n) for n, w, t, r, x in REJECTS],
)
def test_14_malformed_message_gets_session_reject_and_uses_its_number(
    wire: list[tuple[int, str]], ref_tag: str | None, reason: str, text: str
) -> None:
    session, peer = logged_on_acceptor()
    data = frame("FIX.4.4", [(t, stamp(T0) if v == "@" else v) for t, v in wire])
    actions = session.receive(data, T0)
    (reject,) = sent(actions)
    r = fields(reject)
    assert (r[35], r[34], r[45], r[58], r[373]) == ("3", "2", "2", text, reason)
    assert r.get(371) == ref_tag
    assert r[372] == dict(wire)[35]
    assert delivered(actions) == []
    peer.next_seq = 3  # the rejected message consumed 2: no gap now
    assert sent(session.receive(peer.build("0"), T0)) == []
    assert session.next_target_seq == 4


def test_fix42_reject_omits_reasons_it_does_not_define() -> None:
    session, _ = logged_on_acceptor("FIX.4.2")
    data = frame(
        "FIX.4.2", [(35, "0"), (34, "2"), (49, "TW"), (52, stamp(T0)), (56, "ISLD"), (34, "2")]
    )
    (reject,) = sent(session.receive(data, T0))
    r = fields(reject)
    assert (r[58], r[371], r[372]) == ("Tag appears more than once", "34", "0")
    assert 373 not in r  # 13 is not a FIX 4.2 SessionRejectReason


@pytest.mark.parametrize(
    ("kw", "reason", "text"),
    [
        ({"sender": "WT"}, "9", "CompID problem"),
        ({"target": "DLSI"}, "9", "CompID problem"),
        ({"now": T0 - 500}, "10", "SendingTime accuracy problem"),
    ],
    ids=["2k sender", "2k target", "2o sending time"],
)
def test_2k_2o_comp_id_and_sending_time_problems_reject_then_log_out(
    kw: dict[str, object], reason: str, text: str
) -> None:
    session, peer = logged_on_acceptor()
    actions = session.receive(peer.order("ID", **kw), T0)  # type: ignore[arg-type]
    reject, logout = sent(actions)
    r = fields(reject)
    assert (r[35], r[34], r[45], r[58], r[372], r[373]) == ("3", "2", "2", text, "D", reason)
    assert (fields(logout)[35], fields(logout)[34]) == ("5", "3")
    assert delivered(actions) == []
    assert disconnected(session.receive(peer.build("5"), T0))


def test_2i_wrong_begin_string_in_session_logs_out() -> None:
    session, peer = logged_on_acceptor()
    actions = session.receive(peer.build("0", begin="FIX.4.2"), T0)
    (logout,) = sent(actions)
    assert fields(logout)[58] == "Incorrect BeginString"
    assert session.state is State.LOGOUT_SENT


def test_garbled_message_in_session_is_ignored() -> None:
    session, peer = logged_on_acceptor()
    actions = session.receive(b"8=FIX.4.4\x019=5\x0135=0\x01garbage\x0110=000\x01", T0)
    assert sent(actions) == []
    assert session.is_logged_on
    assert sent(session.receive(peer.build("0"), T0)) == []


def test_user_defined_tags_are_accepted() -> None:
    session, peer = logged_on_acceptor()
    actions = session.receive(peer.build("0", [(5000, "x"), (9999, "y")]), T0)
    assert sent(actions) == []
    assert session.next_target_seq == 3


def test_data_field_with_soh_is_parsed_by_length() -> None:
    session, _ = logged_on_acceptor()
    data = frame(
        "FIX.4.4",
        [
            (35, "B"),
            (34, "2"),
            (49, "TW"),
            (52, stamp(T0)),
            (56, "ISLD"),
            (148, "news"),
            (33, "1"),
            (58, "line"),
            (95, "3"),
            (96, b"a\x01b"),
        ],
    )
    (msg,) = [a.message for a in session.receive(data, T0) if isinstance(a, Deliver)]
    assert msg.get(96) == b"a\x01b"


# --- application messages --------------------------------------------------------------------


def test_application_message_header_and_persistence() -> None:
    store = MemoryStore(T0)
    session = Session(
        SessionConfig(
            "FIX.4.4",
            "ISLD",
            "TW",
            Role.ACCEPTOR,
            sender_sub_id="S1",
            target_sub_id="T1",
            sender_location_id="LOC",
        ),
        store,
    )
    session.connection_made(T0)
    session.receive(Peer().logon(), T0)
    extra = OutboundMessage(b"D", ((115, "ONBEHALF"), *order("x").fields))
    actions = session.send(extra, T0)
    (msg,) = sent(actions)
    assert [int(t) for t, _ in msg][:11] == [8, 9, 35, 34, 49, 50, 52, 56, 57, 115, 142]
    assert store.get(2, 2) == [(2, actions[0].data)]  # type: ignore[union-attr]
    assert session.next_sender_seq == 3


def test_send_while_disconnected_is_stored_for_resend() -> None:
    initiator, acc = pair()
    acc.connection_lost(T0)
    initiator.connection_lost(T0)
    assert sent(acc.send(order("late"), T0)) == []
    initiator.connection_made(T0 + 1)
    acc.connection_made(T0 + 1)
    to_acc = initiator.logon(T0 + 1)
    to_initiator = pump(to_acc, acc, T0 + 1)
    back = pump(to_initiator, initiator, T0 + 1)  # initiator sees a gap: ResendRequest
    assert types(back) == ["2"]
    assert delivered(pump(pump(back, acc, T0 + 1), initiator, T0 + 1)) == ["late"]


def test_send_while_disconnected_with_reset_pending_is_dropped() -> None:
    session = acceptor(reset_on_logon=True)
    actions = session.send(order("x"), T0)
    assert sent(actions) == []
    assert session.next_sender_seq == 1


# --- restart and conversation ----------------------------------------------------------------


def test_restart_from_file_store(tmp_path: Path) -> None:
    store = FileStore.open(tmp_path, "ISLD", T0)
    session = acceptor(store=store)
    peer = Peer()
    session.receive(peer.logon(), T0)
    session.send(order("a"), T0 + 1)
    session.receive(peer.build("0"), T0 + 1)
    store.close()  # the process dies here

    store = FileStore.open(tmp_path, "ISLD", T0 + 100)
    session = acceptor(store=store)
    assert (session.next_sender_seq, session.next_target_seq) == (3, 3)
    actions = session.receive(peer.logon(now=T0 + 100), T0 + 100)
    assert [(fields(m)[35], fields(m)[34]) for m in sent(actions)] == [("A", "3")]
    resend = peer.build("2", [(7, 1), (16, 0)], now=T0 + 100)
    msgs = [fields(m) for m in sent(session.receive(resend, T0 + 100))]
    assert [(m[35], m[34]) for m in msgs] == [("4", "1"), ("D", "2"), ("4", "3")]
    assert msgs[1][122] == stamp(T0 + 1)
    store.close()


def on_disk(directory: Path, name: str) -> FileStore:
    """The store as a restarted process would find it right now (a copy, opened separately)."""
    (directory / "copy.store").write_bytes((directory / f"{name}.store").read_bytes())
    return FileStore.open(directory, "copy", T0)


@pytest.mark.parametrize("policy", ["always", "commit"])
def test_everything_sent_is_on_disk_before_it_is_returned(tmp_path: Path, policy: str) -> None:
    store = FileStore.open(tmp_path, "ISLD", T0, policy)  # type: ignore[arg-type]
    session = acceptor(store=store)
    actions = session.receive(Peer().logon(), T0)
    actions += session.send(order("a"), T0)
    disk = on_disk(tmp_path, "ISLD")
    assert [data for _, data in disk.get(1, 10)] == [a.data for a in actions if isinstance(a, Send)]
    assert (disk.next_sender_seq, disk.next_target_seq) == (3, 2)
    disk.close()
    store.close()


def test_two_sessions_exchange_thousands_of_messages_with_losses() -> None:
    initiator, acc = pair(heart_bt_int=30)
    rng = random.Random(7)
    now = T0
    got: dict[str, list[str]] = {"i": [], "a": []}
    dropped = 0
    for n in range(2000):
        now += 0.01
        for src, dst, key, name in ((initiator, acc, "a", "i"), (acc, initiator, "i", "a")):
            actions = src.send(order(f"{name}{n}"), now)
            seq = actions[0].seq_num  # type: ignore[union-attr]
            drop = {seq} if rng.random() < 0.02 else set()
            dropped += len(drop)
            replies = pump(actions, dst, now, drop=drop)
            got[key] += delivered(replies)
            for _ in range(10):  # recovery conversation
                if not any(isinstance(x, Send) for x in replies):
                    break
                back = pump(replies, src, now)
                got[name] += delivered(back)
                replies = pump(back, dst, now)
                got[key] += delivered(replies)
        if n % 500 == 0:
            for s in (initiator, acc):
                converse(s, acc if s is initiator else initiator, s.tick(now + 31), now + 31)
    # the last drops are recovered once the peer sends again: a final heartbeat round
    converse(initiator, acc, initiator.tick(now + 100), now + 100)
    converse(acc, initiator, acc.tick(now + 100), now + 100)
    assert dropped > 40
    assert got["a"] == [f"i{n}" for n in range(2000)]
    assert got["i"] == [f"a{n}" for n in range(2000)]
    assert initiator.next_target_seq == acc.next_sender_seq
    assert acc.next_target_seq == initiator.next_sender_seq


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=39), max_size=15))
def test_any_pattern_of_lost_messages_is_recovered_exactly_once(lost: set[int]) -> None:
    initiator, acc = pair()
    got: list[str] = []
    for n in range(40):
        actions = initiator.send(order(f"o{n}"), T0)
        replies = pump(actions, acc, T0, drop={actions[0].seq_num} if n in lost else set())  # type: ignore[union-attr]
        got += delivered(replies)
        pending = replies
        for _ in range(10):
            if not any(isinstance(x, Send) for x in pending):
                break
            back = pump(pending, initiator, T0)
            pending = pump(back, acc, T0)
            got += delivered(pending)
    replies = pump(initiator.tick(T0 + 30), acc, T0 + 30)  # a Heartbeat reveals a trailing gap
    got += delivered(replies)
    got += delivered(pump(pump(replies, initiator, T0 + 30), acc, T0 + 30))
    assert got == [f"o{n}" for n in range(40)]


def test_actions_are_frozen() -> None:
    action = Send(b"x", b"0", 1)
    with pytest.raises(AttributeError):
        action.data = b"y"  # type: ignore[misc]
    assert parse_utc_timestamp(stamp(T0).encode()) == T0


# --- fields: parser, encoder and timestamps against simplefix --------------------------------

FIELD_VALUES = st.binary(min_size=1, max_size=20).filter(lambda b: b"\x01" not in b)
DATA_TAGS = frozenset(DATA_LENGTH_TAGS.values())
BODY = st.lists(
    st.tuples(
        st.integers(min_value=11, max_value=956).filter(
            lambda t: t not in HEADER_TAGS and t not in DATA_LENGTH_TAGS and t not in DATA_TAGS
        ),
        FIELD_VALUES,
    ),
    max_size=15,
)


@settings(max_examples=200, deadline=None)
@given(body=BODY, msg_type=st.sampled_from([b"D", b"8", b"AE", b"0"]))
def test_encode_is_read_back_identically_by_simplefix(
    body: list[tuple[int, bytes]], msg_type: bytes
) -> None:
    header = [(34, b"7"), (49, b"TW"), (52, stamp(T0).encode()), (56, b"ISLD")]
    data = encode(b"FIX.4.4", msg_type, header, body)
    check_framing(data)
    parser = simplefix.FixParser()
    parser.append_buffer(data)
    oracle = parser.get_message()
    assert [(int(t), v) for t, v in oracle][2:-1] == [(35, msg_type), *header, *body]
    ours = parse(data)
    assert ours.raw == data
    assert list(ours.fields[2:-1]) == [(35, msg_type), *header, *body]


@settings(max_examples=200, deadline=None)
@given(body=BODY)
def test_parse_agrees_with_simplefix_on_its_messages(body: list[tuple[int, bytes]]) -> None:
    m = simplefix.FixMessage()
    m.append_pair(8, "FIX.4.2", header=True)
    m.append_pair(35, "D", header=True)
    for tag, value in body:
        m.append_pair(tag, value)
    data = m.encode()
    assert [(int(t), v) for t, v in m] == [
        (t, v) for t, v in parse(data).fields if t not in (9, 10)
    ]
    duplicates = [t for i, (t, _) in enumerate(body) if t in {x for x, _ in body[:i]}]
    assert list(parse(data).duplicates) == duplicates


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=4102444800, allow_nan=False), st.sampled_from([0, 3, 6]))
def test_timestamps_round_trip(now: float, precision: int) -> None:
    text = format_utc_timestamp(now, precision)
    assert len(text) == 17 + (precision + 1 if precision else 0)
    back = parse_utc_timestamp(text)
    assert back is not None
    assert abs(back - now) <= 0.5 * 10**-precision + 1e-6
    assert time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(int(back))).encode() == text[:17]


@pytest.mark.parametrize(
    "text",
    [
        b"2023111-22:13:20",
        b"20231314-22:13:20",
        b"20230230-00:00:00",
        b"20231114-24:00:00",
        b"20231114 22:13:20",
        b"20231114-22:13:20.",
        b"20231114-22:13:20.1234567890",
        b"x" * 17,
    ],
)
def test_malformed_timestamps_are_refused(text: bytes) -> None:
    assert parse_utc_timestamp(text) is None


def test_garbled_input_raises() -> None:
    for data in (b"8=FIX.4.4\x019=5\x0135=0\x0110=000", b"8=FIX.4.4\x01junk\x01", b"x=1\x01"):
        with pytest.raises(GarbledMessage):
            parse(data)
    with pytest.raises(GarbledMessage):  # a data field shorter than announced
        parse(b"8=FIX.4.4\x019=5\x0135=0\x0195=50\x0196=ab\x0110=000\x01")
