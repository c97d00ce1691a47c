"""From settings to core objects: what every adapter (asyncio transport, proxy, counterparty)
needs to turn a QuickFIX-format settings file into :class:`~fixsecure.session.SessionConfig` and
:class:`~fixsecure.session.AcceptorDirectory` objects. Key files are loaded and checked here."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path

from fixsecure.admission import Admission
from fixsecure.errors import ConfigError
from fixsecure.keys import load_session_keys
from fixsecure.noise import KeyPair, parse_protocol_name
from fixsecure.replay import FileReplayStore, ReplayStateError, ReplayStore
from fixsecure.session import AcceptorDirectory, SessionConfig
from fixsecure.sessionid import SessionID
from fixsecure.settings import SessionSettings, check_listener

__all__ = [
    "PerSessionReplayStore",
    "acceptor_directory",
    "listener_admission",
    "session_config",
]



def session_config(settings: SessionSettings) -> SessionConfig:
    """The core configuration of one session, with its key files loaded and checked."""
    secure = settings.secure
    own: tuple[KeyPair, ...] = ()
    peers: tuple[bytes, ...] = ()
    if secure.private_key_files or secure.peer_public_key_files:
        keys = load_session_keys(settings)
        dh = parse_protocol_name(secure.suite).dh
        own = tuple(dh.keypair(key.private) for key in keys.own)
        peers = tuple(peer.public for peer in keys.peers)
    try:
        return SessionConfig(
            settings.session_id,
            secure.suite,
            own,
            peers,
            required=secure.required,
            max_message_size=secure.max_message_size,
            logon_window=secure.logon_window,
            logon_future_skew=secure.logon_future_skew,
        )
    except ConfigError as exc:
        raise ConfigError(exc.message, path=settings.path, section=settings.section) from None


class PerSessionReplayStore:
    """Routes each session to the :class:`FileReplayStore` of its own ``FixSecureStatePath``."""

    def __init__(self, stores: dict[SessionID, ReplayStore]) -> None:
        self._stores = stores

    def _store(self, session: SessionID) -> ReplayStore:
        try:
            return self._stores[session]
        except KeyError:  # fail closed: a session without a state path accepts no handshake
            raise ReplayStateError(f"no FixSecureStatePath for {session}") from None

    def last_logon(self, session: SessionID) -> int | None:
        return self._store(session).last_logon(session)

    def advance(self, session: SessionID, sending_time: int) -> bool:
        return self._store(session).advance(session, sending_time)


def acceptor_directory(
    sessions: Iterable[SessionSettings],
    *,
    admit: Callable[[SessionID, Hashable], bool] | None = None,
) -> AcceptorDirectory:
    """The directory of an acceptor endpoint serving ``sessions``, with file-backed anti-replay."""
    configs: list[SessionConfig] = []
    stores: dict[SessionID, ReplayStore] = {}
    by_path: dict[Path, FileReplayStore] = {}
    for settings in sessions:
        config = session_config(settings)
        configs.append(config)
        path = settings.secure.state_path
        if path is None:
            if config.secure:
                raise ConfigError(
                    "acceptor sessions need FixSecureStatePath for the anti-replay state",
                    path=settings.path,
                    section=settings.section,
                    key="FixSecureStatePath",
                )
            continue
        stores[config.session_id] = by_path.setdefault(path, FileReplayStore(path))
    return AcceptorDirectory(configs, PerSessionReplayStore(stores), admit=admit)


def listener_admission(sessions: Sequence[SessionSettings], address: str) -> Admission:
    """The admission limits of one listening address (the sessions must agree on them)."""
    check_listener(sessions, address)
    secure = sessions[0].secure
    return Admission.create(
        max_half_open=secure.max_half_open,
        per_source_per_minute=secure.logon_rate_per_source,
        per_session_per_minute=secure.logon_rate_per_session,
    )
