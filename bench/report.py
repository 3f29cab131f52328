"""Tables, targets and the chart, from a results dict (bench/results/latest.json).

`python -m bench.report` renders docs/benchmarks.md and docs/benchmarks.png;
`markdown()` is also what `python -m bench` prints.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .rpcs import CREATE, GET, LABELS
from .targets import CONNECT_FORMS, CONNECT_GRPC, CONNECT_RPCS, capacity

ROOT = Path(__file__).resolve().parent.parent
LATEST = Path(__file__).resolve().parent / "results" / "latest.json"
FINDINGS = Path(__file__).resolve().parent / "findings.md"
DOC = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks.png"

SHARED_CORES = (
    "The machine has {cores} cores, shared by the server and the load generator (grpc.aio "
    "clients in {loadgen} processes of their own): a Python client burns about as much CPU "
    "per call as the server, so throughput here understates what the server alone can do. "
    "CPU per call is the steadier figure; every ratio is taken within one run."
)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            if math.isnan(value):
                return "n/a"
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{code} {count}" for code, count in sorted(errors.items())) or "0"


def throughput_table(results: dict[str, Any]) -> str:
    rows = [
        [
            m["server"],
            m["rpc"],
            m["concurrency"],
            float(m["rps"]),
            m["p50_ms"],
            m["p99_ms"],
            float(m["server_cpu_us_per_call"]),
            m["server_cores"],
            float(m["loadgen_cpu_us_per_call"]),
            m["loadgen_cores"],
            m["request_bytes"],
            m["response_bytes"],
            _errors(m["errors"]),
        ]
        for m in results["measurements"]
    ]
    return _table(
        [
            "server",
            "RPC",
            "in flight",
            "RPC/s",
            "p50 ms",
            "p99 ms",
            "server CPU µs/call",
            "server cores",
            "load gen CPU µs/call",
            "load gen cores",
            "req B",
            "resp B",
            "errors",
        ],
        rows,
    )


def efficiency_table(results: dict[str, Any]) -> str:
    rows = [
        [
            e["backend"],
            e["rpc"],
            float(e["empty_rpc_us"]),
            float(e["crypto_us"]),
            float(e["storage_us"]),
            float(e["floor_us"]),
            float(e["actual_us"]),
            e["efficiency"],
            _float(e.get("store_layer_us")),
            _float(e.get("rest_us")),
        ]
        for e in results.get("efficiency", [])
    ]
    return _table(
        [
            "backend",
            "RPC",
            "empty RPC µs",
            "sign/verify µs",
            "storage µs",
            "floor µs",
            "actual µs",
            "efficiency",
            "product store µs",
            "rest µs",
        ],
        rows,
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def floors_tables(results: dict[str, Any]) -> str:
    found = results.get("floors", {})
    parts = []
    if "crypto" in found:
        parts.append(
            _table(
                ["algorithm", "sign µs", "verify µs"],
                [[a, f["sign_us"], f["verify_us"]] for a, f in found["crypto"].items()],
            )
        )
    label = {
        "sqlite": f"sqlite3, WAL, synchronous={found.get('sqlite', {}).get('synchronous', '?')}",
        "postgresql": "asyncpg pool, 64 in flight",
    }
    storage = [
        [
            label[backend],
            found[backend]["insert_us"],
            found[backend]["select_us"],
            found[backend]["update_us"],
            found[backend]["delete_us"],
        ]
        for backend in ("sqlite", "postgresql")
        if backend in found
    ]
    if storage:
        parts.append(
            _table(
                ["storage", "INSERT µs", "SELECT µs", "UPDATE..RETURNING µs", "DELETE µs"],
                storage,
            )
        )
    layer = results.get("store_layer", {})
    if layer:
        parts.append(
            "The product's store alone, same operations, 64 in flight, no gRPC "
            "(process CPU, its threads included):\n\n"
            + _table(
                [
                    "product store",
                    "insert_session µs",
                    "get_session µs",
                    "update_session µs",
                    "delete_sessions µs",
                ],
                [
                    [b, v["insert_us"], v["select_us"], v["update_us"], v["delete_us"]]
                    for b, v in layer.items()
                ],
            )
        )
    return "\n\n".join(parts)


def local_table(results: dict[str, Any]) -> str:
    rows = []
    for algorithm, v in results.get("local_verification", {}).items():
        rows.append(
            [
                algorithm,
                v["sdk_get_session_per_s"],
                v["jwt_decode_per_s"],
                v["bare_verify_per_s"],
                v["bare_verify_and_json_per_s"],
                v["sdk_get_session_us"],
                v["jwt_decode_us"],
                v["bare_verify_us"],
                round(v["sdk_get_session_per_s"] / v["jwt_decode_per_s"], 2),
            ]
        )
    return _table(
        [
            "algorithm",
            "SDK get_session /s",
            "jwt.decode /s",
            "bare verify /s",
            "verify + JSON /s",
            "SDK µs",
            "jwt.decode µs",
            "bare verify µs",
            "SDK / jwt.decode",
        ],
        rows,
    )


def algorithms_table(results: dict[str, Any]) -> str:
    level = results["config"]["efficiency_level"]
    crypto = results.get("floors", {}).get("crypto", {})
    rows = []
    for algorithm in ("RS256", "ES256", "EdDSA"):
        server = f"sqlite/{algorithm}"
        create = _find(results, server, CREATE, level)
        get = _find(results, server, GET, level)
        local = results.get("local_verification", {}).get(algorithm)
        bare = crypto.get(algorithm, {})
        if not (create or get or local):
            continue
        rows.append(
            [
                algorithm,
                bare.get("sign_us"),
                bare.get("verify_us"),
                float(create["server_cpu_us_per_call"]) if create else None,
                float(create["rps"]) if create else None,
                float(get["server_cpu_us_per_call"]) if get else None,
                float(get["rps"]) if get else None,
                local["sdk_get_session_per_s"] if local else None,
            ]
        )
    return _table(
        [
            "algorithm",
            "bare sign µs",
            "bare verify µs",
            f"Create server µs/call (c={level})",
            "Create RPC/s",
            "GetSession server µs/call",
            "GetSession RPC/s",
            "local verifications /s",
        ],
        rows,
    )


def connect_table(results: dict[str, Any]) -> str:
    """gRPC, Connect binary and Connect JSON on one server, per RPC (the connect phase)."""
    level = results["config"]["efficiency_level"]
    forms = (("gRPC", CONNECT_GRPC), *((f"Connect {f}", s) for f, s in CONNECT_FORMS.items()))
    rows = []
    for rpc in CONNECT_RPCS:
        grpc_row = _find(results, CONNECT_GRPC, rpc, level)
        for name, server in forms:
            m = _find(results, server, rpc, level)
            if m is None:
                continue
            rows.append(
                [
                    rpc,
                    name,
                    float(m["rps"]),
                    float(m["server_cpu_us_per_call"]),
                    float(m["loadgen_cpu_us_per_call"]),
                    m["p50_ms"],
                    m["request_bytes"],
                    m["response_bytes"],
                    round(m["rps"] / grpc_row["rps"], 2) if grpc_row else None,
                    round(grpc_row["server_cpu_us_per_call"] / m["server_cpu_us_per_call"], 2)
                    if grpc_row and m["server_cpu_us_per_call"]
                    else None,
                ]
            )
    if not rows:
        return ""
    return _table(
        [
            "RPC",
            "form",
            "RPC/s",
            "server CPU µs/call",
            "load gen CPU µs/call",
            "p50 ms",
            "req B",
            "resp B",
            "RPC/s vs gRPC",
            "gRPC µs / this µs",
        ],
        rows,
    )


def workers_table(results: dict[str, Any]) -> str:
    measured = results.get("workers")
    if not measured:
        return ""
    cores = results["meta"].get("cpu_count") or 2
    rows = []
    for name, key, processes in (("1 process", "single", 1), ("--workers 2", "workers2", 2)):
        s = measured[key]
        rows.append(
            [
                name,
                float(s["rps"]),
                float(s["server_cpu_us_per_call"]),
                float(s["server_main_thread_cpu_us_per_call"]),
                s["server_cores"],
                s["loadgen_cores"],
                float(capacity(s, processes, cores)),
            ]
        )
    return _table(
        [
            f"GetSession, c={measured['concurrency']}, {measured['connections']} connections",
            "RPC/s measured",
            "server CPU µs/call",
            "main threads µs/call",
            "server cores",
            "load gen cores",
            "projected capacity RPC/s",
        ],
        rows,
    )


def memory_text(results: dict[str, Any]) -> str:
    m = results.get("memory")
    if not m:
        return ""
    return (
        f"{m['creates']:,} CreateNewSession calls on SQLite ({m['algorithm']} keys, "
        f"synchronous={m['synchronous']} to keep the step short: neither changes what the "
        f"server keeps per session) in {m['seconds']:.0f} s ({m['rps']:,.0f}/s). "
        f"Server RSS: {m['rss_start_mb']:.0f} MB at start, {m['rss_small_mb']:.0f} MB after "
        f"{m['creates_small']:,} creates, {m['rss_large_mb']:.0f} MB after {m['creates']:,}: "
        f"{m['ratio']:.2f}x. Errors: {_errors(m['errors'])}.\n\n"
        + _table(["creates", "RSS MB"], [[n, float(mb)] for n, mb in m.get("curve", [])])
    )


def target_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for t in results.get("targets", []):
        measured = "—" if t["measured"] is None else f"{t['measured']:.2f}"
        relation = "≤" if t["name"].startswith("memory") else "≥"
        lines.append(
            f"{t['status']:<4}  {t['name']}: {measured} ({relation} {t['threshold']}) "
            f"{t['detail']}".rstrip()
        )
    return lines


def _find(results: dict[str, Any], server: str, rpc: str, level: int) -> dict[str, Any] | None:
    for m in results["measurements"]:
        if (m["server"], m["rpc"], m["concurrency"]) == (server, rpc, level):
            return m  # type: ignore[no-any-return]
    return None


def markdown(results: dict[str, Any], *, with_targets: bool = True) -> str:
    meta, config = results["meta"], results["config"]
    level = config["efficiency_level"]
    sections = [
        "## Run\n\n"
        f"{meta['started']}, commit {meta.get('commit') or '?'}, {meta['mode']} mode, "
        f"{meta.get('duration_s', '?')} s. {meta['cpu_count']} cores ({meta['cpu_model']}); "
        f"Python {meta['python']}, grpcio {meta['grpcio']}, protobuf {meta['protobuf']}, "
        f"cryptography {meta['cryptography']}, PyJWT {meta['PyJWT']}. "
        f"Load average before/after: {_loadavg(meta.get('loadavg_before'))} / "
        f"{_loadavg(meta.get('loadavg_after'))}. Each window {config['duration_s']} s after "
        f"{config['warmup_s']} s of warm-up; SQLite synchronous={config['sqlite_synchronous']} "
        "(the default)."
        + (f" Note: {meta['note']}" if meta.get("note") else "")
        + "\n\n"
        + SHARED_CORES.format(cores=meta["cpu_count"], loadgen=config["loadgen_processes"]),
    ]
    skipped = results.get("skipped", {})
    if skipped:
        sections.append(
            "Skipped: " + "; ".join(f"{phase}: {why}" for phase, why in skipped.items()) + "."
        )
    if with_targets:
        sections.append("## Targets\n\n```\n" + "\n".join(target_lines(results)) + "\n```")
    sections += [
        f"## Server CPU per call vs floor (c={level})\n\n"
        "Floor = the empty RPC of the same sizes on the same server configuration + the bare "
        "cryptography sign or verify the RPC needs + the bare storage statement it needs; "
        "efficiency = floor / actual. For attribution (not part of the floor): the same "
        "storage operation through the product's own store with no gRPC (`product store`), "
        "and what is left of the actual once the empty RPC, the signature work and the "
        "product store are taken away (`rest`: protobuf, JSON, the servicer and recipe "
        "logic, and whatever the handler adds to the empty RPC's work).\n\n"
        + efficiency_table(results),
        "## Floors (bare, one thread, this run)\n\n" + floors_tables(results),
        "## Throughput and latency\n\n"
        "Server CPU and load generator CPU are process CPU time (user + system, all threads) "
        "over the measured window, divided by the calls served.\n\n" + throughput_table(results),
        "## Local verification in the client (one core)\n\n"
        "`SessionClient.get_session` with `verify_locally` (after warm-up: no RPC), beside "
        "`jwt.decode` with a cached key object, the bare `cryptography` verify, and that verify "
        "plus base64 + JSON decoding of the payload (the reachable floor). Per CPU-second.\n\n"
        + local_table(results),
        "## RS256 vs ES256 vs EdDSA\n\n" + algorithms_table(results),
        f"## Connect vs gRPC (SQLite, RS256, c={level})\n\n"
        "One server, CreateNewSession and GetSession over gRPC and then, on its HTTP "
        "listener, over Connect binary (application/proto) and Connect JSON, the three "
        "back to back; Connect over one keep-alive HTTP/1.1 connection per call in flight. "
        "The last column compares server CPU per call (the steadier figure on shared "
        "cores: the load generators' own CPU per call differs by protocol).\n\n"
        + connect_table(results),
        "## `serve --workers 2`\n\n"
        "Projected capacity = min(processes / main-thread CPU per call, cores / all-threads "
        "CPU per call): what the server would serve with both cores to itself, since here the "
        "load generator takes one.\n\n" + workers_table(results),
        "## Memory\n\n" + memory_text(results),
    ]
    return "\n\n".join(s for s in sections if s.strip()) + "\n"


def _loadavg(values: Any) -> str:
    if not values:
        return "?"
    return " ".join(f"{v:.2f}" for v in values)


def chart(results: dict[str, Any], path: Path) -> None:
    """Throughput vs concurrency per RPC, one panel per backend, the empty RPC in each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = [
        b
        for b in ("sqlite", "postgresql")
        if any(m["server"] == f"{b}/RS256" for m in results["measurements"])
    ]
    if not backends:
        return
    figure, axes = plt.subplots(1, len(backends), figsize=(6.5 * len(backends), 4.8), sharey=True)
    axes = axes if len(backends) > 1 else [axes]
    levels = results["config"]["levels"]
    for axis, backend in zip(axes, backends, strict=True):
        ceiling = [_find(results, f"ceiling/{backend}", GET, c) for c in levels]
        if all(ceiling):
            axis.plot(
                levels,
                [m["rps"] for m in ceiling if m],
                "k--",
                marker="s",
                label="empty RPC (ceiling, GetSession sizes)",
            )
        for rpc in LABELS:
            points = [(c, _find(results, f"{backend}/RS256", rpc, c)) for c in levels]
            xs = [c for c, m in points if m]
            ys = [m["rps"] for _, m in points if m]
            if xs:
                axis.plot(xs, ys, marker="o", label=rpc)
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(c) for c in levels])
        axis.set_xlabel("calls in flight")
        axis.set_title(f"{backend}, RS256")
        axis.grid(True, alpha=0.3)
    axes[0].set_ylabel("RPC/s (server and load generator share 2 cores)")
    axes[-1].legend(fontsize=8)
    figure.suptitle(f"session-authority: throughput vs concurrency ({results['meta']['started']})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


HEADER = """# Benchmarks

Generated by `make bench-report` from `bench/results/latest.json` (written by
`make bench`); do not edit by hand. What the harness does and why is in
`bench/` (one module per concern; `bench/suite.py` lists the phases).

- `make bench`: every benchmark, a few minutes plus the memory step (1,000,000
  creates by default; `python -m bench --memory-creates N`), then the table and
  every target's PASS/FAIL; PostgreSQL when `SESSION_AUTHORITY_TEST_POSTGRES_DSN`
  is set (a database is created for the run and dropped after it).
- `make bench-smoke`: every benchmark for a fraction of a second, no thresholds
  (CI); PostgreSQL only when `SESSION_AUTHORITY_TEST_POSTGRES_DSN` is set.
- `make bench-report`: this page and its chart from the latest full run.
- `python -m bench.profile RPC`: where the server's CPU goes for one RPC (py-spy).

The load generator runs in processes of its own (grpc.aio, requests serialised
up front, responses kept as bytes), so its CPU per call is the same against the
product and against the ceiling: the product's own server code (`app.start_server`,
same options, interceptors and services) with every method answered at once by a
canned response of the real size.
"""


def render(results: dict[str, Any], doc: Path = DOC, image: Path = CHART) -> None:
    chart(results, image)
    findings = FINDINGS.read_text() if FINDINGS.exists() else ""
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(
        HEADER
        + f"\n![Throughput vs concurrency]({image.name})\n\n"
        + markdown(results)
        + ("\n" + findings if findings else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="render docs/benchmarks.md from results")
    parser.add_argument("results", nargs="?", type=Path, default=LATEST)
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DOC.parent,
        help="where benchmarks.md and benchmarks.png go (default docs/)",
    )
    args = parser.parse_args()
    if not args.results.exists():
        raise SystemExit(f"{args.results} does not exist: run `make bench` first")
    doc, image = args.output_dir / DOC.name, args.output_dir / CHART.name
    render(json.loads(args.results.read_text()), doc, image)
    print(f"wrote {doc} and {image}")


if __name__ == "__main__":
    main()
