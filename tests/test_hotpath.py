"""fixsecure.hotpath: the C runner and the reference runner agree on every input.

``specs/hot-path.md`` §4: for the same buffer, start, nonce, limits and AEAD object, both return
exactly the same tuple — where the run stopped, the bytes it produced, the counts — on valid runs
of every cipher, both header orders, optional header fields, data fields holding SOH and high
bytes, buffers cut at any offset, single-byte mutations, limits at their boundaries and arbitrary
bytes. The reference is composed of :mod:`fixsecure.wire`'s per-message functions; the session
tests show that it, in turn, matches ``Session.send`` / ``Session.receive``.

The C extension must be built here (``make venv`` compiles it): its absence fails, unless
``FIXSECURE_ALLOW_PURE_PYTHON=1`` turns that into a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixsecure import hotpath, wire
from fixsecure.framing import checksum
from fixsecure.hotpath import HEADER_TAGS, ReferenceRunner, native_runner

ROOT = Path(__file__).resolve().parent.parent
CIPHERS = {"AESGCM": (AESGCM, False), "ChaChaPoly": (ChaCha20Poly1305, True)}
LIMIT = 1 << 20
WIRE_LIMIT = wire.wire_limit(LIMIT)
UNLIMITED = (1 << 24, 1 << 36)  # count, budget
FUZZ = settings(
    max_examples=int(os.environ.get("FIXSECURE_HOTPATH_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def c_runner() -> Any:
    native = native_runner()
    if native is None:
        message = "the C extension fixsecure._hotpath is not built: run `make venv`"
        if os.environ.get("FIXSECURE_ALLOW_PURE_PYTHON") == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    return native


def runners(c_runner: Any, cipher: str = "AESGCM") -> tuple[Any, Any]:
    make, little = CIPHERS[cipher]
    aead = make(bytes(range(32)))
    return c_runner(aead, little, HEADER_TAGS), ReferenceRunner(aead, little)


# --- messages -------------------------------------------------------------------------------

QUICKFIX_ORDER = (35, 34, 49, 52, 56)
OTHER_ORDER = (35, 49, 56, 34, 52)


def frame(begin: bytes, fields: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(b"%d=%s\x01" % field for field in fields)
    head = b"8=%s\x019=%d\x01%s" % (begin, len(body), body)
    return head + b"10=%03d\x01" % checksum(head)


values = st.binary(min_size=1, max_size=12).filter(lambda v: b"\x01" not in v)


@st.composite
def messages(draw: st.DrawFn, *, big: bool = False) -> bytes:
    """A plaintext FIX message: either header order, optional header fields, a body with plain
    and data fields (SOH and any byte inside), sometimes none at all."""
    begin = draw(st.sampled_from([b"FIX.4.2", b"FIX.4.4", b"FIXT.1.1"]))
    order = draw(st.sampled_from([QUICKFIX_ORDER, OTHER_ORDER]))
    header = {35: draw(st.sampled_from([b"D", b"8", b"0", b"5", b"AE", b"2"]))}
    header.update({34: b"%d" % draw(st.integers(1, 10**9)), 49: b"BANK", 56: b"VENUE"})
    header[52] = b"20261206-12:00:00.000"
    fields = [(tag, header[tag]) for tag in order]
    for tag in draw(st.lists(st.sampled_from([50, 57, 115, 128, 43, 97, 122, 1128]), max_size=3)):
        fields.append((tag, draw(values)))
    size = 6000 if big else 300
    for kind in draw(st.lists(st.sampled_from(["plain", "data", "empty"]), max_size=6)):
        if kind == "plain":
            fields.append((draw(st.integers(1, 9999)), draw(values)))
        elif kind == "data":  # any bytes, or long runs of one (high) byte value: worst sums
            raw = draw(
                st.binary(min_size=1, max_size=size)
                | st.builds(lambda n, b: bytes([b]) * n, st.integers(1, size), st.integers(0, 255))
            )
            fields += [(95, b"%d" % len(raw)), (96, raw)]
        else:
            fields.append((58, b""))  # an empty value ends the clear header where it stands
    return frame(begin, fields)


def seal_all(runner: Any, plain: bytes, nonce: int = 0) -> bytes:
    end, out, _, _, _ = runner.seal(plain, 0, nonce, *UNLIMITED, LIMIT)
    assert end == len(plain)
    return bytes(out)


# --- valid runs -------------------------------------------------------------------------------


@FUZZ
@given(run=st.lists(messages(), min_size=1, max_size=12), cipher=st.sampled_from(sorted(CIPHERS)),
       nonce=st.integers(0, 2**40))
def test_valid_runs_are_sealed_and_opened_identically(
    c_runner: Any, run: list[bytes], cipher: str, nonce: int
) -> None:
    c, ref = runners(c_runner, cipher)
    plain = b"".join(run)
    sealed = c.seal(plain, 0, nonce, *UNLIMITED, LIMIT)
    assert sealed == ref.seal(plain, 0, nonce, *UNLIMITED, LIMIT)
    assert sealed[:3] == (len(plain), sealed[1], len(run))
    assert sealed[4] == any(wire.msg_type(m) == b"5" for m in run)
    opened = c.open(sealed[1], 0, nonce, *UNLIMITED, WIRE_LIMIT, LIMIT)
    assert opened == ref.open(sealed[1], 0, nonce, *UNLIMITED, WIRE_LIMIT, LIMIT)
    end, data, ends, body_bytes, logout = opened
    assert (end, data) == (len(sealed[1]), plain)  # byte-exact round trip
    assert ends == [sum(map(len, run[: i + 1])) for i in range(len(run))]
    assert body_bytes == sealed[3]
    assert logout == sealed[4]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=st.lists(messages(big=True), min_size=1, max_size=3))
def test_large_binary_messages_agree(c_runner: Any, run: list[bytes]) -> None:
    """Bodies of kilobytes of any byte value: the CheckSum's wide sums and base64 at length."""
    c, ref = runners(c_runner)
    plain = b"".join(run)
    sealed = c.seal(plain, 0, 7, *UNLIMITED, LIMIT)
    assert sealed == ref.seal(plain, 0, 7, *UNLIMITED, LIMIT)
    assert c.open(sealed[1], 0, 7, *UNLIMITED, WIRE_LIMIT, LIMIT)[1] == plain


