"""Issue 25's figures: CPU per tick against the C reference, and memory per worker for 1, 8 and 32 databases.

Run alone by ``make bench BENCH_ARGS=--cost-only`` (about 3 minutes).  CPU
per tick comes from tick_cost's paired rounds (sync commit off); memory from
a cluster started once for each count of databases, alive_worker with one
worker per database (``alive_worker.databases``) and, separately, the C
reference with as many workers (``alive_worker_ref.workers``), every worker
ticking at 100 ms.  A worker's memory is the PSS of its private mappings
(procfs.private_pss_kb), its median over the workers; one worker's of each
count is also broken down by kind of mapping (memory_by_kind).
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from typing import Any

from cluster import Cluster, running
from common import ALIVE, REF, Figures, log, worker_key, worker_settings
from instructions import measure_instructions
from procfs import private_pss_kb
from tick_cost import measure_ticks_at_10ms

DATABASE_COUNTS = (1, 8, 32)
# Not 10 ms: 32 workers at 10 ms on 2 shared cores miss their tick timeout
# (and on the code before issue 25 one such worker exited); memory does not
# depend on the interval.
MEMORY_INTERVAL = "100ms"
# A worker's memory falls for some seconds after its start (7.4 MB at 2 s, 7.0 MB
# at 10 s, 8 databases on PG 18), and a loaded host starts 32 workers slowly.
MEMORY_SETTLE_SECONDS = 10.0

KINDS = (
    "libpython text",
    "libpython data",
    "Python extension modules",
    "postgres binary",
    "other libraries",
    "heap and anonymous",
    "stack and the rest",
)


def mapping_kind(path: str, perms: str) -> str:
    """What a private mapping holds, by its path and permissions."""
    if "libpython" in path:
        return "libpython text" if "x" in perms else "libpython data"
    if path.endswith(".so") and ("python" in path or "alive_worker" in path):
        return "Python extension modules"
    if path.endswith("/postgres"):
        return "postgres binary"
    if ".so" in path:
        return "other libraries"
    if path in ("", "[heap]"):
        return "heap and anonymous"
    return "stack and the rest"


COUNTERS = ("Pss", "Private_Dirty", "Private_Clean", "Shared_Clean")


def memory_by_kind(pid: int) -> dict[str, dict[str, int]]:
    """kB of each counter by kind of private mapping (shared memory left out, as in private_pss_kb)."""
    totals: dict[str, dict[str, int]] = {kind: dict.fromkeys(COUNTERS, 0) for kind in KINDS}
    kind: str | None = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            perms = fields[1]
            path = fields[5] if len(fields) > 5 else ""
            kind = mapping_kind(path, perms) if perms.endswith("p") else None
        elif kind is not None and fields[0].rstrip(":") in COUNTERS:
            totals[kind][fields[0].rstrip(":")] += int(fields[1])
    return totals


def worker_pids(cluster: Cluster, backend_type: str, count: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        rows = cluster.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", [backend_type])
        if len(rows) >= count:
            return sorted(int(row[0]) for row in rows)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(rows)} of {count} {backend_type} processes after {timeout:.0f} s")
        time.sleep(0.1)


def measure_memory_per_database(cluster: Cluster, figures: Figures) -> None:
    """Private PSS per worker, each worker at 10 ms, for 1, 8 and 32 databases, against the C reference."""
    with running(cluster):
        existing = {row[0] for row in cluster.sql("SELECT datname FROM pg_database")}
        for number in range(1, max(DATABASE_COUNTS)):
            if f"bench{number}" not in existing:
                cluster.sql(f"CREATE DATABASE bench{number}")
    for count in DATABASE_COUNTS:
        databases = ",".join(["postgres", *(f"bench{number}" for number in range(1, count))])
        for worker, settings in (
            (
                ALIVE,
                {
                    "shared_preload_libraries": "alive_worker",
                    "alive_worker.databases": databases,
                    # A first tick that outlasts the default timeout on a loaded host fails,
                    # and its error imports logging and traceback: 2 MB more, in that worker only.
                    "alive_worker.tick_timeout": "10s",
                },
            ),
            (REF, {"shared_preload_libraries": "alive_worker_ref", "alive_worker_ref.workers": str(count)}),
        ):
            with running(
                cluster,
                max_worker_processes=str(count + 8),
                synchronous_commit="off",
                **settings,
                **worker_settings(worker, interval=MEMORY_INTERVAL),
            ):
                pids = worker_pids(cluster, worker, count)
                time.sleep(MEMORY_SETTLE_SECONDS)
                each = []
                for pid in pids:
                    try:
                        each.append(private_pss_kb(pid))
                    except FileNotFoundError:
                        log(f"{worker} {pid} exited before its memory was read; see {cluster.log_file}")
                key = f"{worker_key(worker)}.databases_{count}"
                figures.put(f"{key}.private_pss_kb", statistics.median(each))
                figures.put(f"{key}.private_pss_kb_each", each)
                figures.put(f"{key}.memory_by_kind_kb", memory_by_kind(pids[-1]))
            log(f"{worker}, {count} database(s): private PSS per worker {statistics.median(each):,.0f} kB")


def measure_cost(cluster: Cluster, figures: Figures) -> None:
    both = "alive_worker,alive_worker_ref"
    with running(cluster, shared_preload_libraries=both):
        measure_ticks_at_10ms(cluster, figures, "off")
    measure_memory_per_database(cluster, figures)
    measure_instructions(cluster, figures)


def cost_table(values: dict[str, Any]) -> str:
    """The figures of issue 25 as a Markdown table."""

    rounds = values["alive.sync_off.cpu_ratio_quartiles"]
    lines = [
        "| figure | alive_worker | C reference | alive_worker - C | ratio |",
        "|---|---:|---:|---:|---:|",
        f"| CPU per tick, 10 ms, sync commit off (median of paired rounds; ratio's quartiles "
        f"{rounds[0]:.2f}-{rounds[1]:.2f}) | {values['alive.sync_off.cpu_per_tick_us']:.1f} µs | "
        f"{values['ref.sync_off.cpu_per_tick_us']:.1f} µs | | {values['alive.sync_off.cpu_ratio_to_ref']:.2f}x |",
    ]
    for count in DATABASE_COUNTS:
        alive = float(values[f"alive.databases_{count}.private_pss_kb"])
        ref = float(values[f"ref.databases_{count}.private_pss_kb"])
        lines.append(
            f"| private PSS per worker, {count} database(s) | {alive:,.0f} kB | {ref:,.0f} kB | "
            f"{(alive - ref) / 1024:+.1f} MB | {alive / ref:.2f}x |"
        )
    if "alive.instructions_per_tick" in values:
        alive_i = float(values["alive.instructions_per_tick"])
        ref_i = float(values["ref.instructions_per_tick"])
        lines.append(
            f"| instructions per tick (callgrind) | {alive_i:,.0f} | {ref_i:,.0f} | | {alive_i / ref_i:.2f}x |"
        )
    for count in DATABASE_COUNTS:
        by_kind = values[f"alive.databases_{count}.memory_by_kind_kb"]
        ref_kind = values[f"ref.databases_{count}.memory_by_kind_kb"]
        lines += [
            "",
            f"One worker's private mappings by kind with {count} database(s), kB (alive_worker / C reference):",
            "",
            "| kind | " + " | ".join(COUNTERS) + " |",
            "|---|" + "---:|" * len(COUNTERS),
        ]
        for kind in KINDS:
            cells = [f"{by_kind[kind][c]:,} / {ref_kind[kind][c]:,}" for c in COUNTERS]
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
