"""Static key files: make them, fingerprint them, and load them with every check a key deserves.

A session's long-term (static) keys live in two standard files that ``openssl pkey`` can read:

- ``NAME.key``: the private key, unencrypted PKCS#8 PEM, mode 0600. It is not encrypted because
  the proxy starts unattended; the file mode protects it instead, so loading refuses a file that
  group or others can access (as OpenSSH does).
- ``NAME.pub``: the public key, SubjectPublicKeyInfo PEM, handed to the counterparty, who pins it.

Keys are per curve, not per suite: an X25519 key serves the ``25519`` suites, a P-256 key the
``P256`` suite. Whether a file holds the right kind of key is checked against the session's suite
when it is loaded.

The two ends compare :func:`fingerprint` values out of band (OpenSSH style, ``SHA256:`` and
unpadded base64 of the SHA-256 of the DER public key) before pinning a key.

Errors are :class:`~fixsecure.errors.KeyFileError` naming the file (and the settings section and key
that named it). They describe the file, never quote it: nothing here puts key material in a message
or a repr.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, ed448, ed25519, rsa, x448, x25519

from fixsecure.errors import KeyFileError
from fixsecure.suites import Curve, curve_of

if TYPE_CHECKING:
    from fixsecure.settings import SessionSettings

__all__ = [
    "CURVE_NAMES",
    "KeyPairFiles",
    "PeerKey",
    "PrivateKey",
    "PublicKey",
    "SessionKeys",
    "StaticKey",
    "fingerprint",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "load_session_keys",
    "raw_public",
    "write_keypair",
]

PrivateKey: TypeAlias = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = x25519.X25519PublicKey | ec.EllipticCurvePublicKey

#: How each curve is called in messages (the names ``openssl pkey -text`` uses).
CURVE_NAMES: Final[dict[Curve, str]] = {"25519": "X25519", "P256": "P-256"}

#: A PEM key is a few hundred bytes; anything far larger is not a key file.
_MAX_KEY_FILE = 64 * 1024

_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")

_OPEN_FLAGS: Final = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


@dataclass(frozen=True, repr=False)
class StaticKey:
    """One of our own static key pairs. Its repr names the file and fingerprint, never the key."""

    curve: Curve
    private: PrivateKey
    public: bytes
    path: Path
    fingerprint: str

    def __repr__(self) -> str:
        return (
            f"StaticKey(curve={self.curve!r}, fingerprint={self.fingerprint!r}, "
            f"path={str(self.path)!r})"
        )


@dataclass(frozen=True)
class PeerKey:
    """A pinned public key of the counterparty (``public`` is the Noise encoding)."""

    curve: Curve
    public: bytes
    path: Path
    fingerprint: str


@dataclass(frozen=True)
class SessionKeys:
    """Everything a session needs to run a handshake: our key(s) and the peer's pinned key(s).

    Two of either only during a key rotation, and only on the acceptor side.
    """

    own: tuple[StaticKey, ...]
    peers: tuple[PeerKey, ...]


@dataclass(frozen=True)
class KeyPairFiles:
    """What :func:`write_keypair` wrote."""

    private_path: Path
    public_path: Path
    curve: Curve
    fingerprint: str


# --------------------------------------------------------------------------------------------------
# Generating and describing keys


def generate_key(curve: Curve) -> PrivateKey:
    """A fresh static private key on ``curve``."""
    if curve == "25519":
        return x25519.X25519PrivateKey.generate()
    if curve == "P256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown curve {curve!r}")


def raw_public(public_key: PublicKey) -> bytes:
    """The Noise encoding of a public key: 32 raw bytes (X25519) or a 65-byte SEC1 point (P-256).

    P-256 points are always uncompressed: the spec rejects compressed points, so there is exactly
    one encoding of each key and the handshake hash cannot differ between two ends that agree.
    """
    if isinstance(public_key, x25519.X25519PublicKey):
        return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def fingerprint(public_key: PublicKey) -> str:
    """``SHA256:`` + unpadded base64 of SHA-256(DER SubjectPublicKeyInfo), as OpenSSH prints.

    Hashing the DER form (not the raw point) covers the algorithm too, so an X25519 and a P-256 key
    can never share a fingerprint.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.sha256(der).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _describe(key: object) -> str:
    """'an X25519 key', 'an RSA key', ... for messages that say what a file holds instead."""
    if isinstance(key, x25519.X25519PrivateKey | x25519.X25519PublicKey):
        return "an X25519 key"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "a P-256 key"
        return f"an EC key on curve {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "an Ed25519 key (a signature key, not a Diffie-Hellman key)"
    if isinstance(key, ed448.Ed448PrivateKey | ed448.Ed448PublicKey):
        return "an Ed448 key (a signature key, not a Diffie-Hellman key)"
    if isinstance(key, x448.X448PrivateKey | x448.X448PublicKey):
        return "an X448 key"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "an RSA key"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return "a DSA key"
    if isinstance(key, dh.DHPrivateKey | dh.DHPublicKey):
        return "a finite-field DH key"
    return "a key of an unsupported type"


