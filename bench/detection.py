"""make bench, clients phase: how long each situation of issue 21 takes to show in the status.

One cluster with alive_worker as role alive (200 ms interval, the issue's)
and the client-path probe as role app every 1 s.  For each situation: make
the change, then poll alive_worker.workers every 10 ms until its state says
so (the state, and the SQLSTATE of the tick's or the probe's error); undo it
and wait for the worker to be sleeping again.  The time is from the change's
commit to the first poll that shows it; the tick's situations take up to an
interval, the probe's up to its period.

Writes detection.json into --out.  Alone:
python bench/detection.py --bindir ... --run-dir ... --out ...
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import psycopg
from cluster import Cluster, running
from common import SERVER_USER, bench_arguments, log

SETUP = [
    "CREATE ROLE alive LOGIN",
    "CREATE ROLE app LOGIN",
    "CREATE TABLE public.log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now())",
    "GRANT INSERT ON public.log_table TO alive, app",
    "GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO alive, app",
    "CREATE FUNCTION public.swallow() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'",
]

# (name, change, undo, state that says so, SQLSTATE column, SQLSTATE)
SITUATIONS = [
    (
        "ALTER DATABASE ... SET default_transaction_read_only = on",
        ["ALTER DATABASE postgres SET default_transaction_read_only = on"],
        ["SET default_transaction_read_only = off", "ALTER DATABASE postgres RESET default_transaction_read_only"],
        "failing", "last_error_sqlstate", "25006",
    ),
    (
        "ALTER SYSTEM SET default_transaction_read_only = on, role alive set off",
        ["ALTER ROLE alive SET default_transaction_read_only = off",
         "ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()"],
        ["SET default_transaction_read_only = off", "ALTER SYSTEM RESET default_transaction_read_only",
         "SELECT pg_reload_conf()", "ALTER ROLE alive RESET default_transaction_read_only"],
        "failing", "last_error_sqlstate", "25006",
    ),
    (
        "BEFORE INSERT trigger returning NULL",
        ["CREATE TRIGGER swallow_rows BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.swallow()"],
        ["DROP TRIGGER swallow_rows ON public.log_table"],
        "failing", "last_error_sqlstate", "55000",
    ),
    (
        "DO INSTEAD NOTHING rule",
        ["CREATE RULE nothing_here AS ON INSERT TO public.log_table DO INSTEAD NOTHING"],
        ["DROP RULE nothing_here ON public.log_table"],
        "failing", "last_error_sqlstate", "55000",
    ),
    (
        "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC",
        ["REVOKE CONNECT ON DATABASE postgres FROM PUBLIC"],
        ["GRANT CONNECT ON DATABASE postgres TO PUBLIC"],
        "clients cannot write", "probe_error_sqlstate", "42501",
    ),
    (
        "ALTER DATABASE ... CONNECTION LIMIT 0",
        ["ALTER DATABASE postgres CONNECTION LIMIT 0"],
        ["ALTER DATABASE postgres CONNECTION LIMIT -1"],
        "clients cannot write", "probe_error_sqlstate", "53300",
    ),
    (
        "ALTER ROLE app SET default_transaction_read_only = on",
        ["ALTER ROLE app SET default_transaction_read_only = on"],
        ["ALTER ROLE app RESET default_transaction_read_only"],
        "clients cannot write", "probe_error_sqlstate", "25006",
    ),
]  # fmt: skip


def wait_for(conn: Any, state: str, column: str | None, sqlstate: str | None, timeout: float = 30.0) -> float:
    """Seconds until the view's row shows state (and the SQLSTATE), polling every 10 ms."""
    start = time.monotonic()
    query = f"SELECT state, {column or 'NULL'} FROM alive_worker.workers"
    while time.monotonic() - start < timeout:
        seen, code = conn.execute(query).fetchone()
        if seen == state and (sqlstate is None or code == sqlstate):
            return time.monotonic() - start
        time.sleep(0.01)
    raise RuntimeError(f"no state {state!r} ({sqlstate}) within {timeout:.0f} s")


def run(bindir: Path, run_dir: Path, out: Path, port: int) -> dict[str, Any]:
    cluster = Cluster(bindir, run_dir, port)
    run_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(run_dir, SERVER_USER)
    cluster.initdb()
    values: dict[str, Any] = {}
    settings = {
        "shared_preload_libraries": "alive_worker",
        "alive_worker.interval": "200ms",
        "alive_worker.tick_timeout": "5s",
        "alive_worker.role": "alive",
        "alive_worker.probe_role": "app",
        "alive_worker.probe_interval": "1s",
    }
    cluster.start(**{"shared_preload_libraries": ""})
    for statement in SETUP:
        cluster.sql(statement)
    cluster.stop()
    with running(cluster, **settings):
        cluster.sql("CREATE EXTENSION alive_worker")
        with (
            cluster.connect() as watch,
            psycopg.connect(
                host=str(cluster.run_dir),
                port=cluster.port,
                user=SERVER_USER,
                dbname="postgres",
                autocommit=True,
            ) as admin,
        ):
            wait_for(watch, "sleeping", None, None)
            for name, change, undo, state, column, sqlstate in SITUATIONS:
                # Once the worker has restarted with the role's setting, for the fenced case.
                if "role alive" in name:
                    admin.execute(change[0])
                    watch.execute("SELECT alive_worker.stop('postgres')")
                    watch.execute("SELECT alive_worker.start('postgres')")
                    wait_for(watch, "sleeping", None, None)
                    change = change[1:]
                for statement in change:
                    admin.execute(statement)
                took = wait_for(watch, state, column, sqlstate)
                for statement in undo:
                    admin.execute(statement)
                back = wait_for(watch, "sleeping", None, None)
                values[name] = {"detected_s": round(took, 3), "cleared_s": round(back, 3)}
                log(
                    f"detection: {name}: {state} after {took * 1000:.0f} ms, sleeping again {back * 1000:.0f} ms after the undo"
                )
    (out / "detection.json").write_text(json.dumps(values, indent=2) + "\n")
    return values


def main() -> None:
    parser = bench_arguments(__doc__.splitlines()[0], 55710, "unused")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run(args.bindir, args.run_dir, args.out, args.port)


if __name__ == "__main__":
    main()
