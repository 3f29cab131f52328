"""Derived figures and the targets of issue 6, from one run's results.

Efficiency of an RPC = floor / actual server CPU per call, at the efficiency
concurrency, where the floor is the empty RPC of the same sizes (the ceiling
server's CPU per call in this run) + the bare signature work it needs + the bare
storage statement it needs.

`--workers 2` vs one process: two cores are shared by the server and the load
generator, so raw throughput cannot show what two workers add (the load
generator takes the second core). Each configuration's capacity is projected
from the server's own CPU per call instead, the load generator's CPU left out:

    capacity = min(processes / main-thread CPU per call,   # one GIL per process
                   cores / all-threads CPU per call)        # the machine

(the event loop, where the Python work runs, is each process's main thread).
"""

from __future__ import annotations

import math
import os
from typing import Any

from .rpcs import CREATE, GET, GET_DB, LABELS, REFRESH, REVOKE

# The connect phase's rows (bench/suite.py CONNECT_FORMS): one server, three forms.
CONNECT_SERVER = "sqlite/RS256 connect"
CONNECT_GRPC = f"{CONNECT_SERVER} gRPC"
CONNECT_FORMS = {
    "JSON": f"{CONNECT_SERVER} Connect JSON",
    "binary": f"{CONNECT_SERVER} Connect binary",
}
CONNECT_RPCS = (CREATE, GET)

CRYPTO_NEEDED = {CREATE: "sign_us", GET: "verify_us", GET_DB: "verify_us", REFRESH: "sign_us"}
STORAGE_NEEDED = {
    CREATE: "insert_us",
    GET_DB: "select_us",
    REFRESH: "update_us",
    REVOKE: "delete_us",
}
EFFICIENCY_TARGETS = {"sqlite": 0.67, "postgresql": 0.5}
EFFICIENCY_RPCS = (GET, GET_DB, CREATE, REFRESH)
GET_VS_EMPTY_TARGET = 0.60
LOCAL_VS_JWT_TARGET = 1.0
WORKERS_TARGET = 1.5
MEMORY_TARGET = 1.5
CONNECT_VS_GRPC_TARGET = 0.67


def row(results: dict[str, Any], server: str, rpc: str, concurrency: int) -> dict[str, Any] | None:
    for measured in results["measurements"]:
        if (measured["server"], measured["rpc"], measured["concurrency"]) == (
            server,
            rpc,
            concurrency,
        ):
            return measured  # type: ignore[no-any-return]
    return None


def efficiency(results: dict[str, Any]) -> list[dict[str, Any]]:
    level = results["config"]["efficiency_level"]
    crypto = results["floors"].get("crypto", {}).get("RS256")
    rows = []
    for backend in ("sqlite", "postgresql"):
        storage = results["floors"].get(backend)
        layer = results.get("store_layer", {}).get(backend, {})
        for rpc in LABELS:
            actual = row(results, f"{backend}/RS256", rpc, level)
            empty = row(results, f"ceiling/{backend}", rpc, level)
            if actual is None or empty is None or crypto is None or storage is None:
                continue
            parts = {
                "empty_rpc_us": empty["server_cpu_us_per_call"],
                "crypto_us": crypto[CRYPTO_NEEDED[rpc]] if rpc in CRYPTO_NEEDED else 0.0,
                "storage_us": storage[STORAGE_NEEDED[rpc]] if rpc in STORAGE_NEEDED else 0.0,
            }
            floor = sum(parts.values())
            measured = actual["server_cpu_us_per_call"]
            # Attribution: the product's store in place of the bare statement;
            # what is left is gRPC handling, protobuf, JSON and the recipe logic.
            store_layer = layer.get(STORAGE_NEEDED[rpc]) if rpc in STORAGE_NEEDED else 0.0
            rows.append(
                {
                    "backend": backend,
                    "rpc": rpc,
                    "concurrency": level,
                    **parts,
                    "floor_us": round(floor, 1),
                    "actual_us": measured,
                    "efficiency": round(floor / measured, 3) if measured else math.nan,
                    "store_layer_us": store_layer,
                    "rest_us": None
                    if store_layer is None
                    else round(
                        measured - parts["empty_rpc_us"] - parts["crypto_us"] - store_layer, 1
                    ),
                }
            )
    return rows


def capacity(summary: dict[str, Any], processes: int, cores: int) -> float:
    """Calls per second the server could serve with the whole machine to itself."""
    gil = processes * 1e6 / summary["server_main_thread_cpu_us_per_call"]
    machine = cores * 1e6 / summary["server_cpu_us_per_call"]
    return min(gil, machine)


def workers_scaling(results: dict[str, Any]) -> dict[str, Any] | None:
    measured = results.get("workers")
    if not measured:
        return None
    cores = results["meta"].get("cpu_count") or os.cpu_count() or 2
    single = capacity(measured["single"], 1, cores)
    double = capacity(measured["workers2"], 2, cores)
    return {
        "cores": cores,
        "single_capacity_rps": round(single),
        "workers2_capacity_rps": round(double),
        "ratio": round(double / single, 3),
        "raw_ratio": round(measured["workers2"]["rps"] / measured["single"]["rps"], 3),
    }


