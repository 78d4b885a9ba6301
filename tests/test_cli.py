"""The alive-worker command, as installed by make install, against real clusters."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import (
    BIN_DIR,
    LEAST_PRIVILEGE_SETUP,
    ORIGINAL_TABLE,
    PKGLIB_DIR,
    SQL_VERSION,
    Cluster,
    streaming_standby,
    wait_for,
)

CLI = Path(BIN_DIR) / "alive-worker"
ENVIRONMENT = Path(PKGLIB_DIR) / "alive_worker"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def dsn(cluster: Cluster, user: str | None = None, dbname: str = "postgres") -> str:
    return f"host={cluster.node.host} port={cluster.node.port} dbname={dbname} user={user or cluster.node.os_ops.username}"


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs the installed command; no PG* variables but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k == "PG_CONFIG"}
    result = subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=timeout, env={**clean, **(env or {})}
    )
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


# ---- installation ----


def test_installed_beside_the_server_programs_and_never_loads_the_embedding_library() -> None:
    assert CLI.is_symlink() and CLI.resolve() == (ENVIRONMENT / "bin" / "alive-worker").resolve()
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("alive-worker ")
    probe = (
        "import sys, alive_worker.cli; "
        "assert 'alive_worker._native' not in sys.modules, 'imported'; "
        "print(alive_worker.cli.psycopg.__version__)"
    )
    # -I: not the current directory, which may hold a copy of alive_worker/.
    imported = subprocess.run(
        [ENVIRONMENT / "bin" / "python3", "-I", "-c", probe], capture_output=True, text=True
    )
    assert imported.returncode == 0, imported.stderr
    pinned = (Path(__file__).parent.parent / "scripts" / "requirements" / "runtime.txt").read_text()
    assert f"psycopg[binary]=={imported.stdout.strip()}" in pinned


def test_usage_errors_are_unknown() -> None:
    result = cli("lag", "--warn", "soon")
    assert result.returncode == 3 and "not a number of seconds" in result.stderr
    assert cli("lag", "--warn", "5", "--crit", "1").returncode == 3
    assert cli("frobnicate").returncode == 3


# ---- status ----


# For the tests of a healthy worker's report: an interval a worker keeps on a loaded machine.
# At 100 ms, a tick 300 ms late is a WARNING (doctor: CRITICAL), and both tests failed in a CI
# run with six test workers on two cores.
STEADY_INTERVAL = {"interval": "1s"}


def test_status_shows_the_workers_as_a_table_and_as_json(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings=STEADY_INTERVAL, extension=True)
    cluster.wait_for_heartbeats(3)
    result = cli("status", "--dsn", dsn(cluster))
    assert result.returncode == 0, result.stderr
    first, header, row, *_ = result.stdout.splitlines()
    assert re.match(
        rf"OK: 1 (sleeping|ticking) \(alive_worker {re.escape(SQL_VERSION)} on PostgreSQL \d+\.\d+, primary, ",
        first,
    )
    assert header.split()[:5] == ["DATABASE", "STATE", "PID", "TABLE", "INTERVAL"]
    assert row.split()[0] == "postgres" and "public.log_table" in row
    # Aligned: each cell starts under its header.
    assert row.index("public.log_table") == header.index("TABLE")
    assert not ANSI.search(result.stdout), "no colour when not on a terminal"

    report = as_json(cli("status", "--json", "--dsn", dsn(cluster)))
    assert report["status"] == "OK"
    assert report["server"]["in_recovery"] is False and report["server"]["extension_version"] == SQL_VERSION
    [worker] = report["workers"]
    assert worker["database"] == "postgres" and worker["tick_interval"] == 1.0
    assert worker["ticks_ok"] >= 3 and worker["pid"] == cluster.worker_pid()
    assert worker["replication_lag"] is None

    coloured = cli("status", "--color", "always", "--dsn", dsn(cluster)).stdout
    assert coloured.startswith("\x1b[32mOK\x1b[0m: 1 ") and ANSI.sub("", coloured).count("\n") == 3


def run_on_terminal(*args: str, env: dict[str, str] | None = None) -> str:
    """The command's output on a pseudo-terminal, as a person would see it."""
    primary, secondary = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    process = subprocess.Popen(
        [str(CLI), *args], stdout=secondary, stderr=secondary, env={**clean, **(env or {})}
    )
    os.close(secondary)
    output = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 30)
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=30)
    os.close(primary)
    return output.decode()


