"""Settings: defaults < TOML file < environment, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from session_authority_server.config import (
    DESCRIPTIONS,
    FIELD_NAMES,
    NOT_SETTINGS_PREFIXES,
    ConfigError,
    Settings,
    derived_issuer,
    env_name,
    load_settings,
)


def test_defaults() -> None:
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.listen == "127.0.0.1:50051"
    assert settings.database_url == "sqlite:///./data/sessions.db"
    assert settings.access_token_validity == 3600
    assert settings.refresh_token_validity == 8_640_000
    assert settings.anti_csrf == "NONE"
    assert settings.signing_algorithm == "RS256"
    assert settings.signing_key_rotation == 604_800
    assert settings.refresh_grace_period == 30


def test_toml_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "authority.toml"
    config.write_text(
        'access_token_validity = 600\nanti_csrf = "VIA_TOKEN"\nissuer = "https://auth.example"\n'
    )
    settings = load_settings(config, {"SESSION_AUTHORITY_ACCESS_TOKEN_VALIDITY": "900"})
    assert settings.access_token_validity == 900  # environment wins
    assert settings.anti_csrf == "VIA_TOKEN"
    assert settings.issuer == "https://auth.example"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        (
            {"SESSION_AUTHORITY_ACCESS_TOKEN_VALIDITY": "0"},
            "SESSION_AUTHORITY_ACCESS_TOKEN_VALIDITY",
        ),
        (
            {"SESSION_AUTHORITY_SIGNING_KEY_ROTATION": "1.5"},
            "SESSION_AUTHORITY_SIGNING_KEY_ROTATION",
        ),
        ({"SESSION_AUTHORITY_SIGNING_ALGORITHM": "none"}, "SESSION_AUTHORITY_SIGNING_ALGORITHM"),
        ({"SESSION_AUTHORITY_DATABASE_URL": "mysql://x"}, "SESSION_AUTHORITY_DATABASE_URL"),
        (
            {
                "SESSION_AUTHORITY_ACCESS_TOKEN_VALIDITY": "100",
                "SESSION_AUTHORITY_REFRESH_TOKEN_VALIDITY": "50",
            },
            "SESSION_AUTHORITY_REFRESH_TOKEN_VALIDITY",
        ),
    ],
)
def test_bad_values_name_the_setting(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(None, environ)


def test_bad_toml(tmp_path: Path) -> None:
    config = tmp_path / "authority.toml"
    config.write_text("listen = 50051\n")
    with pytest.raises(ConfigError, match="listen"):
        load_settings(config, {})
    config.write_text("no_such_setting = 1\n")
    with pytest.raises(ConfigError, match="no_such_setting"):
        load_settings(config, {})
    config.write_text("this is not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config, {})


def test_database_url_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, {"SESSION_AUTHORITY_DATABASE_URL": "mysql://admin:hunter2@db/x"})
    assert "hunter2" not in str(raised.value)


# --- unknown environment variables ------------------------------------------------------


def test_a_misspelt_environment_variable_is_refused_like_a_toml_key() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, {"SESSION_AUTHORITY_LISEN": "127.0.0.1:50051"})
    assert str(raised.value) == (
        "SESSION_AUTHORITY_LISEN: unknown setting (did you mean SESSION_AUTHORITY_LISTEN?)"
    )
    with pytest.raises(ConfigError, match=r"SESSION_AUTHORITY_NO_SUCH_THING: unknown setting$"):
        load_settings(None, {"SESSION_AUTHORITY_NO_SUCH_THING": "1"})


def test_a_misspelt_toml_key_gets_a_suggestion_too(tmp_path: Path) -> None:
    config = tmp_path / "authority.toml"
    config.write_text('lisen = "127.0.0.1:50051"\n')
    with pytest.raises(ConfigError, match=r"'lisen': unknown setting \(did you mean listen\?\)"):
        load_settings(config, {})


@pytest.mark.parametrize(
    "variable",
    [
        # Every SESSION_AUTHORITY_* name the repository uses that is not a setting
        # (tests, CI, Makefile, benchmarks, the Node.js example).
        "SESSION_AUTHORITY_TEST_POSTGRES_DSN",
        "SESSION_AUTHORITY_TEST_PYTHON",
        "SESSION_AUTHORITY_FUZZ_EXAMPLES",
        "SESSION_AUTHORITY_BENCH_ANYTHING",
    ],
)
def test_the_harness_variables_are_not_settings_and_not_refused(variable: str) -> None:
    assert load_settings(None, {variable: "x", "OTHER_LISEN": "y"}) == Settings()


def test_no_setting_hides_behind_a_harness_prefix() -> None:
    for name in FIELD_NAMES:
        assert not env_name(name).startswith(NOT_SETTINGS_PREFIXES), name


# --- counts are not seconds --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WORKERS", "0", "SESSION_AUTHORITY_WORKERS: must be at least 1, got 0"),
        ("WORKERS", "two", "SESSION_AUTHORITY_WORKERS: expected a whole number, got 'two'"),
        (
            "HTTP_MAX_CONNECTIONS",
            "0",
            "SESSION_AUTHORITY_HTTP_MAX_CONNECTIONS: must be at least 1, got 0",
        ),
        (
            "DATABASE_POOL_SIZE",
            "0",
            "SESSION_AUTHORITY_DATABASE_POOL_SIZE: must be at least 1, got 0",
        ),
        (
            "MAX_SESSIONS_PER_USER",
            "-1",
            "SESSION_AUTHORITY_MAX_SESSIONS_PER_USER: must not be negative, got -1",
        ),
        (
            "ACCESS_TOKEN_VALIDITY",
            "0",
            "SESSION_AUTHORITY_ACCESS_TOKEN_VALIDITY: must be at least 1 second, got 0",
        ),
        (
            "ACCESS_TOKEN_VALIDITY",
            "1h",
            "SESSION_AUTHORITY_ACCESS_TOKEN_VALIDITY: expected a whole number of seconds, got '1h'",
        ),
        (
            "REFRESH_GRACE_PERIOD",
            "-1",
            "SESSION_AUTHORITY_REFRESH_GRACE_PERIOD: must not be negative, got -1",
        ),
    ],
)
def test_counts_are_not_seconds(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, {f"SESSION_AUTHORITY_{name}": value})
    assert str(raised.value) == message


def test_an_unknown_validator_kind_is_named_before_a_missing_value() -> None:
    variable = "SESSION_AUTHORITY_GLOBAL_CLAIM_VALIDATORS"
    with pytest.raises(ConfigError) as raised:
        load_settings(None, {variable: '[{"claim": "st-ev", "kind": "is_ture"}]'})
    assert str(raised.value).startswith(f"{variable}: unknown validator kind 'is_ture'; one of ")
    assert "is_true, is_false" in str(raised.value)
    with pytest.raises(ConfigError, match="a validator needs a value"):
        load_settings(None, {variable: '[{"claim": "st-role", "kind": "includes"}]'})
    assert load_settings(None, {variable: '[{"claim": "st-ev", "kind": "is_true"}]'})


# --- the issuer ----------------------------------------------------------------------------


def test_the_default_issuer_is_derived_at_start() -> None:
    assert Settings().issuer == ""  # app.start_server derives it from the HTTP side
    assert derived_issuer("127.0.0.1:0", 41234) == "http://127.0.0.1:41234"
    assert derived_issuer("localhost:3567", 3567) == "http://localhost:3567"
    assert derived_issuer("[::1]:0", 41234) == "http://[::1]:41234"


@pytest.mark.parametrize("http_listen", ["0.0.0.0:3567", "[::]:3567", ""])
def test_an_issuer_cannot_be_derived_from_every_interface_or_no_http_side(
    http_listen: str,
) -> None:
    with pytest.raises(ConfigError, match=r"^SESSION_AUTHORITY_ISSUER: must be set when"):
        load_settings(None, {"SESSION_AUTHORITY_HTTP_LISTEN": http_listen})
    explicit = {"SESSION_AUTHORITY_ISSUER": "https://auth.example.com"}
    settings = load_settings(None, {"SESSION_AUTHORITY_HTTP_LISTEN": http_listen, **explicit})
    assert settings.issuer == "https://auth.example.com"


@pytest.mark.parametrize("issuer", ["auth.example.com", "ftp://auth.example.com", "https://"])
def test_an_issuer_is_an_http_url(issuer: str) -> None:
    with pytest.raises(ConfigError, match="SESSION_AUTHORITY_ISSUER: expected an http"):
        load_settings(None, {"SESSION_AUTHORITY_ISSUER": issuer})


def test_every_setting_is_described() -> None:
    assert set(DESCRIPTIONS) == set(FIELD_NAMES)
    assert all("|" not in text for text in DESCRIPTIONS.values())  # a Markdown table cell
