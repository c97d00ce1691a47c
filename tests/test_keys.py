"""Static key files: generation, file modes, openssl interop, every refusal, and no leaks."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from hypothesis import given
from hypothesis import strategies as st

from fixsecure import keys
from fixsecure.errors import ConfigError, KeyFileError
from fixsecure.keys import (
    KeyPairFiles,
    PeerKey,
    StaticKey,
    fingerprint,
    load_private_key,
    load_public_key,
    load_session_keys,
    raw_public,
    write_keypair,
)
from fixsecure.settings import parse_settings
from fixsecure.suites import DEFAULT_SUITE, SUITES, Curve, curve_of

P256_SUITE = "Noise_KK_P256_AESGCM_SHA256"
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


def pem_body(data: bytes) -> list[str]:
    """The base64 lines of a PEM file: what must never show up in a message or repr."""
    return [line for line in data.decode().splitlines() if line and not line.startswith("-----")]


def assert_no_key_material(text: str, *files: Path) -> None:
    for file in files:
        for line in pem_body(file.read_bytes()):
            assert line not in text
            assert line[:16] not in text


def write_pem(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def private_pem(key: object, *, encrypt: bool = False, fmt: str = "pkcs8") -> bytes:
    assert hasattr(key, "private_bytes")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(b"passphrase")
        if encrypt
        else serialization.NoEncryption()
    )
    private_format = (
        serialization.PrivateFormat.PKCS8
        if fmt == "pkcs8"
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    data = key.private_bytes(serialization.Encoding.PEM, private_format, encryption)
    assert isinstance(data, bytes)
    return data


def public_pem(key: object) -> bytes:
    assert hasattr(key, "public_bytes")
    data = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert isinstance(data, bytes)
    return data


# --------------------------------------------------------------------------------------------------
# keygen: files, modes, openssl


@pytest.mark.parametrize("suite", SUITES)
def test_write_keypair_writes_pkcs8_and_spki_with_modes(tmp_path: Path, suite: str) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    files = write_keypair("bank", suite, tmp_path)
    assert files == KeyPairFiles(
        private_path=tmp_path / "bank.key",
        public_path=tmp_path / "bank.pub",
        curve=curve_of(suite),
        fingerprint=files.fingerprint,
    )
    assert stat.S_IMODE(files.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.public_path.stat().st_mode) == 0o644 & ~umask
    assert files.private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert files.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----\n")
    own = load_private_key(files.private_path, curve_of(suite))
    peer = load_public_key(files.public_path, curve_of(suite))
    assert own.public == peer.public
    assert own.fingerprint == peer.fingerprint == files.fingerprint


def test_private_key_is_created_0600_by_open_not_chmod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with umask 0 the key is born 0600 (O_EXCL, mode given to open), and nothing chmods."""
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def recording_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        opened.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode)

    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("keygen must not chmod after writing")

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    old = os.umask(0)
    try:
        files = write_keypair("venue", DEFAULT_SUITE, tmp_path)
    finally:
        os.umask(old)
    key_opens = [entry for entry in opened if entry[0] == str(files.private_path)]
    assert len(key_opens) == 1
    _, flags, mode = key_opens[0]
    assert flags & os.O_CREAT
    assert flags & os.O_EXCL
    assert flags & os.O_WRONLY
    assert mode == 0o600
    assert stat.S_IMODE(files.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.public_path.stat().st_mode) == 0o644


