"""The example settings files stay valid: `fixsecure check` passes once their keys exist."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fixsecure.cli import main
from fixsecure.counterparty.runner import CounterpartyRunner
from fixsecure.keys import write_keypair

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("bank-initiator.cfg", ["bank", "venue"]),
        ("venue-acceptor.cfg", ["venue", "bank", "broker-2026", "broker-2027"]),
        ("asyncio-initiator.cfg", ["bank", "counterparty"]),
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


def test_the_asyncio_initiator_example_trades_with_the_counterparty(tmp_path: Path) -> None:
    """examples/asyncio_initiator.py, run as a user would, against a live counterparty."""
    for name in ("bank", "venue"):
        write_keypair(name, "Noise_KK_25519_AESGCM_SHA256", tmp_path / "keys")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "venue.cfg").write_text(
        "[DEFAULT]\nConnectionType=acceptor\nFixSecureStatePath=state\n"
        "FixSecurePrivateKeyFile=keys/venue.key\nFixSecurePeerPublicKeyFile=keys/bank.pub\n"
        f"SocketAcceptHost=127.0.0.1\nSocketAcceptPort={port}\n"
        "[SESSION]\nBeginString=FIX.4.4\nSenderCompID=VENUE\nTargetCompID=BANK\n"
    )
    (tmp_path / "bank.cfg").write_text(
        "[DEFAULT]\nConnectionType=initiator\n"
        "FixSecurePrivateKeyFile=keys/bank.key\nFixSecurePeerPublicKeyFile=keys/venue.pub\n"
        f"SocketConnectHost=127.0.0.1\nSocketConnectPort={port}\n"
        "[SESSION]\nBeginString=FIX.4.4\nSenderCompID=BANK\nTargetCompID=VENUE\n"
    )

    async def main() -> subprocess.CompletedProcess[str]:
        async with CounterpartyRunner(tmp_path / "venue.cfg"):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(EXAMPLES / "asyncio_initiator.py"),
                "-c",
                str(tmp_path / "bank.cfg"),
                "--orders",
                "3",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode is not None
            return subprocess.CompletedProcess([], process.returncode, out.decode(), err.decode())

    done = asyncio.run(main())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "logged on (encrypted)" in done.stdout
    assert done.stdout.count("ExecType F CumQty 100 AvgPx 1.085") == 3
    assert "ended cleanly" in done.stdout
