"""Seal and open **runs** of transport messages in one call (``specs/hot-path.md``).

A run walks consecutive messages of a buffer and stops, deciding nothing, at the first message it
does not fully accept; the session's per-message path then handles that one. A run commits
nothing: it returns how far it got and what it produced, and the caller advances the CipherState.

A :class:`Runner` serves one key. Two implementations of one contract: the C extension
:mod:`fixsecure._hotpath` (built at install time; no cryptography in it: it calls the same
``cryptography`` AEAD object) and :class:`ReferenceRunner` below, composed of
:mod:`fixsecure.wire`'s per-message functions. :data:`IMPLEMENTATION` names the one in use;
``FIXSECURE_HOTPATH=python`` selects the reference even where the extension is built.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Concatenate, Final, ParamSpec, Protocol, TypeVar

from cryptography.exceptions import InvalidTag

from fixsecure import wire
from fixsecure.errors import FramingError
from fixsecure.framing import frame_one
from fixsecure.noise import CIPHER_FUNCTIONS

__all__ = [
    "HEADER_TAGS",
    "IMPLEMENTATION",
    "Aead",
    "ReferenceRunner",
    "Runner",
    "RunnerType",
    "native_runner",
]

#: ``HEADER_TAGS[tag]`` is 1 for the clear-header tags of §4, the table the C runs look tags up in.
HEADER_TAGS: Final = bytes(
    1 if tag in wire.CLEAR_HEADER_TAGS else 0 for tag in range(max(wire.CLEAR_HEADER_TAGS) + 1)
)
_TAG_BYTES: Final = 16
_T = TypeVar("_T")
_P = ParamSpec("_P")
_NONCE: Final = {f.little_endian: f.nonce for f in CIPHER_FUNCTIONS.values()}


class Aead(Protocol):
    """What a runner needs of a ``cryptography`` AEAD object (AESGCM, ChaCha20Poly1305)."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


SealResult = tuple[int, bytes, int, int, bool]
"""``(end, wire, sealed, body_bytes, logout)``: where the run stopped, the protected messages,
how many, their plaintext body bytes, and whether one of them was a Logout."""
OpenResult = tuple[int, bytes, list[int], int, bool]
"""``(end, plaintext, ends, body_bytes, logout)``: where the run stopped, the rebuilt plaintext
messages back to back, where each ends in it, the body bytes they carried, and whether one of
them was a Logout."""


class Runner(Protocol):
    """The runs of one key: ``seal`` plaintext FIX messages, ``open`` transport messages, each
    from ``buf[start]``, with nonces from ``nonce``, at most ``count`` messages and ``budget``
    body bytes; plaintexts at most ``max_size`` bytes, wire messages (open) ``max_wire``."""

    def seal(
        self, buf: bytes, start: int, nonce: int, count: int, budget: int, max_size: int, /
    ) -> SealResult: ...

    def open(
        self,
        buf: bytes,
        start: int,
        nonce: int,
        count: int,
        budget: int,
        max_wire: int,
        max_size: int,
        /,
    ) -> OpenResult: ...


_MAX_NONCE: Final = 2**64 - 1


def _check(buf: bytes, start: int, nonce: int, count: int, budget: int, *sizes: int) -> None:
    """The argument checks both implementations make before a run."""
    if min(start, count, budget, *sizes) < 0:
        raise ValueError("start, count, budget and sizes must not be negative")
    if not 0 <= nonce < _MAX_NONCE:
        raise OverflowError("nonce out of range")
    if count > _MAX_NONCE - nonce:  # the run uses nonce .. nonce + count - 1
        raise ValueError("count would reach the reserved nonce")
    if start > len(buf):
        raise ValueError("start is outside the buffer")


