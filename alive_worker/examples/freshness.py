"""Checks that another table was written recently; fails the hook if not.

    ALTER SYSTEM SET hooks.fresh_table = 'public.orders';
    ALTER SYSTEM SET hooks.fresh_column = 'created_at';   -- a timestamptz column
    ALTER SYSTEM SET hooks.fresh_within = '5min';
    ALTER SYSTEM SET alive_worker.hook = 'alive_worker.examples.freshness:hook';

By default a stale table is logged (throttled) and counted in
alive_worker.workers.hook_failures while the heartbeats go on; with
alive_worker.hook_failure = fail_tick the heartbeat itself stops, so that
whatever watches the heartbeats (alive-worker check, the lag on replicas)
also says the application stopped writing.
"""

from __future__ import annotations

from alive_worker import spi
from alive_worker.hooks import Tick


class StaleTable(Exception):
    """The watched table has no row newer than hooks.fresh_within."""


def _setting(name: str, default: str | None = None) -> str:
    value = spi.setting(f"hooks.{name}") or default
    if not value:
        raise RuntimeError(f"hooks.{name} is not set")
    return value


def hook(tick: Tick) -> None:
    # regclass quotes the name as the catalogs spell it: safe to put in SQL.
    [(table,)] = spi.execute("SELECT $1::pg_catalog.regclass::text", _setting("fresh_table"))
    column = spi.quote_ident(_setting("fresh_column"))
    within = _setting("fresh_within", "5min")
    [(newest, fresh)] = spi.execute(
        f"SELECT max({column})::text, coalesce(max({column}) > pg_catalog.now() - $1::interval, false)"
        f" FROM {table}",
        within,
    )
    if fresh != "t":
        raise StaleTable(f"{table} has no row newer than {within} (newest: {newest or 'none'})")
