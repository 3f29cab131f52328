"""Settings: defaults < TOML file < environment, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from session_authority_server.config import ConfigError, Settings, load_settings


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
