"""Checks that another table was written recently; fails the hook if not.

In postgresql.conf (PostgreSQL 15's ALTER SYSTEM refuses settings that
nothing has defined, such as the first three):

    hooks.fresh_table = 'public.orders'
    hooks.fresh_column = 'created_at'       # timestamptz or timestamp
    hooks.fresh_within = '5min'
    alive_worker.hook = 'alive_worker.examples.freshness:hook'

By default a stale table is logged (throttled) and counted in
alive_worker.workers.hook_failures while the heartbeats go on; with
alive_worker.hook_failure = fail_tick the heartbeat itself stops, so that
whatever watches the heartbeats (alive-worker check, the lag on replicas)
also says the application stopped writing.

The table may belong to the application: it is read as its owner
(spi.TableAccess.for_select), so that code of the owner's that a read runs
(a partial index's predicate, which the planner evaluates; a row-level
security policy) runs with the owner's rights, never the worker's.  Only a
plain table's column of a built-in type is read, with built-in functions.
The settings are read only from the server's configuration (see _trust.py).
"""

from __future__ import annotations

from alive_worker import spi
from alive_worker.examples._trust import Untrusted, server_setting
from alive_worker.hooks import Tick

_COLUMN = """
SELECT n.nspname::text, c.relname::text, c.oid::pg_catalog.regclass::text, c.relkind::text,
       a.atttypid::pg_catalog.regtype::text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.oid = $1::pg_catalog.regclass
"""


class StaleTable(Exception):
    """The watched table has no row newer than hooks.fresh_within."""


def hook(tick: Tick) -> None:
    column_name = server_setting("hooks.fresh_column")
    within = server_setting("hooks.fresh_within", "5min")
    [(schema, name, table, relkind, column_type)] = spi.execute(
        _COLUMN, server_setting("hooks.fresh_table"), column_name
    )
    assert schema is not None and name is not None and table is not None
    if relkind not in ("r", "p"):
        raise Untrusted(f"{table} is not a table")
    if column_type not in ("timestamp with time zone", "timestamp without time zone"):
        raise Untrusted(f"{table}.{column_name} is not a timestamp column")
    # regclass quotes the name as the catalogs spell it: safe to put in SQL.
    column = spi.quote_ident(column_name)
    read = spi.prepare(
        f"SELECT pg_catalog.max({column})::text,"
        f" coalesce(pg_catalog.max({column})::timestamptz OPERATOR(pg_catalog.>)"
        f" (pg_catalog.now() OPERATOR(pg_catalog.-) $1::interval), false)"
        f" FROM {table}",
        ["text"],
        as_owner_of=spi.TableAccess.for_select(schema, name),
    )
    [(newest, fresh)] = read.execute(within)
    if fresh != "t":
        raise StaleTable(f"{table} has no row newer than {within} (newest: {newest or 'none'})")
