"""Who the heartbeat's INSERT runs as follows the table's owner, the roles and the schema changed between ticks.

The worker keeps what its lookup of the table found (owner, privileges, who
the statement runs as) from one tick to the next, and forgets it on
PostgreSQL's invalidations (_bridge_statements.c, "what stays between
ticks").  Each test changes one thing the answer depends on under a running
worker, without making any tick fail, and sees the next ticks follow.  The
table records who wrote each row: its default runs as the role the INSERT
runs as.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import Cluster, wait_for

# The heartbeat table with a column that records the role each row was written as.
RECORDING_TABLE = """CREATE TABLE public.log_table (
    pk serial PRIMARY KEY, message text, ts timestamp without time zone DEFAULT now(),
    written_as name DEFAULT current_user)"""


def wait_for_rows_written_as(cluster: Cluster, role: str, table: str = "public.log_table") -> None:
    """Until two rows after the latest one so far are written as role."""
    after = cluster.sql(f"SELECT coalesce(max(pk), 0) FROM {table}")[0][0]
    wait_for(
        lambda: (
            cluster.sql(
                f"SELECT count(*) >= 2 FROM {table} WHERE pk > %s AND written_as = %s", [after, role]
            )[0][0]
            or None
        ),
        f"two heartbeats written as {role}",
    )


def test_new_owner_of_the_table_writes_the_next_heartbeats(make_cluster: Callable[..., Cluster]) -> None:
    # A superuser's worker writes a table as its owner (the owner rule).  The
    # old owner may still insert, through a role: no tick fails on the change
    # (a failed tick looks everything up again anyway).
    cluster = make_cluster(
        setup_sql=[
            "CREATE ROLE alice",
            "CREATE ROLE bob",
            "CREATE ROLE writers",
            "GRANT writers TO alice",
            RECORDING_TABLE,
            "ALTER TABLE public.log_table OWNER TO alice",
            "GRANT INSERT ON public.log_table TO writers",
            "GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO writers",
        ]
    )
    wait_for_rows_written_as(cluster, "alice")
    cluster.sql("ALTER TABLE public.log_table OWNER TO bob")
    wait_for_rows_written_as(cluster, "bob")


def test_owner_made_superuser_no_longer_lends_its_rights(make_cluster: Callable[..., Cluster]) -> None:
    # A lesser worker writes a superuser's table as itself: the owner's code never runs as a superuser for it.
    cluster = make_cluster(
        settings={"role": "luca"},
        setup_sql=[
            "CREATE ROLE luca LOGIN",
            "CREATE ROLE alice",
            RECORDING_TABLE,
            "ALTER TABLE public.log_table OWNER TO alice",
            "GRANT INSERT ON public.log_table TO luca",
            "GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO luca",
        ],
    )
    wait_for_rows_written_as(cluster, "alice")
    cluster.sql("ALTER ROLE alice SUPERUSER")
    wait_for_rows_written_as(cluster, "luca")
    cluster.sql("ALTER ROLE alice NOSUPERUSER")
    wait_for_rows_written_as(cluster, "alice")


def test_privilege_lost_with_a_role_membership_stops_the_heartbeat(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(
        settings={"role": "luca"},
        setup_sql=[
            "CREATE ROLE luca LOGIN",
            "CREATE ROLE writers",
            "CREATE ROLE alice",
            RECORDING_TABLE,
            "ALTER TABLE public.log_table OWNER TO alice",
            "GRANT INSERT ON public.log_table TO writers",
            "GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO writers",
            "GRANT writers TO luca",
        ],
    )
    wait_for_rows_written_as(cluster, "alice")
    cluster.mark_log()
    cluster.sql("REVOKE writers FROM luca")
    cluster.wait_for_log(r'ERROR:  permission denied: role "luca" lacks INSERT on table public\.log_table')
    cluster.sql("GRANT writers TO luca")
    wait_for_rows_written_as(cluster, "alice")


def test_usage_on_the_schema_revoked_stops_the_heartbeat(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        settings={"role": "luca", "schema": "beats"},
        setup_sql=[
            "CREATE ROLE luca LOGIN",
            "CREATE ROLE alice",
            "CREATE SCHEMA beats",
            "GRANT USAGE ON SCHEMA beats TO luca, alice",
            RECORDING_TABLE.replace("public.", "beats."),
            "ALTER TABLE beats.log_table OWNER TO alice",
            "GRANT INSERT ON beats.log_table TO luca",
            "GRANT USAGE ON SEQUENCE beats.log_table_pk_seq TO luca",
        ],
    )
    wait_for_rows_written_as(cluster, "alice", "beats.log_table")
    cluster.mark_log()
    cluster.sql("REVOKE USAGE ON SCHEMA beats FROM luca")
    cluster.wait_for_log(r"ERROR:  permission denied for schema beats")
    cluster.sql("GRANT USAGE ON SCHEMA beats TO luca")
    wait_for_rows_written_as(cluster, "alice", "beats.log_table")
