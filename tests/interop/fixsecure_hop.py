"""A pair of ``fixsecure proxy`` processes as a harness hop, each reading its engine's own settings.

::

    initiator engine --plain--> proxy (initiator side) ==[network hops]==> proxy (acceptor side)
        --plain--> executor engine

The proxies read the **same settings file as their engine** (``specs/fixsecure-v1.md`` §12): one
file per side holds the QuickFIX keys and the FixSecure* keys, and QuickFIX ignores the latter.

- Acceptor side: the executor's own file, written by :meth:`Harness.start_executor` with
  :meth:`FixsecureProxyPair.executor_settings` added; the proxy listens on ``network_address``
  (FixSecureAcceptPort) and delivers to the executor's SocketAcceptPort.
- Initiator side: the proxy must listen before the engine connects, so :meth:`start` writes the
  initiator engine's file first, exactly where and as :meth:`Harness.start_initiator` writes it
  (SocketConnectPort = the proxy's listener). :meth:`FixsecureProxyPair.start_engines` starts
  executor, proxies and initiator in that order and checks that the initiator's file is
  byte-for-byte the one its proxy read. (``Harness.start_pair(hops=[pair])`` cannot be used: it
  would rewrite the initiator's file without the FixSecure* keys.)

Typical use::

    relay = TcpRelay()                                       # optional, between the proxies
    pair = FixsecureProxyPair(harness, network=[relay])
    fix = pair.start_engines(orders=10_000)                  # a harness FixPair
    pair.kill_and_restart("acceptor")                        # SIGKILL, then the same file again
    ini, exe = fix.wait()                                    # FIX recovery healed the gap

Keys (``write_keypair``) and the anti-replay state (``FixSecureStatePath``) live in the pair's
directory under the harness's; every proxy log (stderr) is a file there, one per incarnation.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fixsecure.keys import write_keypair
from fixsecure.settings import load_settings
from fixsecure.suites import DEFAULT_SUITE

from .harness import (
    BEGIN_STRING,
    EXECUTOR_ID,
    INITIATOR_ID,
    LOOPBACK,
    Address,
    EngineProcess,
    FixPair,
    Harness,
    HarnessError,
    Hop,
    ManagedProcess,
    SessionKey,
    free_ports,
    wait_until,
    write_settings,
)

#: The proxy sides; extra initiators started by :meth:`FixsecureProxyPair.start_initiator_side`
#: are named by their engine.
INITIATOR = "initiator"
ACCEPTOR = "acceptor"

_STATS = re.compile(r"(?:stopped; |stats )((?:\w+=\d+ ?)+)$", re.MULTILINE)


class FixsecureProxyPair:
    """Two fixsecure proxies between a QuickFIX initiator and executor; a :class:`Hop`.

    ``network`` hops (e.g. a :class:`TcpRelay`) sit between the two proxies, where the untrusted
    network is. ``initiator_secure``/``acceptor_secure`` override FixSecure* settings of a side
    (e.g. a wrong key or suite). Keys ``initiator`` and ``acceptor`` are generated for ``suite``.

    A :class:`TcpRelay` in ``network`` passes a FIN on but not a reset: a proxy SIGKILLed behind
    it with unread input (which makes its kernel send RST) is noticed by the other proxy only when
    that one next sends, i.e. at the engines' next heartbeat. Kill tests connect the proxies
    directly.
    """

    READY_LINE = "fixsecure proxy ready"

    def __init__(
        self,
        harness: Harness,
        name: str = "fixsecure",
        *,
        suite: str = DEFAULT_SUITE,
        network: Sequence[Hop] = (),
        initiator_name: str = "initiator",
        executor_name: str = "executor",
        initiator_secure: Mapping[str, object] | None = None,
        acceptor_secure: Mapping[str, object] | None = None,
        ready_timeout: float = 15.0,
    ) -> None:
        self.harness = harness
        self.name = name
        self.suite = suite
        self.network = tuple(network)
        self.initiator_name = initiator_name
        self.executor_name = executor_name
        self.ready_timeout = ready_timeout
        self.dir = harness.workdir / name
        self.key_dir = self.dir / "keys"
        self.state_dir = self.dir / "state"
        self._initiator_secure = dict(initiator_secure or {})
        self._acceptor_secure = dict(acceptor_secure or {})
        for key_name in (INITIATOR, ACCEPTOR):
            self.make_key(key_name)
        engine_port, network_port = free_ports(2)
        #: Where the initiator-side proxy listens for its engine (the engine's SocketConnectPort).
        self.entry = Address(LOOPBACK, engine_port)
        #: Where the acceptor-side proxy listens for the network (FixSecureAcceptPort).
        self.network_address = Address(LOOPBACK, network_port)
        #: Where initiator-side proxies connect: the first network hop, or network_address.
        self.network_entry: Address | None = None
        self._configs: dict[str, Path] = {}
        self._config_bytes: dict[str, bytes] = {}
        self._procs: dict[str, list[ManagedProcess]] = {}

    # -- keys and settings

    def make_key(self, key_name: str, suite: str | None = None) -> Path:
        """Write ``key_name.key``/``.pub`` (for ``suite``, default the pair's); returns the dir."""
        write_keypair(key_name, suite or self.suite, self.key_dir)
        return self.key_dir

    def private_key(self, key_name: str) -> Path:
        return self.key_dir / f"{key_name}.key"

    def public_key(self, key_name: str) -> Path:
        return self.key_dir / f"{key_name}.pub"

    def executor_settings(self) -> dict[str, object]:
        """FixSecure* keys to add to the executor's [DEFAULT] (``start_executor(default=...)``)."""
        return {
            "FixSecureSuite": self.suite,
            "FixSecurePrivateKeyFile": self.private_key(ACCEPTOR),
            "FixSecurePeerPublicKeyFile": self.public_key(INITIATOR),
            "FixSecureStatePath": self.state_dir,
            "FixSecureAcceptHost": self.network_address.host,
            "FixSecureAcceptPort": self.network_address.port,
            "FixSecureHandshakeTimeout": 5,
            "FixSecureDrainTimeout": 1,
            **self._acceptor_secure,
        }

    def initiator_settings(
        self, overrides: Mapping[str, object] | None = None
    ) -> dict[str, object]:
        """FixSecure* keys of an initiator engine's [DEFAULT]; known once :meth:`start` ran."""
        if self.network_entry is None:
            raise HarnessError(f"{self.name}: start() it first (the network entry is not known)")
        return {
            "FixSecureSuite": self.suite,
            "FixSecurePrivateKeyFile": self.private_key(INITIATOR),
            "FixSecurePeerPublicKeyFile": self.public_key(ACCEPTOR),
            "FixSecureConnectHost": self.network_entry.host,
            "FixSecureConnectPort": self.network_entry.port,
            "FixSecureHandshakeTimeout": 5,
            "FixSecureDrainTimeout": 1,
            **self._initiator_secure,
            **(overrides or {}),
        }

    def config(self, side: str) -> Path:
        """The settings file the proxy of ``side`` reads (its engine's own)."""
        return self._configs[side]

    # -- processes

    def start(self, upstream: Address) -> Address:
        """Start both proxies toward ``upstream`` (the executor, already running on the file
        from ``executor_settings()``); returns where the initiator engine must connect."""
        acceptor_cfg = self.harness.workdir / f"{self.executor_name}.cfg"
        self._check_acceptor_file(acceptor_cfg, upstream)
        self._spawn(ACCEPTOR, acceptor_cfg)
        self.network_entry = self.harness.chain(self.network_address, self.network)
        self._write_initiator_file(self.initiator_name, self.entry, self.initiator_settings())
        self._spawn(INITIATOR, self._configs[INITIATOR])
        return self.entry

    def start_executor(self) -> EngineProcess:
        """The executor on a file with :meth:`executor_settings`, then both proxies toward it."""
        executor = self.harness.start_executor(self.executor_name, default=self.executor_settings())
        assert executor.address is not None
        self.harness.chain(executor.address, [self])
        return executor

    def start_initiator(self, **initiator_kwargs: object) -> EngineProcess:
        """The initiator engine on the file its proxy already reads (after :meth:`start`)."""
        initiator = self.harness.start_initiator(
            self.entry,
            self.initiator_name,
            default=self.initiator_settings(),
            **initiator_kwargs,  # type: ignore[arg-type]
        )
        self._check_engine_file(INITIATOR, initiator)
        return initiator

    def start_engines(self, **initiator_kwargs: object) -> FixPair:
        """Executor, both proxies (and the network hops), then the initiator through them;
        ``initiator_kwargs`` go to :meth:`Harness.start_initiator` (orders, window, ...)."""
        executor = self.start_executor()
        initiator = self.start_initiator(**initiator_kwargs)
        return FixPair(executor, initiator, self.entry, (self,))

    def start_initiator_side(
        self,
        name: str,
        secure: Mapping[str, object] | None = None,
        **initiator_kwargs: object,
    ) -> EngineProcess:
        """Another initiator engine ``name`` with its own proxy (the proxy's side is ``name``):
        the pair's initiator settings with ``secure`` overrides, e.g. another key or suite."""
        (port,) = free_ports(1)
        entry = Address(LOOPBACK, port)
        settings = self.initiator_settings(secure)
        self._write_initiator_file(name, entry, settings, side=name)
        self._spawn(name, self._configs[name])
        engine = self.harness.start_initiator(
            entry,
            name,
            default=settings,
            **initiator_kwargs,  # type: ignore[arg-type]
        )
        self._check_engine_file(name, engine)
        return engine

    def kill_and_restart(self, side: str) -> ManagedProcess:
        """SIGKILL the proxy of ``side`` (no drain, no goodbye), then start it again on the same
        settings file and wait until it is ready."""
        current = self.process(side)
        current.kill()
        return self._spawn(side, self._configs[side])

    def process(self, side: str) -> ManagedProcess:
        """The current process of ``side``."""
        if side not in self._procs:
            raise HarnessError(f"{self.name}: no proxy {side!r} (have {sorted(self._procs)})")
        return self._procs[side][-1]

    def stop(self, side: str, timeout: float = 10.0) -> int:
        """SIGTERM the proxy of ``side`` (it drains, logs its stats and exits)."""
        return self.process(side).stop(timeout)

    def close(self) -> None:
        for procs in self._procs.values():
            for proc in procs:
                proc.stop(10)

    # -- logs

    def log_paths(self, side: str) -> list[Path]:
        """stderr of every incarnation of the proxy of ``side``, oldest first."""
        return [proc.stderr_path for proc in self._procs.get(side, [])]

    def log(self, side: str) -> str:
        """Everything the proxy of ``side`` logged, all incarnations."""
        return "".join(p.read_text(errors="replace") for p in self.log_paths(side) if p.exists())

    def count(self, side: str, *texts: str) -> int:
        """Lines of the log of ``side`` that contain every one of ``texts``."""
        return sum(all(t in line for t in texts) for line in self.log(side).splitlines())

    def wait_for_log(self, side: str, *texts: str, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until ``count`` lines of the log of ``side`` contain every one of ``texts``."""
        try:
            wait_until(
                lambda: self.count(side, *texts) >= count,
                timeout,
                interval=0.05,
                what=f"{count} line(s) with {texts} in the {side} proxy log",
            )
        except TimeoutError as exc:
            raise HarnessError(f"{exc}\n{self.diagnostics()}") from None

    def stats(self, side: str) -> dict[str, int]:
        """The last counters line of the current incarnation (after stop(): the final one)."""
        path = self.process(side).stderr_path
        found = _STATS.findall(path.read_text(errors="replace")) if path.exists() else []
        if not found:
            raise HarnessError(f"{self.name}: no stats line in {path}")
        return {k: int(v) for k, v in (item.split("=") for item in found[-1].split())}

    def diagnostics(self) -> str:
        return "\n".join(procs[-1].diagnostics() for procs in self._procs.values())

    # -- internals

    def _spawn(self, side: str, config: Path) -> ManagedProcess:
        incarnation = len(self._procs.get(side, [])) + 1
        suffix = "" if incarnation == 1 else f"-{incarnation}"
        proc = self.harness.spawn(
            f"{self.name}-{side}{suffix}",
            [sys.executable, "-m", "fixsecure", "proxy", "-c", str(config)],
            cwd=self.dir,
            env={"PYTHONUNBUFFERED": "1"},
        )
        self._procs.setdefault(side, []).append(proc)
        self._configs[side] = config
        self._config_bytes.setdefault(side, config.read_bytes())

        def ready() -> bool:
            if not proc.running:
                raise HarnessError(f"proxy {side} exited at startup\n{proc.diagnostics()}")
            return proc.stderr_path.exists() and self.READY_LINE in proc.stderr_path.read_text(
                errors="replace"
            )

        try:
            wait_until(ready, self.ready_timeout, what=f"proxy {side} startup")
        except TimeoutError as exc:
            raise HarnessError(f"{exc}\n{proc.diagnostics()}") from None
        return proc

    def _check_acceptor_file(self, path: Path, upstream: Address) -> None:
        """The executor's file must be the one this pair's acceptor proxy can serve."""
        if not path.exists():
            raise HarnessError(f"{path} missing: start the executor with executor_settings()")
        (session,) = load_settings(path).acceptors()
        accept = session.secure.accept_port
        engine = session.get_int("SocketAcceptPort")
        if (accept, engine) != (self.network_address.port, upstream.port):
            raise HarnessError(
                f"{path}: FixSecureAcceptPort={accept}, SocketAcceptPort={engine}; expected "
                f"{self.network_address.port} and the executor's {upstream.port}"
            )

    def _write_initiator_file(
        self, name: str, entry: Address, secure: Mapping[str, object], side: str = INITIATOR
    ) -> None:
        """Write the initiator engine's settings exactly as Harness.start_initiator will."""
        key = SessionKey(BEGIN_STRING, INITIATOR_ID, EXECUTOR_ID)
        default, session = self.harness.engine_settings(
            name,
            "initiator",
            key,
            {"SocketConnectHost": entry.host, "SocketConnectPort": entry.port},
        )
        path = write_settings(
            self.harness.workdir / f"{name}.cfg", {**default, **secure}, [session]
        )
        self._configs[side] = path

    def _check_engine_file(self, side: str, engine: EngineProcess) -> None:
        """The engine runs on the very file (path and bytes) its proxy read."""
        read = self._config_bytes[side]
        if engine.settings_path != self._configs[side] or engine.settings_path.read_bytes() != read:
            raise HarnessError(
                f"{engine.name} runs on {engine.settings_path}, which is not the file its proxy "
                f"read ({self._configs[side]})"
            )
