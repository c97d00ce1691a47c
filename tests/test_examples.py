"""The example settings files stay valid: `fixsecure check` passes once their keys exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixsecure.cli import main
from fixsecure.keys import write_keypair

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("bank-initiator.cfg", ["bank", "venue"]),
        ("venue-acceptor.cfg", ["venue", "bank", "broker-2026", "broker-2027"]),
    ],
)
def test_example_settings_pass_check(
    tmp_path: Path, name: str, keys: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = (EXAMPLES / name).read_text()
    text = text.replace("/var/lib/fixsecure/venue", str(tmp_path / "state"))
    (tmp_path / name).write_text(text)
    for key in keys:
        write_keypair(key, "Noise_KK_25519_AESGCM_SHA256", tmp_path / "keys")
    assert main(["check", "-c", str(tmp_path / name)]) == 0, capsys.readouterr()
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines
    assert all(line.startswith("ok") for line in lines)


def test_the_systemd_unit_runs_the_proxy_and_supports_reload() -> None:
    unit = (EXAMPLES / "fixsecure-proxy@.service").read_text()
    assert "ExecStart=/opt/fixsecure/.venv/bin/fixsecure proxy -c /etc/fixsecure/%i.cfg" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
