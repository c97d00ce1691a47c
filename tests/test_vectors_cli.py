"""``fixsecure vectors`` and ``fixsecure bench core`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixsecure.cli import main

VECTORS = Path(__file__).resolve().parent / "vectors" / "noise-cacophony-subset.json"


def test_vectors_all_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", str(VECTORS)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "24 passed, 0 failed, 0 skipped"


def test_unsupported_vectors_are_skipped_and_failures_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = json.loads(VECTORS.read_text())["vectors"]
    psk = dict(vectors[0], protocol_name="Noise_NNpsk0_25519_AESGCM_SHA256", init_psks=["00" * 32])
    other = dict(vectors[1], protocol_name="Noise_XX_448_AESGCM_SHA256")
    broken = dict(vectors[2], handshake_hash="00" * 32)
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps({"vectors": [vectors[3], psk, other, broken]}))
    assert main(["vectors", str(path)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "1 passed, 1 failed, 2 skipped"
    assert out[0].startswith("FAIL ")
    assert "handshake hash differs" in out[0]


def test_unreadable_vector_files_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["vectors", str(bad), str(tmp_path / "missing.json")]) == 1
    out = capsys.readouterr().out
    assert out.count("cannot read vectors") == 2
    assert out.strip().endswith("0 passed, 2 failed, 0 skipped")


def test_bench_core_prints_ratios_from_one_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "core", "--json", "--messages", "300", "--repeats", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["message_bytes"] == 200
    assert result["wire_bytes"] > 200
    for key in (
        "encrypt_us",
        "decrypt_us",
        "stream_encrypt_us",
        "stream_decrypt_us",
        "naive_us",
        "bare_aead_us",
    ):
        assert result[key] > 0
    assert result["hot_path"] in ("c", "python")
    assert result["encrypt_speedup_vs_naive"] == pytest.approx(
        result["naive_us"] / result["encrypt_us"], rel=0.01
    )
    assert result["handshake_initiator_us"] > 0
    assert main(["bench", "core", "--messages", "0"]) == 2
