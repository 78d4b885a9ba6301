"""The log table and the worker's role: auto-creation, least privilege, clear errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import LEAST_PRIVILEGE_SETUP, MESSAGE, ORIGINAL_TABLE, Cluster, write_hook


def test_role_with_only_insert_and_sequence_usage_works(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        settings={"role": "luca"},
        setup_sql=LEAST_PRIVILEGE_SETUP,
    )
    rows = cluster.wait_for_heartbeats(3)
    assert [m for _, m in rows[:3]] == [f"{MESSAGE} {n}" for n in (1, 2, 3)]
    assert "as [luca]" in cluster.wait_for_log(r"alive_worker executing query \[.*\] as \[luca\]").group(0)
    assert 'role "luca"' in cluster.log()


def test_missing_privilege_is_reported_and_heartbeats_resume_when_granted(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(settings={"role": "luca"}, setup_sql=["CREATE ROLE luca LOGIN", ORIGINAL_TABLE])
    pid = cluster.wait_for_worker()
    cluster.wait_for_log(r'ERROR:  permission denied: role "luca" lacks INSERT on table public\.log_table')
    cluster.wait_for_log(r"HINT:  GRANT INSERT ON public\.log_table TO luca;")

    cluster.sql("GRANT INSERT ON public.log_table TO luca")
    cluster.wait_for_log(
        r'ERROR:  permission denied: role "luca" lacks USAGE on sequence public\.log_table_pk_seq of table public\.log_table'
    )
    assert cluster.heartbeats() == []

    cluster.sql("GRANT USAGE ON SEQUENCE public.log_table_pk_seq TO luca")
    rows = cluster.wait_for_heartbeats(2)
    assert rows[0][1] == f"{MESSAGE} 1"
    assert cluster.worker_pid() == pid, "a failing tick must not end the worker"


def test_table_the_role_may_not_create_is_a_clear_error(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"role": "luca"}, setup_sql=["CREATE ROLE luca LOGIN"])
    cluster.wait_for_log(
        r"ERROR:  alive_worker cannot create log table public\.log_table: permission denied for schema public"
    )
    assert cluster.worker_pid() is not None
    cluster.sql("GRANT CREATE ON SCHEMA public TO luca")
    cluster.wait_for_heartbeats(2)
    owner = cluster.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'log_table'")
    assert owner == [("luca",)]


def test_missing_schema_is_created_with_the_table(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(settings={"schema": "heart beat", "table": "Log"})
    cluster.wait_for_heartbeats(2, table='"heart beat"."Log"')
    cluster.wait_for_log(r'alive_worker created log table "heart beat"\."Log"')


def test_table_without_message_column_names_what_it_expected(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(setup_sql=["CREATE TABLE public.log_table (pk serial PRIMARY KEY, note text)"])
    cluster.wait_for_log(r'ERROR:  alive_worker log table public\.log_table has no column "message"')
    assert cluster.worker_pid() is not None


def test_tick_runs_as_the_configured_role_not_a_superuser(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(
        tmp_path,
        """
from alive_worker import spi

def hook(tick):
    spi.execute(
        "INSERT INTO public.whoami SELECT current_user, session_user, rolsuper FROM pg_roles WHERE rolname = current_user"
    )
""",
    )
    cluster = make_cluster(
        settings={"role": "luca", "hook": hook},
        setup_sql=[
            *LEAST_PRIVILEGE_SETUP,
            "CREATE TABLE whoami (acting_role name, connected_role name, superuser bool)",
            "GRANT INSERT ON whoami TO luca",
        ],
    )
    cluster.wait_for_heartbeats(1)
    assert cluster.sql("SELECT DISTINCT * FROM whoami") == [("luca", "luca", False)]
