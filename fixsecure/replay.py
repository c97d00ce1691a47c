"""Anti-replay state for Logons: per session, the SendingTime of the last Logon accepted.

A Noise_KK message 1 can be replayed by anyone who recorded it, so an acceptor accepts a Logon
only if its SendingTime is strictly later than the last one it accepted for that session (and in a
window around now, checked by the session). The value must survive restarts:
:class:`FileReplayStore` writes it atomically (temporary file, fsync, rename, fsync of the
directory) and serialises the compare-and-set between processes with ``flock`` on a per-session
lock file.

Times are integer nanoseconds since the Unix epoch (UTC), exactly as parsed from SendingTime(52).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from fixsecure.errors import ConfigError
from fixsecure.sessionid import SessionID

__all__ = ["FileReplayStore", "MemoryReplayStore", "ReplayStateError", "ReplayStore"]


class ReplayStateError(ConfigError):
    """The persisted state of a session cannot be read; its Logons are refused until fixed."""


class ReplayStore(Protocol):
    """Where an acceptor keeps the last accepted Logon time of each session."""

    def last_logon(self, session: SessionID) -> int | None:
        """SendingTime (ns) of the last accepted Logon, or None if there never was one."""

    def advance(self, session: SessionID, sending_time: int) -> bool:
        """Record ``sending_time`` if it is strictly later than the stored value (atomically).

        Returns False, changing nothing, if it is not. The value is durable when this returns.
        """


class MemoryReplayStore:
    """In-process store, for tests and for the in-memory demo. Not durable."""

    def __init__(self) -> None:
        self._last: dict[SessionID, int] = {}
        self._lock = threading.Lock()

    def last_logon(self, session: SessionID) -> int | None:
        return self._last.get(session)

    def advance(self, session: SessionID, sending_time: int) -> bool:
        with self._lock:
            last = self._last.get(session)
            if last is not None and sending_time <= last:
                return False
            self._last[session] = sending_time
            return True


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class FileReplayStore:
    """One small file per session in ``directory``; see the module docstring for durability."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FileReplayStore({str(self.directory)!r})"

    def _path(self, session: SessionID) -> Path:
        # Readable and collision-free: a sanitised name plus a hash of the exact identity, every
        # field NUL-separated (str(session) is ambiguous: "A/B" could be a CompID or two fields).
        identity = "\0".join(dataclasses.astuple(session)).encode("utf-8")
        digest = hashlib.sha256(identity).hexdigest()[:24]
        return self.directory / f"{_UNSAFE.sub('_', str(session))[:80]}.{digest}.logon"

    def _read(self, path: Path, session: SessionID) -> int | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ReplayStateError(f"cannot read anti-replay state: {exc}", path=path) from exc
        text = raw.decode("ascii", "replace").strip()
        if not text.isdigit():
            raise ReplayStateError(
                f"anti-replay state of {session} is corrupt; Logons for this session are refused "
                "until the file is fixed or removed by an operator",
                path=path,
            )
        return int(text)

    @contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(path.with_suffix(".lock"), os.O_CREAT | os.O_RDWR | _NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def last_logon(self, session: SessionID) -> int | None:
        return self._read(self._path(session), session)

    def advance(self, session: SessionID, sending_time: int) -> bool:
        path = self._path(session)
        try:
            with self._locked(path):
                last = self._read(path, session)
                if last is not None and sending_time <= last:
                    return False
                self._write(path, b"%d\n" % sending_time)
                return True
        except OSError as exc:
            raise ReplayStateError(
                f"cannot record the Logon of {session}: {exc.strerror or exc}", path=path
            ) from None

    def _write(self, path: Path, data: bytes) -> None:
        """Atomically replace ``path``: a fresh temporary file (never one an attacker placed:
        O_EXCL, no symlinks), written in full, fsynced, renamed, directory fsynced."""
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _NOFOLLOW, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_directory(self.directory)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # pragma: no cover - some filesystems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)
