"""Read the QuickFIX-format settings file that configures both the FIX engine and fixsecure.

One file serves both, so fixsecure reads it by QuickFIX C++'s own rules; otherwise the engine and
the proxy could disagree about what a session is:

- the file is split into lines at LF; each line is stripped of spaces, tabs, CR and LF;
- a line starting with ``#`` is a comment. There are no end-of-line comments: in
  ``Key=Value # note`` the value is ``Value # note``;
- ``[NAME]`` starts a section: ``[DEFAULT]`` or ``[SESSION]``, spelled exactly so;
- ``Key=Value`` is split at the first ``=``, and key and value are stripped. Keys are
  case-insensitive (QuickFIX upper-cases them); messages use the spelling found in the file;
- every ``[SESSION]`` inherits each ``[DEFAULT]`` key it does not set itself.

fixsecure is stricter than QuickFIX wherever QuickFIX silently ignores something, because a setting
that is silently ignored can leave a session on an old key, or without the protection the file
seems to ask for. These are errors here (QuickFIX's behaviour in brackets):

- a non-empty line that is neither a comment, a section header nor ``Key=Value`` (skipped);
- ``Key=Value`` before the first section header (dropped);
- a section other than ``[DEFAULT]``/``[SESSION]``, e.g. ``[Session]`` (never read);
- a second ``[DEFAULT]`` (only the first is read);
- the same key twice in one section (the last one wins);
- a line longer than 1023 bytes (QuickFIX C++ stops reading the whole file there);
- a UTF-8 byte-order mark (it hides the first section header from QuickFIX), or a file that is
  not UTF-8;
- an unknown ``FixSecure*`` key (a typo would otherwise fall back to the default silently).

Engine keys fixsecure does not use are not checked (the engine checks its own), except that the
ports ``SocketConnectPort``/``SocketAcceptPort`` must be valid because ``fixsecure check`` compares
them with the proxy's.

Relative paths in ``FixSecurePrivateKeyFile``, ``FixSecurePeerPublicKeyFile`` and
``FixSecureStatePath`` are relative to the directory of the settings file, not to the working
directory, so the proxy finds the same files wherever it is started from.

Every error is a :class:`~fixsecure.errors.ConfigError` naming the file, the section
(``[SESSION] #2 (line 14)``) and the key.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, NamedTuple, overload

from fixsecure import keys
from fixsecure.errors import ConfigError, KeyFileError
from fixsecure.sessionid import SessionID
from fixsecure.suites import DEFAULT_SUITE, SUITES, is_suite

__all__ = [
    "BEGIN_STRINGS",
    "LISTENER_KEYS",
    "SECURE_KEYS",
    "CheckResult",
    "SectionValues",
    "SecureSettings",
    "SessionID",
    "SessionSettings",
    "Settings",
    "check_listener",
    "check_settings",
    "load_settings",
    "parse_settings",
]

#: The BeginString values QuickFIX accepts in a settings file.
BEGIN_STRINGS: Final[tuple[str, ...]] = (
    "FIX.4.0",
    "FIX.4.1",
    "FIX.4.2",
    "FIX.4.3",
    "FIX.4.4",
    "FIXT.1.1",
)

#: Every key fixsecure reads; any other ``FixSecure*`` key is refused as a probable typo.
SECURE_KEYS: Final[tuple[str, ...]] = (
    "FixSecureRequired",
    "FixSecureSuite",
    "FixSecurePrivateKeyFile",
    "FixSecurePeerPublicKeyFile",
    "FixSecureLogonWindow",
    "FixSecureLogonFutureSkew",
    "FixSecureStatePath",
    "FixSecureMaxMessageSize",
    "FixSecureConnectHost",
    "FixSecureConnectPort",
    "FixSecureAcceptHost",
    "FixSecureAcceptPort",
    "FixSecureHandshakeTimeout",
    "FixSecureMaxHalfOpen",
    "FixSecureLogonRatePerSource",
    "FixSecureLogonRatePerSession",
    "FixSecureDrainTimeout",
    "FixSecureBusyPoll",
    "FixSecureStatsInterval",
)

#: QuickFIX C++ reads lines into a 1024-byte buffer; a longer line ends its reading of the file.
MAX_LINE_BYTES: Final = 1023

_STRIP: Final = " \t\r\n"
_ASCII_UPPER: Final = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_INT: Final = re.compile(r"[+-]?[0-9]+")
_FLOAT: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_SECRET_WORDS: Final = ("PASSWORD", "PASSPHRASE", "SECRET", "TOKEN", "CREDENTIAL")
_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::", "*"})  # noqa: S104 - names, not binds
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


def _upper(key: str) -> str:
    """Upper-case ASCII only, like C's toupper in QuickFIX (Python turns 'ß' into 'SS')."""
    return key.translate(_ASCII_UPPER)


