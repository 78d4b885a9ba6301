"""Starting and stopping: the first heartbeat after a start, and a stop, with and without a blocking hook."""

from __future__ import annotations

import os
import re
import signal
import statistics
import time
from datetime import UTC, datetime

from cluster import Cluster
from common import ALIVE, STARTS, TABLES, Figures, log, worker_key, worker_settings
from procfs import wait_for_exit


def first_commit_after(cluster: Cluster, worker: str, ready: datetime, timeout: float = 10.0) -> float:
    """Milliseconds from ready to the first heartbeat committed after it."""
    deadline = time.monotonic() + timeout
    while True:
        rows = cluster.sql(
            "SELECT extract(epoch FROM min(pg_xact_commit_timestamp(xmin)) - %s) * 1000"
            f" FROM {TABLES[worker]} WHERE pg_xact_commit_timestamp(xmin) >= %s",
            [ready, ready],
        )
        if rows[0][0] is not None:
            return float(rows[0][0])
        if time.monotonic() > deadline:
            raise RuntimeError(f"{worker} wrote no heartbeat within {timeout:.0f} s; see {cluster.log_file}")
        time.sleep(0.05)


def measure_start_and_stop(cluster: Cluster, worker: str, figures: Figures, preload: str) -> None:
    """First heartbeat after the server accepts connections, and SIGTERM mid-sleep to exit."""
    first, stop = [], []
    for _ in range(STARTS):
        log_mark = cluster.log_file.stat().st_size
        cluster.start(shared_preload_libraries=preload, **worker_settings(worker, interval="10s"))
        new_log = cluster.log_file.read_bytes()[log_mark:].decode(errors="replace")
        match = re.search(
            r"^(\S+ \S+) UTC \[\d+\] LOG:  database system is ready to accept connections", new_log, re.M
        )
        if match is None:
            raise RuntimeError(f"no 'ready to accept connections' in {cluster.log_file}")
        ready = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        first.append(first_commit_after(cluster, worker, ready))
        # Mid-sleep: the next tick is 10 s away.
        pid = cluster.worker_pid(worker)
        time.sleep(1.0)
        started = time.perf_counter()
        os.kill(pid, signal.SIGTERM)
        wait_for_exit(pid, timeout=10)
        stop.append((time.perf_counter() - started) * 1000)
        cluster.stop()
    key = worker_key(worker)
    figures.put(f"{key}.first_heartbeat_ms", first)
    figures.put(f"{key}.stop_ms", stop)
    log(
        f"{worker}: first heartbeat {statistics.median(first):.0f} ms, stop {statistics.median(stop):.1f} ms (medians)"
    )


# What a hook does from its first tick on, once it has touched its marker file.
BLOCKING_HOOKS = {"busy_loop": "while True:\n        pass", "sleep": "time.sleep(60)"}


def measure_stop_with_hook(cluster: Cluster, figures: Figures) -> None:
    """SIGTERM to exit while alive_worker.hook is in a busy loop, then in time.sleep."""
    for kind, body in BLOCKING_HOOKS.items():
        marker = cluster.run_dir / f"hook-{kind}.running"
        hook = cluster.run_dir / f"hook_{kind}.py"
        hook.write_text(
            f"import time\nfrom pathlib import Path\n\ndef hook(tick):\n"
            f"    Path({str(marker)!r}).touch()\n    {body}\n"
        )
        hook.chmod(0o644)
        stop = []
        for _ in range(STARTS):
            marker.unlink(missing_ok=True)
            cluster.start(
                shared_preload_libraries="alive_worker",
                **worker_settings(ALIVE, interval="10s"),
                **{"alive_worker.hook": f"{hook}:hook", "alive_worker.tick_timeout": "1h"},
            )
            pid = cluster.worker_pid(ALIVE)
            deadline = time.monotonic() + 10
            while not marker.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {kind} hook did not start; see {cluster.log_file}")
                time.sleep(0.01)
            time.sleep(0.5)  # well into the loop or the sleep
            started = time.perf_counter()
            os.kill(pid, signal.SIGTERM)
            wait_for_exit(pid, timeout=10)
            stop.append((time.perf_counter() - started) * 1000)
            cluster.stop()
        figures.put(f"alive.stop_hook_{kind}_ms", stop)
        log(
            f"{ALIVE}: stop with a hook in {kind}: {statistics.median(stop):.1f} ms (median), worst {max(stop):.1f} ms"
        )
