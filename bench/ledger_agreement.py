"""make bench, the availability ledger: does alive-worker report agree with a client?

Issue 23's agreement table.  Each event happens with a client beside it
writing one row every 10 ms (bench/ha.py's Writer, reconnecting through a
multi-host read-write DSN), alive_worker at 100 ms:

- on a plain server: a restart (pg_ctl restart -m fast), a crash (SIGKILL of
  an idle backend: the postmaster resets every session) and a lock held for
  5 s on both tables (the heartbeat's and the client's);
- under Patroni (tests/patroni_cluster.py, etcd): a switchover and a failover.

Afterwards, alive-worker report --format json --gap 1 over the whole run (a
restart here is shorter than the default gap of three intervals), from the
last primary: for each event, the report's longest window around it against
the client's longest gap between acknowledged writes there, and the cause
the report names.  The goal: within one interval (100 ms), and the right cause.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ha import (
    CLIENT_TABLE,
    SETTLE_SECONDS,
    Server,
    Writer,
    as_server_user,
    give_to_server_user,
    log,
    longest_gap,
    patroni_pair,
    settings_text,
)
from patroni_cluster import free_port, wait_for

INTERVAL_S = 0.1
LOCK_SECONDS = 5.0
EXPECTED_CAUSE = {
    "restart": "planned",
    "crash": "crash",
    "lock 5 s": "blocked",
    "switchover": "switchover",
    "failover": "failover",
}

Event = tuple[str, float, float]  # name, start, end (epoch seconds)


def report(bindir: Path, dsn: str, since: float) -> dict[str, Any]:
    """alive-worker report's JSON from since to now."""
    since_text = datetime.fromtimestamp(since, UTC).isoformat()
    result = subprocess.run(
        [str(bindir / "alive-worker"), "report", "--dsn", dsn, "--format", "json", "--since", since_text,
         "--slo", "50", "--gap", "1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if not result.stdout.startswith("{"):
        raise RuntimeError(f"alive-worker report failed: {result.stdout}{result.stderr}")
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def compare(events: list[Event], writer: Writer, found: dict[str, Any]) -> list[dict[str, Any]]:
    """Per event: the client's longest gap, the report's longest window around it, its cause."""
    rows = []
    for name, start, end in events:
        lo, hi = start - 1.0, end + 1.0
        windows = [
            o
            for o in found["outages"]
            if datetime.fromisoformat(o["start"]).timestamp() < hi
            and (o["end"] is None or datetime.fromisoformat(o["end"]).timestamp() > lo)
        ]
        window = max(windows, key=lambda o: o["length"], default=None)
        client_ms = longest_gap(writer.acks, lo, hi)
        report_ms = window["length"] * 1000 if window else 0.0
        cause = window["cause"] if window else "-"
        rows.append(
            {
                "event": name,
                "client_gap_ms": client_ms,
                "report_window_ms": report_ms,
                "cause": cause,
                "detail": window["detail"] if window else "",
                "agrees": abs(report_ms - client_ms) <= INTERVAL_S * 1000 and cause == EXPECTED_CAUSE[name],
            }
        )
        log(f"ledger: {name}: client {client_ms:.0f} ms, report {report_ms:.0f} ms, cause {cause}")
    return rows


def beside_a_client(
    bindir: Path, client_dsn: str, report_dsn: str, actions: list[tuple[str, Callable[[], None]]]
) -> list[dict[str, Any]]:
    """Each action in turn beside a client writing through client_dsn; then the report against it."""
    began = time.time()
    writer = Writer(client_dsn)
    writer.start()
    events = [timed(name, writer, action) for name, action in actions]
    time.sleep(SETTLE_SECONDS)
    writer.stopping.set()
    writer.join(timeout=10)
    return compare(events, writer, report(bindir, report_dsn, began - 1))


def timed(name: str, writer: Writer, action: Callable[[], None]) -> Event:
    """Runs action between settled writing; the event ends when the client writes again."""
    time.sleep(SETTLE_SECONDS)
    start = time.time()
    action()
    # A SIGKILL returns at once: give the gap time to begin before waiting for its end.
    time.sleep(1.0)
    wait_for(lambda: writer.acks and writer.acks[-1] > time.time() - 0.5, "the client writing again", 60)
    end = time.time()
    return name, start, end


def plain_server_events(bindir: Path, run_dir: Path) -> list[dict[str, Any]]:
    base = run_dir / "ledger-plain"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    give_to_server_user(base)
    server = Server(bindir, base / "data", free_port())
    as_server_user(str(bindir / "initdb"), "-D", str(server.data), "-A", "trust", "-U", "postgres")
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "port": str(server.port),
        "shared_preload_libraries": "alive_worker",
        "alive_worker.interval": f"{int(INTERVAL_S * 1000)}ms",
        "timezone": "UTC",
        "log_timezone": "UTC",
        "log_line_prefix": "%m [%p] ",
    }
    with open(server.data / "postgresql.conf", "a") as conf:
        conf.write(settings_text(settings))
    server.start()
    try:
        server.sql("CREATE EXTENSION alive_worker")
        server.sql(CLIENT_TABLE)
        wait_for(
            lambda: server.sql("SELECT to_regclass('public.log_table')")[0][0], "the heartbeat table", 30
        )

        def restart() -> None:
            server.pg_ctl("-m", "fast", "-w", "restart", "-l", str(server.log_file))

        def crash() -> None:
            victim = server.connect()
            [(pid,)] = victim.execute("SELECT pg_backend_pid()").fetchall()
            os.kill(pid, signal.SIGKILL)
            victim.close()

        def hold_lock() -> None:
            with server.connect() as conn, conn.transaction():
                conn.execute("LOCK TABLE public.log_table, public.client_writes IN ACCESS EXCLUSIVE MODE")
                time.sleep(LOCK_SECONDS)

        dsn = f"host=127.0.0.1 port={server.port} dbname=postgres user=postgres"
        return beside_a_client(
            bindir, dsn, dsn, [("restart", restart), ("crash", crash), ("lock 5 s", hold_lock)]
        )
    finally:
        server.stop()


def patroni_events(bindir: Path, run_dir: Path, patroni_bin_dir: str) -> list[dict[str, Any]]:
    cluster = patroni_pair(run_dir / "ledger-patroni", bindir, patroni_bin_dir, f"{int(INTERVAL_S * 1000)}ms")
    try:
        first = cluster.start()
        second = next(node for node in cluster.nodes if node is not first)
        first.sql("CREATE EXTENSION alive_worker")
        first.sql(CLIENT_TABLE)
        wait_for(lambda: first.sql("SELECT to_regclass('public.log_table')")[0][0], "the heartbeat table", 30)

        def switchover() -> None:
            result = cluster.switchover(first, second)
            if result.returncode != 0:
                raise RuntimeError(f"patronictl switchover failed: {result.stdout}{result.stderr}")
            cluster.wait_for_roles()

        def failover() -> None:
            second.kill()
            wait_for(lambda: first.role() == "primary", "the replica to take over", 120)

        client_dsn = cluster.multi_host_dsn(target_session_attrs="read-write")
        # The report from the last primary, once both events are over.
        report_dsn = f"host=127.0.0.1 port={first.port} dbname=postgres user={cluster.user}"
        return beside_a_client(
            bindir, client_dsn, report_dsn, [("switchover", switchover), ("failover", failover)]
        )
    finally:
        cluster.stop()


def measure(bindir: Path, run_dir: Path, patroni_bin_dir: str) -> list[dict[str, Any]]:
    log("== the ledger against a client writing every 10 ms: restart, crash, lock, switchover, failover")
    return plain_server_events(bindir, run_dir) + patroni_events(bindir, run_dir, patroni_bin_dir)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| event | client's longest gap | report's window | cause | agrees (within 100 ms, right cause) |",
        "|---|---:|---:|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['event']} | {row['client_gap_ms']:,.0f} ms | {row['report_window_ms']:,.0f} ms"
            f" | {row['cause']} | {'yes' if row['agrees'] else 'NO'} |"
        )
    return "\n".join(lines)
