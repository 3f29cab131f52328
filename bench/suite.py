"""The benchmark run, phase by phase; every figure lands in one results dict.

Phases, in this order:

floors      bare cryptography and bare SQLite statements; the product's SQLiteStore
            alone (not a floor: it attributes the gap between floor and actual)
sqlite      every RPC at every concurrency on SQLite with RS256, each GetSession
            window and each window at the efficiency concurrency followed by the
            same requests to the ceiling (the empty RPC of the same sizes); then
            local verification in the client against that server
postgresql  bare asyncpg statements and the PostgresStore alone, then as sqlite
            (without local verification)
algorithms  CreateNewSession, GetSession and local verification with ES256, EdDSA
connect     CreateNewSession and GetSession on one server (SQLite, RS256) over gRPC,
            then over Connect binary and Connect JSON on its HTTP listener, at the
            efficiency concurrency, the three forms back to back for each RPC
workers     GetSession: one process, then `serve --workers 2`, on one database
memory      server RSS after N creates vs after N/100 (at most 10,000)
"""

from __future__ import annotations

import collections
import dataclasses
import os
import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from . import attribution, floors, local_verify, rpcs, targets
from .databases import postgres_database, postgres_reachable, sqlite_database
from .loadgen import CHAIN, CONNECT_JSON, CONNECT_PROTO, GRPC, ONCE, Job, LoadGenerator, Measurement
from .rpcs import CREATE, GET, GET_DB, METHOD_OF, REFRESH, REVOKE
from .servers import ServerProcess, start_ceiling, start_product
from .targets import CONNECT_GRPC, CONNECT_SERVER

PHASES = ("floors", "sqlite", "postgresql", "algorithms", "connect", "workers", "memory")
ALGORITHM_RUNS = ("ES256", "EdDSA")  # RS256 is the sqlite phase's
GET_TOKENS = 1000  # distinct access tokens GetSession cycles over
WORKERS_CONNECTIONS = 16  # so that SO_REUSEPORT spreads them over both workers
# The connect phase's rows: server label of each protocol (targets.py reads them).
CONNECT_FORMS = {
    GRPC: CONNECT_GRPC,
    CONNECT_PROTO: targets.CONNECT_FORMS["binary"],
    CONNECT_JSON: targets.CONNECT_FORMS["JSON"],
}


