"""The issuer and the discovery document: by default the issuer is where this
authority's HTTP side really listens, so that jwks_uri can only lead to its own
keys; an issuer on this machine that leads to another authority's keys is
refused; and discovery publishes nothing that is not true."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from session_authority import SessionClient
from session_authority_server.app import RunningServer
from session_authority_server.config import ConfigError

Start = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., SessionClient]


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, url
        return json.loads(await response.read())


async def test_the_default_issuer_is_where_the_http_side_listens(
    start: Start, connect: Connect
) -> None:
    server = await start(http_listen="127.0.0.1:0")  # an ephemeral port
    issuer = f"http://127.0.0.1:{server.http_port}"
    assert server.issuer == issuer
    document = await get_json(f"{issuer}/.well-known/openid-configuration")
    assert document == {"issuer": issuer, "jwks_uri": f"{issuer}/.well-known/jwks.json"}
    async with connect(server) as client:
        # jwks_uri leads to this authority's keys, and its tokens name the same issuer.
        assert await get_json(document["jwks_uri"]) == await client.get_jwks()
        session = await client.create_new_session("user-1")
        assert session.access_token_payload["iss"] == issuer
        assert await client.get_open_id_discovery_configuration() == document


async def test_two_authorities_on_one_machine_each_name_their_own_issuer(
    start: Start, tmp_path: Path
) -> None:
    first = await start()
    second = await start(database_url=f"sqlite:///{tmp_path}/second.db")
    assert first.issuer != second.issuer
    assert first.issuer.endswith(f":{first.http_port}")
    assert second.issuer.endswith(f":{second.http_port}")


async def test_an_issuer_serving_another_authoritys_keys_is_refused(
    start: Start, tmp_path: Path
) -> None:
    other = await start()  # another authority, with its own database and keys
    with pytest.raises(ConfigError) as raised:
        await start(database_url=f"sqlite:///{tmp_path}/mine.db", issuer=other.issuer)
    assert str(raised.value) == (
        f"SESSION_AUTHORITY_ISSUER: {other.issuer}/.well-known/jwks.json serves another "
        "authority's keys, not this one's"
    )


async def test_an_issuer_served_by_a_replica_on_the_same_database_is_accepted(
    start: Start,
) -> None:
    first = await start()
    replica = await start(issuer=first.issuer)  # same database: same keys
    assert replica.issuer == first.issuer


async def test_an_issuer_on_this_machine_where_nothing_answers_is_warned_about(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="session_authority_server.startup_checks"):
        server = await start(issuer=f"http://127.0.0.1:{port}")
    assert server.issuer == f"http://127.0.0.1:{port}"
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "session_authority_server.startup_checks"
    ]
    assert warnings == [
        f"SESSION_AUTHORITY_ISSUER: no JWKS answers at http://127.0.0.1:{port}/.well-known/"
        "jwks.json: verifiers that follow the issuer will not find this authority's keys"
    ]


async def test_an_issuer_elsewhere_is_taken_as_given(start: Start, connect: Connect) -> None:
    # Usually the public URL of a gateway in front of the authority: not fetched.
    server = await start(issuer="https://auth.example.com")
    async with connect(server) as client:
        document = await client.get_open_id_discovery_configuration()
    assert document == {
        "issuer": "https://auth.example.com",
        "jwks_uri": "https://auth.example.com/.well-known/jwks.json",
    }


async def test_discovery_claims_no_openid_provider_features(start: Start) -> None:
    # A strict OIDC client rejects response_types_supported without an
    # authorization_endpoint; the authority has neither, and issues no ID tokens.
    server = await start()
    document = await get_json(f"{server.issuer}/.well-known/openid-configuration")
    assert set(document) == {"issuer", "jwks_uri"}
