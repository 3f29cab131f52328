"""SuperTokens' own backend SDK (supertokens-python, pinned in the dev extra) verifying
the authority's tokens against the authority's JWKS, as any service built on that SDK
would: it must accept a real access token and reject every CreateJwt token.

The regression (a security issue): CreateJwt signed any caller payload with the key
that signs access tokens. Its header has no ``version``, which the SDK reads as a
v3 access token, so the SDK only checks the payload's layout. A caller of

    CreateJwt(payload={"sub": "u1", "sessionHandle": "h", "refreshTokenHash1": "x",
                       "tId": "public", "rsub": "u1"},
              use_static_signing_key=false)

got a token that supertokens-python (and any plain JWKS verifier) took for a session
of user "u1", for any user named there. Our own verifiers refuse it (no header
version "5"); other SDKs do not know that rule. Now CreateJwt refuses every
session-layout claim of any token version, and marks each token ``"stt": 1``, which
the SDK refuses as "Wrong token type" whatever else the payload holds.

The SDK runs in one subprocess per test: its init is a global singleton, and the
subprocess keeps the test process clean. That subprocess is this module run with
``python -c``; it reads tokens on stdin and prints one verdict per token.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from session_authority import InvalidArgumentError, SessionClient
from session_authority_server.app import RunningServer
from session_authority_server.tokens import JwtMinter
from session_authority_server.validation import CREATE_JWT_REFUSED_CLAIMS

from .conftest import ManualClock

Start = Callable[..., Awaitable[RunningServer]]
Connect = Callable[..., SessionClient]

REPO = Path(__file__).resolve().parent.parent

# What a caller put in CreateJwt to get a session token of user "u1" (see above).
ATTACK_PAYLOAD = {
    "sub": "u1",
    "sessionHandle": "h",
    "refreshTokenHash1": "x",
    "tId": "public",
    "rsub": "u1",
}

ACCEPT = "accept"


# --- the SDK side (runs in the subprocess) ---------------------------------------------


def sdk_main() -> None:
    """Initialise supertokens-python with the authority's HTTP listener as its core
    (argv[1]), then print one JSON verdict line per token line on stdin:

    - "info": the SDK's local verification (parse_jwt_without_signature_verification,
      then get_info_from_access_token: JWKS signature, expiry, token type, layout);
    - "api": the public get_session_without_request_response, no anti-CSRF check and
      no database check (so no core call), configured for the token's kind of key
      (use_dynamic_access_token_signing_key as its kid says), so that the key setting
      is never the reason for a verdict.

    A verdict is "accept" or "reject: <error>".
    """
    from supertokens_python import InputAppInfo, SupertokensConfig, init
    from supertokens_python.recipe import session
    from supertokens_python.recipe.session.access_token import get_info_from_access_token
    from supertokens_python.recipe.session.asyncio import (
        get_session_without_request_response,
    )
    from supertokens_python.recipe.session.jwt import parse_jwt_without_signature_verification
    from supertokens_python.recipe.session.recipe import SessionRecipe

    init(
        app_info=InputAppInfo(
            app_name="interop",
            # localhost: the SDK resolves no public-suffix list for these.
            api_domain="http://localhost:3001",
            website_domain="http://localhost:3000",
        ),
        framework="fastapi",  # only a name here: nothing imports fastapi
        supertokens_config=SupertokensConfig(connection_uri=sys.argv[1]),
        recipe_list=[session.init()],
        telemetry=False,
    )
    config = SessionRecipe.get_instance().config

    def rejection(error: BaseException) -> str:
        return f"reject: {type(error).__name__}: {error}"

    async def verdicts(token: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        try:
            parsed = parse_jwt_without_signature_verification(token)
            info = get_info_from_access_token(config, parsed, do_anti_csrf_check=False)
            result.update(info=ACCEPT, info_user_id=info["userId"])
        except Exception as error:
            result["info"] = rejection(error)
        kid = str(json.loads(_b64url(token.split(".")[0])).get("kid", ""))
        config.use_dynamic_access_token_signing_key = kid.startswith("d-")
        try:
            container = await get_session_without_request_response(
                token, anti_csrf_check=False, session_required=True, check_database=False
            )
            assert container is not None
            result.update(
                api=ACCEPT,
                api_user_id=container.get_user_id(),
                api_session_handle=container.get_handle(),
            )
        except Exception as error:
            result["api"] = rejection(error)
        return result

    async def run() -> None:
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(await verdicts(line.strip())), flush=True)

    asyncio.run(run())


def _b64url(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --- the test side -----------------------------------------------------------------------


def verify_with_supertokens(server: RunningServer, tokens: list[str]) -> list[dict[str, Any]]:
    """supertokens-python's verdicts on tokens, its core being the authority's HTTP side."""
    assert server.http_port is not None
    env = {
        **os.environ,
        "SUPERTOKENS_TLDEXTRACT_DISABLE_HTTP": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tests.test_supertokens_interop import sdk_main; sdk_main()",
            f"http://127.0.0.1:{server.http_port}",
        ],
        input="".join(token + "\n" for token in tokens),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert len(lines) == len(tokens), completed.stdout + completed.stderr
    return [json.loads(line) for line in lines]


async def verify_in_thread(server: RunningServer, tokens: list[str]) -> list[dict[str, Any]]:
    # In a thread: the subprocess fetches the JWKS from this event loop's server.
    return await asyncio.to_thread(verify_with_supertokens, server, tokens)


@pytest.fixture
async def real_time_server(clock: ManualClock, start: Start) -> RunningServer:
    """A server whose clock reads the real time: the SDK checks exp against it."""
    clock.ms = time.time_ns() // 1_000_000
    return await start()


async def test_supertokens_python_accepts_sessions_and_rejects_every_create_jwt_token(
    real_time_server: RunningServer, connect: Connect
) -> None:
    server = real_time_server
    async with connect(server) as client:
        session = await client.create_new_session("user-1", {"role": "admin"})
        minted: dict[str, str] = {"access token": session.access_token}
        for payload in ({}, {"sub": "u1"}, {"sub": "u1", "role": "admin"}):
            for static in (True, False):
                name = f"CreateJwt {json.dumps(payload)} {'static' if static else 'dynamic'}"
                minted[name] = await client.create_jwt(payload, use_static_signing_key=static)

    # Controls that the harness tells the attack from a rejection: the attack payload
    # signed the way CreateJwt signed it before the fix (no header version, either
    # key, the caller's claims alone) is a session to the SDK; the same token marked
    # "stt": 1 is not, by the mark alone.
    keys = server.authority.keys
    now_s = time.time_ns() // 1_000_000_000
    unguarded = {**ATTACK_PAYLOAD, "iat": now_s, "exp": now_s + 3600}
    minter = JwtMinter()
    for kind, signer in (("static", keys.static_key), ("dynamic", await keys.signer())):
        minted[f"control: pre-fix shape {kind}"] = minter.mint(
            signer, unguarded, access_token=False
        )
        minted[f"control: stt 1 {kind}"] = minter.mint(
            signer, {**unguarded, "stt": 1}, access_token=False
        )

    # One SDK process for all the tokens (its start is most of the second it takes).
    results = await verify_in_thread(server, list(minted.values()))
    verdicts = dict(zip(minted, results, strict=True))
    report = json.dumps(verdicts, indent=1)

    # (a) The SDK accepts a real session: a rejection below means something.
    real = verdicts.pop("access token")
    assert real["info"] == ACCEPT and real["api"] == ACCEPT, report
    assert real["info_user_id"] == real["api_user_id"] == "user-1", report
    assert real["api_session_handle"] == session.session_handle, report

    for kind in ("static", "dynamic"):
        control = verdicts.pop(f"control: pre-fix shape {kind}")
        assert control["info"] == ACCEPT and control["api"] == ACCEPT, report
        assert control["api_user_id"] == "u1", report
        marked = verdicts.pop(f"control: stt 1 {kind}")
        assert "Wrong token type" in marked["info"], report
        assert marked["api"].startswith("reject"), report

    # (c) Every CreateJwt token is refused, by the token type mark whatever its payload.
    for name, verdict in verdicts.items():
        assert "Wrong token type" in verdict["info"], f"{name}: {report}"
        assert verdict["api"].startswith("reject"), f"{name}: {report}"


# (b) The authority refuses to sign session-layout claims at all. One server for
# all the cases: the failures are collected, so one run names every one that fails.


async def test_create_jwt_refuses_each_session_layout_claim(client: SessionClient) -> None:
    secret_value = "value-that-must-not-be-echoed"
    failures = []
    for claim in sorted(CREATE_JWT_REFUSED_CLAIMS):
        for static in (True, False):
            case = f"{claim} ({'static' if static else 'dynamic'} key)"
            try:
                token = await client.create_jwt(
                    {"sub": "u1", claim: secret_value}, use_static_signing_key=static
                )
            except InvalidArgumentError as error:
                if error.field != "payload" or claim not in str(error):
                    failures.append(f"{case}: {error.field}: {error}")
                if secret_value in str(error):
                    failures.append(f"{case}: the message echoes the value: {error}")
            else:
                failures.append(f"{case}: signed {token}")
    assert not failures, "\n".join(failures)


async def test_create_jwt_refuses_the_attack_payload_naming_every_claim(
    client: SessionClient,
) -> None:
    for use_static_signing_key in (True, False):
        with pytest.raises(InvalidArgumentError) as raised:
            await client.create_jwt(ATTACK_PAYLOAD, use_static_signing_key=use_static_signing_key)
        assert raised.value.field == "payload"
        # Exactly the session claims are named; "sub" is allowed.
        named = str(raised.value).rpartition(": ")[2].split(", ")
        assert named == ["refreshTokenHash1", "rsub", "sessionHandle", "tId"]


async def test_a_caller_cannot_set_the_token_type(client: SessionClient) -> None:
    # Not even to 0 (a session) or to the 1 the authority sets itself.
    for stt in (0, 1, 2, None, False, "0"):
        with pytest.raises(InvalidArgumentError) as raised:
            await client.create_jwt({"sub": "u1", "stt": stt})
        assert raised.value.field == "payload", stt
        assert str(raised.value).endswith(": stt"), stt