_SECURE_BY_UPPER: Final = {_upper(name): name for name in SECURE_KEYS}


def _is_secret(key: str) -> bool:
    upper = _upper(key)
    return any(word in upper for word in _SECRET_WORDS)


def _show(key: str, value: str) -> str:
    """A value quoted for an error message; values of password-like keys are never shown."""
    if _is_secret(key):
        return "(value hidden)"
    return repr(value if len(value) <= 60 else value[:57] + "...")


# --------------------------------------------------------------------------------------------------
# Section values


class _Entry(NamedTuple):
    spelling: str
    value: str
    line: int
    inherited: bool


class SectionValues(Mapping[str, str]):
    """The ``Key=Value`` pairs of a section. Lookup ignores case, as in QuickFIX.

    Iteration yields each key as first spelled in the file. ``repr`` hides the values of
    password-like keys (engines keep ``Password=`` in the same file).
    """

    __slots__ = ("_entries",)

    def __init__(self, pairs: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        self._entries: dict[str, _Entry] = {}
        for key, value in items:
            self._entries.setdefault(_upper(key), _Entry(key, value, 0, inherited=False))

    @classmethod
    def _of(cls, entries: Iterable[_Entry]) -> SectionValues:
        values = cls()
        values._entries = {_upper(entry.spelling): entry for entry in entries}
        return values

    def __getitem__(self, key: str) -> str:
        return self._entries[_upper(key)].value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _upper(key) in self._entries

    def __iter__(self) -> Iterator[str]:
        return (entry.spelling for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __hash__(self) -> int:
        return hash(frozenset(self.items()))

    def __repr__(self) -> str:
        shown = {
            entry.spelling: "***" if _is_secret(entry.spelling) else entry.value
            for entry in self._entries.values()
        }
        return f"SectionValues({shown!r})"

    def spelling(self, key: str) -> str:
        """``key`` as written in the file (``key`` itself when absent)."""
        entry = self._entries.get(_upper(key))
        return key if entry is None else entry.spelling

    def line(self, key: str) -> int | None:
        """The line that set ``key`` (None when absent or not read from a file)."""
        entry = self._entries.get(_upper(key))
        return entry.line if entry is not None and entry.line else None

    def inherited(self, key: str) -> bool:
        """True when ``key`` comes from ``[DEFAULT]`` rather than the section itself."""
        entry = self._entries.get(_upper(key))
        return entry is not None and entry.inherited


def _lookup(values: Mapping[str, str], key: str) -> tuple[str, str] | None:
    """(spelling, value) of ``key`` in any mapping, ignoring case."""
    if isinstance(values, SectionValues):
        return (values.spelling(key), values[key]) if key in values else None
    wanted = _upper(key)
    for spelling, value in values.items():
        if _upper(spelling) == wanted:
            return spelling, value
    return None


class _Reader:
    """Typed access to one section's values; every error names file, section and key."""

    def __init__(self, path: Path, section: str, values: Mapping[str, str], base: Path) -> None:
        self.path = path
        self.section = section
        self.values = values
        self.base = base

    def error(self, key: str, message: str) -> ConfigError:
        found = _lookup(self.values, key)
        spelling = key if found is None else found[0]
        if isinstance(self.values, SectionValues) and self.values.inherited(key):
            line = self.values.line(key)
            message += f" (inherited from [DEFAULT]{f', line {line}' if line else ''})"
        return ConfigError(message, path=self.path, section=self.section, key=spelling)

    def get(self, key: str, default: str | None = None) -> str | None:
        found = _lookup(self.values, key)
        return default if found is None else found[1]

    def _value(self, key: str) -> str | None:
        """The value if set; an empty value is an error (remove the line to get the default)."""
        found = _lookup(self.values, key)
        if found is None:
            return None
        if not found[1]:
            raise self.error(key, "is empty; set a value or remove the line to use the default")
        return found[1]

    def require(self, key: str) -> str:
        value = self._value(key)
        if value is None:
            raise self.error(key, "is required but not set (neither here nor in [DEFAULT])")
        return value

    def get_int(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        text = self._value(key)
        if text is None:
            return default
        if not _INT.fullmatch(text):
            raise self.error(key, f"must be a whole number, not {_show(key, text)}")
        number = int(text)
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise self.error(key, _range_message(number, minimum, maximum))
        return number

    def get_float(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        above: float | None = None,
    ) -> float | None:
        text = self._value(key)
        if text is None:
            return default
        if not _FLOAT.fullmatch(text):
            raise self.error(key, f"must be a number such as 2.5, not {_show(key, text)}")
        number = float(text)
        if above is not None and number <= above:
            raise self.error(key, f"must be greater than {above:g}, not {text}")
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise self.error(key, _range_message(text, minimum, maximum))
        return number

    def get_bool(self, key: str, default: bool | None = None) -> bool | None:
        text = self._value(key)
        if text is None:
            return default
        if text == "Y":
            return True
        if text == "N":
            return False
        raise self.error(
            key, f"must be Y or N (upper case, as QuickFIX reads it), not {_show(key, text)}"
        )

    def get_host(self, key: str) -> str | None:
        text = self._value(key)
        if text is not None and any(ch.isspace() for ch in text):
            raise self.error(key, f"must be a host name or address, not {_show(key, text)}")
        return text

    def get_port(self, key: str) -> int | None:
        return self.get_int(key, minimum=1, maximum=65535)

    def get_path(self, key: str) -> Path | None:
        text = self._value(key)
        return None if text is None else self._resolve(text)

    def get_paths(self, key: str) -> tuple[Path, ...]:
        text = self._value(key)
        if text is None:
            return ()
        paths: list[Path] = []
        for raw in text.split(","):
            item = raw.strip(_STRIP)
            if not item:
                raise self.error(key, "has an empty entry in its comma-separated list of files")
            path = self._resolve(item)
            if path in paths:
                raise self.error(key, f"lists {item} twice")
            paths.append(path)
        return tuple(paths)

    def _resolve(self, text: str) -> Path:
        path = Path(text)
        return path if path.is_absolute() else self.base / path


def _range_message(value: float | str, minimum: float | None, maximum: float | None) -> str:
    def show(bound: float) -> str:  # 67108864, not 6.71089e+07
        return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"

    if minimum is not None and maximum is not None:
        return f"must be between {show(minimum)} and {show(maximum)}, not {value}"
    if minimum is not None:
        return f"must be at least {show(minimum)}, not {value}"
    assert maximum is not None
    return f"must be at most {show(maximum)}, not {value}"


# --------------------------------------------------------------------------------------------------
# Typed settings


@dataclass(frozen=True)
class SecureSettings:
    """The ``FixSecure*`` keys of one session, typed, with defaults applied.

    Times are seconds. Key files and the state path are absolute (see the module docstring).
    """

    required: bool
    suite: str
    private_key_files: tuple[Path, ...]
    peer_public_key_files: tuple[Path, ...]
    logon_window: float
    logon_future_skew: float
    state_path: Path | None
    max_message_size: int
    connect_host: str | None
    connect_port: int | None
    accept_host: str
    accept_port: int | None
    handshake_timeout: float
    max_half_open: int
    logon_rate_per_source: int
    logon_rate_per_session: int
    drain_timeout: float
    stats_interval: float
    busy_poll: float  # seconds the proxy keeps polling after traffic before it sleeps (0: off)


@dataclass(frozen=True)
class SessionSettings:
    """One ``[SESSION]`` with ``[DEFAULT]`` merged in, validated.

    ``values`` holds every key (engine keys too) for modules that read more; use :meth:`get_int`
    and friends so their errors also name file, section and key.
    """

    path: Path
    section: str
    line: int
    session_id: SessionID
    connection_type: Literal["initiator", "acceptor"]
    values: Mapping[str, str]
    secure: SecureSettings

    def _reader(self) -> _Reader:
        return _Reader(self.path, self.section, self.values, Path(self.path).absolute().parent)

    @overload
    def get(self, key: str, default: str) -> str: ...
    @overload
    def get(self, key: str, default: None = None) -> str | None: ...
    def get(self, key: str, default: str | None = None) -> str | None:
        """The raw value of ``key`` (any case), or ``default``."""
        return self._reader().get(key, default)

    @overload
    def get_int(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int: ...
    @overload
    def get_int(
        self,
        key: str,
        default: None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None: ...
    def get_int(
        self,
        key: str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """``key`` as a whole number within [minimum, maximum], or ``default`` when not set."""
        return self._reader().get_int(key, default, minimum=minimum, maximum=maximum)

    @overload
    def get_float(
        self,
        key: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        above: float | None = None,
    ) -> float: ...
    @overload
    def get_float(
        self,
        key: str,
        default: None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        above: float | None = None,
    ) -> float | None: ...
    def get_float(
        self,
        key: str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        above: float | None = None,
    ) -> float | None:
        """``key`` as a plain decimal (no exponent, inf or nan); ``above`` is an exclusive bound."""
        return self._reader().get_float(key, default, minimum=minimum, maximum=maximum, above=above)

    @overload
    def get_bool(self, key: str, default: bool) -> bool: ...
    @overload
    def get_bool(self, key: str, default: None = None) -> bool | None: ...
    def get_bool(self, key: str, default: bool | None = None) -> bool | None:
        """``key`` as a QuickFIX boolean: exactly ``Y`` or ``N``."""
        return self._reader().get_bool(key, default)

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError about ``key`` of this session, for callers that validate more."""
        return self._reader().error(key, message)

    def key_name(self, key: str) -> str:
        """``key`` as spelled in the file, for messages."""
        found = _lookup(self.values, key)
        return key if found is None else found[0]


@dataclass(frozen=True)
class Settings:
    """A whole settings file: its ``[DEFAULT]`` values and its sessions in file order."""

    path: Path
    default: Mapping[str, str]
    sessions: tuple[SessionSettings, ...]

    def initiators(self) -> tuple[SessionSettings, ...]:
        return tuple(s for s in self.sessions if s.connection_type == "initiator")

    def acceptors(self) -> tuple[SessionSettings, ...]:
        return tuple(s for s in self.sessions if s.connection_type == "acceptor")

    def find(self, session_id: SessionID) -> SessionSettings | None:
        """The session with exactly this ID, if any."""
        return next((s for s in self.sessions if s.session_id == session_id), None)


# --------------------------------------------------------------------------------------------------
# Parsing


@dataclass
class _Section:
    kind: Literal["DEFAULT", "SESSION"]
    number: int
    line: int
    entries: dict[str, _Entry]

    @property
    def label(self) -> str:
        if self.kind == "DEFAULT":
            return f"[DEFAULT] (line {self.line})"
        return f"[SESSION] #{self.number} (line {self.line})"


@dataclass
class _Parsed:
    path: Path
    base: Path
    default: _Section | None
    sessions: list[_Section]


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the settings file: {exc.strerror or exc}", path=path
        ) from None
    if data.startswith(codecs.BOM_UTF8):
        raise ConfigError(
            "starts with a UTF-8 byte-order mark, which hides the first section header from "
            "QuickFIX; save the file as UTF-8 without BOM",
            path=path,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"line {line}: not valid UTF-8; save the file as UTF-8", path=path
        ) from None


def _parse(text: str, path: Path) -> _Parsed:
    """Split the text into sections by QuickFIX's line rules (see the module docstring)."""
    if text.startswith("\ufeff"):
        raise ConfigError(
            "starts with a byte-order mark, which hides the first section header from QuickFIX",
            path=path,
        )
    default: _Section | None = None
    sessions: list[_Section] = []
    current: _Section | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        where = None if current is None else current.label
        if len(raw.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
            raise ConfigError(
                f"line {number} is longer than {MAX_LINE_BYTES} bytes; QuickFIX C++ stops "
                "reading the file at such a line",
                path=path,
                section=where,
            )
        line = raw.strip(_STRIP)
        if not line or line.startswith("#"):
            continue
        if line[0] == "[" and line[-1] == "]":
            name = line[1:-1].strip(_STRIP)
            if name == "DEFAULT":
                if default is not None:
                    raise ConfigError(
                        f"a second [DEFAULT] section; the first starts at line {default.line} "
                        "(QuickFIX would read only that one)",
                        path=path,
                        section=f"[DEFAULT] (line {number})",
                    )
                current = default = _Section("DEFAULT", 0, number, {})
            elif name == "SESSION":
                current = _Section("SESSION", len(sessions) + 1, number, {})
                sessions.append(current)
            else:
                known = _upper(name) in ("DEFAULT", "SESSION")
                hint = " (section names are case-sensitive)" if known else ""
                raise ConfigError(
                    f"line {number}: unknown section [{name}]; only [DEFAULT] and [SESSION] "
                    f"exist{hint}",
                    path=path,
                )
        elif "=" in line:
            key, _, value = line.partition("=")
            key = key.strip(_STRIP)
            value = value.strip(_STRIP)
            if not key:
                raise ConfigError(
                    f"line {number}: '=' with no key before it", path=path, section=where
                )
            if current is None:
                raise ConfigError(
                    f"line {number}: Key=Value before the first [DEFAULT] or [SESSION] header "
                    "(QuickFIX would silently drop it)",
                    path=path,
                    key=key,
                )
            upper = _upper(key)
            earlier = current.entries.get(upper)
            if earlier is not None:
                raise ConfigError(
                    f"set twice in this section, at line {earlier.line} and line {number}",
                    path=path,
                    section=current.label,
                    key=earlier.spelling,
                )
            current.entries[upper] = _Entry(key, value, number, inherited=False)
        else:
            raise ConfigError(
                f"line {number} is neither a comment (#), a [section] header nor Key=Value; "
                "QuickFIX would skip it silently, fixsecure refuses it so that no mistyped "
                "setting goes unnoticed",
                path=path,
                section=where,
            )
    if not sessions:
        raise ConfigError("has no [SESSION] section", path=path)
    return _Parsed(path=path, base=path.absolute().parent, default=default, sessions=sessions)


def _session_id(reader: _Reader) -> SessionID:
    begin = reader.require("BeginString")
    if begin not in BEGIN_STRINGS:
        raise reader.error(
            "BeginString", f"must be one of {', '.join(BEGIN_STRINGS)}, not {begin!r}"
        )
    return SessionID(
        begin_string=begin,
        sender_comp_id=reader.require("SenderCompID"),
        target_comp_id=reader.require("TargetCompID"),
        sender_sub_id=reader.get("SenderSubID") or "",
        sender_location_id=reader.get("SenderLocationID") or "",
        target_sub_id=reader.get("TargetSubID") or "",
        target_location_id=reader.get("TargetLocationID") or "",
        qualifier=reader.get("SessionQualifier") or "",
    )


def _connection_type(reader: _Reader) -> Literal["initiator", "acceptor"]:
    value = reader.require("ConnectionType")
    if value == "initiator":
        return "initiator"
    if value == "acceptor":
        return "acceptor"
    in_lower_case = value.lower() in ("initiator", "acceptor")
    hint = " (lower case, as QuickFIX requires)" if in_lower_case else ""
    raise reader.error("ConnectionType", f"must be initiator or acceptor{hint}, not {value!r}")


_INITIATOR_ONE_KEY = (
    "an initiator session names exactly one file here, not {count}: only the acceptor holds two "
    "keys during a rotation, because it tries each in turn on an incoming Logon; the initiator "
    "switches to the new key in one step"
)


def _secure(reader: _Reader, connection_type: str) -> SecureSettings:
    for spelling in reader.values:
        upper = _upper(spelling)
        if upper.startswith("FIXSECURE") and upper not in _SECURE_BY_UPPER:
            close = difflib.get_close_matches(upper, list(_SECURE_BY_UPPER), n=1)
            hint = f"did you mean {_SECURE_BY_UPPER[close[0]]}? " if close else ""
            raise reader.error(
                spelling,
                f"is not a fixsecure setting; {hint}(known: {', '.join(SECURE_KEYS)})",
            )

    required = reader.get_bool("FixSecureRequired", True) is not False
    suite = reader.get("FixSecureSuite", DEFAULT_SUITE) or ""
    if not is_suite(suite):
        raise reader.error(
            "FixSecureSuite", f"unknown suite {suite!r}; expected one of {', '.join(SUITES)}"
        )
    private = reader.get_paths("FixSecurePrivateKeyFile")
    peers = reader.get_paths("FixSecurePeerPublicKeyFile")
    if required or private or peers:
        for setting, files, other in (
            ("FixSecurePrivateKeyFile", private, "FixSecurePeerPublicKeyFile"),
            ("FixSecurePeerPublicKeyFile", peers, "FixSecurePrivateKeyFile"),
        ):
            if not files:
                what = (
                    "this side's own private key (make one with `fixsecure keygen NAME`)"
                    if setting == "FixSecurePrivateKeyFile"
                    else "the counterparty's public key (their NAME.pub), pinned"
                )
                because = (
                    "with FixSecureRequired=Y"
                    if required
                    else f"{other} is set and a handshake needs both"
                )
                raise reader.error(setting, f"is not set; {because} the session needs {what}")
            if len(files) > 2:
                raise reader.error(
                    setting,
                    f"lists {len(files)} files; at most 2 (the old and the new key during a "
                    "rotation)",
                )
            if connection_type == "initiator" and len(files) > 1:
                raise reader.error(setting, _INITIATOR_ONE_KEY.format(count=len(files)))

    state_path = reader.get_path("FixSecureStatePath")
    if connection_type == "acceptor" and (required or private) and state_path is None:
        raise reader.error(
            "FixSecureStatePath",
            "is required for an acceptor session that accepts encrypted Logons: it names the "
            "directory where the last accepted Logon time is kept, so that a restart does not "
            "let an old Logon be replayed",
        )
    connect_host = reader.get_host("FixSecureConnectHost")
    connect_port = reader.get_port("FixSecureConnectPort")
    if (connect_host is None) != (connect_port is None):
        missing, present = (
            ("FixSecureConnectPort", "FixSecureConnectHost")
            if connect_port is None
            else ("FixSecureConnectHost", "FixSecureConnectPort")
        )
        raise reader.error(missing, f"is not set but {present} is; the proxy needs both")

    return SecureSettings(
        required=required,
        suite=suite,
        private_key_files=private,
        peer_public_key_files=peers,
        logon_window=_float(reader, "FixSecureLogonWindow", 60.0, above=0.0, maximum=_DAY),
        logon_future_skew=_float(
            reader, "FixSecureLogonFutureSkew", 10.0, minimum=0.0, maximum=_DAY
        ),
        state_path=state_path,
        max_message_size=_int(
            reader, "FixSecureMaxMessageSize", 1_048_576, minimum=4096, maximum=64 << 20
        ),
        connect_host=connect_host,
        connect_port=connect_port,
        accept_host=reader.get_host("FixSecureAcceptHost") or "0.0.0.0",  # noqa: S104
        accept_port=reader.get_port("FixSecureAcceptPort"),
        handshake_timeout=_float(
            reader, "FixSecureHandshakeTimeout", 10.0, above=0.0, maximum=_HOUR
        ),
        max_half_open=_int(reader, "FixSecureMaxHalfOpen", 64, minimum=1),
        logon_rate_per_source=_int(reader, "FixSecureLogonRatePerSource", 30, minimum=1),
        logon_rate_per_session=_int(reader, "FixSecureLogonRatePerSession", 12, minimum=1),
        drain_timeout=_float(reader, "FixSecureDrainTimeout", 5.0, minimum=0.0, maximum=_HOUR),
        stats_interval=_float(reader, "FixSecureStatsInterval", 0.0, minimum=0.0, maximum=_DAY),
        busy_poll=_int(reader, "FixSecureBusyPoll", 0, minimum=0, maximum=1_000_000) / 1e6,
    )


_HOUR: Final = 3600.0
_DAY: Final = 86400.0  # a window or interval beyond a day is a typo, not a policy


def _int(
    reader: _Reader, key: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    value = reader.get_int(key, default, minimum=minimum, maximum=maximum)
    assert value is not None
    return value


def _float(
    reader: _Reader,
    key: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> float:
    value = reader.get_float(key, default, minimum=minimum, maximum=maximum, above=above)
    assert value is not None
    return value


def _section_reader(parsed: _Parsed, section: _Section) -> _Reader:
    """A reader over ``section`` merged onto ``[DEFAULT]`` (whose entries are marked inherited)."""
    entries: dict[str, _Entry] = {}
    if parsed.default is not None:
        entries = {k: e._replace(inherited=True) for k, e in parsed.default.entries.items()}
    entries.update(section.entries)
    return _Reader(parsed.path, section.label, SectionValues._of(entries.values()), parsed.base)


def _build_session(parsed: _Parsed, section: _Section) -> SessionSettings:
    reader = _section_reader(parsed, section)
    session_id = _session_id(reader)
    connection_type = _connection_type(reader)
    for engine_port in ("SocketConnectPort", "SocketAcceptPort"):
        reader.get_port(engine_port)
    secure = _secure(reader, connection_type)
    return SessionSettings(
        path=parsed.path,
        section=section.label,
        line=section.line,
        session_id=session_id,
        connection_type=connection_type,
        values=reader.values,
        secure=secure,
    )


def _routing_key(sid: SessionID) -> tuple[str, str, str]:
    """What an acceptor proxy can pick a session by: the Logon's BeginString and CompIDs."""
    return (sid.begin_string, sid.sender_comp_id, sid.target_comp_id)


def _conflict(session: SessionSettings, earlier: Sequence[SessionSettings]) -> ConfigError | None:
    """Problems between sessions of one file, reported on the later session."""
    sid = session.session_id
    for other in earlier:
        if other.session_id == sid:
            return ConfigError(
                f"duplicate session {sid}: {other.section} defines it already",
                path=session.path,
                section=session.section,
            )
        oid = other.session_id
        both_acceptors = session.connection_type == other.connection_type == "acceptor"
        if both_acceptors and _routing_key(sid) == _routing_key(oid):
            return ConfigError(
                f"acceptor session {sid} is ambiguous with {other.section} ({oid}): the acceptor "
                "proxy picks a session by the BeginString and CompIDs of the incoming Logon, so "
                "acceptor sessions must differ in those, not only in SessionQualifier or "
                "Sub/Location IDs",
                path=session.path,
                section=session.section,
            )
    return None


def _from_parsed(parsed: _Parsed) -> Settings:
    sessions: list[SessionSettings] = []
    for section in parsed.sessions:
        session = _build_session(parsed, section)
        problem = _conflict(session, sessions)
        if problem is not None:
            raise problem
        sessions.append(session)
    default = SectionValues._of(parsed.default.entries.values() if parsed.default else ())
    return Settings(path=parsed.path, default=default, sessions=tuple(sessions))


def load_settings(path: str | Path) -> Settings:
    """Read and validate a settings file; the first problem raises :class:`ConfigError`.

    Key files are named, not opened: :func:`fixsecure.keys.load_session_keys` loads them, and
    :func:`check_settings` checks everything without starting anything.
    """
    path = Path(path)
    return _from_parsed(_parse(_read(path), path))


def parse_settings(text: str, path: str | Path = "<string>") -> Settings:
    """:func:`load_settings` on text; relative paths resolve against ``path``'s directory."""
    path = Path(path)
    return _from_parsed(_parse(text, path))


# --------------------------------------------------------------------------------------------------
# fixsecure check


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one session. ``str()`` is the line ``fixsecure check`` prints."""

    session_id: SessionID | None
    section: str
    ok: bool
    message: str

    def __str__(self) -> str:
        label = self.section if self.session_id is None else str(self.session_id)
        return f"{'ok' if self.ok else 'FAIL':<4} {label} {self.message}"


def _hosts_overlap(a: str, b: str) -> bool:
    """Whether two listen addresses can collide: a wildcard collides with every local address."""
    a, b = a.lower(), b.lower()
    if a in _WILDCARD_HOSTS or b in _WILDCARD_HOSTS:
        return True
    if a in _LOOPBACK_HOSTS and b in _LOOPBACK_HOSTS:
        return True
    return a == b


def _proxy_listener(session: SessionSettings) -> tuple[str, str, int] | None:
    """(setting, host, port) where the proxy listens for this session, if it is proxied.

    Acceptor side: FixSecureAcceptHost/Port. Initiator side: the engine's SocketConnectHost/Port,
    which point at the local proxy whenever FixSecureConnectHost/Port send it onward.
    """
    secure = session.secure
    if session.connection_type == "acceptor":
        if secure.accept_port is None:
            return None
        return ("FixSecureAcceptPort", secure.accept_host, secure.accept_port)
    port = session.get_int("SocketConnectPort")
    if secure.connect_port is None or port is None:
        return None
    return ("SocketConnectPort", session.get("SocketConnectHost", ""), port)


def _state_path_problem(path: Path) -> str | None:
    """Why the anti-replay state directory cannot be used (None if it can). Creates nothing."""
    if path.exists():
        if not path.is_dir():
            return f"{path} exists but is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{path} is not writable by this user"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{path} cannot be created: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path} cannot be created: {parent} is not writable by this user"
    return None


def _ok_message(session: SessionSettings, own: Sequence[str], peers: Sequence[str]) -> str:
    secure = session.secure
    parts: list[str] = [session.connection_type]
    if not secure.required and not own:
        parts.append("plaintext (FixSecureRequired=N)")
        return " ".join(parts)
    parts += [secure.suite, "key", ",".join(own), "peer", ",".join(peers)]
    if not secure.required:
        parts.append("(FixSecureRequired=N)")
    if session.connection_type == "initiator" and secure.connect_port is not None:
        parts.append(f"-> {secure.connect_host}:{secure.connect_port}")
    if session.connection_type == "acceptor" and secure.accept_port is not None:
        parts.append(f"listens on {secure.accept_host}:{secure.accept_port}")
    return " ".join(parts)


_Listener = tuple[SessionSettings, str, int]


def _check_session(
    session: SessionSettings,
    engine_listeners: Sequence[_Listener],
    suite_of_key: dict[str, tuple[str, str]],
) -> str:
    """The file-system checks of one valid session: its ``ok`` line, or ConfigError."""
    session_keys = keys.load_session_keys(session)
    suite = session.secure.suite
    named: list[tuple[keys.StaticKey | keys.PeerKey, str]] = [
        (own, "FixSecurePrivateKeyFile") for own in session_keys.own
    ]
    named += [(peer, "FixSecurePeerPublicKeyFile") for peer in session_keys.peers]
    for loaded, setting in named:
        first_suite, first_section = suite_of_key.setdefault(
            loaded.fingerprint, (suite, session.section)
        )
        if first_suite != suite:
            raise KeyFileError(
                f"holds key {loaded.fingerprint}, which {first_section} uses with suite "
                f"{first_suite}; a key is used with exactly one suite",
                path=loaded.path,
                section=session.section,
                key=session.key_name(setting),
            )

    listener = _proxy_listener(session)
    if listener is not None:
        setting, host, port = listener
        for other, other_host, other_port in engine_listeners:
            if other_port == port and _hosts_overlap(host, other_host):
                whose = "this session" if other is session else f"{other.section}"
                raise session.error(
                    setting,
                    f"the proxy listens on {host or '*'}:{port}, which is also the engine's "
                    f"SocketAcceptPort of {whose}; they cannot both listen there",
                )

    state_path = session.secure.state_path
    if state_path is not None:
        problem = _state_path_problem(state_path)
        if problem is not None:
            raise session.error("FixSecureStatePath", problem)

    return _ok_message(
        session,
        [own.fingerprint for own in session_keys.own],
        [peer.fingerprint for peer in session_keys.peers],
    )


def check_settings(path: str | Path) -> list[CheckResult]:
    """Everything :func:`load_settings` checks, per session, plus what needs the file system.

    Also loads every key file (existence, permissions, key type against the suite, own key not
    pinned as peer), refuses one key used with two suites, a proxy listen port that is also an
    engine's SocketAcceptPort on the same host, and a state path that is not (and cannot become)
    a writable directory. Nothing is created or started. A file that cannot be parsed at all
    raises :class:`ConfigError`; every other problem is the ``FAIL`` result of its session.
    """
    path = Path(path)
    parsed = _parse(_read(path), path)
    valid: dict[int, SessionSettings] = {}
    verdicts: dict[int, tuple[bool, str]] = {}
    for index, section in enumerate(parsed.sessions):
        try:
            session = _build_session(parsed, section)
            problem = _conflict(session, list(valid.values()))
            if problem is not None:
                raise problem
        except ConfigError as exc:
            verdicts[index] = (False, str(exc))
        else:
            valid[index] = session

    engine_listeners: list[_Listener] = []
    for session in valid.values():
        port = session.get_int("SocketAcceptPort")
        if session.connection_type == "acceptor" and port is not None:
            engine_listeners.append((session, session.get("SocketAcceptHost", ""), port))
    suite_of_key: dict[str, tuple[str, str]] = {}
    first_on: dict[tuple[str, int], SessionSettings] = {}  # each proxy listener's first session
    for index, session in valid.items():
        try:
            verdicts[index] = (True, _check_session(session, engine_listeners, suite_of_key))
            if session.connection_type == "acceptor" and session.secure.accept_port is not None:
                address = (session.secure.accept_host, session.secure.accept_port)
                first = first_on.setdefault(address, session)
                if first is not session:
                    check_listener([first, session], f"{address[0]}:{address[1]}")
        except ConfigError as exc:
            verdicts[index] = (False, str(exc))

    results: list[CheckResult] = []
    for index, section in enumerate(parsed.sessions):
        known = valid.get(index)
        session_id = known.session_id if known else _try_session_id(parsed, section)
        ok, message = verdicts[index]
        results.append(CheckResult(session_id, section.label, ok, message))
    return results


def _try_session_id(parsed: _Parsed, section: _Section) -> SessionID | None:
    """The ID of a session that failed validation, when its ID keys at least are sound."""
    try:
        return _session_id(_section_reader(parsed, section))
    except ConfigError:
        return None


#: Settings that belong to a listening address, not to one session: every session sharing an
#: address must agree on them, since one listener has one value.
LISTENER_KEYS: Final = (
    ("FixSecureHandshakeTimeout", "handshake_timeout"),
    ("FixSecureMaxHalfOpen", "max_half_open"),
    ("FixSecureLogonRatePerSource", "logon_rate_per_source"),
    ("FixSecureLogonRatePerSession", "logon_rate_per_session"),
)


def check_listener(sessions: Sequence[SessionSettings], address: str) -> None:
    """Refuse the first of ``sessions`` (sharing one listening ``address``) that disagrees with
    ``sessions[0]`` on a listener setting; the error names its file, section and key."""
    first = sessions[0]
    for other in sessions[1:]:
        for key, field in LISTENER_KEYS:
            mine, theirs = getattr(other.secure, field), getattr(first.secure, field)
            if mine != theirs:
                raise other.error(
                    key,
                    f"is {mine:g} but {theirs:g} in {first.section}, which listens on the same "
                    f"address {address}; one listener has one value",
                )