def test_a_data_field_of_high_bytes_beyond_two_kilobytes_is_summed_right(c_runner: Any) -> None:
    """Regression: the word-at-a-time CheckSum once let 16-bit lanes carry after 2 KiB of bytes
    above 127, so the C runner refused such a message the reference sealed."""
    c, ref = runners(c_runner)
    message = frame(b"FIX.4.4", [(35, b"D"), (49, b"A"), (56, b"B"), (95, b"5000"),
                                 (96, b"\xff" * 5000)])
    assert c.seal(message, 0, 0, *UNLIMITED, LIMIT) == ref.seal(message, 0, 0, *UNLIMITED, LIMIT)
    assert c.seal(message, 0, 0, *UNLIMITED, LIMIT)[2] == 1


# --- where a run stops --------------------------------------------------------------------


@FUZZ
@given(run=st.lists(messages(), min_size=1, max_size=5), data=st.data())
def test_any_cut_stops_both_at_the_same_message(
    c_runner: Any, run: list[bytes], data: st.DataObject
) -> None:
    c, ref = runners(c_runner)
    plain = b"".join(run)
    wire_bytes = seal_all(ref, plain)
    for buf, args in ((plain, (LIMIT,)), (wire_bytes, (WIRE_LIMIT, LIMIT))):
        start = data.draw(st.integers(0, len(buf)))
        stop = data.draw(st.integers(start, len(buf)))
        cut = buf[:stop]
        method = "seal" if buf is plain else "open"
        assert getattr(c, method)(cut, start, 3, *UNLIMITED, *args) == getattr(ref, method)(
            cut, start, 3, *UNLIMITED, *args
        )