def _matches_curve(key: object, curve: Curve) -> bool:
    if curve == "25519":
        return isinstance(key, x25519.X25519PrivateKey | x25519.X25519PublicKey)
    return isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    )


def _wrong_type(found: object, curve: Curve, suite: str | None) -> str:
    needs = f"suite {suite}" if suite else f"a {curve} suite"
    return (
        f"contains {_describe(found)} but {needs} needs {'an' if curve == '25519' else 'a'} "
        f"{CURVE_NAMES[curve]} key (make one with `fixsecure keygen NAME --suite SUITE`)"
    )


# --------------------------------------------------------------------------------------------------
# Writing


_EXISTS = (
    "already exists; use --force to replace it (every session that pins the old key stops "
    "working until the counterparty pins the new one)"
)


def _check_name(name: str) -> None:
    """NAME becomes NAME.key/NAME.pub inside --out: a path here would write somewhere unexpected."""
    seps = {"/", "\\", os.sep, os.altsep or "/"}
    if (
        not name
        or name != name.strip()
        or name.startswith(".")
        or any(sep in name for sep in seps)
        or not name.isprintable()
    ):
        raise KeyFileError(
            f"invalid key name {name!r}: use a plain file name such as 'bank-2025' (no '/', "
            "not starting with '.', no surrounding spaces); the files written are NAME.key and "
            "NAME.pub in the --out directory"
        )


