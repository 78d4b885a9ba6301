"""The benchmark's cluster: one data directory, restarted with each phase's settings; its rows read back."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from common import SERVER_USER, TABLES


class Cluster:
    """One data directory, restarted with the settings each phase needs."""

    def __init__(self, bindir: Path, run_dir: Path, port: int) -> None:
        self.bindir = bindir
        self.run_dir = run_dir
        self.data = run_dir / "data"
        self.log_file = run_dir / "server.log"
        self.port = port

    def as_server_user(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = ["env", "-i", f"PATH={self.bindir}:/usr/bin:/bin", "LANG=C.UTF-8", "TZ=UTC"]
        prefix = ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *env, *command], check=check, capture_output=True, text=True)

    def initdb(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.as_server_user(
                f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False
            )
        shutil.rmtree(self.data, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)
        self.as_server_user(f"{self.bindir}/initdb", "-D", str(self.data), "-A", "trust", "-U", SERVER_USER)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"""
# make bench: the same settings in every phase; the phase's own in bench.conf
listen_addresses = ''
unix_socket_directories = '{self.run_dir}'
port = {self.port}
max_worker_processes = 16
max_connections = 50
track_commit_timestamp = on
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] '
autovacuum = off
alive_worker.clock_aligned = on
include_if_exists = 'bench.conf'
"""
            )

    def configure(self, **settings: str) -> None:
        lines = [f"{name} = '{value}'" for name, value in settings.items()]
        (self.data / "bench.conf").write_text("\n".join(lines) + "\n")
        shutil.chown(self.data / "bench.conf", SERVER_USER)

    def start(self, **settings: str) -> None:
        self.configure(**settings)
        self.as_server_user(
            f"{self.bindir}/pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-w", "start"
        )

    def stop(self) -> None:
        self.as_server_user(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def reload(self, **settings: str) -> None:
        self.configure(**settings)
        self.sql("SELECT pg_reload_conf()")
        time.sleep(0.5)

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(self.run_dir), port=self.port, user=SERVER_USER, dbname="postgres", autocommit=True
        )

    def sql(self, query: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def worker_pid(self, backend_type: str, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", [backend_type])
            if rows:
                return int(rows[0][0])
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {backend_type} process after {timeout:.0f} s; see {self.log_file}")
            time.sleep(0.01)

    def last_pk(self, worker: str) -> int:
        return int(self.sql(f"SELECT coalesce(max(pk), 0) FROM {TABLES[worker]}")[0][0])

    def wait_for_pk(self, worker: str, pk: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.last_pk(worker) < pk:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{worker} wrote no row {pk} within {timeout:.0f} s; see {self.log_file}")
            time.sleep(0.05)

    def ticks(self, worker: str, after_pk: int, upto_pk: int | None = None) -> list[tuple[int, int, int]]:
        """(pk, start, commit) of the rows after after_pk, in microseconds since the epoch."""
        upto = "" if upto_pk is None else f"AND pk <= {int(upto_pk)}"
        rows = self.sql(
            "SELECT pk, (extract(epoch FROM ts) * 1e6)::bigint,"
            " (extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1e6)::bigint"
            f" FROM {TABLES[worker]} WHERE pk > %s {upto} ORDER BY pk",
            [after_pk],
        )
        return [(int(pk), int(start), int(commit)) for pk, start, commit in rows]


@contextmanager
def running(cluster: Cluster, **settings: str) -> Iterator[Cluster]:
    cluster.start(**settings)
    try:
        yield cluster
    finally:
        cluster.stop()
