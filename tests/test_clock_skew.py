"""lag() on a standby whose clock is off: the primary's clock, heard in replication, corrects it.

Every process of the standby must see the skewed clock, or the test proves
nothing (libfaketime misses some of PostgreSQL's processes: see
/work/shared/notes/clock-skew-testing.md).  The test builds a small
LD_PRELOAD library that shifts CLOCK_REALTIME (clock_gettime,
gettimeofday, time) by an offset from the environment, leaves the
monotonic clocks alone, starts the standby's postmaster under it, and
checks the skew in every backend type's start time, in the standby's
now(), in the WAL receiver's times, and in the reply times the primary
receives from it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import testgres
from conftest import Cluster, streaming_standby, wait_for
from test_cli import cli, dsn

SKEWS = (-5.0, -3.0, 0.0, 3.0, 5.0)
# The bound; the goal is 10 ms.
MAX_ERROR = 0.050

SKEW_LIBRARY = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long offset_ns;
static int (*real_clock_gettime) (clockid_t, struct timespec *);

__attribute__((constructor)) static void
read_offset(void)
{
    const char *ms = getenv("ALIVE_WORKER_TEST_SKEW_MS");

    offset_ns = ms ? atoll(ms) * 1000000LL : 0;
    real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
}

int
clock_gettime(clockid_t clock, struct timespec *ts)
{
    int result;

    if (real_clock_gettime == NULL)
        real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    result = real_clock_gettime(clock, ts);
    if (result == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE))
    {
        long long ns = ts->tv_sec * 1000000000LL + ts->tv_nsec + offset_ns;

        ts->tv_sec = ns / 1000000000LL;
        ts->tv_nsec = ns % 1000000000LL;
    }
    return result;
}

int
gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (tv)
    {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t
time(time_t *t)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (t)
        *t = ts.tv_sec;
    return ts.tv_sec;
}
"""


@pytest.fixture(scope="module")
def skew_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("skew")
    source = directory / "skew.c"
    source.write_text(SKEW_LIBRARY)
    library = directory / "skew.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(source), "-ldl"], check=True)
    os.chmod(directory, 0o755)
    return library


def start_skewed(standby: Cluster, library: Path, skew: float) -> None:
    """(Re)starts the standby with every process of it skew seconds off the real clock."""
    if standby.node.status() == testgres.NodeStatus.Running:
        standby.node.stop()
    env = {**os.environ, "LD_PRELOAD": str(library), "ALIVE_WORKER_TEST_SKEW_MS": str(int(skew * 1000))}
    standby.node.start(exec_env=env)


def wait_for_new_heartbeats(primary: Cluster, standby: Cluster) -> None:
    count = len(primary.heartbeats())
    wait_for(lambda: len(standby.heartbeats()) > count + 2, "heartbeats replayed by the skewed standby")


def primary_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def check_every_process_is_skewed(primary: Cluster, standby: Cluster, skew: float, started: datetime) -> None:
    """backend_start of each backend type, now(), the WAL receiver: all on the skewed clock."""
    with primary.connect() as real:
        now = primary_now(real)
        rows = standby.sql(
            "SELECT backend_type, backend_start FROM pg_stat_activity WHERE backend_start IS NOT NULL"
        )
        types = {backend_type for backend_type, _ in rows}
        assert {"startup", "walreceiver", "checkpointer", "background writer", "client backend"} <= types, (
            types
        )
        for backend_type, backend_start in rows:
            real_start = backend_start - timedelta(seconds=skew)
            assert started - timedelta(seconds=1) <= real_start <= now + timedelta(seconds=1), (
                backend_type, backend_start, started, now,
            )  # fmt: skip
        [(standby_now,)] = standby.sql("SELECT clock_timestamp()")
        assert abs((standby_now - primary_now(real)).total_seconds() - skew) < 0.5
        # The WAL receiver's clock, seen from both ends.
        [(receipt, send)] = standby.sql(
            "SELECT last_msg_receipt_time, last_msg_send_time FROM pg_stat_wal_receiver"
        )
        assert abs((receipt - send).total_seconds() - skew) < 0.5
        [(reply,)] = real.execute("SELECT reply_time FROM pg_stat_replication").fetchall()
        assert abs((reply - primary_now(real)).total_seconds() - skew) < 15  # replies every 10 s
        if abs(skew) >= 3:
            assert abs((reply - primary_now(real)).total_seconds()) > 1


