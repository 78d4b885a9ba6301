"""make bench, from outside: alive-worker run against pt-heartbeat, side by side on servers without preload.

Both write a heartbeat every --interval (1 s) as the same least-privileged
role, at the same time, into their own tables of one server (no library
preloaded, no extension):

- steady (--seconds, 600 by default as issue 24 asks; shorter runs say so):
  the client CPU per heartbeat of each process (/proc/PID/schedstat, after a
  warm-up), and its schedule: every write is stamped by a trigger with the
  server's clock_timestamp() as it runs, and its offset from the writer's own
  grid (its first write plus whole intervals) gives the drift over the run
  (a least-squares slope, ms per hour), the jitter (p50, p99 of the offsets
  about that line) and the ticks missed;
- switchover (--switchovers rounds): a primary and a streaming standby, both
  writers on a multi-host target_session_attrs=read-write connection; the
  primary is stopped (fast) and the standby promoted; the longest gap
  between writes each one committed around it, read on the new primary.

pt-heartbeat is Debian's percona-toolkit (3.2.1) with libdbd-pg-perl,
installed by scripts/setup-host.  Its --dbi-driver Pg path issues MySQL
statements at start (SHOW VARIABLES, SELECT @@server_id, SHOW CREATE TABLE,
backquoted names, USE on reconnect) and fails at once against PostgreSQL;
PT_HEARTBEAT_PORT below replaces exactly those six lines in a copy
(each replacement must match, or the bench stops), leaving its loop
(sleep to the next whole interval, UPDATE ... SET ts = the client's time)
as shipped.  It dies when its connection is lost (its retry does not
reconnect); the bench restarts it at once, as a service manager with
RestartSec=0 would, and counts the restarts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import itertools

from common import SERVER_USER
from ha import Server, as_server_user, give_to_server_user, log, settings_text
from patroni_cluster import free_port, wait_for
from procfs import cpu_ns

RUNNER = "alive-worker run"
PT = "pt-heartbeat"
ROLE = "heartbeat"
WARM_UP_SECONDS = 5.0
SWITCHOVER_SETTLE_SECONDS = 8.0

# (what, the line as shipped, its replacement): the statements of MySQL's that
# pt-heartbeat 3.2.1 sends whatever --dbi-driver says.
PT_HEARTBEAT_PORT = [
    (
        "charset query",
        """$dbh->selectrow_array("SHOW VARIABLES LIKE 'character_set_server'")""",
        """$dbh->selectrow_array("SELECT 'character_set_server', pg_catalog.current_setting('server_encoding')")""",
    ),
    (
        "server id",
        """$dbh->selectrow_array('SELECT @@server_id');""",
        """$dbh->selectrow_array('SELECT 1');""",
    ),
    ("table name", """my $db_tbl    = $q->quote($db, $tbl);""", """my $db_tbl    = $tbl;"""),
    (
        "table definition",
        """my $tbl_def    = $dbh->selectrow_arrayref("SHOW CREATE TABLE $db_tbl");""",
        """my $tbl_def    = [ $db_tbl, "CREATE TABLE `heartbeat` (\\n  `ts` varchar(26) NOT NULL,\\n"""
        """  `server_id` int NOT NULL,\\n  PRIMARY KEY (`server_id`)\\n)" ];""",
    ),
    ("USE on connect and reconnect", """$dbh->do("USE `$db`");""", """$dbh->do("SELECT 1");"""),
]

SETUP_SQL = [
    f"CREATE ROLE {ROLE} LOGIN",
    "CREATE TABLE public.log_table (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now())",
    f"GRANT INSERT ON public.log_table TO {ROLE}",
    f"GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO {ROLE}",
    # pt-heartbeat's table (its own shape, without the MySQL replication columns) and its row.
    "CREATE TABLE public.heartbeat (ts varchar(26) NOT NULL, server_id int NOT NULL PRIMARY KEY)",
    "INSERT INTO public.heartbeat VALUES ('', 1)",
    f"GRANT SELECT, UPDATE ON public.heartbeat TO {ROLE}",
    # Every write, stamped as it runs, by the server's clock: the same measure for both.
    "CREATE TABLE public.bench_writes (writer text, at timestamptz DEFAULT clock_timestamp())",
    "CREATE FUNCTION public.bench_stamp() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
    " SET search_path = pg_catalog AS $$ BEGIN INSERT INTO public.bench_writes (writer)"
    " VALUES (TG_ARGV[0]); RETURN NULL; END $$",
    f"CREATE TRIGGER stamp AFTER INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.bench_stamp('{RUNNER}')",
    f"CREATE TRIGGER stamp AFTER UPDATE ON public.heartbeat FOR EACH ROW EXECUTE FUNCTION public.bench_stamp('{PT}')",
]


