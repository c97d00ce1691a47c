"""How the long-running commands run: their event loop and their memory allocator.

The proxy and the counterparty (and the benchmark's relay, which stands for the proxy's I/O) are
long-running processes that move a stream through buffers of a read's size. Two process-wide
choices serve them: :func:`run_on_loop` runs them on uvloop where it is installed, and
:func:`tune_allocator` keeps glibc from returning freed memory to the kernel on every read. This
module imports nothing of fixsecure's protocol, so the command line can use it at start-up.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import platform
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from fixsecure.errors import ConfigError

__all__ = ["LOOPS", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "run_on_loop", "tune_allocator"]

#: Event loop choices of the long-running commands: ``auto`` is uvloop where it imports.
LOOPS: Final = ("auto", "uvloop", "asyncio")
_T = TypeVar("_T")


def run_on_loop(main: Coroutine[Any, Any, _T], loop: str = "auto") -> _T:
    """Run ``main`` to completion on a new event loop: ``uvloop`` (it cuts the cost of each read
    and write, which a sidecar pays on every hop), ``asyncio``, or ``auto``: uvloop where it
    imports, asyncio's own loop otherwise. The choice holds whatever loop policy is installed."""
    if loop not in LOOPS:
        main.close()
        raise ValueError(f"event loop {loop!r}: choose one of {', '.join(LOOPS)}")
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.SelectorEventLoop
    if loop != "asyncio":
        try:
            import uvloop  # noqa: PLC0415 - optional

            factory = uvloop.new_event_loop
        except ImportError:
            if loop == "uvloop":
                main.close()
                raise ConfigError(
                    "event loop uvloop: it is not installed (pip install 'fixsecure[uvloop]')"
                ) from None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


_M_TRIM_THRESHOLD: Final = -1  # glibc <malloc.h>
_M_MMAP_THRESHOLD: Final = -3
#: Free heap glibc may keep instead of returning it to the kernel, and the size from which it
#: serves blocks by mmap instead (both fixed, so no longer adjusted at run time).
TRIM_THRESHOLD: Final = 8 << 20
MMAP_THRESHOLD: Final = 4 << 20
#: ``FIXSECURE_TUNE_ALLOCATOR=0`` in the environment keeps glibc's defaults.
OPT_OUT: Final = "FIXSECURE_TUNE_ALLOCATOR"


def tune_allocator() -> bool:
    """Keep glibc from handing freed memory back to the kernel on every read.

    A sidecar allocates and frees a read-sized buffer (and its output) for every read; glibc's
    default trims the heap and unmaps large blocks as soon as they are free, so each read then
    faults and zeroes those pages again — measured at a fifth of the proxy's CPU at full rate.
    With fixed thresholds the pages stay mapped, holding at most :data:`TRIM_THRESHOLD` of free
    heap (which, like any freed heap memory, may still hold message bytes until reused).

    Process-wide, so only the long-running commands call it. Returns whether it applied: False
    where the C library is not glibc, or with ``FIXSECURE_TUNE_ALLOCATOR=0``."""
    if os.environ.get(OPT_OUT, "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    trimmed = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1) and trimmed
