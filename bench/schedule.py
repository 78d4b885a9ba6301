"""The schedule: drift and lateness of both workers at 100 ms, idle and under pgbench."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from clients import pgbench_tps, run_pgbench
from cluster import Cluster
from common import ALIVE, DRIFT_TICKS, LOAD_SECONDS, REF, SERVER_USER, Figures, log, worker_key
from lateness import drift_us, lateness_naive, lateness_on_grid, percentile


def measure_schedule(cluster: Cluster, figures: Figures, script: Path) -> None:
    """Both workers at 100 ms: drift and lateness idle, then under pgbench -c 8."""
    interval_us = 100_000
    marks = {worker: cluster.last_pk(worker) for worker in (ALIVE, REF)}
    for worker in (ALIVE, REF):
        cluster.wait_for_pk(worker, marks[worker] + 1, timeout=5)
    marks = {worker: cluster.last_pk(worker) for worker in (ALIVE, REF)}
    log(f"both workers at 100 ms for {DRIFT_TICKS} ticks ({DRIFT_TICKS * interval_us / 1e6:.0f} s)")
    for worker in (ALIVE, REF):
        cluster.wait_for_pk(worker, marks[worker] + DRIFT_TICKS, timeout=DRIFT_TICKS * 0.2 + 30)
    series: dict[str, Any] = {}
    for worker in (ALIVE, REF):
        ticks = cluster.ticks(worker, marks[worker], marks[worker] + DRIFT_TICKS)
        late = lateness_on_grid(ticks, interval_us) if worker == ALIVE else lateness_naive(ticks, interval_us)
        key = worker_key(worker)
        figures.put(f"{key}.drift_us", drift_us(ticks, interval_us))
        figures.put(f"{key}.idle.lateness_p50_us", percentile([s for _, s, _ in late], 0.5))
        figures.put(f"{key}.idle.lateness_p99_us", percentile([s for _, s, _ in late], 0.99))
        series[f"{key}.idle"] = late
    log(f"drift over {DRIFT_TICKS} ticks: alive_worker {figures.values['alive.drift_us'] / 1000:.2f} ms, "
        f"C reference {figures.values['ref.drift_us'] / 1000:.1f} ms")  # fmt: skip

    # The load: pgbench's own TPC-B-like transactions, 8 clients.
    subprocess.run(
        [str(cluster.bindir / "pgbench"), "-h", str(cluster.run_dir), "-p", str(cluster.port), "-U", SERVER_USER,
         "-i", "-q", "-s", "4", "postgres"],
        check=True, capture_output=True,
    )  # fmt: skip
    marks = {worker: cluster.last_pk(worker) for worker in (ALIVE, REF)}
    log(f"both workers at 100 ms under pgbench -c 8 -j 2 for {LOAD_SECONDS:.0f} s")
    load_tps = pgbench_tps(run_pgbench(cluster, ["-c", "8", "-j", "2"], LOAD_SECONDS))
    figures.put("load.pgbench_tps", load_tps)
    for worker in (ALIVE, REF):
        ticks = cluster.ticks(worker, marks[worker])
        late = lateness_on_grid(ticks, interval_us) if worker == ALIVE else lateness_naive(ticks, interval_us)
        # The ticks written while pgbench ran, less the few after it stopped.
        late = late[: int(LOAD_SECONDS * 1e6 / interval_us)]
        key = worker_key(worker)
        figures.put(f"{key}.load.lateness_p50_us", percentile([s for _, s, _ in late], 0.5))
        figures.put(f"{key}.load.lateness_p99_us", percentile([s for _, s, _ in late], 0.99))
        series[f"{key}.load"] = late
    figures.put("series", {name: [(d, s) for d, s, _ in late] for name, late in series.items()})
