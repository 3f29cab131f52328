"""Settings: defaults, then an optional TOML file, then environment variables.

Environment variables are ``SESSION_AUTHORITY_<NAME>``; TOML keys are the same
names in lower case without the prefix. Durations are whole seconds. A bad value,
an unknown TOML key or an unknown ``SESSION_AUTHORITY_*`` variable raises
:class:`ConfigError` naming the setting, which the CLI prints as one line.

Not settings, and so never refused: variables starting with one of
:data:`NOT_SETTINGS_PREFIXES`. They belong to this repository's own harnesses,
which read them themselves: ``SESSION_AUTHORITY_TEST_POSTGRES_DSN`` (the test
suite, CI and the benchmarks), ``SESSION_AUTHORITY_TEST_PYTHON`` (the Node.js
example's tests), ``SESSION_AUTHORITY_FUZZ_EXAMPLES`` (``make fuzz``); ``BENCH_``
is reserved for the benchmarks. No setting's name starts with these.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from session_authority.claims import ClaimValidator
from session_authority.errors import InvalidArgumentError
from session_authority.verify import SUPPORTED_ALGORITHMS

from .sealing import parse_master_key
from .storage.urls import POSTGRES_PREFIXES, SQLITE_PREFIX

ENV_PREFIX = "SESSION_AUTHORITY_"
NOT_SETTINGS_PREFIXES = tuple(ENV_PREFIX + kind for kind in ("TEST_", "FUZZ_", "BENCH_"))

ANTI_CSRF_MODES = ("NONE", "VIA_TOKEN", "VIA_CUSTOM_HEADER")
SIGNING_ALGORITHMS = SUPPORTED_ALGORITHMS  # what every SDK can verify
SQLITE_SYNCHRONOUS_MODES = ("FULL", "NORMAL")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:50051"
    database_url: str = "sqlite:///./data/sessions.db"
    access_token_validity: int = 3600
    refresh_token_validity: int = 8_640_000
    anti_csrf: str = "NONE"
    signing_algorithm: str = "RS256"
    signing_key_rotation: int = 604_800
    refresh_grace_period: int = 30
    # Beyond the recipe. No refresh extends a session past created + this (0: none).
    session_absolute_lifetime: int = 0
    # Creating one more session than this revokes the user's oldest (0: no cap).
    max_sessions_per_user: int = 0
    # The iss of every token and discovery's issuer. Empty: derived at start from
    # where the HTTP side listens, http://<http_listen host>:<bound port>, so that
    # jwks_uri is always this authority's own (see derived_issuer).
    issuer: str = ""
    # How long in-flight RPCs may run on after SIGTERM before they are cancelled.
    shutdown_grace: int = 10
    # FULL: a commit survives power loss. NORMAL: survives a process crash only,
    # faster; a lost rotation would make the client's newest refresh token look
    # like an ancestor, so FULL is the default.
    sqlite_synchronous: str = "FULL"
    # PostgreSQL: the longest any statement may run, and connections per replica.
    database_statement_timeout: int = 5
    database_pool_size: int = 10
    # How often expired sessions and retired signing keys are purged.
    cleanup_interval: int = 3600
    log_level: str = "INFO"
    log_format: str = "text"
    # The HTTP side: JWKS, discovery, health and metrics ("" turns it off).
    http_listen: str = "127.0.0.1:3567"
    # Its connections (see http_limits.py): a new one must send a request head within
    # the header timeout; one with no request in progress is closed after the idle
    # timeout (longer than the 60 s of common proxies, which must close first);
    # connections beyond the cap are closed at once (it leaves room for gRPC and the
    # database within the usual limit of 1024 open files; raise both together).
    http_header_timeout: int = 10
    http_idle_timeout: int = 75
    http_max_connections: int = 512
    # Callers authenticate with one of these (several, so keys can be rotated).
    api_keys: tuple[str, ...] = ()
    # Without API keys only loopback callers are served, unless this is set.
    allow_remote_without_api_key: bool = False
    # TLS for the gRPC port; with a client CA, callers must present a certificate
    # it signed (mTLS).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # The HTTP listener over TLS with that certificate (and client CA). Without it,
    # and with TLS configured, the HTTP listener serves only JWKS, discovery,
    # probes and metrics (app.http_rpc_refusal): RPCs need the same transport
    # security on both listeners.
    http_tls: bool = False
    # Encrypts signing private keys at rest (AES-256-GCM): 32 bytes, base64, given
    # directly or in a file.
    master_key: str = ""
    master_key_file: str = ""
    # Processes serving one port (SO_REUSEPORT), sharing the database.
    workers: int = 1
    # Declarative validators every get_session runs unless overridden, e.g. in TOML
    # [[global_claim_validators]] claim = "st-ev"  kind = "is_true"  max_age_seconds = 300
    # (in the environment: the same as a JSON array of objects).
    global_claim_validators: tuple[ClaimValidator, ...] = ()

    @property
    def access_token_validity_ms(self) -> int:
        return self.access_token_validity * 1000

    @property
    def refresh_token_validity_ms(self) -> int:
        return self.refresh_token_validity * 1000

    def store_options(self) -> dict[str, Any]:
        """Keyword arguments of storage.open_store for these settings."""
        return {
            "sqlite_synchronous": self.sqlite_synchronous,
            "statement_timeout_ms": self.database_statement_timeout * 1000,
            "pool_size": self.database_pool_size,
        }


_DURATIONS = {
    "session_absolute_lifetime",
    "database_statement_timeout",
    "cleanup_interval",
    "access_token_validity",
    "refresh_token_validity",
    "signing_key_rotation",
    "refresh_grace_period",
    "shutdown_grace",
    "http_header_timeout",
    "http_idle_timeout",
}
_COUNTS = {"max_sessions_per_user", "workers", "database_pool_size", "http_max_connections"}
_CHOICES: dict[str, tuple[str, ...]] = {
    "anti_csrf": ANTI_CSRF_MODES,
    "signing_algorithm": SIGNING_ALGORITHMS,
    "sqlite_synchronous": SQLITE_SYNCHRONOUS_MODES,
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "log_format": ("text", "json"),
}
_BOOLEANS = {"allow_remote_without_api_key", "http_tls"}
_SECRETS = {"api_keys", "master_key"}  # never echoed in an error
_ZERO_ALLOWED = {
    "refresh_grace_period",
    "shutdown_grace",
    "session_absolute_lifetime",
    "max_sessions_per_user",
}
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Settings))

# What each setting does, for `session-authority settings` and the README's table
# (tests/test_readme.py keeps the two identical).
DESCRIPTIONS: dict[str, str] = {
    "listen": "gRPC address, host:port (port 0: any free port)",
    "database_url": "sqlite:///path (its folder is created on start) "
    "or postgresql://user:password@host:5432/db",
    "access_token_validity": "access-token lifetime, seconds",
    "refresh_token_validity": "idle timeout of a session (100 days): every refresh slides it",
    "anti_csrf": "NONE, VIA_TOKEN or VIA_CUSTOM_HEADER",
    "signing_algorithm": "RS256, ES256 or EdDSA",
    "signing_key_rotation": "signing keys rotate every this many seconds (168 h)",
    "refresh_grace_period": "seconds in which a just-rotated refresh token "
    "still returns the same successor",
    "session_absolute_lifetime": "no refresh extends a session past created + this (0: none)",
    "max_sessions_per_user": "one more login revokes the user's oldest session (0: no cap)",
    "issuer": "iss of every token and issuer of discovery; by default http://HOST:PORT "
    "where the HTTP side listens (HTTP_LISTEN's host, the port it bound; https with HTTP_TLS)",
    "shutdown_grace": "on SIGTERM/SIGINT, in-flight RPCs get this long to finish",
    "sqlite_synchronous": "FULL, or NORMAL: faster, but a power cut may lose the last commits",
    "database_statement_timeout": "PostgreSQL: no statement runs longer; "
    "a stuck database answers UNAVAILABLE",
    "database_pool_size": "PostgreSQL connections per replica",
    "cleanup_interval": "how often expired sessions and retired signing keys are deleted",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "log_format": "text, or json: one JSON object a line",
    "http_listen": "Connect and gRPC-Web RPCs, JWKS, discovery, probes and metrics, "
    "host:port (empty: no HTTP side)",
    "http_header_timeout": "a new HTTP connection must send its request head "
    "within this, or it is closed",
    "http_idle_timeout": "an HTTP connection with no request in progress is closed after this "
    "(keep it above your proxies' 60 s)",
    "http_max_connections": "HTTP connections beyond this are closed on arrival "
    "(counted in /metrics)",
    "api_keys": "comma-separated caller keys, 16+ characters each",
    "allow_remote_without_api_key": "serve non-loopback callers even without API keys",
    "tls_cert_file": "PEM certificate chain: TLS on the gRPC port (with TLS_KEY_FILE); "
    "RPCs over HTTP then need HTTP_TLS",
    "tls_key_file": "PEM private key of that certificate",
    "tls_client_ca_file": "PEM CA: callers must present a certificate it signed (mTLS)",
    "http_tls": "HTTPS on the HTTP listener with the TLS certificate (and client CA: mTLS), "
    "so that it serves RPCs too",
    "master_key": "32 bytes, base64: seals signing keys at rest (AES-256-GCM)",
    "master_key_file": "a file holding the master key",
    "workers": "processes serving one port (fixed ports needed)",
    "global_claim_validators": "validators every get_session runs: a JSON array "
    '(in TOML, [[global_claim_validators]] tables), e.g. [{"claim": "st-ev", "kind": "is_true"}]',
}


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def shown_default(name: str) -> str:
    """A setting's default as `session-authority settings` and the README show it."""
    value = getattr(Settings(), name)
    if name == "issuer":
        return "derived"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value in ("", ()):
        return "none"
    return str(value)