@dataclass(frozen=True)
class BenchConfig:
    smoke: bool = False
    duration_s: float = 5.0  # each measured window
    warmup_s: float = 1.0
    levels: tuple[int, ...] = (1, 16, 64, 256)
    efficiency_level: int = 64
    loadgen_processes: int = 2
    micro_s: float = 1.0  # each single-thread micro-benchmark (crypto, local verify)
    floor_statements: int = 3000
    collect_cap: int = 40_000  # sessions kept from the create runs (for refresh, revoke)
    sqlite_synchronous: str = "FULL"  # the product's default
    postgres_dsn: str | None = None
    postgres_skip_reason: str | None = None
    memory_creates: int = 1_000_000
    memory_algorithm: str = "EdDSA"
    memory_synchronous: str = "NORMAL"
    memory_timeout_s: float = 3600.0
    phases: tuple[str, ...] = PHASES
    note: str = ""  # recorded with the run, e.g. which tree was measured

    @property
    def memory_baseline(self) -> int:
        return max(1, min(10_000, self.memory_creates // 100))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Suite:
    def __init__(self, config: BenchConfig, loadgen: LoadGenerator) -> None:
        self.config = config
        self.loadgen = loadgen
        self.started = time.monotonic()
        self.results: dict[str, Any] = {
            "meta": _meta(config),
            "config": dataclasses.asdict(config) | {"postgres_dsn": None},
            "measurements": [],
            "floors": {},
            "store_layer": {},
            "local_verification": {},
            "workers": {},
            "memory": {},
            "skipped": {},
        }

    # --- helpers ----------------------------------------------------------------------

    def job(self, label: str, requests: list[bytes], concurrency: int, **options: Any) -> Job:
        options.setdefault("duration_s", self.config.duration_s)
        options.setdefault("warmup_s", self.config.warmup_s)
        return Job(METHOD_OF[label], requests, concurrency, **options)

    def measure(
        self,
        server: ServerProcess,
        label: str,
        job: Job,
        *,
        record: bool = True,
        server_label: str | None = None,
    ) -> Measurement:
        measurement = self.loadgen.run(server, job)
        row = {"server": server_label or server.label, "rpc": label, **measurement.summary()}
        if record:
            self.results["measurements"].append(row)
        errors = f" errors {row['errors']}" if row["errors"] else ""
        _log(
            f"[{time.monotonic() - self.started:6.0f}s] {row['server']:<24} {label:<27}"
            f" c={job.concurrency:<3} {row['rps']:>8.0f} RPC/s  p50 {row['p50_ms']:.2f} ms"
            f"  p99 {row['p99_ms']:.2f} ms  server {row['server_cpu_us_per_call']:.0f} µs/call"
            f"  loadgen {row['loadgen_cores']:.2f} cores{errors}"
        )
        if measurement.calls == 0:
            raise RuntimeError(
                f"{server.label} {label}: no call succeeded{errors}; its log ends:\n"
                + server.log_text()[-3000:]
            )
        return measurement

    def create_sessions(
        self, server: ServerProcess, concurrency: int, collect: int, *, record: bool
    ) -> list[rpcs.Issued]:
        job = self.job(CREATE, rpcs.create_requests(), concurrency, collect=collect)
        measurement = self.measure(server, CREATE, job, record=record)
        return [rpcs.issued_from_create(body) for body in measurement.responses]

    # --- phases -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        phases = set(self.config.phases)
        if "floors" in phases:
            self.floors_phase()
        if "sqlite" in phases:
            with sqlite_database() as url:
                self.backend_phase("sqlite", url)
        if "postgresql" in phases:
            self.postgres_phase()
        if "algorithms" in phases:
            self.algorithms_phase()
        if "connect" in phases:
            self.connect_phase()
        if "workers" in phases:
            self.workers_phase()
        if "memory" in phases:
            self.memory_phase()
        self.results["meta"]["duration_s"] = round(time.monotonic() - self.started, 1)
        self.results["meta"]["loadavg_after"] = os.getloadavg()
        return self.results

    def floors_phase(self) -> None:
        config = self.config
        _log("floors: bare cryptography")
        self.results["floors"]["crypto"] = floors.crypto_floors(config.micro_s / 2)
        _log(f"floors: plain sqlite3 (synchronous={config.sqlite_synchronous})")
        with sqlite_database() as url:
            self.results["floors"]["sqlite"] = floors.sqlite_floors(
                url, config.sqlite_synchronous, config.floor_statements
            ) | {"synchronous": config.sqlite_synchronous}
        _log("the product's SQLiteStore alone (attribution)")
        with sqlite_database() as url:
            self.results["store_layer"]["sqlite"] = attribution.store_costs(
                url, config.floor_statements, config.efficiency_level, config.sqlite_synchronous
            )

    def postgres_phase(self) -> None:
        config = self.config
        if config.postgres_dsn is None:
            self._skip("postgresql", config.postgres_skip_reason or "no DSN")
            return
        unreachable = postgres_reachable(config.postgres_dsn)
        if unreachable:
            self._skip("postgresql", f"cannot reach PostgreSQL: {unreachable}")
            return
        _log("floors: plain asyncpg")
        with postgres_database(config.postgres_dsn) as url:
            self.results["floors"]["postgresql"] = floors.postgres_floors(
                url, config.floor_statements, config.efficiency_level
            )
        _log("the product's PostgresStore alone (attribution)")
        with postgres_database(config.postgres_dsn) as url:
            self.results["store_layer"]["postgresql"] = attribution.store_costs(
                url, config.floor_statements, config.efficiency_level
            )
        with postgres_database(config.postgres_dsn) as url:
            self.backend_phase("postgresql", url)

    def backend_phase(self, backend: str, database_url: str) -> None:
        """The product with RS256 on this database, and beside it the ceiling,
        answering with the product's own responses (see bench/ceiling.py)."""
        config = self.config
        with start_product(
            f"{backend}/RS256", database_url, sqlite_synchronous=config.sqlite_synchronous
        ) as server:
            canned = self.probe(server)
            with (
                sqlite_database() as ceiling_url,
                start_ceiling(f"ceiling/{backend}", ceiling_url, canned) as ceiling,
            ):
                self.rpc_windows(server, ceiling)
            if backend == "sqlite":
                _log("local verification (RS256)")
                self.results["local_verification"]["RS256"] = local_verify.measure(
                    server.target, config.micro_s
                )

    def probe(self, server: ServerProcess) -> dict[str, bytes]:
        """One real response per method, not measured: the ceiling's answers."""

        def once(label: str, request: bytes) -> bytes:
            job = self.job(label, [request], 1, duration_s=60, warmup_s=0, max_calls=1)
            measurement = self.loadgen.run(server, job)
            if measurement.sample is None:
                raise RuntimeError(
                    f"{server.label}: {label} failed: {measurement.errors}; its log ends:\n"
                    + server.log_text()[-3000:]
                )
            return measurement.sample[1]

        created = once(CREATE, rpcs.create_requests(1)[0])
        issued = rpcs.issued_from_create(created)
        return {
            CREATE: created,
            GET: once(GET, rpcs.get_session_request(issued.access_token, check_database=False)),
            REFRESH: once(REFRESH, rpcs.refresh_request(issued.refresh_token)),
            REVOKE: once(REVOKE, rpcs.revoke_request(issued.handle)),
        }

    def rpc_windows(self, server: ServerProcess, ceiling: ServerProcess) -> None:
        """Every RPC at every concurrency. Each GetSession window, and each window
        at the efficiency concurrency, is followed at once by the same requests to
        the ceiling, so that both see the machine in the same state."""
        config = self.config
        levels = config.levels

        def window(label: str, requests: list[bytes], concurrency: int, **options: Any) -> Any:
            measured = self.measure(
                server, label, self.job(label, requests, concurrency, **options)
            )
            if label == GET or concurrency == config.efficiency_level:
                self.measure(ceiling, label, self.job(label, requests, concurrency))
            return measured

        created: list[rpcs.Issued] = []
        for concurrency in levels:
            collect = config.collect_cap // len(levels)
            measured = window(CREATE, rpcs.create_requests(), concurrency, collect=collect)
            created += [rpcs.issued_from_create(body) for body in measured.responses]
        tokens = [issued.access_token for issued in created[:GET_TOKENS]]
        for label, check_database in ((GET, False), (GET_DB, True)):
            requests = [rpcs.get_session_request(t, check_database=check_database) for t in tokens]
            for concurrency in levels:
                window(label, requests, concurrency)
        # Each concurrency refreshes sessions of its own (two per call in flight),
        # and revokes a share of the rest, each once.
        start = 0
        for concurrency in levels:
            chunk = created[start : start + 2 * concurrency]
            start += len(chunk)
            requests = [rpcs.refresh_request(issued.refresh_token) for issued in chunk]
            window(REFRESH, requests, concurrency, mode=CHAIN)
        rest = created[start:]
        if len(rest) < len(levels):
            raise RuntimeError(f"{server.label}: too few sessions created to revoke ({len(rest)})")
        for index, concurrency in enumerate(levels):
            requests = [rpcs.revoke_request(i.handle) for i in rest[index :: len(levels)]]
            window(REVOKE, requests, concurrency, mode=ONCE)

    def algorithms_phase(self) -> None:
        config = self.config
        level = config.efficiency_level
        for algorithm in ALGORITHM_RUNS:
            with (
                sqlite_database() as url,
                start_product(
                    f"sqlite/{algorithm}",
                    url,
                    algorithm=algorithm,
                    sqlite_synchronous=config.sqlite_synchronous,
                ) as server,
            ):
                created = self.create_sessions(server, level, GET_TOKENS, record=True)
                requests = [
                    rpcs.get_session_request(i.access_token, check_database=False) for i in created
                ]
                self.measure(server, GET, self.job(GET, requests, level))
                _log(f"local verification ({algorithm})")
                self.results["local_verification"][algorithm] = local_verify.measure(
                    server.target, config.micro_s
                )

    def connect_phase(self) -> None:
        """CreateNewSession and GetSession at the efficiency concurrency on one
        product server, over gRPC, Connect binary (application/proto) and Connect
        JSON (application/json) in turn: the same requests (JSON: the same
        messages as proto3 JSON), the same calls in flight, server CPU per call
        read the same way. Connect goes to the HTTP listener (uvicorn in the same
        process as gRPC), one keep-alive HTTP/1.1 connection per call in flight."""
        config = self.config
        level = config.efficiency_level
        with (
            sqlite_database() as url,
            start_product(
                CONNECT_SERVER, url, sqlite_synchronous=config.sqlite_synchronous
            ) as server,
        ):
            created = self.create_sessions(server, level, GET_TOKENS, record=False)
            workloads = {
                CREATE: rpcs.create_requests(),
                GET: [
                    rpcs.get_session_request(i.access_token, check_database=False) for i in created
                ],
            }
            for label, requests in workloads.items():
                for protocol, server_label in CONNECT_FORMS.items():
                    bodies = (
                        [rpcs.as_json(METHOD_OF[label], r) for r in requests]
                        if protocol == CONNECT_JSON
                        else requests
                    )
                    job = self.job(label, bodies, level, protocol=protocol)
                    self.measure(server, label, job, server_label=server_label)

    def workers_phase(self) -> None:
        """GetSession at the efficiency concurrency on one process, then on two
        workers, same database and keys, same tokens, same connections."""
        config = self.config
        level = config.efficiency_level
        with sqlite_database() as url:
            single_label = "sqlite/RS256 1 process"
            with start_product(
                single_label, url, sqlite_synchronous=config.sqlite_synchronous
            ) as server:
                created = self.create_sessions(server, level, GET_TOKENS, record=False)
                requests = [
                    rpcs.get_session_request(i.access_token, check_database=False) for i in created
                ]
                job = self.job(GET, requests, level, connections=WORKERS_CONNECTIONS)
                single = self.measure(server, GET, job, record=False)
            with start_product(
                "sqlite/RS256 --workers 2",
                url,
                workers=2,
                sqlite_synchronous=config.sqlite_synchronous,
            ) as server:
                double = self.measure(server, GET, job, record=False)
        self.results["workers"] = {
            "concurrency": level,
            "connections": WORKERS_CONNECTIONS,
            "single": single.summary(),
            "workers2": double.summary(),
        }

    def memory_phase(self) -> None:
        """Creates in steps (the baseline, then tenths of the rest), the server's
        RSS read after each: the target compares the last with the baseline."""
        config = self.config
        creates, baseline = config.memory_creates, config.memory_baseline
        step = max(1, (creates - baseline) // 10)
        _log(
            f"memory: {creates:,} creates ({config.memory_algorithm}, "
            f"synchronous={config.memory_synchronous}), RSS at {baseline:,} and at {creates:,}"
        )
        done = 0
        errors: collections.Counter[str] = collections.Counter()
        curve: list[tuple[int, float]] = []
        started = time.monotonic()
        with (
            sqlite_database() as url,
            start_product(
                "sqlite memory",
                url,
                algorithm=config.memory_algorithm,
                sqlite_synchronous=config.memory_synchronous,
            ) as server,
        ):
            curve.append((0, server.rss() / 2**20))
            while done < creates:
                count = min(baseline if done == 0 else step, creates - done)
                job = self.job(
                    CREATE,
                    rpcs.create_requests(),
                    config.efficiency_level,
                    duration_s=config.memory_timeout_s,
                    warmup_s=0,
                    max_calls=count,
                )
                measurement = self.loadgen.run(server, job)
                if measurement.calls == 0:
                    raise RuntimeError(
                        f"memory step: no create succeeded: {measurement.errors}; the "
                        f"server's log ends:\n{server.log_text()[-3000:]}"
                    )
                done += measurement.calls
                errors.update(measurement.errors)
                curve.append((done, round(server.rss() / 2**20, 1)))
                _log(
                    f"[{time.monotonic() - self.started:6.0f}s] memory: {done:,} creates, "
                    f"RSS {curve[-1][1]:.1f} MB"
                )
        seconds = time.monotonic() - started
        self.results["memory"] = {
            "algorithm": config.memory_algorithm,
            "synchronous": config.memory_synchronous,
            "creates_small": curve[1][0],
            "creates": done,
            "errors": dict(errors),
            "rss_start_mb": round(curve[0][1], 1),
            "rss_small_mb": curve[1][1],
            "rss_large_mb": curve[-1][1],
            "ratio": round(curve[-1][1] / curve[1][1], 3),
            "curve": curve,
            "seconds": round(seconds, 1),
            "rps": round(done / seconds, 1),
        }

    def _skip(self, phase: str, reason: str) -> None:
        self.results["skipped"][phase] = reason
        _log(f"{phase}: skipped ({reason})")


def _meta(config: BenchConfig) -> dict[str, Any]:
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "mode": "smoke" if config.smoke else "full",
        "python": platform.python_version(),
        **{
            name: metadata.version(name)
            for name in ("grpcio", "protobuf", "cryptography", "PyJWT", "connectrpc", "uvicorn")
        },
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "loadavg_before": os.getloadavg(),
        "commit": _git_commit(),
        "note": config.note,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(__file__),
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None
