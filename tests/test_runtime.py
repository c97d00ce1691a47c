"""fixsecure.runtime: the event loop and the allocator of the long-running commands."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import platform
import subprocess
import sys

import pytest

from fixsecure.errors import ConfigError
from fixsecure.runtime import OPT_OUT, run_on_loop


async def _which_loop() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


@pytest.mark.parametrize(("choice", "expected"), [("asyncio", "asyncio"), ("uvloop", "uvloop")])
def test_run_on_loop_runs_on_the_chosen_loop(choice: str, expected: str) -> None:
    assert run_on_loop(_which_loop(), choice) == expected


def test_the_choice_holds_whatever_policy_is_installed() -> None:
    """A uvloop policy installed by someone else does not turn --loop asyncio into uvloop."""
    import uvloop  # noqa: PLC0415

    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        assert run_on_loop(_which_loop(), "asyncio") == "asyncio"
    finally:
        asyncio.set_event_loop_policy(previous)


def test_run_on_loop_auto_prefers_uvloop_where_installed() -> None:
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert run_on_loop(_which_loop()) == expected


def test_run_on_loop_refuses_an_unknown_loop_without_leaking_the_coroutine() -> None:
    coroutine = _which_loop()
    with pytest.raises(ValueError, match="trio"):
        run_on_loop(coroutine, "trio")
    assert coroutine.cr_frame is None  # closed, so no "never awaited" warning either


def test_a_missing_uvloop_is_a_clear_error_and_auto_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'fixsecure\[uvloop\]'"):
        run_on_loop(_which_loop(), "uvloop")
    assert run_on_loop(_which_loop(), "auto") == "asyncio"


TUNED = "from fixsecure.runtime import tune_allocator; print(tune_allocator())"


@pytest.mark.parametrize(("opt_out", "expected"), [(None, "True"), ("0", "False")])
def test_the_allocator_is_tuned_on_glibc_unless_opted_out(
    opt_out: str | None, expected: str
) -> None:
    """Run in a child process: the tuning is process-wide and this one should stay as it is."""
    if platform.libc_ver()[0] != "glibc":
        expected = "False"
    env = {OPT_OUT: opt_out} if opt_out is not None else {}
    done = subprocess.run(
        [sys.executable, "-c", TUNED],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == expected


def test_the_command_line_starts_without_importing_the_protocol() -> None:
    """fixsecure --version (and every subcommand's start-up) works even with a broken hot-path
    choice: the CLI imports the protocol modules only in the handlers that need them."""
    done = subprocess.run(
        [sys.executable, "-m", "fixsecure", "--version"],
        env={**os.environ, "FIXSECURE_HOTPATH": "rust"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("fixsecure ")