def _unknown(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f"unknown setting{f' (did you mean {close[0]}?)' if close else ''}"


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from defaults < TOML file < environment < explicit overrides."""
    raw: dict[str, tuple[str, Any]] = {}  # name -> (where it came from, value)
    if config_file is not None:
        try:
            document = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"config file {config_file}: cannot be read ({exc.strerror})"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file}: not valid TOML ({exc})") from exc
        for key, value in document.items():
            if key not in FIELD_NAMES:
                raise ConfigError(
                    f"config file {config_file}: {key!r}: {_unknown(key, FIELD_NAMES)}"
                )
            raw[key] = (f"{key} in {config_file}", value)
    environ = environ or {}
    # A misspelt variable would otherwise be ignored without a word, as a TOML key is not.
    known = [env_name(name) for name in FIELD_NAMES]
    for variable in sorted(environ):
        if (
            variable.startswith(ENV_PREFIX)
            and not variable.startswith(NOT_SETTINGS_PREFIXES)
            and variable not in known
        ):
            raise ConfigError(f"{variable}: {_unknown(variable, known)}")
    for name in FIELD_NAMES:
        value = environ.get(env_name(name))
        if value is not None:
            raw[name] = (env_name(name), value)
    for name, value in overrides.items():
        if name not in FIELD_NAMES:
            raise ConfigError(f"unknown setting {name!r}")
        raw[name] = (name, value)
    values = {name: _parse(name, where, value) for name, (where, value) in raw.items()}
    settings = Settings(**values)
    _check(settings)
    return settings


def _parse(name: str, where: str, value: Any) -> Any:
    if name == "global_claim_validators":
        return _parse_validators(where, value)
    if name in _BOOLEANS:
        return _parse_boolean(where, value)
    if name == "api_keys":
        return _parse_api_keys(where, value)
    if name in _DURATIONS or name in _COUNTS:
        return _parse_whole_number(name, where, value)
    if not isinstance(value, str):
        shown = "" if name in _SECRETS else f", got {value!r}"
        raise ConfigError(f"{where}: expected a string{shown}")
    choices = _CHOICES.get(name)
    if choices is not None:
        matched = {c.upper(): c for c in choices}.get(value.strip().upper())
        if matched is None:
            raise ConfigError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
        return matched
    if name == "issuer":  # one spelling for iss and discovery (OIDC wants them identical)
        return value.strip().rstrip("/")
    return value.strip()


def _parse_whole_number(name: str, where: str, value: Any) -> int:
    """Durations in seconds, and counts (connections, processes, sessions)."""
    expected = "a whole number of seconds" if name in _DURATIONS else "a whole number"
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {expected}, got {value!r}") from None
    if name in _ZERO_ALLOWED:
        if number < 0:
            raise ConfigError(f"{where}: must not be negative, got {number}")
    elif number < 1:
        least = "1 second" if name in _DURATIONS else "1"
        raise ConfigError(f"{where}: must be at least {least}, got {number}")
    return number


def _parse_boolean(where: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{where}: expected true or false")


MIN_API_KEY_LENGTH = 16


def _parse_api_keys(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        keys = [key.strip() for key in value.split(",")]
    elif isinstance(value, list | tuple) and all(isinstance(k, str) for k in value):
        keys = [key.strip() for key in value]
    else:
        raise ConfigError(f"{where}: expected comma-separated keys or a list of strings")
    keys = [key for key in keys if key]
    if any(len(key) < MIN_API_KEY_LENGTH or not key.isprintable() or " " in key for key in keys):
        # Which key is at fault is not said: that would print part of a secret.
        raise ConfigError(
            f"{where}: every key must be at least {MIN_API_KEY_LENGTH} printable characters "
            "without spaces"
        )
    return tuple(keys)


def _parse_validators(where: str, value: Any) -> tuple[ClaimValidator, ...]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a JSON array of validator objects") from None
    if isinstance(value, tuple) and all(isinstance(v, ClaimValidator) for v in value):
        return value
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: expected a list of validator tables/objects")
    try:
        return tuple(ClaimValidator.from_spec(spec) for spec in value)
    except InvalidArgumentError as error:
        raise ConfigError(f"{where}: {error.message}") from None


def host_and_port(listen: str) -> tuple[str, int]:
    """The host (without an IPv6 address's brackets) and port of a host:port
    setting; ValueError if it is not one."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not host:port: {listen!r}")
    return host.strip("[]"), int(port)


def _check(settings: Settings) -> None:
    try:
        host_and_port(settings.listen)
    except ValueError:
        raise ConfigError(
            f"{env_name('listen')}: expected host:port, got {settings.listen!r}"
        ) from None
    if not settings.database_url.startswith((SQLITE_PREFIX, *POSTGRES_PREFIXES)):
        # The URL itself is not echoed: it may hold a password.
        raise ConfigError(
            f"{env_name('database_url')}: expected sqlite:///path or postgresql://..."
        )
    if settings.refresh_token_validity <= settings.access_token_validity:
        raise ConfigError(
            f"{env_name('refresh_token_validity')}: must be longer than "
            f"{env_name('access_token_validity')}"
        )
    if settings.http_listen:
        try:
            host_and_port(settings.http_listen)
        except ValueError:
            raise ConfigError(f"{env_name('http_listen')}: expected host:port or empty") from None
    _check_issuer(settings)
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError(f"{env_name('tls_cert_file')} and {env_name('tls_key_file')} go together")
    if settings.http_tls and not settings.tls_cert_file:
        raise ConfigError(f"{env_name('http_tls')}: needs {env_name('tls_cert_file')} too")
    if settings.tls_client_ca_file and not settings.tls_cert_file:
        raise ConfigError(
            f"{env_name('tls_client_ca_file')}: mTLS needs {env_name('tls_cert_file')} too"
        )
    for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file", "master_key_file"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"{env_name(name)}: no such file: {path}")
    if settings.master_key and settings.master_key_file:
        raise ConfigError(
            f"{env_name('master_key')} and {env_name('master_key_file')}: give one, not both"
        )
    # Checked now, not at first use: a bad key must stop even `migrate`.
    master_key_bytes(settings)


def master_key_bytes(settings: Settings) -> bytes | None:
    """The configured master key, or None; ConfigError if it is malformed."""
    if settings.master_key:
        name, text = "master_key", settings.master_key
    elif settings.master_key_file:
        name = "master_key_file"
        text = Path(settings.master_key_file).read_text(encoding="ascii", errors="replace")
    else:
        return None
    try:
        return parse_master_key(text)
    except ValueError as error:
        raise ConfigError(f"{env_name(name)}: {error}") from None


# Hosts that name every interface: no verifier can fetch a JWKS from them.
_EVERY_INTERFACE = {"0.0.0.0", "::", "*"}  # noqa: S104 (names compared, nothing bound)


def _check_issuer(settings: Settings) -> None:
    issuer, http_listen = settings.issuer, settings.http_listen
    if issuer:
        scheme, _, rest = issuer.partition("://")
        if scheme not in ("http", "https") or not rest or rest.startswith("/"):
            raise ConfigError(f"{env_name('issuer')}: expected an http:// or https:// URL")
        return
    # Derived at start from the HTTP side (derived_issuer); these cannot be.
    if not http_listen:
        raise ConfigError(
            f"{env_name('issuer')}: must be set when {env_name('http_listen')} is empty "
            "(there is no HTTP side to serve the JWKS the issuer points at)"
        )
    host, _ = host_and_port(http_listen)
    if host in _EVERY_INTERFACE:
        raise ConfigError(
            f"{env_name('issuer')}: must be set when {env_name('http_listen')} listens on "
            f"every interface ({host}): give the URL verifiers reach this authority's "
            "HTTP side at, e.g. https://auth.example.com"
        )


def derived_issuer(http_listen: str, bound_port: int, *, https: bool = False) -> str:
    """The default issuer: the HTTP side's own address, with the port it bound."""
    host, _ = host_and_port(http_listen)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if https else 'http'}://{host}:{bound_port}"
