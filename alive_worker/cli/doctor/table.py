"""A worker's heartbeat table: it exists (or can be created), its shape, its owner, the role's privileges."""

from __future__ import annotations

from psycopg import sql

from alive_worker.cli._common import CONFIGURED_TABLE, CliError, Connection, Status, connect, shown_sql
from alive_worker.cli.doctor._doctor import Doctor
from alive_worker.table_facts import TABLE_FACTS_PSYCOPG

# Who below superuser could have code run in the table's statements: roles
# granted TRIGGER on it (PUBLIC too), and the owners of whatever its
# triggers, column defaults and types, indexes, constraints, policies and
# rules call or use (each recorded in pg_depend); the same of every partition
# and inheritance child, at any depth, whose code an INSERT routed there or
# the retention's DELETE runs.  With a superuser table and a superuser
# worker, that code runs as the superuser (the owner rule, docs/SECURITY.md).
FOREIGN_CODE = """
WITH RECURSIVE tree(oid) AS (
    SELECT %(oid)s::pg_catalog.oid
    UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent OPERATOR(pg_catalog.=) tree.oid)
SELECT (SELECT pg_catalog.string_agg(DISTINCT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid
                                                   THEN 'PUBLIC' ELSE r.rolname::pg_catalog.text END, ', ')
        FROM tree JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) tree.oid
        CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
        WHERE a.privilege_type = 'TRIGGER'::pg_catalog.text AND NOT coalesce(r.rolsuper, false)) AS trigger_grantees,
       (SELECT pg_catalog.string_agg(DISTINCT r.rolname::pg_catalog.text, ', ')
        FROM pg_catalog.pg_depend d
        LEFT JOIN pg_catalog.pg_proc p
               ON d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = d.refobjid
        LEFT JOIN pg_catalog.pg_type t
               ON d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = d.refobjid
        LEFT JOIN pg_catalog.pg_operator o
               ON d.refclassid = 'pg_catalog.pg_operator'::pg_catalog.regclass AND o.oid = d.refobjid
        JOIN pg_catalog.pg_roles r ON r.oid = coalesce(p.proowner, t.typowner, o.oprowner)
        WHERE NOT r.rolsuper AND d.objid IN (
              SELECT tree.oid FROM tree
              UNION ALL SELECT x.oid FROM pg_catalog.pg_attrdef x WHERE x.adrelid IN (SELECT oid FROM tree)
              UNION ALL SELECT x.indexrelid FROM pg_catalog.pg_index x WHERE x.indrelid IN (SELECT oid FROM tree)
              UNION ALL SELECT x.oid FROM pg_catalog.pg_trigger x WHERE x.tgrelid IN (SELECT oid FROM tree)
              UNION ALL SELECT x.oid FROM pg_catalog.pg_constraint x WHERE x.conrelid IN (SELECT oid FROM tree)
              UNION ALL SELECT x.oid FROM pg_catalog.pg_policy x WHERE x.polrelid IN (SELECT oid FROM tree)
              UNION ALL SELECT x.oid FROM pg_catalog.pg_rewrite x WHERE x.ev_class IN (SELECT oid FROM tree)))
       AS code_owners
"""

# Whether the worker's role may create the table (and its schema, if missing).
MAY_CREATE = """
SELECT CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s)
            THEN pg_catalog.has_schema_privilege(%(role)s, %(schema)s, 'CREATE')
            ELSE pg_catalog.has_database_privilege(%(role)s, pg_catalog.current_database(), 'CREATE') END AS ok
"""


def check_table(doctor: Doctor, database: str, role: str | None, target_table: str | None) -> None:
    name = f"table {database}"
    try:
        conn = doctor.conn if database == doctor.conn.info.dbname else connect(doctor.dsn, database)
    except CliError as error:
        doctor.add(name, Status.UNKNOWN, f"cannot connect to database {database}: {error.message}")
        return
    try:
        inspect_table(doctor, conn, name, role, target_table)
    finally:
        if conn is not doctor.conn:
            conn.close()


