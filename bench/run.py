"""make bench: alive_worker against its baselines, in the same run, on the same cluster settings.

Runs as root (scripts/bench sees to the build and installs first): the
clusters run as the server's OS user, and root reads their processes'
/proc files.  Everything is measured from outside the workers:

- tick times from the rows themselves: ``ts`` (the tick's transaction start,
  set by the worker just before it starts the transaction) and the commit
  timestamp (``track_commit_timestamp = on``); alive_worker ticks on
  wall-clock multiples of the interval (``alive_worker.clock_aligned``), so
  each tick's deadline is its timestamp rounded down to the interval;
- CPU from /proc/PID/schedstat (nanoseconds on CPU), memory from
  /proc/PID/smaps_rollup (PSS), exits from a pidfd.

The C reference (bench/alive_worker_ref.c) sleeps a plain interval after each
tick: its deadline is taken as its previous commit plus the interval.

Writes bench.json, lateness.png and table.md into --out; the sync-rep phase
(bench/stall.py) writes stall.json and stall.png beside them.

This file runs the phases in order; each lives in the module named for what
it measures: tick_cost (CPU per tick, service time, memory), clients
(pgbench, connections), lifecycle (start and stop), schedule (drift and
lateness at 100 ms), ha and stall; cluster and procfs are how they measure,
lateness what the rows say, report the table and the picture, common the
names and phase lengths they share.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import ha
import ledger_agreement
from clients import measure_client_cost, measure_pgbench
from cluster import Cluster, running
from common import ALIVE, REF, TABLE_SHAPE, TABLES, Figures, bench_arguments, log, worker_settings
from cost import cost_table, measure_cost
from hook_host import measure_hook_host
from lifecycle import measure_start_and_stop, measure_stop_with_hook
from report import machine, report
from schedule import measure_schedule
from tick_cost import measure_back_to_back, measure_memory, measure_ticks_at_10ms

# ---- the run ----


def main() -> None:
    parser = bench_arguments(__doc__.splitlines()[0], 55433, "table and picture again from --out/bench.json")
    parser.add_argument(
        "--ticks-only", action="store_true", help="only CPU per tick and service time at 10 ms, printed"
    )
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="only issue 25's figures: CPU per tick, memory per worker for 1, 8, 32 databases (bench/cost.py), printed",
    )
    parser.add_argument(
        "--stop-only",
        action="store_true",
        help="only the stop figures, with and without a blocking hook, printed",
    )
    parser.add_argument(
        "--hook-host-only",
        action="store_true",
        help="only the hook host's figures (bench/hook_host.py), printed",
    )
    parser.add_argument(
        "--ha-only",
        action="store_true",
        help="only promotion, switchover and failover (bench/ha.py), printed",
    )
    parser.add_argument(
        "--ledger-only",
        action="store_true",
        help="only the ledger's agreement with a client (bench/ledger_agreement.py), printed",
    )
    args = parser.parse_args()
    if args.ledger_only:
        rows = ledger_agreement.measure(args.bindir, args.run_dir, str(Path(sys.executable).parent))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ledger.json").write_text(json.dumps(rows, indent=1) + "\n")
        print()
        print(ledger_agreement.table(rows))
        return
    if args.report_only:
        report(json.loads((args.out / "bench.json").read_text()), args.out)
        return
    began = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.ha_only:
        ha_values = ha.measure(args.bindir, args.run_dir)
        (args.out / "ha.json").write_text(json.dumps(ha_values, indent=1) + "\n")
        print()
        print(ha.table(ha_values))
        return
    cluster = Cluster(args.bindir, args.run_dir, args.port)
    figures = Figures()
    script = args.run_dir / "insert.sql"
    script.write_text(f"INSERT INTO public.{TABLES['pgbench']} (message) VALUES (:message);\n")

    cluster.initdb()
    with running(cluster):
        for table_name in TABLES.values():
            cluster.sql(f"CREATE TABLE {table_name} {TABLE_SHAPE}")

    if args.hook_host_only:
        measure_hook_host(cluster, figures)
        (args.out / "hook_host.json").write_text(json.dumps(figures.values, indent=1) + "\n")
        return

    if args.cost_only:
        measure_cost(cluster, figures)
        (args.out / "cost.json").write_text(json.dumps(figures.values, indent=1) + "\n")
        print()
        print(cost_table(figures.values))
        return

    if args.stop_only:
        measure_start_and_stop(cluster, ALIVE, figures, "alive_worker")
        measure_stop_with_hook(cluster, figures)
        return

    both = "alive_worker,alive_worker_ref"
    log("== both workers preloaded, ticking at 10 ms in turn")
    with running(cluster, shared_preload_libraries=both):
        for sync in ("off", "on"):
            measure_ticks_at_10ms(cluster, figures, sync)
    if args.ticks_only:
        return

    for worker, preload in ((ALIVE, "alive_worker"), (REF, "alive_worker_ref")):
        log(f"== {worker}, alone")
        with running(cluster, shared_preload_libraries=preload, **worker_settings(worker, interval="10ms")):
            for sync in ("off", "on"):
                measure_back_to_back(cluster, worker, figures, sync)
            # After 100,000 ticks and more: the steady state.
            measure_memory(cluster, worker, figures)
        measure_start_and_stop(cluster, worker, figures, preload)
    log(f"== {ALIVE}, a hook that blocks")
    measure_stop_with_hook(cluster, figures)
    log(f"== {ALIVE}, the hook host")
    measure_hook_host(cluster, figures)

    log("== no preload: pgbench")
    with running(cluster, shared_preload_libraries=""):
        measure_pgbench(cluster, figures, script)
    log("== clients, with and without the preload")
    measure_client_cost(cluster, figures)

    log("== both workers at once, 100 ms")
    with running(cluster, shared_preload_libraries=both, synchronous_commit="on",
                 **worker_settings(ALIVE, interval="100ms"), **worker_settings(REF, interval="100ms")):  # fmt: skip
        measure_schedule(cluster, figures, script)

    for key, value in ha.measure(args.bindir, args.run_dir).items():
        figures.put(key, value)
    figures.put(
        "ledger", ledger_agreement.measure(args.bindir, args.run_dir, str(Path(sys.executable).parent))
    )

    values = figures.values
    log("== sync rep: the heartbeat's commit, and a synchronous standby's stall (bench/stall.py)")
    from stall import run as run_stall

    stall = run_stall(args.bindir, args.run_dir / "stall", args.out, args.port + 10)
    values["sync_rep"] = {
        k: v for k, v in stall.items() if k not in ("samples", "commit_ms_async", "commit_ms_sync")
    }
    log("== clients: the client-path probe's cost, and how fast each of issue 21's situations shows")
    from detection import run as run_detection
    from probe import run as run_probe

    values["probe"] = run_probe(args.bindir, args.run_dir / "probe", args.out, args.port + 20)
    values["detection"] = run_detection(args.bindir, args.run_dir / "detection", args.out, args.port + 21)
    values["machine"] = machine(args.bindir)
    values["seconds"] = round(time.monotonic() - began)
    (args.out / "bench.json").write_text(json.dumps(values, indent=1) + "\n")
    report(values, args.out)


if __name__ == "__main__":
    main()
