"""Settings: defaults, then an optional TOML file, then environment variables.

Environment variables are ``SESSION_AUTHORITY_<NAME>``; TOML keys are the same
names in lower case without the prefix. Durations are whole seconds. A bad value
raises :class:`ConfigError` naming the setting, which the CLI prints as one line.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from session_authority.claims import ClaimValidator
from session_authority.errors import InvalidArgumentError

ENV_PREFIX = "SESSION_AUTHORITY_"

ANTI_CSRF_MODES = ("NONE", "VIA_TOKEN", "VIA_CUSTOM_HEADER")
SIGNING_ALGORITHMS = ("RS256", "ES256", "EdDSA")
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
    issuer: str = "http://127.0.0.1:3567"
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
    "max_sessions_per_user",
    "workers",
    "database_statement_timeout",
    "database_pool_size",
    "cleanup_interval",
    "access_token_validity",
    "refresh_token_validity",
    "signing_key_rotation",
    "refresh_grace_period",
    "shutdown_grace",
    "http_header_timeout",
    "http_idle_timeout",
    "http_max_connections",
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "anti_csrf": ANTI_CSRF_MODES,
    "signing_algorithm": SIGNING_ALGORITHMS,
    "sqlite_synchronous": SQLITE_SYNCHRONOUS_MODES,
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
    "log_format": ("text", "json"),
}
_BOOLEANS = {"allow_remote_without_api_key"}
_SECRETS = {"api_keys", "master_key"}  # never echoed in an error
_ZERO_ALLOWED = {
    "refresh_grace_period",
    "shutdown_grace",
    "session_absolute_lifetime",
    "max_sessions_per_user",
}
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Settings))


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


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
                raise ConfigError(f"config file {config_file}: unknown setting {key!r}")
            raw[key] = (f"{key} in {config_file}", value)
    for name in FIELD_NAMES:
        value = (environ or {}).get(env_name(name))
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
    if name in _DURATIONS:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a whole number of seconds, got {value!r}")
        try:
            seconds = int(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}: expected a whole number of seconds, got {value!r}"
            ) from None
        minimum = 0 if name in _ZERO_ALLOWED else 1
        if seconds < minimum:
            raise ConfigError(f"{where}: must be at least {minimum} second(s), got {seconds}")
        return seconds
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


def _check(settings: Settings) -> None:
    host, sep, port = settings.listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{env_name('listen')}: expected host:port, got {settings.listen!r}")
    if not settings.database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        # The URL itself is not echoed: it may hold a password.
        raise ConfigError(
            f"{env_name('database_url')}: expected sqlite:///path or postgresql://..."
        )
    if settings.refresh_token_validity <= settings.access_token_validity:
        raise ConfigError(
            f"{env_name('refresh_token_validity')}: must be longer than "
            f"{env_name('access_token_validity')}"
        )
    if not settings.issuer:
        raise ConfigError(f"{env_name('issuer')}: must not be empty")
    if settings.http_listen:
        host, sep, port = settings.http_listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{env_name('http_listen')}: expected host:port or empty")
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError(f"{env_name('tls_cert_file')} and {env_name('tls_key_file')} go together")
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
    from .keystore import master_key_bytes  # keystore imports this module

    master_key_bytes(settings)