@needs_openssl
@pytest.mark.parametrize("suite", [DEFAULT_SUITE, P256_SUITE])
def test_openssl_reads_both_files_and_agrees(tmp_path: Path, suite: str) -> None:
    assert OPENSSL is not None
    files = write_keypair("bank", suite, tmp_path)
    subprocess.run([OPENSSL, "pkey", "-in", files.private_path, "-noout"], check=True)
    subprocess.run([OPENSSL, "pkey", "-pubin", "-in", files.public_path, "-noout"], check=True)
    derived = subprocess.run(
        [OPENSSL, "pkey", "-in", files.private_path, "-pubout"],
        check=True,
        capture_output=True,
    ).stdout
    assert derived == files.public_path.read_bytes()
    der = subprocess.run(
        [OPENSSL, "pkey", "-pubin", "-in", files.public_path, "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    assert files.fingerprint == expected


@needs_openssl
@pytest.mark.parametrize(
    ("args", "curve"),
    [
        (["-algorithm", "X25519"], "25519"),
        (["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "P256"),
    ],
)
def test_keys_made_by_openssl_load(tmp_path: Path, args: list[str], curve: Curve) -> None:
    assert OPENSSL is not None
    key = tmp_path / "ossl.key"
    pub = tmp_path / "ossl.pub"
    old = os.umask(0o077)
    try:
        subprocess.run([OPENSSL, "genpkey", *args, "-out", key], check=True)
        subprocess.run([OPENSSL, "pkey", "-in", key, "-pubout", "-out", pub], check=True)
    finally:
        os.umask(old)
    assert load_private_key(key, curve).public == load_public_key(pub, curve).public


def test_write_keypair_refuses_to_overwrite(tmp_path: Path) -> None:
    first = write_keypair("bank", DEFAULT_SUITE, tmp_path)
    before = first.private_path.read_bytes(), first.public_path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists; use --force") as info:
        write_keypair("bank", DEFAULT_SUITE, tmp_path)
    assert info.value.path == first.private_path
    assert (first.private_path.read_bytes(), first.public_path.read_bytes()) == before


def test_write_keypair_refuses_when_only_the_public_half_exists(tmp_path: Path) -> None:
    (tmp_path / "bank.pub").write_text("someone else's\n")
    with pytest.raises(KeyFileError, match="already exists") as info:
        write_keypair("bank", DEFAULT_SUITE, tmp_path)
    assert info.value.path == tmp_path / "bank.pub"
    assert not (tmp_path / "bank.key").exists()


def test_write_keypair_force_replaces_atomically(tmp_path: Path) -> None:
    first = write_keypair("bank", DEFAULT_SUITE, tmp_path)
    second = write_keypair("bank", P256_SUITE, tmp_path, force=True)
    assert second.fingerprint != first.fingerprint
    assert stat.S_IMODE(second.private_path.stat().st_mode) == 0o600
    assert load_private_key(second.private_path, "P256").fingerprint == second.fingerprint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.key", "bank.pub"]


def test_write_keypair_creates_out_dir_private(tmp_path: Path) -> None:
    files = write_keypair("bank", DEFAULT_SUITE, tmp_path / "keys")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) & 0o077 == 0
    assert files.private_path.parent == tmp_path / "keys"


def test_write_keypair_out_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(KeyFileError, match="not a directory"):
        write_keypair("bank", DEFAULT_SUITE, tmp_path / "file")


@pytest.mark.parametrize("name", ["", ".hidden", "..", "../bank", "keys/bank", "a\\b", " bank"])
def test_write_keypair_refuses_names_that_are_not_plain_file_names(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(KeyFileError, match="invalid key name"):
        write_keypair(name, DEFAULT_SUITE, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_write_keypair_unknown_suite(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown suite 'Noise_XX_25519_AESGCM_SHA256'"):
        write_keypair("bank", "Noise_XX_25519_AESGCM_SHA256", tmp_path)


# --------------------------------------------------------------------------------------------------
# Encodings and fingerprints


def test_raw_public_encodings() -> None:
    x = x25519.X25519PrivateKey.generate().public_key()
    assert raw_public(x) == x.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert len(raw_public(x)) == 32
    p = ec.generate_private_key(ec.SECP256R1()).public_key()
    encoded = raw_public(p)
    assert len(encoded) == 65
    assert encoded[0] == 0x04
    assert ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), encoded) == p


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_fingerprint_format_and_uniqueness(a: bytes, b: bytes) -> None:
    key_a = x25519.X25519PrivateKey.from_private_bytes(a).public_key()
    key_b = x25519.X25519PrivateKey.from_private_bytes(b).public_key()
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", fingerprint(key_a))
    assert (fingerprint(key_a) == fingerprint(key_b)) == (raw_public(key_a) == raw_public(key_b))


# --------------------------------------------------------------------------------------------------
# Loading private keys


@pytest.fixture
def pair(tmp_path: Path) -> KeyPairFiles:
    return write_keypair("bank", DEFAULT_SUITE, tmp_path)


@pytest.fixture
def p256_pair(tmp_path: Path) -> KeyPairFiles:
    return write_keypair("venue", P256_SUITE, tmp_path)


def test_load_private_key_x25519(pair: KeyPairFiles) -> None:
    key = load_private_key(pair.private_path, "25519")
    assert isinstance(key, StaticKey)
    assert key.curve == "25519"
    assert isinstance(key.private, x25519.X25519PrivateKey)
    assert key.public == raw_public(key.private.public_key())
    assert len(key.public) == 32
    assert key.path == pair.private_path
    assert key.fingerprint == pair.fingerprint


def test_load_private_key_p256(p256_pair: KeyPairFiles) -> None:
    key = load_private_key(str(p256_pair.private_path), "P256")
    assert isinstance(key.private, ec.EllipticCurvePrivateKey)
    assert len(key.public) == 65
    assert key.public[0] == 0x04
    assert key.fingerprint == p256_pair.fingerprint


def test_owner_only_modes_are_accepted(pair: KeyPairFiles) -> None:
    for mode in (0o400, 0o600, 0o700):
        pair.private_path.chmod(mode)
        assert load_private_key(pair.private_path, "25519").fingerprint == pair.fingerprint


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610, 0o666])
def test_private_key_readable_by_others_is_refused(pair: KeyPairFiles, mode: int) -> None:
    pair.private_path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        load_private_key(
            pair.private_path,
            "25519",
            section="[SESSION] #1 (line 3)",
            key="FixSecurePrivateKeyFile",
        )
    message = str(info.value)
    assert message.startswith(
        f"{pair.private_path}: [SESSION] #1 (line 3): FixSecurePrivateKeyFile:"
    )
    assert f"mode {mode:04o}" in message
    assert f"chmod 600 {pair.private_path}" in message
    assert_no_key_material(message, pair.private_path)


def test_repr_never_shows_key_material(pair: KeyPairFiles, p256_pair: KeyPairFiles) -> None:
    for files, curve in ((pair, "25519"), (p256_pair, "P256")):
        key = load_private_key(files.private_path, curve)  # type: ignore[arg-type]
        private_raw = key.private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        expected = (
            f"StaticKey(curve={curve!r}, fingerprint={files.fingerprint!r}, "
            f"path={str(files.private_path)!r})"
        )
        assert repr(key) == str(key) == expected
        assert repr([key]) == f"[{expected}]"
        for text in (repr(key), repr([key]), repr(keys.SessionKeys(own=(key,), peers=()))):
            assert_no_key_material(text, files.private_path, files.public_path)
            for secret in (private_raw, key.public, private_raw[-32:]):
                assert secret.hex() not in text
                assert repr(secret) not in text
                assert base64.b64encode(secret).decode() not in text


def test_missing_private_key_names_file_section_and_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(KeyFileError) as info:
        load_private_key(
            missing, "25519", section="[SESSION] #2 (line 9)", key="FixSecurePrivateKeyFile"
        )
    assert str(info.value) == (
        f"{missing}: [SESSION] #2 (line 9): FixSecurePrivateKeyFile: does not exist"
    )
    assert info.value.path == missing
    assert info.value.section == "[SESSION] #2 (line 9)"
    assert info.value.key == "FixSecurePrivateKeyFile"


def test_directory_is_not_a_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="is a directory, not a key file"):
        load_private_key(tmp_path, "25519")
    with pytest.raises(KeyFileError, match="is a directory, not a key file"):
        load_public_key(tmp_path, "25519")


def test_named_pipe_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="is a named pipe, not a key file"):
        load_private_key(fifo, "25519")


