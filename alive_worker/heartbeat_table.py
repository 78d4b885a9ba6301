"""The heartbeat table: finding it, creating it, checking it can take heartbeats."""

from __future__ import annotations

from alive_worker import errors, pglog, spi
from alive_worker.table_facts import TABLE_FACTS_SPI

log = pglog.getLogger(__name__)

# What can turn an INSERT into the table into nothing without an error:
# enabled BEFORE INSERT row triggers (tgtype bits: row 1, before 2, insert 4),
# which may return NULL, and DO INSTEAD rules on INSERT.  Read only once a
# tick wrote no row.
_DISCARDERS = """
SELECT (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(t.tgname), ', ' ORDER BY t.tgname)
        FROM pg_catalog.pg_trigger t
        WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgenabled <> 'D'
          AND (t.tgtype::pg_catalog.int4 & 7) = 7),
       (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(r.rulename), ', ' ORDER BY r.rulename)
        FROM pg_catalog.pg_rewrite r
        WHERE r.ev_class = c.oid AND r.ev_type = '3' AND r.is_instead AND r.ev_enabled <> 'D')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2
"""

# Deferred constraint triggers of the table and its partitions: PostgreSQL
# fires none in a security-restricted operation, where the heartbeat's INSERT
# runs as the table's owner.
_DEFERRED_TRIGGERS = """
SELECT pg_catalog.string_agg(pg_catalog.quote_ident(t.tgname), ', ' ORDER BY t.tgname)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_trigger t
  ON t.tgrelid = c.oid OR t.tgrelid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree(c.oid) p)
WHERE n.nspname = $1 AND c.relname = $2
  AND t.tgdeferrable AND t.tginitdeferred AND NOT t.tgisinternal AND t.tgenabled <> 'D'
"""

_SCHEMA_EXISTS = "SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1"

