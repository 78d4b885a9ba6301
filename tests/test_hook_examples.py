"""The example hooks of the README (alive_worker/examples), run as a user would set them."""

from __future__ import annotations

import json
from collections.abc import Callable

from conftest import UNHURRIED, Cluster, wait_for
from test_hooks import status


def test_replication_slot_sizes_are_recorded(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        # Unhurried: no failure at all is expected, and a host's start may
        # outlast the 100 ms tick timeout on a busy machine.
        settings={"hook": "alive_worker.examples.replication_slots:hook", **UNHURRIED},
        setup_sql=[
            "CREATE TABLE public.replication_slot_sizes (at timestamptz NOT NULL DEFAULT now(), "
            "slot_name name NOT NULL, active boolean NOT NULL, retained_bytes numeric NOT NULL)",
            "SELECT pg_create_physical_replication_slot('gone_standby', true)",
        ],
    )
    cluster.wait_for_heartbeats(3)
    rows = wait_for(
        lambda: (
            rows
            if len(
                rows := cluster.sql(
                    "SELECT slot_name, active, retained_bytes FROM public.replication_slot_sizes"
                )
            )
            >= 3
            else None
        ),
        "three recorded sizes",
    )
    assert {(name, active) for name, active, _ in rows} == {("gone_standby", False)}
    assert all(size >= 0 for _, _, size in rows)
    assert status(cluster)["hook_failures"] == 0


def test_a_table_not_written_recently_fails_the_hook_not_the_heartbeat(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(
        settings={"hook": "alive_worker.examples.freshness:hook"},
        setup_sql=[
            "CREATE TABLE public.orders (created_at timestamptz NOT NULL)",
            "INSERT INTO public.orders VALUES (now() - interval '1 hour')",
        ],
        conf={
            "hooks.fresh_table": "public.orders",
            "hooks.fresh_column": "created_at",
            "hooks.fresh_within": "2s",
        },
    )
    cluster.wait_for_log(
        r"WARNING:  alive_worker hook failed: StaleTable: (public\.)?orders has no row newer than 2s"
    )
    count = len(cluster.heartbeats())
    cluster.wait_for_heartbeats(count + 3)
    assert status(cluster)["hook_failures"] >= 3
    cluster.mark_log()
    cluster.sql("INSERT INTO public.orders VALUES (now())")
    cluster.wait_for_log(r"LOG:  alive_worker hook succeeded again after \d+ failures")


def test_each_heartbeat_reaches_a_logical_decoding_consumer(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        settings={"hook": "alive_worker.examples.cdc_marker:hook"},
        setup_sql=["ALTER SYSTEM SET wal_level = 'logical'"],
    )
    cluster.wait_for_heartbeats(1)
    cluster.sql("SELECT pg_create_logical_replication_slot('cdc', 'test_decoding')")
    count = len(cluster.heartbeats())
    cluster.wait_for_heartbeats(count + 3)
    changes = [
        data for (data,) in cluster.sql("SELECT data FROM pg_logical_slot_get_changes('cdc', NULL, NULL)")
    ]
    messages = [data for data in changes if data.startswith("message: transactional: 1 prefix: alive_worker")]
    assert len(messages) >= 3
    ticks = [json.loads(message.split("content:", 1)[1])["tick"] for message in messages]
    assert ticks == sorted(ticks) and ticks[0] > count - 1
    # In the heartbeat's own transaction: each message sits among its INSERT.
    assert any("table public.log_table: INSERT" in data for data in changes)


def test_the_examples_refuse_what_a_role_below_superuser_controls(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(
        settings={"hook": "alive_worker.examples.freshness:hook"},
        setup_sql=[
            "CREATE TABLE public.orders (created_at timestamptz NOT NULL)",
            # A database owner may do this: it reaches the worker's session too.
            "ALTER DATABASE postgres SET hooks.fresh_table = 'public.orders'",
        ],
        conf={"hooks.fresh_column": "created_at"},
    )
    cluster.wait_for_log(
        r"WARNING:  alive_worker hook failed: Untrusted: hooks.fresh_table is set by ALTER DATABASE, "
        r"not the server's configuration: refused"
    )
    cluster.mark_log()
    cluster.sql("CREATE ROLE app")
    cluster.sql(
        "CREATE TABLE public.replication_slot_sizes (at timestamptz NOT NULL DEFAULT now(), "
        "slot_name name NOT NULL, active boolean NOT NULL, retained_bytes numeric NOT NULL)"
    )
    cluster.sql("ALTER TABLE public.replication_slot_sizes OWNER TO app")
    cluster.set(hook="alive_worker.examples.replication_slots:hook")
    cluster.wait_for_log(
        r"WARNING:  alive_worker hook failed: Untrusted: public.replication_slot_sizes is owned by a role "
        r"other than the worker's and not a superuser: refused"
    )