@FUZZ
@given(run=st.lists(messages(), min_size=1, max_size=4), data=st.data())
def test_single_byte_mutations_are_treated_identically(
    c_runner: Any, run: list[bytes], data: st.DataObject
) -> None:
    """Flip or replace any byte of a plaintext or a wire run: both runners stop at the same
    message and produce the same bytes (for the wire run: nothing from the damaged message on)."""
    c, ref = runners(c_runner, data.draw(st.sampled_from(sorted(CIPHERS))))
    plain = b"".join(run)
    wire_bytes = seal_all(ref, plain)
    for buf in (plain, wire_bytes):
        at = data.draw(st.integers(0, len(buf) - 1))
        value = data.draw(st.integers(0, 255).filter(lambda v, old=buf[at]: v != old))
        mutated = buf[:at] + bytes([value]) + buf[at + 1 :]
        if buf is plain:
            got = c.seal(mutated, 0, 0, *UNLIMITED, LIMIT)
            assert got == ref.seal(mutated, 0, 0, *UNLIMITED, LIMIT)
        else:
            got = c.open(mutated, 0, 0, *UNLIMITED, WIRE_LIMIT, LIMIT)
            assert got == ref.open(mutated, 0, 0, *UNLIMITED, WIRE_LIMIT, LIMIT)
            first_bad = next(i for i, end in enumerate(_ends(run)) if at < end[1])
            assert len(got[2]) <= first_bad  # nothing of or after the damaged message


def _ends(run: list[bytes]) -> list[tuple[int, int]]:
    """(start, end) of each message of ``run`` once sealed by the reference from nonce 0."""
    ref = ReferenceRunner(AESGCM(bytes(range(32))), False)
    spans, pos = [], 0
    for index, message in enumerate(run):
        size = len(ref.seal(message, 0, index, *UNLIMITED, LIMIT)[1])
        spans.append((pos, pos + size))
        pos += size
    return spans


@FUZZ
@given(blob=st.binary(max_size=600), start=st.integers(0, 40))
def test_arbitrary_bytes_are_treated_identically(c_runner: Any, blob: bytes, start: int) -> None:
    c, ref = runners(c_runner)
    start = min(start, len(blob))
    assert c.seal(blob, start, 0, *UNLIMITED, LIMIT) == ref.seal(blob, start, 0, *UNLIMITED, LIMIT)
    assert c.open(blob, start, 0, *UNLIMITED, WIRE_LIMIT, LIMIT) == ref.open(
        blob, start, 0, *UNLIMITED, WIRE_LIMIT, LIMIT
    )


@FUZZ
@given(run=st.lists(messages(), min_size=1, max_size=6), data=st.data())
def test_limits_stop_both_at_the_same_message(
    c_runner: Any, run: list[bytes], data: st.DataObject
) -> None:
    """Message count, body-byte budget, plaintext and wire size limits, each around the sizes of
    the run's own messages."""
    c, ref = runners(c_runner)
    plain = b"".join(run)
    wire_bytes = seal_all(ref, plain)
    bodies = [len(m) - wire.parse(m, LIMIT)[2] - 7 for m in run]
    count = data.draw(st.integers(0, len(run) + 1))
    budget = data.draw(st.sampled_from([0, 1, *bodies, sum(bodies[:2]), sum(bodies) + 1]))
    size = data.draw(st.sampled_from([*map(len, run), max(map(len, run)) - 1, LIMIT]))
    wire_size = data.draw(st.integers(32, len(wire_bytes) + 1))
    assert c.seal(plain, 0, 0, count, budget, size) == ref.seal(plain, 0, 0, count, budget, size)
    assert c.open(wire_bytes, 0, 0, count, budget, wire_size, size) == ref.open(
        wire_bytes, 0, 0, count, budget, wire_size, size
    )


def test_a_wrong_nonce_or_key_stops_before_the_first_message(c_runner: Any) -> None:
    c, ref = runners(c_runner)
    plain = frame(b"FIX.4.4", [(35, b"D"), (49, b"A"), (56, b"B"), (11, b"1")]) * 3
    wire_bytes = seal_all(ref, plain, nonce=5)
    for runner in (c, ref):
        assert runner.open(wire_bytes, 0, 5, *UNLIMITED, WIRE_LIMIT, LIMIT)[1] == plain
        assert runner.open(wire_bytes, 0, 6, *UNLIMITED, WIRE_LIMIT, LIMIT)[:3] == (0, b"", [])
    other = c_runner(AESGCM(bytes(32)), False, HEADER_TAGS)
    assert other.open(wire_bytes, 0, 5, *UNLIMITED, WIRE_LIMIT, LIMIT)[:3] == (0, b"", [])


