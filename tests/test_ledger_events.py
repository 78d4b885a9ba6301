"""The ledger's events on real clusters: each way a gap comes about is written with its cause,
on the primary and, replicated, on a standby; the report names it; retention keeps the ledger."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import CREATE_EXTENSION, LEAST_PRIVILEGE_SETUP, Cluster, streaming_standby, wait_for
from test_report import report, utc

EVENT_COLUMNS = "kind, cause, at, outage_from, detail, sqlstate, timeline"


def events(cluster: Cluster, kind: str | None = None) -> list[dict[str, Any]]:
    rows = cluster.sql(f"SELECT {EVENT_COLUMNS} FROM alive_worker.events ORDER BY pk")
    found = [dict(zip(EVENT_COLUMNS.split(", "), row, strict=True)) for row in rows]
    return [e for e in found if kind is None or e["kind"] == kind]


def wait_for_event(
    cluster: Cluster, kind: str, cause: str, after: int = 0, timeout: float = 20.0
) -> dict[str, Any]:
    """The first event of this kind and cause after the first `after` events."""

    def found() -> dict[str, Any] | None:
        matching = [e for e in events(cluster)[after:] if (e["kind"], e["cause"]) == (kind, cause)]
        return matching[0] if matching else None

    return wait_for(found, f"a {kind} event with cause {cause}", timeout)


def the_window(cluster: Cluster, *args: str) -> dict[str, Any]:
    """The report's one outage over the last ten minutes."""
    _, found = report(cluster, "--since", "10min", "--slo", "50", *args)
    assert len(found["outages"]) == 1, found["outages"]
    outage: dict[str, Any] = found["outages"][0]
    return outage