def test_unreadable_private_key(pair: KeyPairFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    pair.private_path.chmod(0o000)
    if os.geteuid() == 0:  # root reads anything: make open() answer as it would for a user
        real_open = os.open

        def refuse(path: object, *args: object, **kwargs: object) -> int:
            if Path(str(path)) == pair.private_path:
                raise PermissionError(13, "Permission denied")
            return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(KeyFileError, match="permission denied"):
        load_private_key(pair.private_path, "25519")


def test_not_pem_is_refused(tmp_path: Path) -> None:
    der = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = write_pem(tmp_path / "der.key", der)
    with pytest.raises(KeyFileError, match=r"is not a PEM file: expected a -----BEGIN PRIVATE KEY"):
        load_private_key(path, "25519")
    with pytest.raises(KeyFileError, match="is not a PEM file"):
        load_public_key(path, "25519")


def test_encrypted_pkcs8_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = write_pem(
        tmp_path / "enc.key", private_pem(x25519.X25519PrivateKey.generate(), encrypt=True)
    )
    with pytest.raises(KeyFileError) as info:
        load_private_key(path, "25519", key="FixSecurePrivateKeyFile")
    message = str(info.value)
    assert "encrypted" in message
    assert "unencrypted PKCS#8" in message
    assert "file mode" in message
    assert_no_key_material(message, path)


def test_traditional_ec_pem_is_refused_as_not_pkcs8(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = write_pem(tmp_path / "sec1.key", private_pem(key, fmt="traditional"))
    with pytest.raises(KeyFileError, match=r"'EC PRIVATE KEY' block, not PKCS#8"):
        load_private_key(path, "P256")


def test_legacy_encrypted_pem_is_refused_as_encrypted(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = write_pem(tmp_path / "sec1enc.key", private_pem(key, encrypt=True, fmt="traditional"))
    with pytest.raises(KeyFileError, match="is an encrypted private key"):
        load_private_key(path, "P256")


def test_public_key_in_the_private_key_setting(pair: KeyPairFiles) -> None:
    with pytest.raises(KeyFileError, match=r"holds a public key; .*NAME\.key, not NAME\.pub"):
        load_private_key(pair.public_path, "25519")


def test_private_key_in_the_peer_setting(pair: KeyPairFiles) -> None:
    with pytest.raises(KeyFileError) as info:
        load_public_key(pair.private_path, "25519", key="FixSecurePeerPublicKeyFile")
    assert "holds a PRIVATE key" in str(info.value)
    assert_no_key_material(str(info.value), pair.private_path)


def test_two_pem_blocks_are_refused(tmp_path: Path, pair: KeyPairFiles) -> None:
    path = write_pem(tmp_path / "two.key", pair.private_path.read_bytes() * 2)
    with pytest.raises(KeyFileError, match="holds 2 PEM blocks; expected exactly one"):
        load_private_key(path, "25519")


def test_damaged_pem_is_refused_without_quoting_it(tmp_path: Path, pair: KeyPairFiles) -> None:
    lines = pair.private_path.read_bytes().splitlines(keepends=True)
    damaged = lines[0] + lines[1][:20] + b"!!!!\n" + lines[-1]
    path = write_pem(tmp_path / "damaged.key", damaged)
    with pytest.raises(KeyFileError, match="is not a readable PKCS#8 private key") as info:
        load_private_key(path, "25519")
    assert lines[1][:20].decode() not in str(info.value)


def test_certificate_or_other_block_is_named(tmp_path: Path) -> None:
    path = write_pem(
        tmp_path / "cert.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(KeyFileError, match="holds a 'CERTIFICATE' PEM block, not a PRIVATE KEY"):
        load_private_key(path, "25519")


def test_too_large_file_is_refused(tmp_path: Path) -> None:
    path = write_pem(tmp_path / "big.key", b"#" * (65 * 1024))
    with pytest.raises(KeyFileError, match="too large to be a PEM key file"):
        load_private_key(path, "25519")


def test_x25519_key_for_a_p256_suite(pair: KeyPairFiles) -> None:
    with pytest.raises(KeyFileError) as info:
        load_private_key(
            pair.private_path,
            "P256",
            section="[SESSION] #1 (line 1)",
            key="FixSecurePrivateKeyFile",
            suite=P256_SUITE,
        )
    message = str(info.value)
    assert f"contains an X25519 key but suite {P256_SUITE} needs a P-256 key" in message
    assert message.startswith(
        f"{pair.private_path}: [SESSION] #1 (line 1): FixSecurePrivateKeyFile:"
    )
    with pytest.raises(
        KeyFileError, match=r"contains an X25519 key but suite .* needs a P-256 key"
    ):
        load_public_key(pair.public_path, "P256", suite=P256_SUITE)


def test_p256_key_for_an_x25519_suite(p256_pair: KeyPairFiles) -> None:
    with pytest.raises(
        KeyFileError, match="contains a P-256 key but a 25519 suite needs an X25519"
    ):
        load_private_key(p256_pair.private_path, "25519")
    with pytest.raises(KeyFileError, match=r"contains a P-256 key but .* needs an X25519 key"):
        load_public_key(p256_pair.public_path, "25519", suite=DEFAULT_SUITE)


def test_ec_key_on_another_curve(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    private_path = write_pem(tmp_path / "p384.key", private_pem(key))
    public_path = write_pem(tmp_path / "p384.pub", public_pem(key.public_key()), 0o644)
    with pytest.raises(KeyFileError, match=r"contains an EC key on curve secp384r1 but .* P-256"):
        load_private_key(private_path, "P256")
    with pytest.raises(KeyFileError, match="contains an EC key on curve secp384r1"):
        load_public_key(public_path, "P256")


def test_signature_key_is_refused(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = write_pem(tmp_path / "ed.key", private_pem(key))
    with pytest.raises(KeyFileError, match=r"contains an Ed25519 key .*signature key.* X25519"):
        load_private_key(path, "25519")


# --------------------------------------------------------------------------------------------------
# Loading public keys


def test_load_public_key(pair: KeyPairFiles, p256_pair: KeyPairFiles) -> None:
    peer = load_public_key(pair.public_path, "25519")
    assert peer == PeerKey(
        curve="25519",
        public=load_private_key(pair.private_path, "25519").public,
        path=pair.public_path,
        fingerprint=pair.fingerprint,
    )
    p256 = load_public_key(p256_pair.public_path, "P256")
    assert len(p256.public) == 65
    assert p256.fingerprint == p256_pair.fingerprint


def test_public_key_file_mode_is_not_restricted(pair: KeyPairFiles) -> None:
    pair.public_path.chmod(0o666)
    assert load_public_key(pair.public_path, "25519").fingerprint == pair.fingerprint


def test_missing_public_key(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as info:
        load_public_key(
            tmp_path / "peer.pub",
            "25519",
            section="[SESSION] #1 (line 2)",
            key="FixSecurePeerPublicKeyFile",
        )
    assert str(info.value) == (
        f"{tmp_path / 'peer.pub'}: [SESSION] #1 (line 2): FixSecurePeerPublicKeyFile: "
        "does not exist"
    )


def test_low_order_x25519_public_key_is_refused(tmp_path: Path) -> None:
    zero = x25519.X25519PublicKey.from_public_bytes(bytes(32))
    path = write_pem(tmp_path / "zero.pub", public_pem(zero), 0o644)
    with pytest.raises(KeyFileError, match="low-order X25519 point"):
        load_public_key(path, "25519")


def test_damaged_public_key(tmp_path: Path) -> None:
    path = write_pem(
        tmp_path / "bad.pub", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(KeyFileError, match="is not a readable SubjectPublicKeyInfo public key"):
        load_public_key(path, "25519")


# --------------------------------------------------------------------------------------------------
# A session's keys


def session_text(kind: str, private: str, peer: str, suite: str = DEFAULT_SUITE) -> str:
    return (
        "[SESSION]\n"
        "BeginString=FIX.4.4\n"
        "SenderCompID=VENUE\n"
        "TargetCompID=BANK\n"
        f"ConnectionType={kind}\n"
        f"FixSecureSuite={suite}\n"
        f"FixSecurePrivateKeyFile={private}\n"
        f"FixSecurePeerPublicKeyFile={peer}\n"
        "FixSecureStatePath=state\n"
    )


def test_load_session_keys_during_rotation(tmp_path: Path) -> None:
    old = write_keypair("venue-old", DEFAULT_SUITE, tmp_path)
    new = write_keypair("venue-new", DEFAULT_SUITE, tmp_path)
    bank_old = write_keypair("bank-old", DEFAULT_SUITE, tmp_path)
    bank_new = write_keypair("bank-new", DEFAULT_SUITE, tmp_path)
    text = session_text("acceptor", "venue-old.key, venue-new.key", "bank-old.pub,bank-new.pub")
    session = parse_settings(text, tmp_path / "venue.cfg").sessions[0]
    loaded = load_session_keys(session)
    assert [k.fingerprint for k in loaded.own] == [old.fingerprint, new.fingerprint]
    assert [k.fingerprint for k in loaded.peers] == [bank_old.fingerprint, bank_new.fingerprint]
    assert {k.curve for k in loaded.own} == {k.curve for k in loaded.peers} == {"25519"}


def test_load_session_keys_uses_the_suite_curve(tmp_path: Path) -> None:
    write_keypair("venue", DEFAULT_SUITE, tmp_path)
    write_keypair("bank", DEFAULT_SUITE, tmp_path)
    text = session_text("acceptor", "venue.key", "bank.pub", suite=P256_SUITE)
    session = parse_settings(text, tmp_path / "venue.cfg").sessions[0]
    with pytest.raises(KeyFileError) as info:
        load_session_keys(session)
    assert str(info.value) == (
        f"{tmp_path / 'venue.key'}: [SESSION] #1 (line 1): FixSecurePrivateKeyFile: contains an "
        f"X25519 key but suite {P256_SUITE} needs a P-256 key (make one with `fixsecure keygen "
        "NAME --suite SUITE`)"
    )


def test_own_key_pinned_as_peer_is_refused(tmp_path: Path) -> None:
    write_keypair("venue", DEFAULT_SUITE, tmp_path)
    text = session_text("acceptor", "venue.key", "venue.pub").replace(
        "FixSecurePeerPublicKeyFile", "fixsecurepeerpublickeyfile"
    )
    session = parse_settings(text, tmp_path / "venue.cfg").sessions[0]
    with pytest.raises(KeyFileError) as info:
        load_session_keys(session)
    err = info.value
    assert err.path == tmp_path / "venue.pub"
    assert err.section == "[SESSION] #1 (line 1)"
    assert err.key == "fixsecurepeerpublickeyfile"
    assert "same key configured on both ends" in err.message


def test_duplicate_peer_keys_are_refused(tmp_path: Path) -> None:
    write_keypair("venue", DEFAULT_SUITE, tmp_path)
    bank = write_keypair("bank", DEFAULT_SUITE, tmp_path)
    shutil.copy(bank.public_path, tmp_path / "bank-copy.pub")
    text = session_text("acceptor", "venue.key", "bank.pub,bank-copy.pub")
    session = parse_settings(text, tmp_path / "venue.cfg").sessions[0]
    with pytest.raises(KeyFileError, match=r"is the same key as .*bank\.pub") as info:
        load_session_keys(session)
    assert info.value.path == tmp_path / "bank-copy.pub"
    assert info.value.key == "FixSecurePeerPublicKeyFile"


def test_duplicate_own_keys_are_refused(tmp_path: Path) -> None:
    venue = write_keypair("venue", DEFAULT_SUITE, tmp_path)
    write_keypair("bank", DEFAULT_SUITE, tmp_path)
    shutil.copy(venue.private_path, tmp_path / "venue-copy.key")
    text = session_text("acceptor", "venue.key,venue-copy.key", "bank.pub")
    session = parse_settings(text, tmp_path / "venue.cfg").sessions[0]
    with pytest.raises(KeyFileError, match=r"is the same key as .*venue\.key") as info:
        load_session_keys(session)
    assert info.value.key == "FixSecurePrivateKeyFile"


def test_plaintext_session_has_no_keys(tmp_path: Path) -> None:
    text = "[SESSION]\nBeginString=FIX.4.2\nSenderCompID=A\nTargetCompID=B\n"
    text += "ConnectionType=initiator\nFixSecureRequired=N\n"
    session = parse_settings(text, tmp_path / "x.cfg").sessions[0]
    assert load_session_keys(session) == keys.SessionKeys(own=(), peers=())