def _target(
    name: str, measured: float | None, threshold: float, detail: str, skip: str | None = None
) -> dict[str, Any]:
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        status = "SKIP"
    else:
        status = "PASS" if measured >= threshold else "FAIL"
    return {
        "name": name,
        "measured": None if measured is None else round(measured, 3),
        "threshold": threshold,
        "status": status,
        "detail": skip if status == "SKIP" and skip else detail,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    level = results["config"]["efficiency_level"]
    by_key = {(r["backend"], r["rpc"]): r for r in results.get("efficiency", [])}
    for backend, threshold in EFFICIENCY_TARGETS.items():
        for rpc in EFFICIENCY_RPCS:
            entry = by_key.get((backend, rpc))
            detail = (
                f"floor {entry['floor_us']:.0f} µs / actual {entry['actual_us']:.0f} µs "
                f"server CPU per call at c={level}"
                if entry
                else ""
            )
            found.append(
                _target(
                    f"efficiency {rpc} on {backend} (RS256)",
                    entry["efficiency"] if entry else None,
                    threshold,
                    detail,
                    results.get("skipped", {}).get(backend, "not measured in this run"),
                )
            )

    get = row(results, "sqlite/RS256", GET, level)
    empty = row(results, "ceiling/sqlite", GET, level)
    found.append(
        _target(
            f"GetSession throughput vs empty RPC at c={level} (SQLite, RS256)",
            get["rps"] / empty["rps"] if get and empty else None,
            GET_VS_EMPTY_TARGET,
            f"{get['rps']:.0f} vs {empty['rps']:.0f} RPC/s" if get and empty else "",
            "not measured in this run",
        )
    )

    local = results.get("local_verification", {}).get("RS256")
    found.append(
        _target(
            "local verification vs bare jwt.decode (RS256)",
            local["sdk_get_session_per_s"] / local["jwt_decode_per_s"] if local else None,
            LOCAL_VS_JWT_TARGET,
            f"{local['sdk_get_session_per_s']:,} vs {local['jwt_decode_per_s']:,} "
            "verifications per CPU-second"
            if local
            else "",
            "not measured in this run",
        )
    )

    scaling = results.get("workers_scaling")
    found.append(
        _target(
            "--workers 2 vs 1 process, GetSession capacity (load generator CPU excluded)",
            scaling["ratio"] if scaling else None,
            WORKERS_TARGET,
            f"{scaling['workers2_capacity_rps']:,} vs {scaling['single_capacity_rps']:,} RPC/s "
            f"projected; raw {scaling['raw_ratio']:.2f}x on shared cores"
            if scaling
            else "",
            "not measured in this run",
        )
    )

    for rpc in CONNECT_RPCS:
        grpc_row = row(results, CONNECT_GRPC, rpc, level)
        for form, server in CONNECT_FORMS.items():
            connect_row = row(results, server, rpc, level)
            both = grpc_row is not None and connect_row is not None
            found.append(
                _target(
                    f"Connect {form} / gRPC throughput, {rpc} at c={level} (SQLite, RS256)",
                    connect_row["rps"] / grpc_row["rps"] if both else None,
                    CONNECT_VS_GRPC_TARGET,
                    f"{connect_row['rps']:.0f} vs {grpc_row['rps']:.0f} RPC/s; server "
                    f"{connect_row['server_cpu_us_per_call']:.0f} vs "
                    f"{grpc_row['server_cpu_us_per_call']:.0f} µs/call"
                    if both
                    else "",
                    "not measured in this run",
                )
            )

    memory = results.get("memory")
    # Lower is better here: report large/small and pass when within the bound.
    if memory:
        ratio = memory["ratio"]
        found.append(
            {
                "name": f"memory: RSS after {memory['creates']:,} creates "
                f"vs after {memory['creates_small']:,} (SQLite)",
                "measured": ratio,
                "threshold": MEMORY_TARGET,
                "status": "PASS" if ratio <= MEMORY_TARGET else "FAIL",
                "detail": f"{memory['rss_large_mb']:.0f} MB vs {memory['rss_small_mb']:.0f} MB "
                "(at most 1.5x)",
            }
        )
    else:
        found.append(
            {
                "name": "memory: RSS after 1,000,000 creates vs after 10,000 (SQLite)",
                "measured": None,
                "threshold": MEMORY_TARGET,
                "status": "SKIP",
                "detail": "not measured in this run",
            }
        )
    return found


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """Add the derived figures and the targets to the results."""
    results["efficiency"] = efficiency(results)
    results["workers_scaling"] = workers_scaling(results)
    results["targets"] = targets(results)
    return results
