"""The hook host (issue 20): stopping with a hook stuck in C code, a statement's round trip, a tick's CPU, the host.

- SIGTERM to the worker's exit while the hook's thread runs a regular
  expression that holds the GIL (and the hook sleeps), from outside by pidfd;
  a cancel request and the postmaster's death to the host's exit, the same way;
- one ``spi.execute("SELECT 1")`` through the host, timed in the hook itself
  with perf_counter, 2000 in a row: median and p99;
- the CPU of a tick at 10 ms with a hook that does nothing, the worker's and
  the host's together (schedstat), against the same worker without a hook;
- the host's start, from Popen to its first message (the worker's DEBUG
  line), and its PSS once it has run a few thousand ticks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import time
from pathlib import Path

from cluster import Cluster, running
from common import ALIVE, STARTS, Figures, log, worker_settings
from procfs import cpu_ns, pss_kb, wait_for_exit

REGEX_HOOK = """
import re, threading, time
from pathlib import Path

def hook(tick):
    Path({marker!r}).touch()
    threading.Thread(target=re.match, args=(r"(a+)+$", "a" * 40 + "b"), daemon=True).start()
    time.sleep(60)
"""

ROUND_TRIP_HOOK = """
import json, time
from pathlib import Path
from alive_worker import spi

def hook(tick):
    out = Path({out!r})
    if out.exists():
        return
    times = []
    for _ in range(2000):
        started = time.perf_counter()
        spi.execute("SELECT 1")
        times.append((time.perf_counter() - started) * 1e6)
    out.write_text(json.dumps(times))
