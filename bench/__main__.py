"""`python -m bench`: run every benchmark, write bench/results/latest.json, print
the tables and one PASS/FAIL line per target of issue 6.

    python -m bench                      # the full run (`make bench`)
    python -m bench --smoke              # seconds per benchmark, no thresholds (CI)
    python -m bench --memory-creates 100000 --phases floors,sqlite

PostgreSQL: the server of SESSION_AUTHORITY_TEST_POSTGRES_DSN (or --postgres-dsn);
a database is created for the run and dropped after it. Without a DSN the
PostgreSQL phase is skipped, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .loadgen import LoadGenerator
from .report import markdown, target_lines
from .suite import PHASES, BenchConfig, Suite
from .targets import derive

RESULTS = Path(__file__).resolve().parent / "results"
DSN_VARIABLE = "SESSION_AUTHORITY_TEST_POSTGRES_DSN"
SMOKE = {
    "duration_s": 0.5,
    "warmup_s": 0.2,
    "micro_s": 0.1,
    "floor_statements": 100,
    "collect_cap": 4000,
    "memory_creates": 2000,
}
SMOKE_MAX_ERROR_RATE = 0.01


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every benchmark briefly (CI)")
    parser.add_argument("--duration", type=float, help="seconds per measured window")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each window")
    parser.add_argument(
        "--memory-creates",
        type=int,
        help="creates in the memory step (default 1,000,000; RSS compared with N/100, "
        "at most 10,000)",
    )
    parser.add_argument(
        "--memory-algorithm", choices=["RS256", "ES256", "EdDSA"], help="default EdDSA"
    )
    parser.add_argument("--memory-synchronous", choices=["FULL", "NORMAL"], help="default NORMAL")
    parser.add_argument(
        "--sqlite-synchronous",
        choices=["FULL", "NORMAL"],
        help="the servers' and the SQLite floor's setting (default FULL, the product's)",
    )
    parser.add_argument("--postgres-dsn", help=f"default: ${DSN_VARIABLE}")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)}",
    )
    parser.add_argument("--output", type=Path, help="results file (default bench/results/...)")
    parser.add_argument("--note", default="", help="recorded with the run and in the report")
    return parser


def config_from(args: argparse.Namespace) -> BenchConfig:
    values: dict[str, Any] = dict(SMOKE) if args.smoke else {}
    values["smoke"] = args.smoke
    for option, name in (
        ("duration", "duration_s"),
        ("warmup", "warmup_s"),
        ("memory_creates", "memory_creates"),
        ("memory_algorithm", "memory_algorithm"),
        ("memory_synchronous", "memory_synchronous"),
        ("sqlite_synchronous", "sqlite_synchronous"),
    ):
        if getattr(args, option) is not None:
            values[name] = getattr(args, option)
    phases = tuple(p.strip() for p in args.phases.split(",") if p.strip())
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    values["phases"] = phases
    values["note"] = args.note
    dsn = args.postgres_dsn or os.environ.get(DSN_VARIABLE)
    values["postgres_dsn"] = dsn or None
    if not dsn:
        values["postgres_skip_reason"] = f"{DSN_VARIABLE} is not set"
    return BenchConfig(**values)


def smoke_problems(results: dict[str, Any]) -> list[str]:
    """What says the harness itself is broken (not slow): failed calls."""
    problems = []
    rows = list(results["measurements"])
    for key in ("single", "workers2"):
        if key in results.get("workers", {}):
            rows.append({"server": key, "rpc": "GetSession", **results["workers"][key]})
    for row in rows:
        errors = sum(row["errors"].values())
        if errors > SMOKE_MAX_ERROR_RATE * max(row["calls"] + errors, 1):
            problems.append(f"{row['server']} {row['rpc']} c={row['concurrency']}: {row['errors']}")
    memory = results.get("memory")
    if memory and sum(memory["errors"].values()):
        problems.append(f"memory step: {memory['errors']}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = config_from(args)
    output = args.output or RESULTS / ("smoke.json" if config.smoke else "latest.json")
    with LoadGenerator(config.loadgen_processes) as loadgen:
        results = derive(Suite(config, loadgen).run())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(markdown(results, with_targets=False))
    print(f"results: {output}")
    if config.smoke:
        problems = smoke_problems(results)
        for problem in problems:
            print(f"smoke: calls failed: {problem}", file=sys.stderr)
        print("smoke run: no thresholds checked; every benchmark ran" if not problems else "")
        return 1 if problems else 0
    for line in target_lines(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
