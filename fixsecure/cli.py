"""The ``fixsecure`` command line: one subcommand per tool, each a thin wrapper over the library.

Every subcommand is declared in :func:`build_parser` next to its handler (``_cmd_<name>``); the
handlers import their module lazily so ``fixsecure --help`` stays fast and a broken optional piece
cannot stop the others.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fixsecure import __version__
from fixsecure.errors import ConfigError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fixsecure",
        description="End-to-end encryption for FIX sessions (Noise_KK in the Logon, AEAD bodies).",
    )
    parser.add_argument("--version", action="version", version=f"fixsecure {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    del sub  # subcommands are added below as their modules land
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"fixsecure {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
