"""Where a server's CPU goes under load: py-spy samples the product server while
the load generator drives one RPC, then the samples are summed per function.

    python -m bench.profile GetSession
    python -m bench.profile RefreshSession --backend postgresql --seconds 20

Writes the collapsed stacks (flamegraph input) to bench/results/profile-*.txt and
prints the functions with the largest share of samples, inclusive and self.
py-spy is not a dependency of the project: `pip install py-spy` first.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import rpcs
from .databases import postgres_database, sqlite_database
from .loadgen import CHAIN, CYCLE, ONCE, Job, LoadGenerator
from .servers import ServerProcess, start_product

RESULTS = Path(__file__).resolve().parent / "results"
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_SITE = re.compile(r".*/(site-packages|lib/python3\.\d+)/")


def _frame(raw: str) -> str:
    match = _FRAME.match(raw.strip())
    if not match:
        return raw.strip()
    where = _SITE.sub("", match["file"]).replace(str(Path.cwd()) + "/", "")
    return f"{match['function']} ({where})"


def summarize(collapsed: Path, top: int) -> str:
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_frame(f) for f in stack.split(";") if f]
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return "no samples"
    lines = [f"{total} samples (threads doing work)", "", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def _prepare(loadgen: LoadGenerator, server: ServerProcess, rpc: str) -> Job:
    """Sessions to work on, then the job that drives rpc."""
    create = Job(rpcs.CREATE, rpcs.create_requests(), 64, 3.0, 0.5, collect=20_000)
    created = [rpcs.issued_from_create(b) for b in loadgen.run(server, create).responses]
    if rpc == rpcs.CREATE:
        return Job(rpc, rpcs.create_requests(), 64, 0, 0.5)
    if rpc in (rpcs.GET, rpcs.GET_DB):
        check = rpc == rpcs.GET_DB
        requests = [rpcs.get_session_request(i.access_token, check_database=check) for i in created]
        return Job(rpcs.METHOD_OF[rpc], requests[:1000], 64, 0, 0.5, mode=CYCLE)
    if rpc == rpcs.REFRESH:
        requests = [rpcs.refresh_request(i.refresh_token) for i in created[:128]]
        return Job(rpc, requests, 64, 0, 0.5, mode=CHAIN)
    return Job(rpc, [rpcs.revoke_request(i.handle) for i in created], 64, 0, 0.5, mode=ONCE)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("rpc", choices=rpcs.LABELS)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--algorithm", choices=["RS256", "ES256", "EdDSA"], default="RS256")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--native", action="store_true", help="C frames too (pauses the server)")
    parser.add_argument(
        "--dsn", default=os.environ.get("SESSION_AUTHORITY_TEST_POSTGRES_DSN"), help="PostgreSQL"
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    if args.backend == "postgresql" and not args.dsn:
        raise SystemExit("--dsn or SESSION_AUTHORITY_TEST_POSTGRES_DSN is needed")
    name = args.rpc.replace("(", "-").replace(")", "")
    output = RESULTS / f"profile-{args.backend}-{args.algorithm}-{name}.txt"
    database = sqlite_database() if args.backend == "sqlite" else postgres_database(args.dsn)
    with (
        LoadGenerator(2) as loadgen,
        database as url,
        start_product("profiled", url, algorithm=args.algorithm) as server,
    ):
        job = _prepare(loadgen, server, args.rpc)
        job.concurrency = args.concurrency
        job.duration_s = args.seconds
        record = subprocess.Popen(  # samples the warm-up too; it is short
            [
                spy,
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(int(args.seconds)),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(output),
                *(["--native"] if args.native else ["--nonblocking"]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        measured = loadgen.run(server, job).summary()
        _, errors = record.communicate(timeout=args.seconds + 60)
    if record.returncode:
        raise SystemExit(f"py-spy failed: {errors}")
    print(
        f"{args.rpc} on {args.backend} ({args.algorithm}), c={args.concurrency}: "
        f"{measured['rps']:.0f} RPC/s under the profiler, "
        f"server {measured['server_cpu_us_per_call']:.0f} µs CPU/call "
        f"(main thread {measured['server_main_thread_cpu_us_per_call']:.0f})\n"
    )
    print(summarize(output, args.top))
    print(f"\ncollapsed stacks: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