def lag_error(primary: Cluster, standby: Cluster) -> tuple[float, dict[str, Any]]:
    """lag() against the truth, by the primary's clock, with replay paused."""
    standby.sql("SELECT pg_wal_replay_pause()")
    wait_for(lambda: standby.sql("SELECT pg_get_wal_replay_pause_state()")[0][0] == "paused", "replay paused")
    with primary.connect() as real, standby.connect() as conn:
        conn.row_factory = psycopg.rows.dict_row

        def reading() -> tuple[datetime, dict[str, Any], datetime]:
            before = primary_now(real)
            row = conn.execute("SELECT * FROM alive_worker.lag()").fetchone()
            assert row is not None
            return before, dict(row), primary_now(real)

        wait_for(
            lambda: reading()[1]["lag"] > timedelta(seconds=1), "1 s of lag with replay paused", timeout=30
        )
        before, measured, after = reading()
    # The truth: how long the first heartbeat the standby lacks has been waiting.
    [(first_missing,)] = primary.sql(
        "SELECT min(ts) AT TIME ZONE 'UTC' FROM log_table WHERE ts > %s AT TIME ZONE 'UTC'",
        [measured["last_heartbeat_at"]],
    )
    midpoint = before + (after - before) / 2
    truth = (midpoint - first_missing).total_seconds()
    bracket = (after - before).total_seconds() / 2
    standby.sql("SELECT pg_wal_replay_resume()")
    error = measured["lag"].total_seconds() - truth
    print(
        f"skew {measured['clock_skew']}: lag {measured['lag']}, truth {truth:.4f} s +- {bracket:.4f} s, error {error:+.4f} s"
    )
    # The primary's clock readings bracket the measurement: only what lies outside counts.
    return (0.0 if abs(error) <= bracket else error - bracket * (1 if error > 0 else -1)), measured


def test_lag_is_right_while_the_standby_clock_is_off(
    make_cluster: Callable[..., Cluster],
    make_standby: Callable[[Cluster], Cluster],
    skew_library: Path,
) -> None:
    primary = make_cluster(settings={"interval": "200ms"}, extension=True)
    standby = streaming_standby(primary, make_standby)
    figures = {}
    for skew in SKEWS:
        with primary.connect() as real:
            started = primary_now(real)
        start_skewed(standby, skew_library, skew)
        wait_for_new_heartbeats(primary, standby)
        check_every_process_is_skewed(primary, standby, skew, started)

        error, measured = lag_error(primary, standby)
        figures[skew] = error
        assert abs(error) < MAX_ERROR, (skew, error, measured)
        assert abs(measured["clock_skew"].total_seconds() - skew) < MAX_ERROR, (skew, measured)
        assert measured["heartbeat_age"] > timedelta(0)

        # The command warns about the skew, by --max-skew, and never hides it.
        wait_for(
            lambda: standby.sql("SELECT pg_get_wal_replay_pause_state()")[0][0] == "not paused", "resumed"
        )
        result = cli("lag", "--dsn", dsn(standby), "--crit", "2", "--max-skew", "1")
        if abs(skew) > 1:
            assert result.returncode == 1, result.stdout
            direction = "ahead of" if skew > 0 else "behind"
            assert re.search(
                rf"this server's clock is [0-9.]+ s {direction} the primary's \(--max-skew 1 s\)",
                result.stdout,
            )
        else:
            assert result.returncode == 0, result.stdout
        reported = re.search(r"clock_skew=(-?[0-9.]+)s", result.stdout)
        assert reported is not None and abs(float(reported[1]) - skew) < MAX_ERROR, result.stdout
    print("lag error by standby clock skew (s):", {k: round(v, 4) for k, v in figures.items()})

    # Without a WAL receiver nothing tells the primary's clock: a standby 3 s behind sees
    # heartbeats from the future, and the command never calls that OK.
    start_skewed(standby, skew_library, -3.0)
    wait_for_new_heartbeats(primary, standby)
    standby.sql("ALTER SYSTEM SET primary_conninfo = ''")
    standby.sql("SELECT pg_reload_conf()")
    wait_for(lambda: standby.sql("SELECT count(*) FROM pg_stat_wal_receiver") == [(0,)], "no WAL receiver")
    # From 1.3 such rows are no evidence at all (issue 19): left out, and reported.
    [(skew, age, future)] = standby.sql(
        "SELECT clock_skew, heartbeat_age, future_heartbeat_at IS NOT NULL FROM alive_worker.lag()"
    )
    assert skew is None and age is None and future
    result = cli("lag", "--dsn", dsn(standby), "--crit", "10")
    assert result.returncode == 2, result.stdout
    assert "in the future" in result.stdout
