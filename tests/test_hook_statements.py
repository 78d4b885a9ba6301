"""What the worker does for a hook's statement is bounded, and never more than the worker's role may do.

The hook host sends each statement to the worker, which runs it in its own
session.  Whatever the hook sends, the worker's work for it is bounded (rows,
bytes, parameters, kept plans) with a clear error naming the limit, it runs
as the worker's role (never as a table's owner), and a message the worker
cannot read ends the host, never the worker's next tick.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import LEAST_PRIVILEGE_SETUP, UNHURRIED, Cluster, wait_for, write_hook

AS_OWNER = """
from pathlib import Path
from alive_worker import spi

OUT = Path(__file__).parent

def attempt(name, query, access):
    try:
        with spi.subtransaction():
            plan = spi.prepare(query, as_owner_of=access)
            (OUT / name).write_text(f"ran|{plan.execute()}")
    except spi.SPIError as error:
        (OUT / name).write_text(f"{error.sqlstate}|{error.message}")

def hook(tick):
    if tick.number != 2:
        return
    # Another table of the owner's, privileges 0: nothing of the worker's checked.
    attempt("secret", "SELECT secret FROM public.etl_secret", spi.TableAccess("public", "etl_data", 0))
    # The named table itself, which the worker's role may read.
    attempt("who", "SELECT current_user::text FROM public.etl_data",
            spi.TableAccess.for_select("public", "etl_data"))
"""


def test_a_hooks_statement_never_runs_with_a_tables_owners_rights_the_worker_lacks(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    hook = write_hook(tmp_path, AS_OWNER)
    cluster = make_cluster(
        settings={"hook": hook, "interval": "200ms", "role": "luca", **UNHURRIED},
        setup_sql=[
            *LEAST_PRIVILEGE_SETUP,
            "CREATE ROLE etl LOGIN",
            "CREATE TABLE public.etl_data (n int)",
            "CREATE TABLE public.etl_secret (secret text)",
            "INSERT INTO public.etl_secret VALUES ('the secret')",
            "ALTER TABLE public.etl_data OWNER TO etl",
            "ALTER TABLE public.etl_secret OWNER TO etl",
            "INSERT INTO public.etl_data VALUES (1)",
            "GRANT SELECT ON public.etl_data TO luca",
        ],
    )
    cluster.wait_for_worker()
    wait_for(lambda: (tmp_path / "who").exists(), "the hook's tick 2", timeout=30)
    # As the worker's role luca, which may not read the owner's other table.
    assert (tmp_path / "secret").read_text() == "42501|permission denied for table etl_secret"
    assert (tmp_path / "who").read_text() == "ran|[('luca',)]"