# The original project's table; ts is filled by the server, like pk.  Types
# and the default are pg_catalog's by name, so that the table keeps them
# whatever search_path its later writers use.
_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    pk serial PRIMARY KEY,
    message pg_catalog.text,
    ts pg_catalog.timestamp DEFAULT pg_catalog.now()
)
"""

# What the worker writes into: an ordinary or a partitioned table.
_TABLE_KINDS = ("r", "p")
_KIND_NAMES = {"v": "a view", "m": "a materialized view", "f": "a foreign table", "S": "a sequence"}


class HeartbeatTable:
    """One schema-qualified heartbeat table, as seen by the worker's role."""

    def __init__(self, schema: str, table: str, role: str) -> None:
        self.schema = schema
        self.table = table
        self.role = role
        self.qualified = spi.qualified_name(schema, table)

    def prepare_insert(self) -> spi.Plan:
        """Makes sure the table can take a heartbeat; returns the kept INSERT plan."""
        rows = spi.execute(TABLE_FACTS_SPI, self.role, self.schema, self.table)
        if not rows:
            self._create()
            rows = spi.execute(TABLE_FACTS_SPI, self.role, self.schema, self.table)
        self._check(rows)
        self._refuse_deferred_triggers()
        return spi.prepare(
            f"INSERT INTO {self.qualified} (message) VALUES ($1)",
            ["text"],
            keep=True,
            as_owner_of=spi.TableAccess.for_insert(self.schema, self.table),
        )

    def wrote_nothing(self) -> spi.SPIError:
        """The error of a tick whose INSERT a trigger or a rule turned into no row."""
        rows = spi.execute(_DISCARDERS, self.schema, self.table)
        triggers, rules = rows[0] if rows else (None, None)
        causes = []
        if triggers:
            causes.append(f"BEFORE INSERT trigger {triggers}")
        if rules:
            causes.append(f"DO INSTEAD rule {rules}")
        cause = " or ".join(causes) if causes else "a trigger or rule"
        return errors.from_sqlstate(
            "55000",
            f"alive_worker heartbeat INSERT into {self.qualified} wrote no row: {cause} discarded it",
            detail="A BEFORE INSERT row trigger that returns NULL, or a DO INSTEAD rule, turns the INSERT "
            "into nothing without an error, so the tick wrote no heartbeat and counts as failed.",
            hint=f"Drop or change what discards the row on table {self.qualified}.",
        )

    def _refuse_deferred_triggers(self) -> None:
        """Fails, naming them, while the table has deferred triggers, which every INSERT of ours would trip on."""
        rows = spi.execute(_DEFERRED_TRIGGERS, self.schema, self.table)
        triggers = rows[0][0] if rows else None
        if not triggers:
            return
        raise errors.from_sqlstate(
            "42501",
            f"alive_worker cannot write heartbeats into {self.qualified}: deferred constraint trigger "
            f"{triggers} cannot fire in the heartbeat's INSERT",
            detail="The heartbeat's INSERT runs as the table's owner in a security-restricted operation, "
            "so that the table's code gains none of the worker's rights; PostgreSQL fires no deferred "
            'trigger there ("cannot fire deferred trigger within security-restricted operation").',
            hint=f"Re-create the trigger on table {self.qualified} as NOT DEFERRABLE or INITIALLY IMMEDIATE, "
            "or write the heartbeats into a table without it.",
        )

    def _create(self) -> None:
        try:
            if not spi.execute(_SCHEMA_EXISTS, self.schema):
                spi.execute(f"CREATE SCHEMA {spi.quote_ident(self.schema)}")
            spi.execute(_CREATE_TABLE.format(table=self.qualified))
        except spi.SPIError as error:
            raise errors.from_sqlstate(
                error.sqlstate,
                f"alive_worker cannot create log table {self.qualified}: {error.message}",
                detail=error.detail,
                hint=(
                    f'Create the table, then grant INSERT on it and USAGE on its sequence to role "{self.role}"; '
                    f'or let role "{self.role}" create it in schema "{self.schema}".'
                ),
            ) from error
        log.info('alive_worker created log table %s as role "%s"', self.qualified, self.role)

    def _check(self, rows: list[spi.Row]) -> None:
        if not rows:
            raise errors.UndefinedTable(f"alive_worker log table {self.qualified} does not exist")
        kind, owner, owner_is_superuser, may_insert, unusable_sequences, message_type = rows[0][:6]
        if kind not in _TABLE_KINDS:
            raise errors.WrongObjectType(
                f"alive_worker log table {self.qualified} is {_KIND_NAMES.get(kind or '', 'not a table')}, not a table",
                detail=f'It belongs to role "{owner}". The worker writes heartbeats only into ordinary or partitioned tables.',
                hint=f"Drop it, or set alive_worker.schema and alive_worker.table to a table of role "
                f'"{self.role}"\'s.',
            )
        if owner != self.role and owner_is_superuser != "t":
            # In the runner the table's code runs as the runner's role, in its session (client_spi).
            runs_as = owner if spi.TABLE_CODE_RUNS_AS_OWNER else self.role
            log.warning(
                'alive_worker log table %s is owned by role "%s", neither the %s\'s role "%s" nor a superuser: '
                'its triggers, defaults, rules and policies run as "%s", and "%s" can also change or delete '
                "the heartbeats",
                self.qualified,
                owner,
                spi.WRITER,
                self.role,
                runs_as,
                owner,
            )
        if may_insert != "t":
            raise errors.InsufficientPrivilege(
                f'permission denied: role "{self.role}" lacks INSERT on table {self.qualified}',
                hint=f"GRANT INSERT ON {self.qualified} TO {spi.quote_ident(self.role)};",
            )
        if unusable_sequences:
            raise errors.InsufficientPrivilege(
                f'permission denied: role "{self.role}" lacks USAGE on sequence '
                f"{unusable_sequences} of table {self.qualified}",
                hint=f"GRANT USAGE ON SEQUENCE {unusable_sequences} TO {spi.quote_ident(self.role)};",
            )
        if message_type is None:
            raise errors.UndefinedColumn(
                f'alive_worker log table {self.qualified} has no column "message"',
                detail="A heartbeat table needs a text column named message; pk and ts are filled by their defaults.",
            )