def test_non_canonical_base64_is_not_opened(c_runner: Any) -> None:
    """``AAAA=`` style padding and non-zero padding bits: the same ciphertext would have a second
    wire form (spec §8.2); both runners stop before such a message."""
    c, ref = runners(c_runner)
    message = frame(b"FIX.4.4", [(35, b"0"), (49, b"A"), (56, b"B")])
    good = seal_all(ref, message)
    text_start = good.index(b"\x0191=") + 4
    text = good[text_start : good.index(b"\x0110=", text_start)]
    assert text.endswith(b"=")  # a 16-byte tag and a tiny body: padded
    flipped = bytearray(text)
    flipped[-3 if text.endswith(b"==") else -2] ^= 1  # set an unused padding bit (or break it)
    for bad_text in (bytes(flipped), text + b"=", text[:-1] + b"A"):
        digits = b"%d" % len(bad_text)
        body = good[good.index(b"\x0135=") + 1 : good.index(b"90=")] + b"90=" + digits
        body += b"\x0191=" + bad_text + b"\x01"
        head = b"8=FIX.4.4\x019=%d\x01" % len(body) + body
        bad = head + b"10=%03d\x01" % checksum(head)
        for runner in (c, ref):
            assert runner.open(bad, 0, 0, *UNLIMITED, WIRE_LIMIT, LIMIT)[:3] == (0, b"", [])


# --- API hygiene -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((0, -1, 1, 1, LIMIT), OverflowError),  # negative nonce
        ((0, 2**64 - 1, 0, 1, LIMIT), OverflowError),  # the reserved nonce itself
        ((0, 2**64 - 2, 2, 1, LIMIT), ValueError),  # would reach the reserved nonce
        ((1, 0, 1, 1, LIMIT), ValueError),  # start beyond the buffer
        ((0, 0, -1, 1, LIMIT), ValueError),
        ((0, 0, 1, -1, LIMIT), ValueError),
        ((0, 0, 1, 1, -1), ValueError),
    ],
)
def test_bad_arguments_are_refused_alike(
    c_runner: Any, args: tuple[int, ...], error: type[Exception]
) -> None:
    for runner in runners(c_runner):
        with pytest.raises(error):
            runner.seal(b"", *args)


def test_the_last_usable_nonce_may_be_used(c_runner: Any) -> None:
    message = frame(b"FIX.4.4", [(35, b"0"), (49, b"A"), (56, b"B")])
    c, ref = runners(c_runner)
    assert c.seal(message, 0, 2**64 - 2, 1, 1 << 30, LIMIT) == ref.seal(
        message, 0, 2**64 - 2, 1, 1 << 30, LIMIT
    )


class ReentrantAead:
    """An AEAD whose every call re-enters the runner it is used by (as a second thread would)."""

    def __init__(self) -> None:
        self.inner = AESGCM(bytes(32))
        self.runner: Any = None

    def _reenter(self) -> None:
        self.runner.seal(b"", 0, 0, 1, 1, LIMIT)

    def encrypt(self, nonce: bytes, data: bytes, ad: bytes | None) -> bytes:
        self._reenter()
        return self.inner.encrypt(nonce, data, ad)

    def encrypt_into(self, nonce: bytes, data: bytes, ad: bytes, out: bytearray) -> int:
        self._reenter()
        return self.inner.encrypt_into(nonce, data, ad, out)


def test_a_runner_refuses_a_second_caller_while_busy(c_runner: Any) -> None:
    """specs/hot-path.md §2: a call during a call raises instead of sharing the nonce buffer."""
    message = frame(b"FIX.4.4", [(35, b"0"), (49, b"A"), (56, b"B")])
    for make in (lambda a: c_runner(a, False, HEADER_TAGS), lambda a: ReferenceRunner(a, False)):
        aead = ReentrantAead()
        aead.runner = runner = make(aead)
        with pytest.raises(RuntimeError, match="already in use"):
            runner.seal(message, 0, 0, 1, 1 << 30, LIMIT)
        aead.runner = make(AESGCM(bytes(32)))  # once the call is over, the runner works again
        assert runner.seal(b"", 0, 0, 1, 1, LIMIT)[2] == 0


def test_an_uninitialised_c_runner_refuses_to_run(c_runner: Any) -> None:
    runner = c_runner.__new__(c_runner)
    with pytest.raises(TypeError, match="__init__"):
        runner.seal(b"", 0, 0, 1, 1, LIMIT)
    with pytest.raises(ValueError, match="4096"):
        c_runner(AESGCM(bytes(32)), False, bytes(5000))  # a tag table larger than the C's


