"""What every runner tick's transaction sets for itself (alive_worker.runner.loop.tick_start)."""

from __future__ import annotations

from alive_worker.runner.loop import CONNECTION_CHECK_MS, tick_start


def test_the_tick_sets_its_timeouts_path_and_role_for_itself_in_its_own_transaction() -> None:
    statements = tick_start(2500, 160000).split("; ")
    assert statements[0] == "BEGIN"
    # SET LOCAL only: nothing the tick sets outlives it, nothing set before it holds in it.
    assert all(statement.startswith("SET LOCAL ") for statement in statements[1:])
    assert "SET LOCAL statement_timeout = 2500" in statements
    assert "SET LOCAL idle_in_transaction_session_timeout = 2500" in statements
    assert "SET LOCAL lock_timeout = 0" in statements
    assert "SET LOCAL search_path = pg_catalog, pg_temp" in statements
    assert statements.index("SET LOCAL SESSION AUTHORIZATION DEFAULT") < statements.index(
        "SET LOCAL ROLE NONE"
    )
    assert f"SET LOCAL client_connection_check_interval = {CONNECTION_CHECK_MS}" in statements


def test_servers_before_14_are_not_asked_for_a_connection_check_they_do_not_have() -> None:
    assert "client_connection_check_interval" not in tick_start(1000, 130012)
    assert "client_connection_check_interval" in tick_start(1000, 140000)
