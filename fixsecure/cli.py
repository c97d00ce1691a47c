"""The ``fixsecure`` command line: one subcommand per tool, each a thin wrapper over the library.

Every subcommand is declared in :func:`build_parser` next to its handler (``_cmd_<name>``); the
handlers import their module lazily so ``fixsecure --help`` stays fast and a broken optional piece
cannot stop the others.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fixsecure import __version__
from fixsecure.errors import ConfigError
from fixsecure.runtime import LOOPS, run_on_loop, tune_allocator
from fixsecure.suites import DEFAULT_SUITE, SUITES

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fixsecure",
        description="End-to-end encryption for FIX sessions (Noise_KK in the Logon, AEAD bodies).",
    )
    parser.add_argument("--version", action="version", version=f"fixsecure {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    keygen = sub.add_parser(
        "keygen",
        help="make a static key pair (NAME.key, NAME.pub) and print its fingerprint",
        description="Write NAME.key (private, PKCS#8 PEM, mode 0600) and NAME.pub (public, "
        "SubjectPublicKeyInfo PEM) and print the fingerprint to compare with the counterparty.",
    )
    keygen.add_argument("name", metavar="NAME", help="file name without extension, e.g. bank-2025")
    keygen.add_argument(
        "--suite",
        choices=SUITES,
        default=DEFAULT_SUITE,
        metavar="SUITE",
        help=f"suite the key is for, which decides the curve: {', '.join(SUITES)} "
        "(default: %(default)s)",
    )
    keygen.add_argument(
        "--out", type=Path, default=Path(), metavar="DIR", help="where to write (default: .)"
    )
    keygen.add_argument("--force", action="store_true", help="replace existing files")
    keygen.set_defaults(handler=_cmd_keygen)

    check = sub.add_parser(
        "check",
        help="validate a settings file: keys, permissions, suites, ports (starts nothing)",
        description="Print one line per session, ok or FAIL. Exit status 0 if every session is "
        "ok, 1 if any fails, 2 if the file cannot be read at all.",
    )
    check.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    check.set_defaults(handler=_cmd_check)

    vectors = sub.add_parser(
        "vectors",
        help="run Noise test vectors (Noise wiki JSON format) against fixsecure's Noise code",
        description="Runs every vector whose protocol fixsecure supports; others (psk, other "
        "patterns or functions) are counted as skipped. Exit status 1 on any failure.",
    )
    vectors.add_argument("files", nargs="+", type=Path, metavar="FILE")
    vectors.set_defaults(handler=_cmd_vectors)

    bench = sub.add_parser(
        "bench",
        help="measure fixsecure against baselines taken in the same run",
        description="core: per-message cost of the encrypt and decrypt paths against a naive "
        "simplefix pipeline and the bare AEAD, plus the handshake. proxy: throughput and added "
        "latency of the fixsecure proxy pair against direct TCP, a TCP relay pair and a stunnel "
        "TLS 1.3 pair, each with fresh processes.",
    )
    bench.add_argument("target", choices=["core", "proxy"], help="what to measure")
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    bench.add_argument("--suite", choices=SUITES, default=DEFAULT_SUITE, metavar="SUITE")
    bench.add_argument(
        "--messages", type=int, default=50_000, help="messages per repeat (default: %(default)s)"
    )
    bench.add_argument("--repeats", type=int, default=5, help="repeats (default: %(default)s)")
    bench.set_defaults(handler=_cmd_bench)

    proxy = sub.add_parser(
        "proxy",
        help="run the sidecar proxy described by an engine's settings file",
        description="Initiator sessions: listen where the engine's SocketConnectHost/Port point, "
        "connect onward to FixSecureConnectHost/Port. Acceptor sessions: listen on "
        "FixSecureAcceptHost/Port, deliver to SocketAcceptHost/Port. SIGTERM drains and exits 0; "
        "SIGHUP reloads keys.",
    )
    _add_service_options(proxy, "a line of counters")
    proxy.set_defaults(handler=_cmd_proxy)

    counterparty = sub.add_parser(
        "counterparty",
        help="run the test counterparty (answers orders) described by a settings file",
        description="Acceptor sessions listen on SocketAcceptHost/Port (sessions sharing an "
        "address share a listener; the Logon's CompIDs pick the session), initiator sessions "
        "connect to SocketConnectHost/Port and reconnect every ReconnectInterval. fixsecure is "
        "built in: plaintext only where FixSecureRequired=N. Orders are answered with "
        "ExecutionReports (CounterpartyFillParts, CounterpartyFillInterval, "
        "CounterpartyMarketPrice). SIGTERM/SIGINT log every session out and exit 0; exit status "
        "2 for an unusable settings file.",
    )
    _add_service_options(counterparty, "a status line per session")
    counterparty.set_defaults(handler=_cmd_counterparty)

    inspect = sub.add_parser(
        "inspect",
        help="show what captured wire bytes reveal without keys, and flag anomalies",
        description="Read a raw capture of wire bytes or a FIX log (one message per line, after "
        "any prefix such as QuickFIX FileLog's timestamp; SOH written as SOH, | or ^A) and print, "
        "per message, its clear fields, its kind (handshake-1, handshake-2, protected, "
        "plaintext), SecureData sizes and layout anomalies, then a summary. Needs no keys. Exit "
        "status 0 if no anomaly, 1 if any, 2 if the input is unusable.",
    )
    inspect.add_argument(
        "file", nargs="?", default="-", metavar="FILE", help="capture or log; - or none: stdin"
    )
    inspect.add_argument(
        "--json", action="store_true", help="JSON Lines: one object per message, then a summary"
    )
    inspect.set_defaults(handler=_cmd_inspect)

    demo = sub.add_parser(
        "demo",
        help="an encrypted session against the test counterparty, showing the wire",
        description="Throwaway keys, the test counterparty, an order client and a recording tap "
        "on loopback: logs on, sends orders, receives every fill, logs out, then shows messages "
        "as each engine wrote them and as they crossed the network, with orders/s and latency.",
    )
    demo.add_argument(
        "--orders", type=int, default=1000, help="orders to send (default: %(default)s)"
    )
    demo.add_argument("--suite", choices=SUITES, default=DEFAULT_SUITE, metavar="SUITE")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _add_service_options(parser: argparse.ArgumentParser, stats: str) -> None:
    """-c FILE, --stats and --log-level: what the long-running commands share."""
    parser.add_argument("-c", "--config", type=Path, required=True, metavar="FILE")
    parser.add_argument(
        "--stats",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"log {stats} this often (default: FixSecureStatsInterval, 0 = off)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity on stderr (default: %(default)s); message contents are never logged",
    )
    parser.add_argument(
        "--loop",
        default="auto",
        choices=LOOPS,
        help="event loop: uvloop (faster, pip install 'fixsecure[uvloop]'), asyncio, or auto: "
        "uvloop where installed (default: %(default)s)",
    )


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _cmd_keygen(args: argparse.Namespace) -> int:
    from fixsecure.keys import CURVE_NAMES, write_keypair  # noqa: PLC0415 - lazy, see module doc

    files = write_keypair(args.name, args.suite, args.out, force=args.force)
    print(f"private key  {files.private_path}  (mode 0600; it never leaves this host)")
    print(f"public key   {files.public_path}  (give this file to the counterparty)")
    print(
        f"fingerprint  {files.fingerprint}  ({CURVE_NAMES[files.curve]}; the counterparty "
        "compares it out of band before pinning the key)"
    )
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from fixsecure.settings import check_settings  # noqa: PLC0415 - lazy, see module doc

    results = check_settings(args.config)
    for result in results:
        print(result)
    return 0 if all(result.ok for result in results) else 1


def _cmd_vectors(args: argparse.Namespace) -> int:
    from fixsecure.vectors import run_vector_files  # noqa: PLC0415 - lazy, see module doc

    report = run_vector_files(args.files)
    for failure in report.failures:
        print(f"FAIL {failure}")
    print(report.summary)
    return 1 if report.failed or not report.passed else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from fixsecure.bench import print_core, run_core  # noqa: PLC0415 - lazy, see module doc

    if args.messages < 1 or args.repeats < 1:
        print("fixsecure bench: --messages and --repeats must be positive", file=sys.stderr)
        return 2
    if args.target == "proxy":
        from fixsecure.benchproxy import run_from_args  # noqa: PLC0415 - lazy, see module doc

        return run_from_args(args)
    print_core(
        run_core(args.suite, messages=args.messages, repeats=args.repeats), as_json=args.json
    )
    return 0


def _cmd_proxy(args: argparse.Namespace) -> int:
    from fixsecure.proxy import run_proxy  # noqa: PLC0415 - lazy, see module doc

    _setup_logging(args.log_level)
    tune_allocator()
    return run_on_loop(run_proxy(args.config, stats_interval=args.stats), args.loop)


def _cmd_counterparty(args: argparse.Namespace) -> int:
    from fixsecure.counterparty.runner import run_counterparty  # noqa: PLC0415 - lazy, see module doc

    _setup_logging(args.log_level)
    tune_allocator()
    return run_on_loop(run_counterparty(args.config, stats_interval=args.stats), args.loop)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from fixsecure.inspection import (  # noqa: PLC0415 - lazy, see module doc
        inspect_capture,
        render_json,
        render_text,
    )

    name = "stdin" if args.file == "-" else args.file
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"fixsecure inspect: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    inspection = inspect_capture(data)
    if not inspection.reports:
        print(f"fixsecure inspect: no FIX message found in {name}", file=sys.stderr)
        return 2
    render = render_json if args.json else render_text
    try:
        for line in render(inspection):
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:  # `fixsecure inspect capture | head` is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return inspection.summary.exit_status


def _cmd_demo(args: argparse.Namespace) -> int:
    from fixsecure.demo import run_demo  # noqa: PLC0415 - lazy, see module doc

    if args.orders < 1:
        print("fixsecure demo: --orders must be at least 1", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    return run_demo(args.orders, args.suite)


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