def test_the_runner_repr_shows_no_key_material(c_runner: Any) -> None:
    key = bytes(range(32))
    for runner in runners(c_runner):
        text = repr(runner)
        assert "Runner" in text
        assert key.hex() not in text
        assert repr(key)[2:-1] not in text


# --- selection and build ---------------------------------------------------------------------


@pytest.mark.parametrize(("choice", "expected"), [("python", "python"), ("c", "c"), ("", "c")])
def test_fixsecure_hotpath_selects_the_implementation(
    c_runner: Any, choice: str, expected: str
) -> None:
    code = "from fixsecure import hotpath; print(hotpath.IMPLEMENTATION)"
    env = {**os.environ, "FIXSECURE_HOTPATH": choice}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == expected


def test_an_unknown_hotpath_choice_is_an_error() -> None:
    env = {**os.environ, "FIXSECURE_HOTPATH": "rust"}
    done = subprocess.run(
        [sys.executable, "-c", "import fixsecure.hotpath"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "FIXSECURE_HOTPATH='rust'" in done.stderr


def test_the_implementation_in_use_is_the_c_one(c_runner: Any) -> None:
    """The default selection (what the proxy and the other tests run) is the C runner."""
    if os.environ.get("FIXSECURE_HOTPATH") == "python":
        assert hotpath.runner_class is ReferenceRunner
    else:
        assert hotpath.IMPLEMENTATION == "c"
        assert hotpath.runner_class is c_runner


def test_the_c_source_compiles_without_warnings(tmp_path: Path) -> None:
    """-Wall -Wextra -Wconversion as errors: a warning in a parser of untrusted bytes is a bug
    until shown otherwise."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.fail("no C compiler: the C hot path cannot be built or checked", pytrace=False)
    done = subprocess.run(
        [
            compiler,
            "-std=c11",
            "-fsyntax-only",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wconversion",
            "-Wno-sign-conversion",
            "-Wshadow",
            f"-I{sysconfig.get_paths()['include']}",
            str(ROOT / "fixsecure" / "_hotpath.c"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


class LyingAead:
    """An AEAD object that writes less than the buffer it was given (no real one does)."""

    def __init__(self, shrink: bool) -> None:
        self.inner = AESGCM(bytes(32))
        self.shrink = shrink

    def encrypt_into(self, nonce: bytes, data: bytes, ad: bytes, out: bytearray) -> int:
        written = self.inner.encrypt_into(nonce, data, ad, out)
        if self.shrink:
            del out[4:]  # the buffer itself shrinks
            return written
        return written - 4  # or only the reported length is short


@pytest.mark.parametrize("shrink", [True, False])
def test_an_aead_that_writes_a_wrong_length_is_refused_not_read_past(
    c_runner: Any, shrink: bool
) -> None:
    """The C runner reads exactly the length it asked for, so it checks the AEAD kept to it."""
    message = frame(b"FIX.4.4", [(35, b"D"), (49, b"A"), (56, b"B"), (11, b"x" * 100)])
    runner = c_runner(LyingAead(shrink), False, HEADER_TAGS)
    with pytest.raises(SystemError, match="unexpected length"):
        runner.seal(message, 0, 0, 1, 1 << 30, LIMIT)


def test_a_runner_in_a_reference_cycle_is_collected(c_runner: Any) -> None:
    import gc  # noqa: PLC0415
    import weakref  # noqa: PLC0415

    aead = ReentrantAead()
    aead.runner = c_runner(aead, False, HEADER_TAGS)  # AEAD -> runner -> AEAD
    gone = weakref.ref(aead)
    del aead
    gc.collect()
    assert gone() is None


def test_an_old_cryptography_without_the_into_methods_falls_back_to_python(
    c_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class OldAESGCM:  # what cryptography < 47 offers: encrypt/decrypt only
        encrypt = decrypt = None

    old = type("F", (), {"aead": OldAESGCM})()
    monkeypatch.setattr(hotpath, "CIPHER_FUNCTIONS", {"AESGCM": old})
    assert hotpath.native_runner() is None
    monkeypatch.undo()
    assert hotpath.native_runner() is c_runner
