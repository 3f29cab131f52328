"""Local verification in the client, on one core, beside its bare floors.

Runs in a process of its own (nothing else there uses the CPU): a SessionClient
(verify_locally, the default) creates a session on a running authority, warms up
(the JWKS and the global claim validators are fetched once), then verifies the
same access token over and over with ``get_session``: no RPC. Beside it, with
the same token:

- ``jwt.decode`` with the public key object cached (what a verifier would write
  with PyJWT);
- the bare ``cryptography`` verify of the signature (the key loaded once);
- that verify plus base64 and JSON decoding of the payload: the reachable floor.

Rates are per second of CPU time of the one thread doing the work.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .floors import cpu_us_per_call

WARMUP_CALLS = 200


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def bare_verifier(token: str, key: Any, algorithm: str) -> Callable[[], None]:
    """The cryptography call alone that checks the token's signature."""
    header, payload, signature_segment = token.split(".")
    message = f"{header}.{payload}".encode()
    signature = _b64decode(signature_segment)
    if algorithm == "RS256":
        return lambda: key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    if algorithm == "ES256":  # JWS carries r || s; cryptography wants DER
        half = len(signature) // 2
        der = encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        )
        return lambda: key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    return lambda: key.verify(signature, message)


async def _async_cpu_us_per_call(work: Callable[[], Awaitable[Any]], seconds: float) -> float:
    calls = 0
    cpu = time.thread_time()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(20):
            await work()
        calls += 20
    return (time.thread_time() - cpu) / calls * 1e6


async def _measure(target: str, seconds: float) -> dict[str, Any]:
    from session_authority import SessionClient

    async with SessionClient(target) as client:
        created = await client.create_new_session("bench-local", {"role": "user"})
        token = created.access_token
        for _ in range(WARMUP_CALLS):
            await client.get_session(token)
        sdk_us = await _async_cpu_us_per_call(lambda: client.get_session(token), seconds)
        kid = json.loads(_b64decode(token.split(".")[0]))["kid"]
        jwk = next(k for k in (await client.get_jwks())["keys"] if k["kid"] == kid)
    algorithm = jwk["alg"]
    key = jwt.PyJWK(jwk, algorithm=algorithm).key
    verify = bare_verifier(token, key, algorithm)
    payload_segment = token.split(".")[1]

    def floor() -> None:
        verify()
        json.loads(_b64decode(payload_segment))

    figures = {
        "sdk_get_session": sdk_us,
        "jwt_decode": cpu_us_per_call(
            lambda: jwt.decode(token, key, algorithms=[algorithm]), seconds
        ),
        "bare_verify": cpu_us_per_call(verify, seconds),
        "bare_verify_and_json": cpu_us_per_call(floor, seconds),
    }
    return {
        "algorithm": algorithm,
        "token_bytes": len(token),
        **{f"{name}_us": round(us, 2) for name, us in figures.items()},
        **{f"{name}_per_s": round(1e6 / us) for name, us in figures.items()},
    }


def _measure_in_process(target: str, seconds: float) -> dict[str, Any]:
    return asyncio.run(_measure(target, seconds))


def measure(target: str, seconds: float) -> dict[str, Any]:
    """Measure against the authority at target, in a fresh process."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_measure_in_process, target, seconds).result(timeout=300)
