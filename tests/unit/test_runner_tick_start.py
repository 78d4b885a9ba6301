"""What every runner tick's transaction sets for itself (alive_worker.runner.loop.tick_start).

That the statement sets what the SET LOCAL statements it stands for set, on a
real server: tests/test_runner.py, test_the_tick_s_settings_statement_sets_what_set_local_sets.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from alive_worker.runner import state
from alive_worker.runner.loop import (
    CONNECTION_CHECK_MS,
    SESSION_RESET,
    WITNESS_PREFIX,
    tick_frame,
    tick_start,
)


def settings_of(statement: str) -> list[tuple[str, str | None]]:
    """(name, value) of each set_config(name, value, true), in order; None for NULL (the default)."""
    assert statement.startswith("SELECT ")
    calls = re.findall(r"pg_catalog\.set_config\('(\w+)', (NULL|'[^']*'), (\w+)\)", statement)
    # Nothing else in the statement, and every call local to the tick's transaction.
    assert statement == "SELECT " + ", ".join(
        f"pg_catalog.set_config('{name}', {value}, {local})" for name, value, local in calls
    )
    assert all(local == "true" for _, _, local in calls)
    return [(name, None if value == "NULL" else value.strip("'")) for name, value, _ in calls]


def test_the_tick_sets_its_timeouts_path_and_role_for_itself_in_its_own_transaction() -> None:
    settings = settings_of(tick_start(2500, 160000))
    assert settings == [
        ("session_authorization", None),  # SET LOCAL SESSION AUTHORIZATION DEFAULT, then
        ("role", "none"),  # SET LOCAL ROLE NONE
        ("search_path", "pg_catalog, pg_temp"),
        ("DateStyle", "ISO, MDY"),
        ("IntervalStyle", "postgres"),
        ("TimeZone", "UTC"),
        ("statement_timeout", "2500"),
        ("lock_timeout", "0"),
        ("idle_in_transaction_session_timeout", "2500"),
        # The heartbeat's own commit waits for no standby: the witness's does (tick_frame).
        ("synchronous_commit", "local"),
        ("client_connection_check_interval", str(CONNECTION_CHECK_MS)),
    ]


def test_servers_before_14_are_not_asked_for_a_connection_check_they_do_not_have() -> None:
    assert "client_connection_check_interval" not in dict(settings_of(tick_start(1000, 130012)))
    assert "client_connection_check_interval" in dict(settings_of(tick_start(1000, 140000)))


def test_after_commit_the_session_is_reset_but_its_lock_then_one_statement_locks_names_and_writes_the_witness() -> (
    None
):
    name = state.application_name(state.SLEEPING, 1000)
    frame = tick_frame(2500, 180000, name, "16384", "public", "log_table")
    *resets, (unlock, no_params), (check, params) = frame.after_commit
    # DISCARD ALL's parts, but its freeing of every advisory lock, the runner's with them.
    assert [statement for statement, _ in resets] == list(SESSION_RESET)
    assert "DISCARD ALL" not in SESSION_RESET
    # Other sessions are kept off the runner's key (a transaction's lock) while every session
    # lock is freed, until the lock is taken again, in the same transaction.
    assert unlock.index("pg_try_advisory_xact_lock(") < unlock.index("pg_advisory_unlock_all()")
    assert no_params == ()
    # The names and the state's name as parameters, nothing of theirs in the text.
    assert params == ("public", "log_table", name)
    assert "log_table" not in check and name not in check
    assert check.startswith("SELECT pg_catalog.pg_try_advisory_lock(")
    assert "pg_catalog.set_config('application_name', $3, false)" in check
    assert "pg_catalog.set_config('client_min_messages', 'warning', true)" in check
    assert f"pg_catalog.pg_logical_emit_message(true, '{WITNESS_PREFIX}'::pg_catalog.text," in check
    # Every function and operator named with its schema: no search_path reaches them.
    for statement in (unlock, check):
        assert not re.findall(
            r"(?<![.\w])(?!pg_catalog\b)[a-z_]+\(", statement.replace("SELECT c.oid", "")
        ), statement


def test_a_signal_that_interrupts_the_notice_receiver_is_told_it_is_inside_libpq() -> None:
    """The runner's signal handlers close the connection; inside libpq's reading they must not."""
    from alive_worker.runner import client_spi
    from alive_worker.runner.loop import _inside_libpq

    seen: list[Any] = []

    class Notice:
        def error_field(self, field: object) -> bytes:
            seen.append(sys._getframe(1))  # the receiver's frame, as a handler would find it
            return b"NOTICE"

    client_spi._note_notice(Notice())  # type: ignore[arg-type]
    assert _inside_libpq(seen[0])
    assert not _inside_libpq(sys._getframe())
    assert not _inside_libpq(None)