def port_pt_heartbeat(run_dir: Path) -> Path:
    shipped = shutil.which("pt-heartbeat")
    if shipped is None:
        raise SystemExit("bench: pt-heartbeat is missing: scripts/setup-host installs percona-toolkit")
    text = Path(shipped).read_text()
    for what, line, replacement in PT_HEARTBEAT_PORT:
        if line not in text:
            raise SystemExit(f"bench: pt-heartbeat has no line for {what} ({line!r}): another version?")
        text = text.replace(line, replacement)
    ported = run_dir / "pt-heartbeat-pg"
    ported.write_text(text)
    ported.chmod(0o755)
    return ported


class Writers:
    """Both writers, on one libpq target; pt-heartbeat restarted whenever it exits."""

    def __init__(
        self, bindir: Path, ported: Path, hosts: str, ports: str, interval: float, log_dir: Path
    ) -> None:
        self.interval = interval
        self.restarts = 0
        self.ported = ported
        self.log_dir = log_dir
        # Both reach the server through libpq's variables: pt-heartbeat's DSN (dbname only, with
        # no -h) cannot hold several hosts, libpq's PGHOST can.
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "ALIVE_WORKER_"))},
            "PGHOST": hosts,
            "PGPORT": ports,
            "PGUSER": ROLE,
            "PGDATABASE": "postgres",
            "PGTARGETSESSIONATTRS": "read-write",
            "PGCONNECT_TIMEOUT": "2",
        }
        command = [str(bindir / "alive-worker"), "run", "--interval", f"{round(interval * 1000)}ms"]
        self.runner = subprocess.Popen(command, env=self.env, stderr=(log_dir / "runner.log").open("a"))
        self.pt = self._start_pt()

    def _start_pt(self) -> subprocess.Popen[bytes]:
        command = ["perl", str(self.ported), "--dbi-driver", "Pg", "-D", "postgres", "--table", "heartbeat",
                   "--update", "--interval", f"{self.interval:g}"]  # fmt: skip
        return subprocess.Popen(command, env=self.env, stderr=(self.log_dir / "pt-heartbeat.log").open("a"))

    def keep_pt_running(self) -> None:
        if self.pt.poll() is not None:
            self.restarts += 1
            self.pt = self._start_pt()

    def pids(self) -> dict[str, int]:
        return {RUNNER: self.runner.pid, PT: self.pt.pid}

    def stop(self) -> None:
        for process in (self.runner, self.pt):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.runner, self.pt):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()


