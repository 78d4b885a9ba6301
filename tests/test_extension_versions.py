"""Extension versions: CREATE EXTENSION and ALTER EXTENSION UPDATE from 1.0 give the same objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import Cluster

# Everything that makes up the installed extension, as text to compare.
MEMBERS = """
SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'alive_worker'
ORDER BY 1
"""
FUNCTIONS = """
SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proacl::text, obj_description(p.oid, 'pg_proc')
FROM pg_proc p WHERE p.pronamespace = 'alive_worker'::regnamespace
ORDER BY 1
"""
VIEWS = """
SELECT c.relname, pg_get_viewdef(c.oid), c.relacl::text, obj_description(c.oid, 'pg_class'),
       array(SELECT a.attname || ': ' || format_type(a.atttypid, a.atttypmod) || ' ' || coalesce(col_description(c.oid, a.attnum), '')
             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 ORDER BY a.attnum)
FROM pg_class c WHERE c.relnamespace = 'alive_worker'::regnamespace
ORDER BY 1
"""
SCHEMA = "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'alive_worker'"
VERSION = "SELECT extversion FROM pg_extension WHERE extname = 'alive_worker'"


def objects(cluster: Cluster, dbname: str) -> dict[str, Any]:
    return {
        name: cluster.sql(query, dbname=dbname)
        for name, query in [
            ("members", MEMBERS),
            ("functions", FUNCTIONS),
            ("views", VIEWS),
            ("schema", SCHEMA),
        ]
    }


def test_update_from_1_0_gives_what_a_fresh_install_gives(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(
        setup_sql=[
            "CREATE DATABASE fresh",
            "CREATE DATABASE updated",
            "CREATE ROLE watcher LOGIN IN ROLE pg_monitor",
        ]
    )
    cluster.sql("CREATE EXTENSION alive_worker", dbname="fresh")
    cluster.sql("CREATE EXTENSION alive_worker VERSION '1.0'", dbname="updated")
    assert cluster.sql(VERSION, dbname="updated") == [("1.0",)]
    assert "alive_worker.lag" not in str(objects(cluster, "updated")["members"])

    # Step by step, as databases meet each release: 1.0, then 1.1, 1.2 and 1.3.
    cluster.sql("ALTER EXTENSION alive_worker UPDATE TO '1.1'", dbname="updated")
    assert cluster.sql(VERSION, dbname="updated") == [("1.1",)]
    cluster.sql("ALTER EXTENSION alive_worker UPDATE TO '1.2'", dbname="updated")
    assert cluster.sql(VERSION, dbname="updated") == [("1.2",)]
    cluster.sql("ALTER EXTENSION alive_worker UPDATE", dbname="updated")
    assert cluster.sql(VERSION, dbname="updated") == [("1.3",)]
    assert cluster.sql(VERSION, dbname="fresh") == [("1.3",)]
    fresh, updated = objects(cluster, "fresh"), objects(cluster, "updated")
    assert fresh == updated
    assert "function alive_worker.lag(regclass)" in [member for (member,) in fresh["members"]]
    # 1.2: nothing runs with the extension owner's rights (docs/SECURITY.md).
    for dbname in ("fresh", "updated"):
        definers = (
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'alive_worker'::regnamespace AND prosecdef"
        )
        assert cluster.sql(definers, dbname=dbname) == [(0,)]
    # Monitoring roles keep reading the view after the update, and read lag().
    for dbname in ("fresh", "updated"):
        with cluster.connect(dbname, user="watcher") as conn:
            assert conn.execute("SELECT count(*) FROM alive_worker.workers").fetchone() == (1,)
            assert conn.execute(
                "SELECT has_function_privilege('alive_worker.lag(regclass)', 'EXECUTE')"
            ).fetchone() == (True,)


def test_update_to_the_current_version_is_a_no_op(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster(extension=True)
    cluster.sql("ALTER EXTENSION alive_worker UPDATE")
    assert cluster.sql(VERSION) == [("1.3",)]
