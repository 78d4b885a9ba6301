"""Instructions per tick under callgrind: alive_worker's tick against the C reference's, in one cluster.

CPU time on a shared machine moves with the neighbours; instructions do not.
The postmaster runs under callgrind (its children are forks of it, so every
backend does too), collecting only inside each worker's tick function
(--toggle-collect: alive_worker.c's worker_run_tick, the C reference's
run_tick), both workers preloaded and ticking, and dumping its counts after
each tick (--dump-after): one file per tick and process.  The figure is the
median over the ticks after the first few (which prepare the plans and
start what Python keeps).  callgrind runs the code some 50 times slower,
which changes no instruction count.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from pathlib import Path

from cluster import Cluster
from common import ALIVE, REF, SERVER_USER, Figures, log, worker_key, worker_settings

TICK_FUNCTIONS = {ALIVE: "worker_run_tick", REF: "run_tick"}
WARM_UP_TICKS = 10  # left out: the first prepare the plans and start what Python keeps
COUNT_SECONDS = 20.0
INTERVAL = "50ms"


def callgrind_total(path: Path) -> int:
    """The instructions (Ir) in a callgrind dump: its totals line (on PostgreSQL 15 its summary line
    is garbage, a negative number, in dumps after the first)."""
    match = re.search(r"^totals:\s+(\d+)", path.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no totals in {path}")
    return int(match.group(1))


def measure_instructions(cluster: Cluster, figures: Figures) -> None:
    out = cluster.run_dir / "callgrind"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir()
    subprocess.run(["chown", SERVER_USER, str(out)], check=True)
    cluster.configure(
        shared_preload_libraries="alive_worker,alive_worker_ref",
        synchronous_commit="off",
        # Under callgrind a tick takes milliseconds: the default timeout would fail some.
        **{"alive_worker.tick_timeout": "10s"},
        **worker_settings(ALIVE, interval=INTERVAL),
        **worker_settings(REF, interval=INTERVAL),
    )
    command = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        *(f"--toggle-collect={name}" for name in TICK_FUNCTIONS.values()),
        *(f"--dump-after={name}" for name in TICK_FUNCTIONS.values()),
        f"--callgrind-out-file={out}/callgrind.out.%p",
        f"{cluster.bindir}/postgres",
        "-D",
        str(cluster.data),
    ]
    env = ["env", "-i", f"PATH={cluster.bindir}:/usr/bin:/bin", "LANG=C.UTF-8", "TZ=UTC"]
    with open(cluster.log_file, "a") as server_log:
        postmaster = subprocess.Popen(
            ["runuser", "-u", SERVER_USER, "--", *env, *command], stdout=server_log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                cluster.sql("SELECT 1")
                break
            except Exception:
                if time.monotonic() > deadline or postmaster.poll() is not None:
                    raise
                time.sleep(0.5)
        pids = {worker: cluster.worker_pid(worker, timeout=60) for worker in (ALIVE, REF)}
        time.sleep(COUNT_SECONDS)
    finally:
        cluster.as_server_user(
            f"{cluster.bindir}/pg_ctl", "-D", str(cluster.data), "-m", "fast", "-w", "stop", check=False
        )
        postmaster.wait(timeout=120)
    for worker, pid in pids.items():
        # One dump after each tick, numbered from 1: the first ticks prepare what the others keep.
        dumps = sorted(out.glob(f"callgrind.out.{pid}.*"), key=lambda path: int(path.suffix[1:]))
        per_tick = [callgrind_total(path) for path in dumps[WARM_UP_TICKS:]]
        if not per_tick:
            raise RuntimeError(f"callgrind dumped no ticks of process {pid} into {out}")
        key = worker_key(worker)
        figures.put(f"{key}.instructions_per_tick", statistics.median(per_tick))
        figures.put(f"{key}.instructions_per_tick_quartiles", statistics.quantiles(per_tick, n=4))
        figures.put(f"{key}.instructions_ticks", len(per_tick))
        log(
            f"{worker}: {statistics.median(per_tick):,.0f} instructions per tick "
            f"(callgrind, median of {len(per_tick)} ticks)"
        )