def make_server(bindir: Path, base: Path, name: str) -> Server:
    server = Server(bindir, base / name, free_port())
    as_server_user(str(bindir / "initdb"), "-D", str(server.data), "-A", "trust", "-U", SERVER_USER)
    settings = {
        "port": str(server.port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "timezone": "UTC",
        "log_timezone": "UTC",
    }
    with open(server.data / "postgresql.conf", "a") as conf:
        conf.write(settings_text(settings))
    server.start()
    for statement in SETUP_SQL:
        server.sql(statement)
    return server


def write_times(server: Server) -> dict[str, list[float]]:
    rows = server.sql("SELECT writer, extract(epoch FROM at)::float8 FROM public.bench_writes ORDER BY at")
    times: dict[str, list[float]] = {RUNNER: [], PT: []}
    for writer, at in rows:
        times[writer].append(at)
    return times


def schedule(times: list[float], interval: float) -> dict[str, float]:
    """Offsets from the writer's own grid: drift (slope), jitter about it, missed ticks."""
    first = times[0]
    ticks = [round((t - first) / interval) for t in times]
    offsets = [t - (first + k * interval) for t, k in zip(times, ticks, strict=True)]
    slope, intercept = statistics.linear_regression(ticks, offsets)
    residuals = sorted(abs(o - (intercept + slope * k)) for o, k in zip(offsets, ticks, strict=True))
    return {
        "writes": len(times),
        "missed": ticks[-1] + 1 - len(set(ticks)),
        "drift_ms_per_hour": slope / interval * 3600 * 1000,
        "offset_first_ms": offsets[0] * 1000,
        "offset_last_ms": offsets[-1] * 1000,
        "jitter_p50_ms": residuals[len(residuals) // 2] * 1000,
        "jitter_p99_ms": residuals[min(len(residuals) - 1, int(len(residuals) * 0.99))] * 1000,
    }


def steady(bindir: Path, base: Path, ported: Path, seconds: float, interval: float) -> dict[str, Any]:
    server = make_server(bindir, base, "steady")
    writers = Writers(bindir, ported, "127.0.0.1", str(server.port), interval, base)
    try:
        time.sleep(WARM_UP_SECONDS)
        start_cpu = {name: cpu_ns(pid) for name, pid in writers.pids().items()}
        start_writes = {name: len(t) for name, t in write_times(server).items()}
        log(f"steady: both writers at {interval:g} s for {seconds:g} s")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(min(5.0, deadline - time.monotonic()))
            writers.keep_pt_running()
        end_cpu = {name: cpu_ns(pid) for name, pid in writers.pids().items()}
        times = write_times(server)
    finally:
        writers.stop()
        server.stop()
    result: dict[str, Any] = {"seconds": seconds, "interval": interval, "pt_restarts": writers.restarts}
    for name in (RUNNER, PT):
        written = len(times[name]) - start_writes[name]
        result[name] = {
            "cpu_us_per_heartbeat": (end_cpu[name] - start_cpu[name]) / 1000 / max(written, 1),
            **schedule(times[name][start_writes[name] :], interval),
        }
    return result


def switchover(bindir: Path, base: Path, ported: Path, interval: float) -> dict[str, float]:
    """The longest gap between each writer's writes around one switchover, on the new primary."""
    primary = make_server(bindir, base, "primary")
    standby = Server(bindir, base / "standby", free_port())
    as_server_user(str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                   "-U", SERVER_USER, "-D", str(standby.data), "-R", "-X", "stream")  # fmt: skip
    with open(standby.data / "postgresql.conf", "a") as conf:
        conf.write(settings_text({"port": str(standby.port)}))
    standby.start()
    writers = Writers(bindir, ported, "127.0.0.1,127.0.0.1", f"{primary.port},{standby.port}", interval, base)
    try:
        wait_for(lambda: standby.sql("SELECT status FROM pg_stat_wal_receiver") == [("streaming",)],
                 "the standby to stream", 30)  # fmt: skip
        time.sleep(SWITCHOVER_SETTLE_SECONDS)
        switched_at = time.time()
        primary.pg_ctl("-m", "fast", "-w", "stop")
        standby.pg_ctl("-w", "promote")
        deadline = time.monotonic() + SWITCHOVER_SETTLE_SECONDS * 2
        while time.monotonic() < deadline:
            time.sleep(0.1)
            writers.keep_pt_running()
        times = write_times(standby)
    finally:
        writers.stop()
        primary.stop()
        standby.stop()
    gaps: dict[str, float] = {"pt_restarts": writers.restarts}
    for name in (RUNNER, PT):
        around = [t for t in times[name] if switched_at - SWITCHOVER_SETTLE_SECONDS <= t]
        gaps[name] = max((later - earlier for earlier, later in itertools.pairwise(around)), default=0.0)
    log(f"switchover: longest gap {gaps[RUNNER]:.2f} s ({RUNNER}), {gaps[PT]:.2f} s ({PT})")
    return gaps


def table(results: dict[str, Any]) -> str:
    steady_result = results["steady"]
    rounds = results["switchovers"]
    lines = [
        f"| per writer, {steady_result['interval']:g} s interval, {steady_result['seconds']:g} s | {RUNNER} | {PT} |",
        "|---|---|---|",
    ]
    rows = [
        ("client CPU per heartbeat", "cpu_us_per_heartbeat", "{:.0f} µs"),
        ("schedule drift", "drift_ms_per_hour", "{:+.1f} ms/h"),
        ("offset from its grid, first → last write", None, ""),
        ("jitter about its grid, p50 / p99", None, ""),
        ("ticks missed", "missed", "{:d}"),
    ]
    for label, key, form in rows:
        cells = []
        for name in (RUNNER, PT):
            figures = steady_result[name]
            if key is not None:
                cells.append(form.format(figures[key]))
            elif label.startswith("offset"):
                cells.append(f"{figures['offset_first_ms']:.1f} → {figures['offset_last_ms']:.1f} ms")
            else:
                cells.append(f"{figures['jitter_p50_ms']:.1f} / {figures['jitter_p99_ms']:.1f} ms")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    gaps = {name: [round_[name] for round_ in rounds] for name in (RUNNER, PT)}
    lines.append(
        f"| longest write gap through a switchover ({len(rounds)} rounds: median, worst) | "
        + " | ".join(f"{statistics.median(g):.2f} s, {max(g):.2f} s" for g in gaps.values())
        + " |"
    )
    restarts = steady_result["pt_restarts"] + sum(int(r["pt_restarts"]) for r in rounds)
    lines.append(f"| restarts by the bench | 0 | {restarts} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindir", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=600.0, help="the steady phase (default 600)")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--switchovers", type=int, default=3)
    args = parser.parse_args()
    base = args.run_dir / "runner-vs-pt-heartbeat"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    give_to_server_user(base)
    ported = port_pt_heartbeat(base)
    results: dict[str, Any] = {"steady": steady(args.bindir, base, ported, args.seconds, args.interval)}
    results["switchovers"] = []
    for round_number in range(args.switchovers):
        round_dir = base / f"switchover{round_number}"
        round_dir.mkdir()
        give_to_server_user(round_dir)
        results["switchovers"].append(switchover(args.bindir, round_dir, ported, args.interval))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runner.json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    (args.out / "runner.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