def test_status_is_coloured_on_a_terminal_unless_no_color(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extension=True)
    cluster.wait_for_heartbeats(1)
    on_terminal = run_on_terminal("status", "--dsn", dsn(cluster))
    assert "\x1b[32mOK\x1b[0m" in on_terminal
    assert not ANSI.search(run_on_terminal("status", "--dsn", dsn(cluster), env={"NO_COLOR": "1"}))


def test_status_exit_code_follows_the_worst_worker(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        settings={"databases": "good, bad"},
        setup_sql=[
            "CREATE DATABASE good",
            "CREATE DATABASE bad",
            "CREATE ROLE luca LOGIN",
        ],
        extension=True,
    )
    cluster.wait_for_heartbeats(1, dbname="good")
    cluster.sql("SELECT alive_worker.stop('bad')")
    stopped = cli("status", "--dsn", dsn(cluster))
    assert stopped.returncode == 1 and stopped.stdout.startswith("WARNING: 1 stopped, 1 ")

    # A table the worker cannot write: no message column.
    cluster.sql("DROP TABLE IF EXISTS log_table", dbname="bad")
    cluster.sql("CREATE TABLE log_table (pk serial PRIMARY KEY)", dbname="bad")
    cluster.sql("SELECT alive_worker.start('bad')")
    failing = wait_for(
        lambda: r if (r := cli("status", "--dsn", dsn(cluster))).returncode == 2 else None, "a failing worker"
    )
    assert failing.stdout.startswith("CRITICAL: 1 failing, 1 ")
    assert re.search(r'^bad: last error .* ago: 42703 .* has no column "message"$', failing.stdout, re.M)
    assert as_json(cli("status", "--json", "--dsn", dsn(cluster)))["status"] == "CRITICAL"


