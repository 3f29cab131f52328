"""Prometheus metrics of one authority process (its own registry, so several
servers in one process, as in tests, never collide). Labels carry method names
and status codes only: never a token, a user id or a handle.

No ``*_created`` series: one more series per counter and histogram, a creation
timestamp that no alert or dashboard here reads. prometheus_client's
switch for it is process-wide (as PROMETHEUS_DISABLE_CREATED_SERIES would be),
which suits a process that serves the authority."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from .events import RevocationCause

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # (untyped upstream)
        self.registry = CollectorRegistry()
        self.rpcs = Counter(
            "session_authority_rpcs",
            "calls by method and status code, whichever the transport",
            ["method", "code"],
            registry=self.registry,
        )
        # rpcs: every transport in one series per method and code, counted as calls
        # end (as when gRPC was the only one); the transport apart, as calls start.
        self.rpcs_by_transport = Counter(
            "session_authority_rpcs_by_transport",
            "calls started, by method and transport (grpc, connect, grpc-web)",
            ["method", "transport"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "session_authority_rpc_duration_seconds",
            "call latency by method and status code",
            ["method", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._created = Counter(
            "session_authority_sessions_created", "sessions created", registry=self.registry
        )
        self._refreshed = Counter(
            "session_authority_sessions_refreshed", "successful refreshes", registry=self.registry
        )
        self._revoked = Counter(
            "session_authority_sessions_revoked",
            "sessions ended early, by cause (revoke, revoke_all, revoke_other, cap, theft)",
            ["cause"],
            registry=self.registry,
        )
        self._thefts = Counter(
            "session_authority_token_thefts_detected",
            "refresh-token reuse detected (session revoked)",
            registry=self.registry,
        )
        self.jwks_fetches = Counter(
            "session_authority_jwks_fetches",
            "JWKS served, by transport (grpc, connect, grpc-web: GetJwks; http: the URL)",
            ["transport"],
            registry=self.registry,
        )
        self.http_connections_rejected = Counter(
            "session_authority_http_connections_rejected",
            "HTTP connections closed on arrival: the connection cap was reached",
            registry=self.registry,
        )

    def rpc_started(self, method: str, transport: str) -> None:
        self.rpcs_by_transport.labels(method, transport).inc()

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpcs.labels(method, code).inc()
        self.latency.labels(method, code).observe(seconds)

    # SessionEvents: counted where they happen, whichever call caused them.

    def session_created(self) -> None:
        self._created.inc()

    def session_refreshed(self) -> None:
        self._refreshed.inc()

    def sessions_revoked(self, count: int, cause: RevocationCause) -> None:
        self._revoked.labels(cause.value).inc(count)

    def theft_detected(self) -> None:
        self._thefts.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
