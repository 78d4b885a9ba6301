"""The log table: finding it, creating it, checking it can take heartbeats."""

from __future__ import annotations

import logging

from alive_worker import spi

log = logging.getLogger(__name__)

INSUFFICIENT_PRIVILEGE = "42501"
UNDEFINED_COLUMN = "42703"

# Privileges and shape in one catalog query; no rows means no such table.
_INSPECT = """
SELECT has_table_privilege(c.oid, 'INSERT'),
       EXISTS (SELECT FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = c.oid AND a.attname = 'message'
                 AND a.attnum > 0 AND NOT a.attisdropped),
       (SELECT string_agg(s.oid::regclass::text, ', ')
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        WHERE d.classid = 'pg_catalog.pg_class'::regclass
          AND d.refclassid = 'pg_catalog.pg_class'::regclass
          AND d.refobjid = c.oid AND d.deptype IN ('a', 'i')
          -- CASE: the planner may test rows of other kinds before relkind.
          AND CASE WHEN s.relkind = 'S' THEN NOT has_sequence_privilege(s.oid, 'USAGE') END)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2
"""

_SCHEMA_EXISTS = "SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1"

# The original project's table; ts is filled by the server, like pk.
_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    pk serial PRIMARY KEY,
    message text,
    ts timestamp without time zone DEFAULT now()
)
"""


class LogTable:
    """One schema-qualified heartbeat table, as seen by the worker's role."""

    def __init__(self, schema: str, table: str, role: str) -> None:
        self.schema = schema
        self.table = table
        self.role = role
        self.qualified = spi.qualified_name(schema, table)

    def prepare_insert(self) -> spi.Plan:
        """Makes sure the table can take a heartbeat; returns the kept INSERT plan."""
        rows = spi.execute(_INSPECT, self.schema, self.table)
        if not rows:
            self._create()
            rows = spi.execute(_INSPECT, self.schema, self.table)
        self._check(rows)
        return spi.prepare(f"INSERT INTO {self.qualified} (message) VALUES ($1)", ["text"], keep=True)

    def _create(self) -> None:
        try:
            if not spi.execute(_SCHEMA_EXISTS, self.schema):
                spi.execute(f"CREATE SCHEMA {spi.quote_ident(self.schema)}")
            spi.execute(_CREATE_TABLE.format(table=self.qualified))
        except spi.SPIError as error:
            raise spi.SPIError(
                f"alive_worker cannot create log table {self.qualified}: {error.message}",
                sqlstate=error.sqlstate,
                detail=error.detail,
                hint=(
                    f'Create the table, then grant INSERT on it and USAGE on its sequence to role "{self.role}"; '
                    f'or let role "{self.role}" create it in schema "{self.schema}".'
                ),
            ) from error
        log.info('alive_worker created log table %s as role "%s"', self.qualified, self.role)

    def _check(self, rows: list[spi.Row]) -> None:
        if not rows:
            raise spi.SPIError(
                f"alive_worker log table {self.qualified} does not exist",
                sqlstate="42P01",
            )
        may_insert, has_message, unusable_sequences = rows[0]
        if may_insert != "t":
            raise spi.SPIError(
                f'permission denied: role "{self.role}" lacks INSERT on table {self.qualified}',
                sqlstate=INSUFFICIENT_PRIVILEGE,
                hint=f"GRANT INSERT ON {self.qualified} TO {spi.quote_ident(self.role)};",
            )
        if unusable_sequences:
            raise spi.SPIError(
                f'permission denied: role "{self.role}" lacks USAGE on sequence '
                f"{unusable_sequences} of table {self.qualified}",
                sqlstate=INSUFFICIENT_PRIVILEGE,
                hint=f"GRANT USAGE ON SEQUENCE {unusable_sequences} TO {spi.quote_ident(self.role)};",
            )
        if has_message != "t":
            raise spi.SPIError(
                f'alive_worker log table {self.qualified} has no column "message"',
                sqlstate=UNDEFINED_COLUMN,
                detail="A heartbeat table needs a text column named message; pk and ts are filled by their defaults.",
            )