def test_status_explains_what_stops_it(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(setup_sql=["CREATE ROLE nobody LOGIN"])
    missing = cli("status", "--dsn", dsn(cluster))
    assert missing.returncode == 3 and missing.stdout == ""
    assert "the alive_worker extension is not installed in database postgres" in missing.stderr
    assert "hint: " in missing.stderr and "CREATE EXTENSION alive_worker;" in missing.stderr
    assert as_json(cli("status", "--json", "--dsn", dsn(cluster))) == {
        "status": "UNKNOWN",
        "error": "the alive_worker extension is not installed in database postgres",
        "hint": "A superuser can install it in any database (the status view answers for every database): "
        "CREATE EXTENSION alive_worker;",
    }

    cluster.sql("CREATE EXTENSION alive_worker")
    denied = cli("status", "--dsn", dsn(cluster, user="nobody"))
    assert denied.returncode == 3 and "permission denied" in denied.stderr
    assert 'GRANT pg_monitor TO "nobody";' in denied.stderr

    port = cluster.node.port
    cluster.node.stop()
    down = cli("status", "--dsn", f"host={cluster.node.host} port={port} connect_timeout=5")
    assert down.returncode == 3 and "cannot connect to" in down.stderr and "Connection refused" in down.stderr
    malformed = cli("status", "--dsn", "host")
    assert malformed.returncode == 3 and "invalid --dsn" in malformed.stderr


def test_connection_from_environment_and_service_file(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = make_cluster(extension=True)
    cluster.wait_for_worker()
    host, port, user = cluster.node.host, str(cluster.node.port), cluster.node.os_ops.username
    assert cli("status", env={"PGHOST": host, "PGPORT": port, "PGUSER": user}).returncode == 0
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[heartbeats]\nhost={host}\nport={port}\nuser={user}\ndbname=postgres\n")
    assert cli("status", "--dsn", "service=heartbeats", env={"PGSERVICEFILE": str(services)}).returncode == 0
    by_name = cli("status", env={"PGSERVICEFILE": str(services), "PGSERVICE": "heartbeats"})
    assert by_name.returncode == 0 and f"{host}:{port}" in by_name.stdout


# ---- tail ----


def test_tail_follows_new_heartbeats_with_their_lateness(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extension=True)
    cluster.wait_for_heartbeats(5)
    result = cli("tail", "--json", "-n", "2", "--count", "3", "--dsn", dsn(cluster))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 5
    pks = [record["pk"] for record in records]
    assert pks == list(range(pks[0], pks[0] + 5))
    assert [r["message"] for r in records] == [f"STILL ALIVE and counting! {pk}" for pk in pks]
    assert all(r["grid"] == "schedule" for r in records)
    # On the worker's own grid, a tick is late by the time it takes to wake up.
    assert all(0 <= r["late_ms"] < 100 for r in records), records

    text = cli("tail", "-n", "1", "--count", "1", "--dsn", dsn(cluster))
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    # Named with its schema: the command's search_path is pg_catalog's alone.
    assert lines[0].startswith("following public.log_table in database postgres")
    assert len(lines) == 3 and all(
        re.search(r"STILL ALIVE and counting! \d+  late [\d.]+ ms$", x) for x in lines[1:]
    )


def test_tail_on_a_standby_infers_the_grid(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(
        setup_sql=[
            "CREATE ROLE watcher LOGIN IN ROLE pg_monitor",
            f"{ORIGINAL_TABLE.replace('log_table', 'other')}",
        ],
        extension=True,
    )
    standby = streaming_standby(primary, make_standby)
    result = cli("tail", "--json", "-n", "0", "--count", "4", "--dsn", dsn(standby))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 4 and all(r["grid"] == "inferred" for r in records)
    assert all(r["late_ms"] is not None and r["late_ms"] < 100 for r in records), records

    # A monitoring role reads the configured table as lag() does, through the
    # extension's reader (1.3); another table only with SELECT on it.
    watched = cli("tail", "-n", "0", "--count", "1", "--dsn", dsn(standby, user="watcher"))
    assert watched.returncode == 0 and "STILL ALIVE and counting!" in watched.stdout, watched.stderr
    denied = cli("tail", "--table", "public.other", "--dsn", dsn(standby, user="watcher"))
    assert denied.returncode == 3 and "permission denied for table public.other" in denied.stderr


# ---- lag ----


def test_lag_reports_as_a_monitoring_plugin(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(extension=True)
    standby = streaming_standby(primary, make_standby)
    ok = cli("lag", "--warn", "30", "--crit", "60", "--dsn", dsn(standby))
    assert ok.returncode == 0, ok.stdout
    [line] = ok.stdout.splitlines()
    assert re.match(
        r"OK: lag [\d.]+ ms, standby of system \d+ via .*:\d+ \(streaming\), newest heartbeat", line
    )
    assert re.search(r"\| lag=[\d.]+s;30;60;0; heartbeat_age=[\d.]+s clock_skew=-?[\d.]+s$", line)
    assert cli("lag", "--warn", "0", "--dsn", dsn(standby)).returncode == 1
    assert cli("lag", "--warn", "0", "--crit", "0", "--dsn", dsn(standby)).stdout.startswith("CRITICAL: lag ")

    reading = as_json(cli("lag", "--json", "--dsn", dsn(standby)))
    assert reading["status"] == "OK" and reading["in_recovery"] is True and reading["replay_paused"] is False
    [(system_identifier,)] = primary.sql("SELECT system_identifier FROM pg_control_system()")
    assert reading["system_identifier"] == system_identifier and reading["lag"] < 1.0

    standby.sql("SELECT pg_wal_replay_pause()")
    behind = wait_for(
        lambda: (
            r
            if (r := cli("lag", "--warn", "1", "--crit", "60", "--dsn", dsn(standby))).returncode == 1
            else None
        ),
        "a lag of a second",
    )
    assert behind.stdout.startswith("WARNING: lag ") and "replay paused" in behind.stdout
    standby.sql("SELECT pg_wal_replay_resume()")

    not_standby = cli("lag", "--dsn", dsn(primary))
    assert not_standby.returncode == 3
    assert not_standby.stdout.startswith("UNKNOWN: ") and "is not a standby" in not_standby.stdout
    cluster_port = standby.node.port
    standby.node.stop()
    down = cli("lag", "--dsn", f"host={standby.node.host} port={cluster_port}")
    assert down.returncode == 3 and down.stdout.startswith("UNKNOWN: cannot connect")


def interruptible() -> None:
    """In the command's process before exec: SIGINT as a terminal gives it.  A suite started in
    the background of a shell (``make test &``) inherits SIGINT ignored, and Python then installs
    no KeyboardInterrupt: Ctrl-C could not be tested."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_lag_watch_prints_until_interrupted(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(extension=True)
    standby = streaming_standby(primary, make_standby)
    process = subprocess.Popen(
        [str(CLI), "lag", "--watch", "0.2", "--json", "--dsn", dsn(standby)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    assert process.stdout is not None
    lines = [json.loads(process.stdout.readline()) for _ in range(3)]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
    assert all(line["status"] == "OK" and set(line["averages"]) == {"1m", "5m", "15m"} for line in lines)


def test_lag_watch_reconnects_after_a_lost_connection(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(extension=True)
    standby = streaming_standby(primary, make_standby)
    process = subprocess.Popen(
        [str(CLI), "lag", "--watch", "0.2", "--json", "--dsn", dsn(standby)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    try:
        assert process.stdout is not None
        assert json.loads(process.stdout.readline())["status"] == "OK"
        # The session is cut (as a restart or a failover cuts it): the next reading says so, then
        # the command connects again.
        standby.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'alive-worker'"
        )
        lines = [json.loads(process.stdout.readline()) for _ in range(8)]
        statuses = [line["status"] for line in lines]
        assert "UNKNOWN" in statuses, lines
        assert statuses[-1] == "OK", lines
        assert any("lost the connection" in line.get("error", "") for line in lines), lines
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    assert process.stderr is not None and "Traceback" not in process.stderr.read()


def test_lag_needs_the_extension_at_1_1(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(setup_sql=["CREATE EXTENSION alive_worker VERSION '1.0'"])
    result = cli("lag", "--dsn", dsn(cluster))
    assert result.returncode == 3 and "is version 1.0; this needs 1.1" in result.stdout
    assert "ALTER EXTENSION alive_worker UPDATE;" in result.stdout


# ---- doctor ----


def checks(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in as_json(result)["checks"]}


def test_doctor_passes_a_healthy_installation(make_cluster: Callable[..., Cluster]) -> None:
    # Healthy: as docs/SECURITY.md says, with a role that may only write heartbeats.
    cluster = make_cluster(
        settings={"role": "luca", **STEADY_INTERVAL}, setup_sql=LEAST_PRIVILEGE_SETUP, extension=True
    )
    cluster.wait_for_heartbeats(3)
    result = cli("doctor", "--dsn", dsn(cluster))
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1].startswith("OK: 0 failed, 0 warnings, ")
    found = checks(cli("doctor", "--json", "--dsn", dsn(cluster)))
    for name in (
        "server",
        "preloaded",
        "settings",
        "role",
        "extension",
        "worker postgres",
        "table postgres",
        "python",
    ):
        assert found[name]["status"] == "OK", found[name]
    assert found["environment"]["status"] == "OK" and str(ENVIRONMENT) in found["environment"]["text"]


def test_doctor_says_how_to_fix_privileges_and_a_stopped_worker(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        settings={"role": "luca", "databases": "postgres, other"},
        setup_sql=[
            "CREATE DATABASE other",
            "CREATE ROLE luca LOGIN",
            ORIGINAL_TABLE,
        ],
        extension=True,
    )
    cluster.sql("GRANT INSERT ON log_table TO luca")
    cluster.sql(ORIGINAL_TABLE, dbname="other")
    cluster.sql("GRANT INSERT ON log_table TO luca", dbname="other")
    cluster.sql("GRANT USAGE ON SEQUENCE log_table_pk_seq TO luca", dbname="other")
    cluster.wait_for_heartbeats(1, dbname="other")
    cluster.sql("SELECT alive_worker.stop('other')")
    result = wait_for(
        lambda: r if "failing" in (r := cli("doctor", "--dsn", dsn(cluster))).stdout else None,
        "a failing worker",
    )
    assert result.returncode == 2, result.stdout
    assert re.search(
        r"^  FAIL  table postgres +role luca may not use sequence public.log_table_pk_seq$",
        result.stdout,
        re.M,
    )
    assert 'fix: GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO "luca";' in result.stdout
    assert re.search(
        r'^  warn  worker other +stopped by alive_worker.stop\(\) from PID \d+ \(role "\w+"\)$',
        result.stdout,
        re.M,
    )
    assert "fix: SELECT alive_worker.start('other');" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("CRITICAL: 2 failed, ")


def test_doctor_quotes_reserved_words_in_the_grant_it_suggests(make_cluster: Callable[..., Cluster]) -> None:
    # A role named user and a table named select: a fix that pasted them bare would not parse.
    cluster = make_cluster(
        settings={"role": "user", "table": "select"},
        setup_sql=[
            'CREATE ROLE "user" LOGIN',
            'CREATE TABLE public."select" (pk serial PRIMARY KEY, message text, ts timestamp DEFAULT now())',
        ],
    )
    found = checks(cli("doctor", "--json", "--dsn", dsn(cluster)))
    table = found["table postgres"]
    assert table["status"] == "CRITICAL", table
    assert table["text"] == 'role user may not insert into public."select"'
    assert table["fix"] == 'GRANT INSERT ON public."select" TO "user";'
    # The fixes, run as given, are what the worker needed.
    cluster.sql(table["fix"])
    sequence = checks(cli("doctor", "--json", "--dsn", dsn(cluster)))["table postgres"]
    assert sequence["fix"] == 'GRANT USAGE ON SEQUENCE public.select_pk_seq TO "user";'
    cluster.sql(sequence["fix"])
    cluster.wait_for_heartbeats(1, table='public."select"')
    assert checks(cli("doctor", "--json", "--dsn", dsn(cluster)))["table postgres"]["status"] == "OK"


def test_doctor_sees_a_library_that_is_not_preloaded(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster()
    cluster.node.append_conf(shared_preload_libraries="")
    cluster.node.restart()
    not_loaded = checks(cli("doctor", "--json", "--dsn", dsn(cluster)))
    assert not_loaded["preloaded"]["status"] == "CRITICAL"
    assert "Add alive_worker to shared_preload_libraries" in not_loaded["preloaded"]["fix"]

    cluster.sql("ALTER SYSTEM SET shared_preload_libraries = 'alive_worker'")
    cluster.sql("SELECT pg_reload_conf()")
    result = wait_for(
        lambda: r if "not been restarted" in (r := cli("doctor", "--dsn", dsn(cluster))).stdout else None,
        "the pending restart",
    )
    assert result.returncode == 2 and "fix: Restart the server." in result.stdout


def test_doctor_as_a_monitoring_role_skips_what_needs_a_superuser(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(
        settings={"role": "luca"},
        setup_sql=[
            "CREATE ROLE watcher LOGIN IN ROLE pg_monitor",
            *LEAST_PRIVILEGE_SETUP,
        ],
        extension=True,
    )
    cluster.wait_for_heartbeats(2)
    result = cli("doctor", "--json", "--dsn", dsn(cluster, user="watcher"))
    assert result.returncode == 0, result.stdout
    found = checks(result)
    assert found["worker postgres"]["status"] == "OK"
    assert found["environment"]["status"] == "UNKNOWN" and "needs a superuser" in found["environment"]["text"]
    unreachable = cli("doctor", "--dsn", "host=127.0.0.1 port=1")
    assert unreachable.returncode == 3 and "cannot connect" in unreachable.stderr


def test_doctor_reads_the_server_log_when_it_may(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"role": "bob"}, setup_sql=["CREATE ROLE bob LOGIN", ORIGINAL_TABLE])
    cluster.node.append_conf(logging_collector="on", log_directory="collected")
    cluster.node.restart()
    result = wait_for(
        lambda: r if "server log" in (r := cli("doctor", "--dsn", dsn(cluster))).stdout else None,
        "the worker's error in the server log",
    )
    assert re.search(
        r"^  warn  server log +1 alive_worker warnings or errors near the end of the server log, the last:\n"
        r" +\S+ \S+ \S+ \[\d+\] ERROR:  permission denied: role \"bob\" lacks INSERT on table public.log_table$",
        result.stdout,
        re.M,
    ), result.stdout


def test_status_judges_a_stale_heartbeat_whatever_the_state(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"tick_timeout": "60s"}, extension=True)
    pid = cluster.wait_for_worker()
    cluster.wait_for_heartbeats(3)
    assert cli("status", "--dsn", dsn(cluster)).returncode == 0
    with cluster.connect() as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE public.log_table IN ACCESS EXCLUSIVE MODE")
        cluster.wait_until_waiting(pid, "wait_event_type", "Lock", "the worker to wait for the lock")
        # Blocked, and with limits far away, only the state's WARNING.
        patient = cli("status", "--warn", "1000", "--crit", "2000", "--dsn", dsn(cluster))
        assert patient.returncode == 1 and patient.stdout.startswith("WARNING: 1 blocked on a lock"), (
            patient.stdout
        )
        assert re.search(
            r"^postgres: blocked on a lock \(since .* ago\): waiting for a lock", patient.stdout, re.M
        )
        # Ten intervals (1 s) without an OK heartbeat: CRITICAL, though no tick has failed yet.
        stale = wait_for(
            lambda: r if (r := cli("status", "--dsn", dsn(cluster))).returncode == 2 else None, "CRITICAL"
        )
        assert re.search(
            r"^postgres: last OK heartbeat .* ago, more than 10 intervals \(1\.00 s\)$", stale.stdout, re.M
        )
        report = as_json(cli("status", "--json", "--warn", "2", "--dsn", dsn(cluster)))
        assert report["status"] == "CRITICAL" and report["workers"][0]["status"] == "CRITICAL"
        assert "more than 10 intervals" in report["workers"][0]["status_reason"]
        locker.execute("ROLLBACK")
    assert wait_for(lambda: r if (r := cli("status", "--dsn", dsn(cluster))).returncode == 0 else None, "OK")
    assert cli("status", "--warn", "0", "--dsn", dsn(cluster)).returncode == 3


def test_status_of_a_worker_that_cannot_connect_is_critical(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"databases": "postgres, db_missing"}, extension=True)
    cluster.wait_for_heartbeats(1)
    result = wait_for(
        lambda: r if (r := cli("status", "--dsn", dsn(cluster))).returncode == 2 else None, "CRITICAL"
    )
    assert result.stdout.startswith("CRITICAL: 1 cannot connect, 1 ") or result.stdout.startswith(
        "CRITICAL: 1 backing off, 1 "
    ), result.stdout
    assert re.search(
        r'^db_missing: last error .* ago: 3D000 database "db_missing" does not exist$', result.stdout, re.M
    )
    assert re.search(r"^db_missing: next attempt in ", result.stdout, re.M)


def test_unexpected_failure_is_unknown_in_one_line(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extension=True)
    cluster.wait_for_worker()
    # A view that is not the one this command knows (a hand-edited or foreign installation).
    cluster.sql(
        "ALTER EXTENSION alive_worker DROP VIEW alive_worker.workers; DROP VIEW alive_worker.workers;"
        " CREATE VIEW alive_worker.workers AS SELECT 'postgres'::text AS database, 'sleeping'::text AS state"
    )
    result = cli("status", "--dsn", dsn(cluster))
    assert result.returncode == 3
    assert result.stdout == ""
    assert re.fullmatch(r"alive-worker status: error: unexpected KeyError: '\w+'\n", result.stderr), (
        result.stderr
    )