def test_stop_and_start_is_a_planned_window_naming_the_caller_on_the_primary_and_a_standby(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    cluster = make_cluster(settings={"interval": "200ms"}, extension=True)
    wait_for_event(cluster, "started", "first start")
    standby = streaming_standby(cluster, make_standby)
    with cluster.connect() as conn:
        caller = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        conn.execute("SELECT alive_worker.stop('postgres')")
        stopped_at = datetime.now(UTC)
        time.sleep(1.5)
        conn.execute("SELECT alive_worker.start('postgres')")
    started = wait_for_event(cluster, "started", "stop")
    [stopped] = events(cluster, "stopped")
    assert stopped["cause"] == "stop" and f"stop() called by pid {caller}" in stopped["detail"]
    assert abs(stopped["at"] - stopped_at) < timedelta(seconds=1)
    assert started["outage_from"] <= stopped["at"] < started["at"]
    outage = the_window(cluster)
    assert outage["cause"] == "planned" and f"pid {caller}" in outage["detail"], outage
    assert (utc(outage["start"]), utc(outage["end"])) == (started["outage_from"], started["at"])
    wait_for(
        lambda: len(events(standby)) == len(events(cluster)) or None, "the events replayed on the standby"
    )
    assert the_window(standby) == outage


def test_a_start_whose_ledger_is_held_up_writes_its_window_with_a_later_heartbeat(
    make_cluster: Callable[..., Cluster],
) -> None:
    """The first heartbeats after a start may commit while the ledger cannot be written (its table
    locked, or a tick timeout on a loaded server): the start's events come with a later heartbeat,
    for the window that the first heartbeat ended."""
    cluster = make_cluster(settings={"interval": "200ms", "tick_timeout": "500ms"}, extension=True)
    wait_for_event(cluster, "started", "first start")
    cluster.wait_for_heartbeats(3)
    cluster.sql("SELECT alive_worker.stop('postgres')")
    time.sleep(1.5)
    cluster.mark_log()
    with cluster.connect() as holder:
        holder.autocommit = False
        holder.execute("LOCK TABLE alive_worker.events IN ACCESS EXCLUSIVE MODE")
        cluster.sql("SELECT alive_worker.start('postgres')")
        cluster.wait_for_log(r"WARNING:  alive_worker keeps no ledger for now: canceling statement")
        count = len(cluster.heartbeats())
        cluster.wait_for_heartbeats(count + 5)  # committed while the ledger waits
        released_at = datetime.now(UTC)
    started = wait_for_event(cluster, "started", "stop")
    assert started["at"] < released_at - timedelta(seconds=0.5), (started, released_at)
    outage = the_window(cluster)
    assert outage["cause"] == "planned", (outage, events(cluster))
    assert utc(outage["start"]) == started["outage_from"]
    # Stamped as its first heartbeat, whose tick waited for the lock before its INSERT.
    assert started["at"] == utc(outage["end"]), (started, outage)


def test_a_clean_restart_is_planned_and_an_immediate_stop_a_crash_on_the_primary_and_a_standby(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(settings={"interval": "200ms"}, extension=True)
    standby = streaming_standby(primary, make_standby)
    seen = len(events(primary))
    primary.node.stop()  # fast: a shutdown checkpoint
    time.sleep(1)
    primary.node.start()
    planned = wait_for_event(primary, "started", "shutdown", after=seen)
    assert "the server shut down cleanly" in events(primary, "stopped")[-1]["detail"]
    # The worker wrote one more heartbeat as the shutdown began: the window starts there.
    [stopping] = [e for e in events(primary)[seen:] if e["kind"] == "stopping"]
    assert stopping["cause"] == "shutdown", stopping
    assert abs(stopping["at"] - planned["outage_from"]) < timedelta(milliseconds=5), (stopping, planned)
    seen = len(events(primary))
    primary.node.stop(["-m", "immediate"])
    time.sleep(1)
    primary.node.start()
    crashed = wait_for_event(primary, "started", "crash", after=seen)
    assert "after crash recovery" in crashed["detail"]
    # The standby replays both, and its report tells the same windows and causes.
    wait_for(
        lambda: len(events(standby)) == len(events(primary)) or None, "the events replayed on the standby"
    )
    for cluster in (primary, standby):
        _, found = report(cluster, "--since", "10min", "--slo", "50")
        causes = [(utc(o["start"]), utc(o["end"]), o["cause"]) for o in found["outages"]]
        assert causes == [
            (planned["outage_from"], planned["at"], "planned"),
            (crashed["outage_from"], crashed["at"], "crash"),
        ], (cluster, found["outages"])


def test_an_extension_created_while_the_worker_runs_has_the_shutdown_s_event(
    make_cluster: Callable[..., Cluster],
) -> None:
    """The worker looks for the ledger once a minute, and again as the server shuts down: a
    shutdown soon after CREATE EXTENSION still writes its "stopping" event (a standby promoted
    after it names a switchover by it; make bench's Patroni switchover was named failover)."""
    cluster = make_cluster(settings={"interval": "200ms"})
    cluster.wait_for_heartbeats(3)
    cluster.sql(CREATE_EXTENSION)
    cluster.node.stop()  # fast: a shutdown checkpoint
    time.sleep(1)  # a window: longer than two intervals
    cluster.node.start()
    started = wait_for_event(cluster, "started", "shutdown")
    [stopping] = events(cluster, "stopping")
    assert stopping["cause"] == "shutdown", stopping
    assert abs(stopping["at"] - started["outage_from"]) < timedelta(milliseconds=5), (stopping, started)


def test_rows_a_client_dated_bc_or_minus_infinity_fail_no_tick_after_a_restart(
    make_cluster: Callable[..., Cluster],
) -> None:
    """The start reads the table's newest heartbeat before it: rows of a role with INSERT dated
    where Python's datetime cannot go are no heartbeat, never a tick that fails (a red team's
    rows stopped every heartbeat until a superuser deleted them)."""
    cluster = make_cluster(settings={"interval": "200ms"}, extension=True)
    cluster.wait_for_heartbeats(3)
    cluster.sql(
        "INSERT INTO public.log_table (pk, message, ts) SELECT 2147483647 - g, 'x', "
        "CASE WHEN g % 2 = 0 THEN '-infinity'::timestamp ELSE '0001-01-01 BC'::timestamp END "
        "FROM generate_series(0, 99) g"
    )
    cluster.node.stop()
    cluster.node.start()
    # The window itself is hidden: a hundred rows with the highest pks outvote the worker's
    # (docs/SECURITY.md: only the worker's role should hold INSERT on the table).
    wait_for(lambda: len(events(cluster, "started")) >= 2 or None, "the start's events")
    count = len(cluster.heartbeats())
    cluster.wait_for_heartbeats(count + 5)
    assert cluster.sql("SELECT ticks_failed FROM alive_worker.workers") == [(0,)]


def test_a_database_s_extra_float_digits_moves_no_window(make_cluster: Callable[..., Cluster]) -> None:
    """The last heartbeat before a start is read as numeric, which no session setting rounds (as
    float8 text, extra_float_digits = -10 made a 1 s window 10 hours long)."""
    cluster = make_cluster(settings={"interval": "200ms"}, extension=True)
    wait_for_event(cluster, "started", "first start")
    cluster.sql("ALTER DATABASE postgres SET extra_float_digits = -10")
    cluster.node.stop()  # fast: the worker reconnects with the database's settings
    time.sleep(1)
    cluster.node.start()
    started = wait_for_event(cluster, "started", "shutdown")
    [stopping] = events(cluster, "stopping")
    assert abs(stopping["at"] - started["outage_from"]) < timedelta(milliseconds=5), (stopping, started)


def test_a_backend_killed_resets_the_cluster_and_the_window_says_crash(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(settings={"interval": "200ms"}, extension=True)
    wait_for_event(cluster, "started", "first start")
    cluster.wait_for_heartbeats(5)
    # A reset takes less than two intervals here: the worker is held for a second first, so that
    # the gap is a window (and the postmaster's SIGQUIT ends it as soon as it runs again).
    worker = cluster.wait_for_worker()
    cluster.mark_log()
    os.kill(worker, signal.SIGSTOP)
    try:
        time.sleep(1)
        with cluster.connect() as victim:
            pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            os.kill(pid, signal.SIGKILL)
        # Continued before the postmaster's SIGQUIT, the worker would write one more heartbeat.
        cluster.wait_for_log("terminating any other active server processes")
    finally:
        os.kill(worker, signal.SIGCONT)
    crashed = wait_for_event(cluster, "started", "crash")
    [stopped] = events(cluster, "stopped")
    assert "a process crashed" in stopped["detail"], stopped
    assert crashed["outage_from"] is not None
    assert the_window(cluster)["cause"] == "crash"


@pytest.mark.parametrize(
    ("stop_mode", "cause", "window"),
    [
        # A clean shutdown: the old primary's last heartbeat and its "stopping" event replicate.
        ("fast", "switchover", "switchover"),
        # No shutdown checkpoint, no last heartbeat: the old primary was lost.
        ("immediate", "promotion", "failover"),
    ],
)
def test_a_promotion_is_an_event_with_its_timeline_and_a_switchover_or_failover_window(
    make_cluster: Callable[..., Cluster],
    make_standby: Callable[[Cluster], Cluster],
    stop_mode: str,
    cause: str,
    window: str,
) -> None:
    primary = make_cluster(settings={"interval": "200ms"}, extension=True)
    standby = streaming_standby(primary, make_standby)
    wait_for(lambda: len(events(standby)) == len(events(primary)) > 0 or None, "the first event replayed")
    primary.node.stop(["-m", stop_mode])
    time.sleep(1)
    standby.node.promote()
    promoted = wait_for_event(standby, "promoted", cause)
    assert promoted["timeline"] == 2 and "timeline 2" in promoted["detail"]
    # The old primary as the standby's primary_conninfo names it (host and port, never a password).
    assert f"old primary {primary.node.host}:{primary.node.port}" in promoted["detail"], promoted
    outage = the_window(standby)
    assert outage["cause"] == window, outage
    assert (utc(outage["start"]), utc(outage["end"])) == (promoted["outage_from"], promoted["at"])


def test_failing_ticks_then_a_heartbeat_are_a_blocked_window_with_their_sqlstate(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(settings={"interval": "200ms"}, extension=True)
    wait_for_event(cluster, "started", "first start")
    with cluster.connect() as conn:
        conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        conn.execute("SELECT pg_reload_conf()")
        wait_for(
            lambda: cluster.sql("SELECT ticks_failed FROM alive_worker.workers")[0][0] >= 5 or None,
            "five failed ticks",
        )
        conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        conn.execute("SELECT pg_reload_conf()")
    resumed = wait_for_event(cluster, "resumed", "failing ticks")
    assert resumed["sqlstate"] == "25006" and "read-only transaction" in resumed["detail"], resumed
    outage = the_window(cluster)
    assert outage["cause"] == "blocked" and "SQLSTATE 25006" in outage["detail"], outage


def test_retention_deletes_the_heartbeats_but_not_the_ledger(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"interval": "200ms"}, extension=True)
    wait_for_event(cluster, "started", "first start")
    cluster.wait_for_heartbeats(5)
    cluster.sql("SELECT alive_worker.stop('postgres')")
    time.sleep(1.5)
    cluster.sql("SELECT alive_worker.start('postgres')")
    started = wait_for_event(cluster, "started", "stop")
    window = the_window(cluster)
    cluster.set(retention="2s")
    wait_for(
        lambda: cluster.sql("SELECT min(ts) > %s FROM public.log_table", [started["at"]])[0][0] or None,
        "retention to delete every heartbeat around the window",
    )
    # The window is the events' now, and the ledger is measured from its start.
    kept = the_window(cluster)
    assert (kept["start"], kept["end"], kept["cause"]) == (window["start"], window["end"], "planned")
    _, found = report(cluster, "--since", "10min")
    assert utc(found["measured_from"]) <= started["outage_from"]
    # A report that ends inside the window still has it, open at its end.
    inside = (started["outage_from"] + (started["at"] - started["outage_from"]) / 2).isoformat()
    _, cut = report(cluster, "--since", "10min", "--until", inside, "--slo", "50")
    assert [(o["start"], o["end"], o["cause"]) for o in cut["outages"]] == [
        (window["start"], None, "planned")
    ]
    assert events(cluster, "started")[0]["cause"] == "first start"


def test_the_ledger_is_written_as_its_owner_and_out_of_reach_of_the_worker_s_role(
    make_cluster: Callable[..., Cluster],
) -> None:
    # The least-privilege set-up: a superuser's heartbeat table, the worker's role with INSERT only, and
    # mallory granted TRIGGER on it: her trigger runs as the worker's role, which has no right on the ledger.
    forge = """
    CREATE TABLE public.evidence (what text);
    GRANT INSERT ON public.evidence TO PUBLIC;
    GRANT TRIGGER ON public.log_table TO mallory;
    GRANT CREATE ON SCHEMA public TO mallory;
    SET ROLE mallory;
    CREATE FUNCTION public.forge() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        BEGIN
            DELETE FROM alive_worker.events;
            INSERT INTO public.evidence VALUES ('deleted');
        EXCEPTION WHEN OTHERS THEN INSERT INTO public.evidence VALUES ('refused: ' || SQLERRM);
        END;
        BEGIN
            INSERT INTO alive_worker.events (kind, cause, heartbeat_table) VALUES ('started', 'stop', 'x');
            INSERT INTO public.evidence VALUES ('forged');
        EXCEPTION WHEN OTHERS THEN INSERT INTO public.evidence VALUES ('refused: ' || SQLERRM);
        END;
        RETURN NEW;
    END $$;
    CREATE TRIGGER forge BEFORE INSERT ON public.log_table FOR EACH ROW EXECUTE FUNCTION public.forge();
    """
    cluster = make_cluster(
        settings={"interval": "200ms", "role": "luca"},
        setup_sql=[
            "CREATE ROLE mallory LOGIN",
            *LEAST_PRIVILEGE_SETUP,
            "CREATE EXTENSION alive_worker",
            forge,
        ],
    )
    # The worker's role needs no grant on the ledger: its events are written as the table's owner.
    started = wait_for_event(cluster, "started", "first start")
    assert not cluster.sql("SELECT has_table_privilege('luca', 'alive_worker.events', 'INSERT, DELETE')")[0][
        0
    ]
    wait_for(
        lambda: len(cluster.sql("SELECT * FROM public.evidence")) >= 6 or None, "mallory's trigger to run"
    )
    tried = {what for (what,) in cluster.sql("SELECT what FROM public.evidence")}
    assert tried == {"refused: permission denied for schema alive_worker"}, tried
    assert [e["at"] for e in events(cluster, "started")] == [started["at"]]
    assert cluster.sql("SELECT count(*) FROM alive_worker.events WHERE heartbeat_table = 'x'") == [(0,)]


def test_clients_refused_while_heartbeats_commit_is_a_blocked_window(
    make_cluster: Callable[..., Cluster],
) -> None:
    from test_client_probe import PROBE
    from test_clients_see import SETUP, the_worker

    cluster = make_cluster(settings=PROBE, setup_sql=SETUP, conf={"max_connections": "12"}, extension=True)
    wait_for(lambda: the_worker(cluster)["probes_ok"] >= 2 or None, "two OK probes")
    cluster.sql("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC")
    refused = wait_for_event(cluster, "refused", "clients refused")
    assert refused["sqlstate"] == "42501" and 'permission denied for database "postgres"' in refused["detail"]
    time.sleep(1)
    cluster.sql("GRANT CONNECT ON DATABASE postgres TO PUBLIC")
    admitted = wait_for_event(cluster, "admitted", "clients refused")
    assert admitted["outage_from"] == refused["at"] < admitted["at"]
    # The heartbeats went on: the one window is the refusal, from the probe's failure to its success.
    outage = the_window(cluster)
    assert (
        outage["cause"] == "blocked"
        and "clients refused: cannot connect: permission denied" in outage["detail"]
    ), outage
    assert (utc(outage["start"]), utc(outage["end"])) == (refused["at"], admitted["at"])


def test_stray_rows_of_clients_neither_hide_a_crash_nor_open_a_window(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(settings={"interval": "200ms"}, extension=True)
    wait_for_event(cluster, "started", "first start")
    cluster.wait_for_heartbeats(5)
    # A client's rows in the heartbeat table: one with the highest pk and an old time, one dated tomorrow.
    cluster.sql(
        "INSERT INTO public.log_table (pk, message, ts) VALUES"
        " (2000000000, 'a client', now() - interval '1 hour'), (1999999999, 'a client', now() + interval '1 day')"
    )
    cluster.wait_for_heartbeats(len(cluster.heartbeats()) + 3)
    [(last,)] = cluster.sql("SELECT max(ts)::timestamptz FROM public.log_table WHERE message LIKE 'STILL%'")
    seen = len(events(cluster))
    cluster.node.stop(["-m", "immediate"])
    time.sleep(1)
    cluster.node.start()
    crashed = wait_for_event(cluster, "started", "crash", after=seen)
    # The window begins at the worker's own last heartbeat, not at the stray row.
    assert crashed["outage_from"] == last, crashed
    # The row dated tomorrow opens no window and stops no reading.
    outage = the_window(cluster)
    assert (utc(outage["start"]), outage["cause"]) == (last, "crash"), outage


def test_a_standby_reports_up_to_what_it_replayed(
    make_cluster: Callable[..., Cluster], make_standby: Callable[[Cluster], Cluster]
) -> None:
    primary = make_cluster(settings={"interval": "200ms"}, extension=True)
    standby = streaming_standby(primary, make_standby)
    primary.node.stop(["-m", "immediate"])
    time.sleep(2)
    # The primary may be down or only cut off: the standby cannot tell, and says nothing past its replay.
    _, found = report(standby, "--since", "10min", "--slo", "50")
    assert found["outages"] == [], found["outages"]
    [(replayed,)] = standby.sql("SELECT pg_last_xact_replay_timestamp()")
    assert utc(found["until"]) == replayed