def inspect_table(
    doctor: Doctor, conn: Connection, name: str, role: str | None, target_table: str | None
) -> None:
    settings = conn.execute(CONFIGURED_TABLE).fetchone()
    assert settings is not None
    schema, table = settings["schema"], settings["table"]
    role = settings["role"] if role in (None, "(bootstrap superuser)") else role
    names = {"role": role, "schema": schema, "table": table}
    qualified = target_table or settings["qualified"]
    # The table's name as the server quoted it; the role's, as psycopg quotes it.
    table_sql, role_sql = sql.SQL(qualified), sql.Identifier(role)
    row = conn.execute(TABLE_FACTS_PSYCOPG, names).fetchone()
    if row is None:
        may_create = conn.execute(MAY_CREATE, names).fetchone()
        if may_create is not None and may_create["ok"] and not doctor.server["in_recovery"]:
            doctor.add(name, Status.WARNING, f"{qualified} does not exist yet; role {role} will create it")
        else:
            doctor.add(
                name,
                Status.CRITICAL,
                f"{qualified} does not exist, and role {role} may not create it",
                shown_sql(
                    conn,
                    "CREATE TABLE {} (pk serial PRIMARY KEY, message text, "
                    "ts timestamp without time zone DEFAULT now()); GRANT INSERT ON {} TO {}; "
                    "and USAGE on its sequence.",
                    table_sql,
                    table_sql,
                    role_sql,
                ),
            )
        return
    if row["relkind"] not in ("r", "p"):
        doctor.add(
            name,
            Status.CRITICAL,
            f"{qualified} is not a table (relkind {row['relkind']}, owner {row['owner']}): the worker refuses it",
            f"Drop it, or set alive_worker.schema and alive_worker.table to a table of role {role}'s.",
        )
        return
    if row["owner"] != role and not row["owner_is_superuser"]:
        doctor.add(
            f"{name} owner",
            Status.WARNING,
            f"{qualified} belongs to role {row['owner']}, neither the worker's role nor a superuser: "
            "its triggers and defaults run as that role, which can change or delete the heartbeats",
            shown_sql(conn, "ALTER TABLE {} OWNER TO {};  (as a superuser)", table_sql, role_sql),
        )
    if row["owner_is_superuser"]:
        check_foreign_code(doctor, conn, name, role, qualified, row["oid"])
    if row["message"] is None:
        doctor.add(
            name,
            Status.CRITICAL,
            f"{qualified} has no column message",
            shown_sql(conn, "ALTER TABLE {} ADD COLUMN message text;", table_sql),
        )
        return
    if not row["may_insert"]:
        doctor.add(
            name,
            Status.CRITICAL,
            f"role {role} may not insert into {qualified}",
            shown_sql(conn, "GRANT INSERT ON {} TO {};", table_sql, role_sql),
        )
        return
    if row["sequences_denied"]:
        doctor.add(
            name,
            Status.CRITICAL,
            f"role {role} may not use sequence {row['sequences_denied']}",
            shown_sql(conn, "GRANT USAGE ON SEQUENCE {} TO {};", sql.SQL(row["sequences_denied"]), role_sql),
        )
        return
    shape = (
        f"{qualified} (message {row['message']}, ts {row['ts'] or 'missing'}{', pk' if row['pk'] else ''})"
    )
    if row["ts"] is None or not row["ts"].startswith("timestamp"):
        doctor.add(
            name,
            Status.WARNING,
            f"{shape}: lag() and tail need a ts timestamp column",
            shown_sql(
                conn, "ALTER TABLE {} ADD COLUMN ts timestamp without time zone DEFAULT now();", table_sql
            ),
        )
    elif not row["pk"]:
        doctor.add(
            name,
            Status.WARNING,
            f"{shape}: without pk, retention cannot delete old rows",
            shown_sql(conn, "ALTER TABLE {} ADD COLUMN pk serial PRIMARY KEY;", table_sql),
        )
    else:
        doctor.add(name, Status.OK, f"{shape}; role {role} may insert")


def check_foreign_code(
    doctor: Doctor, conn: Connection, name: str, role: str, qualified: str, oid: int
) -> None:
    """A superuser's table that a superuser worker writes: whose code runs there as a superuser."""
    worker = conn.execute(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s::pg_catalog.name", [role]
    )
    worker_row = worker.fetchone()
    if worker_row is None or not worker_row["rolsuper"]:
        return  # the statement runs as the worker's role then, not as the owner
    found = conn.execute(FOREIGN_CODE, {"oid": oid}).fetchone()
    assert found is not None
    who = [
        *([f"TRIGGER is granted to {found['trigger_grantees']}"] if found["trigger_grantees"] else []),
        *([f"code in it belongs to {found['code_owners']}"] if found["code_owners"] else []),
    ]
    if who:
        doctor.add(
            f"{name} code",
            Status.WARNING,
            f"{qualified} and the worker's role {role} are both superusers, and {'; '.join(who)}: "
            "that code runs as a superuser at every heartbeat",
            "Run the worker as a role below superuser (docs/SECURITY.md's least-privilege set-up): its "
            "statements then run as that role. Or revoke TRIGGER and drop the code of other roles.",
        )
