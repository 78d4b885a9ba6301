"""What the worker and `alive-worker doctor` ask the catalog about a heartbeat table: one query for both.

The worker runs it through SPI ($n parameters), doctor through psycopg
(%(name)s parameters); each renders the one text below.  Every function and
type is named with its schema, so no search_path reaches what this calls.
"""

from __future__ import annotations

# Kind, owner, columns, and a role's privileges on the table and its
# sequences; no row means no such table.
_TABLE_FACTS = """
SELECT c.relkind, pg_catalog.pg_get_userbyid(c.relowner) AS owner,
       (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = c.relowner) AS owner_is_superuser,
       pg_catalog.has_table_privilege({role}, c.oid, 'INSERT') AS may_insert,
       (SELECT pg_catalog.string_agg(pg_catalog.format('%s.%I', s.relnamespace::pg_catalog.regnamespace, s.relname),
                                     ', ')
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
          AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
          AND d.refobjid = c.oid AND d.deptype IN ('a', 'i')
          -- CASE: the planner may test rows of other kinds before relkind.
          AND CASE WHEN s.relkind = 'S' THEN NOT pg_catalog.has_sequence_privilege({role}, s.oid, 'USAGE') END)
       AS sequences_denied,
       (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = 'message' AND a.attnum > 0 AND NOT a.attisdropped) AS message,
       (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = 'ts' AND a.attnum > 0 AND NOT a.attisdropped) AS ts,
       EXISTS (SELECT FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = c.oid AND a.attname = 'pk' AND a.attnum > 0 AND NOT a.attisdropped) AS pk,
       c.oid
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = {schema} AND c.relname = {table}
"""

# The worker's: $1 the role, $2 the schema, $3 the table.
TABLE_FACTS_SPI = _TABLE_FACTS.format(role="$1", schema="$2", table="$3")
# doctor's: %(role)s, %(schema)s, %(table)s; the query's own % doubled for psycopg.
TABLE_FACTS_PSYCOPG = _TABLE_FACTS.replace("%", "%%").format(
    role="%(role)s", schema="%(schema)s", table="%(table)s"
)
