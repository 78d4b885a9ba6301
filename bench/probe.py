"""make bench, clients phase: what the client-path probe costs.

One cluster with alive_worker (100 ms interval) and a probe role.  The probe
runs between ticks, at most once a tick.  Measured, in alternating rounds
with the probe off and at a 100 ms period, polling the view over one kept
connection in both (so that no other backend's CPU is counted):

- CPU per probe: the worker's own CPU plus that of the probe's backends,
  which the postmaster reaps (its cutime/cstime), less the same with the
  probe off, divided by the probes written;
- time per probe: the view's last_probe_ms, sampled after each probe;
- at the default period (30 s): the CPU that costs per second.

Writes probe.json into --out.  Alone:
python bench/probe.py --bindir ... --run-dir ... --out ...
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from cluster import Cluster, running
from common import SERVER_USER, bench_arguments, log

ROUND_SECONDS = 5.0
ROUNDS = 3
PROBE_PERIOD = "100ms"
DEFAULT_PERIOD_S = 30.0
SETUP = [
    "CREATE ROLE alive_probe LOGIN",
    "CREATE TABLE IF NOT EXISTS public.log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now())",
]


def reaped_and_own_ns(postmaster: int, worker: int) -> int:
    """CPU of the worker, and of the postmaster's reaped children (the probes' backends), in ns."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{postmaster}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    reaped = int(fields[13]) + int(fields[14])  # cutime, cstime
    with open(f"/proc/{worker}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    own = int(fields[11]) + int(fields[12])  # utime, stime
    return (reaped + own) * 1_000_000_000 // ticks


def probes(conn: Any) -> tuple[int, float | None]:
    row = conn.execute("SELECT probes_ok + probes_failed, last_probe_ms FROM alive_worker.workers").fetchone()
    return int(row[0]), row[1]


def poll(conn: Any, seconds: float, durations: list[float] | None) -> int:
    """Polls the view every 20 ms for seconds; returns the probes made, keeping their durations."""
    first, _ = probes(conn)
    last = first
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now, ms = probes(conn)
        if now != last and ms is not None and durations is not None:
            durations.append(ms)
        last = now
        time.sleep(0.02)
    return last - first


def run(bindir: Path, run_dir: Path, out: Path, port: int) -> dict[str, Any]:
    cluster = Cluster(bindir, run_dir, port)
    run_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(run_dir, SERVER_USER)
    cluster.initdb()
    settings = {"shared_preload_libraries": "alive_worker", "alive_worker.interval": "100ms"}
    values: dict[str, Any] = {}
    with running(cluster, **settings):
        for statement in SETUP:
            cluster.sql(statement)
        cluster.sql("CREATE EXTENSION alive_worker")
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        worker = cluster.worker_pid("alive worker")
        off_ns: list[float] = []
        on_ns: list[float] = []
        durations: list[float] = []
        with cluster.connect() as conn:
            for _ in range(ROUNDS):
                cluster.reload(**settings)
                start = reaped_and_own_ns(postmaster, worker)
                poll(conn, ROUND_SECONDS, None)
                off_ns.append((reaped_and_own_ns(postmaster, worker) - start) / ROUND_SECONDS)

                cluster.reload(
                    **settings,
                    **{"alive_worker.probe_role": "alive_probe", "alive_worker.probe_interval": PROBE_PERIOD},
                )
                start = reaped_and_own_ns(postmaster, worker)
                done = poll(conn, ROUND_SECONDS, durations)
                spent = reaped_and_own_ns(postmaster, worker) - start
                on_ns.append((spent - off_ns[-1] * ROUND_SECONDS) / max(done, 1))
        failed = cluster.sql("SELECT probes_failed FROM alive_worker.workers")[0][0]
    per_probe_us = statistics.median(on_ns) / 1000
    values = {
        "cpu_us_per_probe": round(per_probe_us, 1),
        "probe_ms_p50": round(statistics.median(durations), 2),
        "probe_ms_p99": round(sorted(durations)[int(0.99 * (len(durations) - 1))], 2),
        "probes_measured": len(durations),
        "probes_failed": failed,
        "cpu_us_per_second_at_default_period": round(per_probe_us / DEFAULT_PERIOD_S, 2),
    }
    log(
        f"probe: {values['cpu_us_per_probe']} us CPU per probe (worker and the probe's backend), "
        f"{values['probe_ms_p50']} ms p50 / {values['probe_ms_p99']} ms p99 per probe over "
        f"{len(durations)} probes; at the default 30 s period {values['cpu_us_per_second_at_default_period']} us CPU/s"
    )
    (out / "probe.json").write_text(json.dumps(values, indent=2) + "\n")
    return values


def main() -> None:
    parser = bench_arguments(__doc__.splitlines()[0], 55700, "unused")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run(args.bindir, args.run_dir, args.out, args.port)


if __name__ == "__main__":
    main()