def _fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable; skipped where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY | _OPEN_FLAGS)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _create(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    """Create ``path`` with ``mode`` from the start (O_EXCL): a key is never briefly world-readable.

    With ``replace`` the data goes to a fresh temporary file first and is renamed over ``path``,
    so an existing file is swapped atomically and is never opened for writing.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS | getattr(os, "O_NOFOLLOW", 0)
    target = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp") if replace else path
    try:
        fd = os.open(target, flags, mode)
    except FileExistsError:
        raise KeyFileError(
            _EXISTS,
            path=path,
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot be created: {exc.strerror}", path=path) from None
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        if replace:
            os.replace(target, path)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise KeyFileError(f"cannot be written: {exc.strerror}", path=path) from None


def write_keypair(name: str, suite: str, out_dir: Path, *, force: bool = False) -> KeyPairFiles:
    """Generate a key pair for ``suite`` and write ``out_dir/NAME.key`` (0600) and ``NAME.pub``.

    Existing files are refused unless ``force``: overwriting a private key silently would cut every
    session that pins it. ``out_dir`` is created (mode 0700) if missing.
    """
    _check_name(name)
    try:
        curve = curve_of(suite)
    except ValueError as exc:
        raise KeyFileError(str(exc)) from None
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise KeyFileError("is not a directory", path=out_dir) from None
    except OSError as exc:
        raise KeyFileError(f"cannot create the directory: {exc.strerror}", path=out_dir) from None
    private_path = out_dir / f"{name}.key"
    public_path = out_dir / f"{name}.pub"
    if not force:
        for existing in (private_path, public_path):
            if os.path.lexists(existing):
                raise KeyFileError(
                    _EXISTS,
                    path=existing,
                )

    key = generate_key(curve)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _create(private_path, private_pem, 0o600, replace=force)
    try:
        _create(public_path, public_pem, 0o644, replace=force)
    except KeyFileError:
        if not force:  # do not leave a private key without its public half behind
            private_path.unlink(missing_ok=True)
        raise
    _fsync_dir(out_dir)
    return KeyPairFiles(
        private_path=private_path,
        public_path=public_path,
        curve=curve,
        fingerprint=fingerprint(key.public_key()),
    )


# --------------------------------------------------------------------------------------------------
# Loading


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _read_key_file(path: Path, *, private: bool, section: str | None, key: str | None) -> bytes:
    """Read a key file, checking its type and (for private keys) its mode on the opened file.

    The checks use ``fstat`` of the descriptor that is then read, so the file cannot be swapped
    between check and read. O_NONBLOCK keeps a named pipe from hanging the loader.
    """

    def fail(message: str) -> KeyFileError:
        return KeyFileError(message, path=path, section=section, key=key)

    try:
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise fail("does not exist") from None
    except PermissionError:
        raise fail("cannot be opened: permission denied") from None
    except OSError as exc:
        raise fail(f"cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise fail(f"is {_file_kind(st.st_mode)}, not a key file")
        if st.st_size > _MAX_KEY_FILE:
            raise fail(f"is {st.st_size} bytes, far too large to be a PEM key file")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, 16384):
            chunks.append(chunk)
            total += len(chunk)
            if total > _MAX_KEY_FILE:
                raise fail("is far too large to be a PEM key file")
        data = b"".join(chunks)
        mode = stat.S_IMODE(st.st_mode)
        if private and mode & 0o077:
            if _PEM_LABEL.findall(data)[:1] == [b"PUBLIC KEY"]:
                # NAME.pub given as the private key: "chmod 600" would be the wrong advice.
                raise fail(_PUBLIC_AS_PRIVATE)
            raise fail(
                f"has mode {mode:04o}: group or others can access this private key; it must be "
                f"readable by its owner only: run `chmod 600 {path}`"
            )
        return data
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)


def _pem_label_problem(data: bytes, *, private: bool) -> str | None:
    """Why ``data`` is not the one PEM block we expect, in words a user can act on; else None."""
    labels = [label.decode("ascii") for label in _PEM_LABEL.findall(data)]
    expected = "PRIVATE KEY" if private else "PUBLIC KEY"
    made_by = "as written by `fixsecure keygen` or `openssl genpkey`"
    if not labels:
        return (
            f"is not a PEM file: expected a -----BEGIN {expected}----- block "
            f"({'unencrypted PKCS#8' if private else 'SubjectPublicKeyInfo'}, {made_by})"
        )
    if len(labels) > 1:
        return f"holds {len(labels)} PEM blocks; expected exactly one {expected} block"
    label = labels[0]
    if label == expected:
        if private and b"Proc-Type: 4,ENCRYPTED" in data:
            return _ENCRYPTED
        return None
    if private:
        if label == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in data:
            return _ENCRYPTED
        if label == "PUBLIC KEY":
            return _PUBLIC_AS_PRIVATE
        if label.endswith("PRIVATE KEY"):
            return (
                f"holds a '{label}' block, not PKCS#8 (-----BEGIN PRIVATE KEY-----); convert it "
                "with `openssl pkey -in OLD -out NEW.key` (under umask 077)"
            )
    elif label.endswith("PRIVATE KEY"):
        return (
            "holds a PRIVATE key; FixSecurePeerPublicKeyFile must name the counterparty's public "
            "key (their NAME.pub). A private key must never leave the side that owns it"
        )
    return f"holds a '{label}' PEM block, not a {expected} block"


_PUBLIC_AS_PRIVATE = (
    "holds a public key; FixSecurePrivateKeyFile must name this side's private key "
    "(NAME.key, not NAME.pub)"
)

_ENCRYPTED = (
    "is an encrypted private key; fixsecure needs an unencrypted PKCS#8 key (the proxy starts "
    "unattended) protected by its file mode 0600 instead: decrypt it with "
    "`openssl pkey -in OLD -out NEW.key` under umask 077"
)


def load_private_key(
    path: Path | str,
    curve: Curve,
    *,
    section: str | None = None,
    key: str | None = None,
    suite: str | None = None,
) -> StaticKey:
    """Load one of our static private keys for ``curve``, refusing anything doubtful.

    Refused: missing or non-regular files, files group/others can access, anything but one
    unencrypted PKCS#8 PEM block, and keys of another type or curve. ``section``/``key`` (and
    ``suite``, for the wording) only make the error say where the file was named.
    """
    path = Path(path)
    data = _read_key_file(path, private=True, section=section, key=key)

    def fail(message: str) -> KeyFileError:
        return KeyFileError(message, path=path, section=section, key=key)

    problem = _pem_label_problem(data, private=True)
    if problem:
        raise fail(problem)
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise fail("is not a readable PKCS#8 private key (damaged or truncated PEM)") from None
    if not _matches_curve(loaded, curve):
        raise fail(_wrong_type(loaded, curve, suite))
    assert isinstance(loaded, x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey)
    public = loaded.public_key()
    return StaticKey(
        curve=curve,
        private=loaded,
        public=raw_public(public),
        path=path,
        fingerprint=fingerprint(public),
    )


def load_public_key(
    path: Path | str,
    curve: Curve,
    *,
    section: str | None = None,
    key: str | None = None,
    suite: str | None = None,
) -> PeerKey:
    """Load a pinned peer public key (SubjectPublicKeyInfo PEM) for ``curve``.

    Besides type and curve, an X25519 key of low order is refused: with it every Diffie-Hellman
    result is zero, so pinning it would pin nothing.
    """
    path = Path(path)
    data = _read_key_file(path, private=False, section=section, key=key)

    def fail(message: str) -> KeyFileError:
        return KeyFileError(message, path=path, section=section, key=key)

    problem = _pem_label_problem(data, private=False)
    if problem:
        raise fail(problem)
    try:
        loaded = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise fail(
            "is not a readable SubjectPublicKeyInfo public key (damaged or truncated PEM, or an "
            "invalid point)"
        ) from None
    if not _matches_curve(loaded, curve):
        raise fail(_wrong_type(loaded, curve, suite))
    assert isinstance(loaded, x25519.X25519PublicKey | ec.EllipticCurvePublicKey)
    if isinstance(loaded, x25519.X25519PublicKey):
        try:
            x25519.X25519PrivateKey.generate().exchange(loaded)
        except ValueError:
            raise fail(
                "holds a low-order X25519 point, not a usable public key; ask the counterparty "
                "for their real NAME.pub"
            ) from None
    return PeerKey(
        curve=curve, public=raw_public(loaded), path=path, fingerprint=fingerprint(loaded)
    )


def load_session_keys(session: SessionSettings) -> SessionKeys:
    """Load the key files a session's settings name, with the session's suite curve.

    Beyond each file's own checks, refuses a peer key equal to one of our own public keys (the same
    key configured on both ends makes reflection of our own messages possible) and a key listed
    twice under different file names (a rotation that rotates nothing).
    """
    secure = session.secure
    curve = curve_of(secure.suite)
    own_setting = "FixSecurePrivateKeyFile"
    peer_setting = "FixSecurePeerPublicKeyFile"

    def fail(path: Path, setting: str, message: str) -> KeyFileError:
        return KeyFileError(
            message, path=path, section=session.section, key=session.key_name(setting)
        )

    own: list[StaticKey] = []
    for path in secure.private_key_files:
        loaded = load_private_key(
            path,
            curve,
            section=session.section,
            key=session.key_name(own_setting),
            suite=secure.suite,
        )
        for earlier in own:
            if earlier.public == loaded.public:
                raise fail(
                    path,
                    own_setting,
                    f"is the same key as {earlier.path} ({loaded.fingerprint}); during a rotation "
                    "list the old and the new key, which must differ",
                )
        own.append(loaded)

    peers: list[PeerKey] = []
    for path in secure.peer_public_key_files:
        peer = load_public_key(
            path,
            curve,
            section=session.section,
            key=session.key_name(peer_setting),
            suite=secure.suite,
        )
        for mine in own:
            if mine.public == peer.public:
                raise fail(
                    path,
                    peer_setting,
                    f"is our own public key ({peer.fingerprint}, the key of {mine.path}): the same "
                    "key configured on both ends; each side needs its own key pair and pins the "
                    "other side's public key",
                )
        for earlier_peer in peers:
            if earlier_peer.public == peer.public:
                raise fail(
                    path,
                    peer_setting,
                    f"is the same key as {earlier_peer.path} ({peer.fingerprint}); during a "
                    "rotation list the old and the new key, which must differ",
                )
        peers.append(peer)
    return SessionKeys(own=tuple(own), peers=tuple(peers))