def _one_caller(
    method: Callable[Concatenate[ReferenceRunner, _P], _T],
) -> Callable[Concatenate[ReferenceRunner, _P], _T]:
    """One call at a time per runner, like the C runner (a second thread would share state)."""

    @functools.wraps(method)
    def exclusive(self: ReferenceRunner, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._busy:
            raise RuntimeError("this runner is already in use by another call")
        self._busy = True
        try:
            return method(self, *args, **kwargs)
        finally:
            self._busy = False

    return exclusive


class ReferenceRunner:
    """The runs, composed of the per-message functions of :mod:`fixsecure.wire`."""

    def __init__(self, aead: Aead, little_endian: bool, header_tags: bytes = HEADER_TAGS) -> None:
        del header_tags  # wire's own header rules apply
        self._aead = aead
        self._nonce = _NONCE[little_endian]
        self._busy = False

    def __repr__(self) -> str:
        return "<fixsecure.hotpath.ReferenceRunner>"

    @_one_caller
    def seal(
        self, buf: bytes, start: int, nonce: int, count: int, budget: int, max_size: int, /
    ) -> SealResult:
        _check(buf, start, nonce, count, budget, max_size)
        out: list[bytes] = []
        pos, size, body_bytes, logout = start, len(buf), 0, False
        while pos < size and len(out) < count:
            try:
                end = frame_one(buf, pos, max_size)
                if end is None:
                    break
                message = buf[pos:end]
                parts = wire.parse(message, max_size)
            except (FramingError, wire.WireError):
                break
            length_start, header_start, header_end, trailer, msg_type = parts
            body = message[header_end:trailer]
            if body_bytes + len(body) > budget:
                break
            sealed = self._aead.encrypt(
                self._nonce(nonce + len(out)), body, wire.associated_data(message, parts)
            )
            out.append(
                wire.protected(
                    message[:length_start], message[header_start:header_end], b"", sealed
                )
            )
            body_bytes += len(body)
            logout = logout or msg_type == b"5"
            pos = end
        return pos, b"".join(out), len(out), body_bytes, logout

    @_one_caller
    def open(
        self,
        buf: bytes,
        start: int,
        nonce: int,
        count: int,
        budget: int,
        max_wire: int,
        max_size: int,
        /,
    ) -> OpenResult:
        _check(buf, start, nonce, count, budget, max_wire, max_size)
        messages: list[bytes] = []
        ends: list[int] = []
        pos, size, body_bytes, used, logout = start, len(buf), 0, 0, False
        while pos < size and len(messages) < count:
            try:
                fast = wire.transport_at(buf, pos, max_wire)
            except wire.WireError:  # base64 that is not canonical
                break
            if fast is None:
                break
            end, parts, sealed = fast
            if len(sealed) < _TAG_BYTES or body_bytes + len(sealed) - _TAG_BYTES > budget:
                break
            message = buf[pos:end]
            try:
                body = self._aead.decrypt(
                    self._nonce(nonce + len(messages)), sealed, wire.associated_data(message, parts)
                )
            except InvalidTag:
                break
            rebuilt = wire.rebuild(message, parts, body)
            if len(rebuilt) > max_size:
                break
            messages.append(rebuilt)
            used += len(rebuilt)
            ends.append(used)
            body_bytes += len(body)
            logout = logout or parts[4] == b"5"
            pos = end
        return pos, b"".join(messages), ends, body_bytes, logout


RunnerType = Callable[[Aead, bool, bytes], Runner]
"""A Runner class: ``Runner(aead, little_endian, header_tags)``."""


def native_runner() -> RunnerType | None:
    """The C Runner class, or None where the extension is not built (or not importable here),
    or where cryptography is older than 47 and its AEADs lack the ``*_into`` methods it calls."""
    try:
        from fixsecure import _hotpath  # noqa: PLC0415 - optional by design
    except ImportError:
        return None
    needs = ("encrypt_into", "decrypt_into")
    if not all(hasattr(f.aead, name) for f in CIPHER_FUNCTIONS.values() for name in needs):
        return None
    return _hotpath.Runner


def _select() -> tuple[str, RunnerType]:
    choice = os.environ.get("FIXSECURE_HOTPATH", "").strip().lower()
    if choice not in ("", "c", "python"):
        raise ImportError(f"FIXSECURE_HOTPATH={choice!r}: use 'c', 'python' or leave it unset")
    found = None if choice == "python" else native_runner()
    if found is not None:
        return "c", found
    if choice == "c":
        raise ImportError("FIXSECURE_HOTPATH=c but the C extension fixsecure._hotpath is not built")
    return "python", ReferenceRunner


_SELECTED: Final = _select()
#: ``"c"`` or ``"python"``: which implementation :data:`runner_class` is.
IMPLEMENTATION: Final = _SELECTED[0]
#: The Runner class in use (tests swap it to compare the implementations).
runner_class: RunnerType = _SELECTED[1]
