"""A pytest plugin for ``make sanitize``: load the C hot path from the AddressSanitizer and
UndefinedBehaviorSanitizer build named by ``FIXSECURE_SANITIZED`` instead of the installed one.

Loaded with ``-p sanitized`` before anything imports :mod:`fixsecure.hotpath`, so every runner the
tests make is the instrumented code; a memory error or undefined behaviour aborts the run.
"""

from __future__ import annotations

import importlib.util
import os
import sys

_path = os.environ["FIXSECURE_SANITIZED"]
_spec = importlib.util.spec_from_file_location("fixsecure._hotpath", _path)
if _spec is None or _spec.loader is None:
    raise ImportError(f"FIXSECURE_SANITIZED={_path}: not a loadable extension module")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
sys.modules["fixsecure._hotpath"] = _module


def pytest_report_header() -> str:
    return f"fixsecure._hotpath: sanitized build {_path}"
