"""Run Noise test vectors (the Noise wiki / cacophony JSON format) against :mod:`fixsecure.noise`.

``fixsecure vectors FILE...`` runs every vector whose protocol this implementation supports,
counts the others (psk, fallback, unsupported DH/cipher/hash or pattern) as skipped, prints a line
per failure and ends with ``N passed, N failed, N skipped``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fixsecure.errors import NoiseError
from fixsecure.noise import CipherState, HandshakeState, KeyPair, parse_protocol_name

__all__ = ["VectorReport", "run_vector", "run_vector_files"]


@dataclass
class VectorReport:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped"


def _hex(vector: Mapping[str, Any], key: str) -> bytes | None:
    value = vector.get(key)
    return None if value is None else bytes.fromhex(value)


def _supported(vector: Mapping[str, Any]) -> bool:
    name = vector.get("protocol_name", "")
    if any(k in vector for k in ("init_psks", "resp_psks", "hybrid", "fail", "fallback")):
        return False
    try:
        parse_protocol_name(name)
    except ValueError:
        return False
    return True


def run_vector(vector: Mapping[str, Any]) -> None:
    """Run one vector; raises :class:`AssertionError` describing the first mismatch."""
    protocol = parse_protocol_name(vector["protocol_name"])
    dh = protocol.dh

    def pair(key: str) -> KeyPair | None:
        raw = _hex(vector, key)
        return None if raw is None else dh.keypair_from_private_bytes(raw)

    init = HandshakeState(
        protocol,
        initiator=True,
        prologue=_hex(vector, "init_prologue") or b"",
        s=pair("init_static"),
        e=pair("init_ephemeral"),
        rs=_hex(vector, "init_remote_static"),
    )
    resp = HandshakeState(
        protocol,
        initiator=False,
        prologue=_hex(vector, "resp_prologue") or b"",
        s=pair("resp_static"),
        e=pair("resp_ephemeral"),
        rs=_hex(vector, "resp_remote_static"),
    )
    sender, receiver = init, resp
    transport: tuple[tuple[CipherState, CipherState], tuple[CipherState, CipherState]] | None
    transport = None
    for index, message in enumerate(vector["messages"]):
        payload = bytes.fromhex(message["payload"])
        expected = bytes.fromhex(message["ciphertext"])
        if transport is None:
            ciphertext = sender.write_message(payload)
            if ciphertext != expected:
                raise AssertionError(f"message {index}: ciphertext differs")
            if receiver.read_message(ciphertext) != payload:
                raise AssertionError(f"message {index}: decrypted payload differs")
            sender, receiver = receiver, sender
            if init.finished and resp.finished:
                expected_hash = _hex(vector, "handshake_hash")
                if expected_hash is not None and init.get_handshake_hash() != expected_hash:
                    raise AssertionError("handshake hash differs")
                if init.get_handshake_hash() != resp.get_handshake_hash():
                    raise AssertionError("handshake hashes of the two sides differ")
                i_send, i_recv = init.split()
                r_recv, r_send = resp.split()
                transport = ((i_send, r_recv), (r_send, i_recv))
                first_transport = index + 1
        else:
            # Transport messages alternate initiator->responder, responder->initiator, ...
            out, into = transport[(index - first_transport) % 2]
            ciphertext = out.encrypt_with_ad(b"", payload)
            if ciphertext != expected:
                raise AssertionError(f"message {index}: transport ciphertext differs")
            if into.decrypt_with_ad(b"", ciphertext) != payload:
                raise AssertionError(f"message {index}: transport payload differs")


def run_vectors(vectors: Iterable[Mapping[str, Any]], report: VectorReport, origin: str) -> None:
    for number, vector in enumerate(vectors):
        name = vector.get("protocol_name", "?")
        if not _supported(vector):
            report.skipped += 1
            continue
        try:
            run_vector(vector)
        except (AssertionError, NoiseError, ValueError, KeyError) as exc:
            report.failed += 1
            report.failures.append(f"{origin} #{number} {name}: {exc}")
        else:
            report.passed += 1


def run_vector_files(paths: Iterable[Path]) -> VectorReport:
    """Run every vector in each file; unreadable files count as a failure with the reason."""
    report = VectorReport()
    for path in paths:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
            vectors = document["vectors"] if isinstance(document, dict) else document
            if not isinstance(vectors, list):
                raise TypeError("expected a list of vectors")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            report.failed += 1
            report.failures.append(f"{path}: cannot read vectors: {exc}")
            continue
        run_vectors(vectors, report, str(path))
    return report