"""

NOOP_HOOK = "def hook(tick):\n    pass\n"
CPU_SECONDS = 4.0
CPU_ROUNDS = 3  # alternating, each a fresh start


def write(cluster: Cluster, name: str, text: str) -> str:
    path = cluster.run_dir / name
    path.write_text(text)
    path.chmod(0o644)
    return f"{path}:hook"


def host_pid(worker_pid: int) -> int | None:
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
    return int(children[0]) if children else None


def wait(probe, what: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (value := probe()) is None or value is False:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.01)
    return value


def measure_stop_with_regex(cluster: Cluster, figures: Figures) -> None:
    marker = cluster.run_dir / "regex.running"
    hook = write(cluster, "hook_regex.py", REGEX_HOOK.format(marker=str(marker)))
    stop = []
    for _ in range(STARTS):
        marker.unlink(missing_ok=True)
        cluster.start(
            shared_preload_libraries="alive_worker",
            **worker_settings(ALIVE, interval="10s"),
            # DEBUG1 for the line that says how long the host took to start.
            **{"alive_worker.hook": hook, "alive_worker.tick_timeout": "1h", "log_min_messages": "debug1"},
        )
        pid = cluster.worker_pid(ALIVE)
        wait(marker.exists, "regex hook")
        time.sleep(0.5)  # the thread holds the GIL by now
        started = time.perf_counter()
        os.kill(pid, signal.SIGTERM)
        wait_for_exit(pid, timeout=10)
        stop.append((time.perf_counter() - started) * 1000)
        cluster.stop()
    figures.put("alive.stop_hook_regex_ms", stop)
    text = cluster.log_file.read_text(errors="replace")
    starts = [float(m) for m in re.findall(r"hook host \(PID \d+\) started in ([\d.]+) ms", text)]
    figures.put("alive.hook_host_start_ms", starts[-STARTS:])
    log(
        f"{ALIVE}: stop with the regex hook: {statistics.median(stop):.1f} ms (median), worst {max(stop):.1f} ms"
    )


def measure_end_by_cause(cluster: Cluster, figures: Figures) -> None:
    """A cancel and the postmaster's death to the host's exit, the hook stuck in the regex.

    The tick timeout takes the cancel's path in the worker (another flag, the
    same poll): not measured apart, since its moment is not seen from outside.
    """
    marker = cluster.run_dir / "regex.running"
    hook = write(cluster, "hook_regex.py", REGEX_HOOK.format(marker=str(marker)))
    for cause in ("cancel", "postmaster death"):
        ends = []
        for _ in range(STARTS):
            marker.unlink(missing_ok=True)
            cluster.start(
                shared_preload_libraries="alive_worker",
                **worker_settings(ALIVE, interval="10s"),
                **{"alive_worker.hook": hook, "alive_worker.tick_timeout": "1h"},
            )
            pid = cluster.worker_pid(ALIVE)
            wait(marker.exists, "regex hook")
            time.sleep(0.5)  # the thread holds the GIL by now
            host = host_pid(pid)
            if host is None:
                raise RuntimeError("no hook host")
            if cause == "cancel":
                with cluster.connect() as conn:
                    started = time.perf_counter()
                    conn.execute("SELECT pg_cancel_backend(%s)", [pid])
                    wait_for_exit(host, timeout=10)
                    ends.append((time.perf_counter() - started) * 1000)
                cluster.stop()
            else:
                postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
                started = time.perf_counter()
                os.kill(postmaster, signal.SIGKILL)
                wait_for_exit(host, timeout=10)
                ends.append((time.perf_counter() - started) * 1000)
                wait_for_exit(pid, timeout=10)
                time.sleep(1.0)  # the other children notice too, and let go of shared memory
                # The killed postmaster may linger as a zombie of whoever adopted it:
                # its lock files would stop the next start.
                (cluster.data / "postmaster.pid").unlink(missing_ok=True)
                for socket_lock in cluster.run_dir.glob(".s.PGSQL.*.lock"):
                    socket_lock.unlink()
        key = "cancel" if cause == "cancel" else "postmaster_death"
        figures.put(f"alive.end_host_{key}_ms", ends)
        log(
            f"{ALIVE}: {cause} to the host's exit: {statistics.median(ends):.1f} ms (median), worst {max(ends):.1f} ms"
        )


def measure_round_trip(cluster: Cluster, figures: Figures) -> None:
    out = cluster.run_dir / "round_trip.json"
    out.unlink(missing_ok=True)
    hook = write(cluster, "hook_round_trip.py", ROUND_TRIP_HOOK.format(out=str(out)))
    with running(
        cluster,
        shared_preload_libraries="alive_worker",
        **worker_settings(ALIVE, interval="1s"),
        **{"alive_worker.hook": hook, "alive_worker.tick_timeout": "1min"},
    ):
        wait(out.exists, "round trips", timeout=60)
        time.sleep(0.2)
    times = sorted(json.loads(out.read_text()))
    median, p99 = statistics.median(times), times[int(len(times) * 0.99)]
    figures.put("alive.hook_round_trip_us", {"median": median, "p99": p99})
    log(f"{ALIVE}: spi.execute through the host: {median:.0f} µs median, {p99:.0f} µs p99")


def measure_tick_cpu(cluster: Cluster, figures: Figures) -> None:
    hook = write(cluster, "hook_noop.py", NOOP_HOOK)
    samples: dict[str, list[float]] = {"no hook": [], "no-op hook": []}
    for _ in range(CPU_ROUNDS):
        for name, settings in (("no hook", {}), ("no-op hook", {"alive_worker.hook": hook})):
            with running(
                cluster,
                shared_preload_libraries="alive_worker",
                **worker_settings(ALIVE, interval="10ms"),
                # The cost of a tick, not its timeout: at 10 ms a busy machine's
                # preemption would end a host now and then, and the figure with it.
                **{"alive_worker.tick_timeout": "1s"},
                **settings,
            ):
                pid = cluster.worker_pid(ALIVE)
                time.sleep(1.0)
                host = host_pid(pid) if settings else None
                # None on a build that runs hooks in the worker: the in-process figure.
                pids = [pid] + ([host] if host else [])
                first = cluster.last_pk(ALIVE)
                before = sum(cpu_ns(p) for p in pids)
                time.sleep(CPU_SECONDS)
                if host and host_pid(pid) != host:
                    raise RuntimeError(
                        f"the hook host {host} ended during the measurement; see {cluster.log_file}"
                    )
                after = sum(cpu_ns(p) for p in pids)
                ticks = cluster.last_pk(ALIVE) - first
                samples[name].append((after - before) / max(ticks, 1) / 1000)
                log(f"{ALIVE}: {name}: {ticks} ticks, {(after - before) / 1e6:.0f} ms CPU")
                if host:
                    figures.put("alive.hook_host_pss_kb", pss_kb(host))
    per_tick = {name: statistics.median(values) for name, values in samples.items()}
    figures.put("alive.tick_cpu_us", per_tick)
    log(
        f"{ALIVE}: CPU per tick at 10 ms: {per_tick['no hook']:.0f} µs without a hook, "
        f"{per_tick['no-op hook']:.0f} µs with a no-op hook (worker and host)"
    )
    log(
        f"{ALIVE}: hook host start {figures.values.get('alive.hook_host_start_ms')} ms, "
        f"PSS {figures.values.get('alive.hook_host_pss_kb')} kB"
    )


def measure_hook_host(cluster: Cluster, figures: Figures) -> None:
    # The hooks leave files there; sticky, so that a hook file in it is accepted.
    os.chmod(cluster.run_dir, 0o1777)
    measure_stop_with_regex(cluster, figures)
    measure_end_by_cause(cluster, figures)
    measure_round_trip(cluster, figures)
    measure_tick_cpu(cluster, figures)
