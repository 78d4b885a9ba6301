"""What the example hooks check before they touch objects or settings others may control.

A hook runs as the worker's role, the bootstrap superuser unless
alive_worker.role says otherwise.  Writing into a table runs its triggers
with that role's privileges, and a setting made with ALTER DATABASE or ALTER
ROLE ... SET by a database owner reaches the worker's session too: either
would let a role below superuser run code as the worker.  So the examples
read their settings only from the server's configuration (postgresql.conf,
ALTER SYSTEM: superusers), and write only into tables owned by the worker's
role or a superuser.
"""

from __future__ import annotations

from alive_worker import spi

# ALTER DATABASE / ALTER ROLE ... SET of the name for this session: a
# placeholder setting such as hooks.x has no source in pg_settings to look at.
_SET_PER_DATABASE_OR_ROLE = """
SELECT pg_catalog.string_agg(CASE WHEN s.setrole = 0 THEN 'ALTER DATABASE' ELSE 'ALTER ROLE' END, ', ')
FROM pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) AS c(config)
WHERE s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
  AND s.setrole IN (0, (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = session_user))
  AND pg_catalog.split_part(c.config, '=', 1) = $1
"""

_OWNER_TRUSTED = """
SELECT c.relkind::text, r.rolname = current_user OR r.rolsuper
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
WHERE c.oid = $1::pg_catalog.regclass
"""


class Untrusted(Exception):
    """A setting or a table that a role below the worker's could control."""


def server_setting(name: str, default: str | None = None) -> str:
    """A setting's value if it comes from the server's configuration; default if unset."""
    [(set_by,)] = spi.execute(_SET_PER_DATABASE_OR_ROLE, name)
    if set_by:
        raise Untrusted(f"{name} is set by {set_by}, not the server's configuration: refused")
    value = spi.setting(name)
    if not value:
        if default is None:
            raise RuntimeError(f"{name} is not set")
        return default
    return value


def table_owned_by_the_worker(table: str) -> None:
    """Raises unless table is a plain table owned by the worker's role or a superuser."""
    [(relkind, trusted)] = spi.execute(_OWNER_TRUSTED, table)
    if relkind not in ("r", "p"):
        raise Untrusted(f"{table} is not a table")
    if trusted != "t":
        raise Untrusted(f"{table} is owned by a role other than the worker's and not a superuser: refused")
