"""What the heartbeat's policy needs of whoever runs its statements: one interface, two transports.

The policy (alive_worker.heartbeat, heartbeat_table, retention, settings, and the
hook API) calls ``alive_worker.spi``.  Which module that name holds is
decided once per process, before the policy is imported:

- in the worker, alive_worker.spi itself: SPI through the guarded C bridge,
  in the shim's transaction (alive_worker/_bridge.c);
- in ``alive-worker run``, alive_worker.runner.client_spi: the same calls
  over one psycopg connection, in the runner's transaction
  (alive_worker/runner/loop.py installs it);
- in the hook host, alive_worker._host_spi: the same calls relayed to the
  worker, which runs them through the first.

So there is one copy of the policy.  :class:`Statements` is the contract;
mypy checks that both the worker's and the runner's modules satisfy it (the
assignments at the end), so that a function added to one and not the other
fails the lint, not a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

Row = tuple[str | None, ...]


class PreparedStatement(Protocol):
    """A kept or per-tick plan: what heartbeat, heartbeat_table and retention call on one."""

    query: str

    def execute(self, *values: str | None) -> list[Row]: ...

    def execute_text(self, value: str) -> None: ...

    def rows_processed(self) -> int: ...

    def free(self) -> None: ...


class Statements(Protocol):
    """The module-level functions of a transport (see the module's docstring)."""

    # Who writes through it ("worker", "runner"), and whether the table's code runs as its owner.
    WRITER: str
    TABLE_CODE_RUNS_AS_OWNER: bool

    def prepare(
        self, query: str, argtypes: Sequence[str] = (), *, keep: bool = False, as_owner_of: Any = None
    ) -> PreparedStatement: ...

    def execute(self, query: str, *values: str | None) -> list[Row]: ...

    def last_rowcount(self) -> int: ...

    def quote_ident(self, name: str) -> str: ...

    def qualified_name(self, schema: str, name: str) -> str: ...

    def current_role(self) -> str: ...

    def setting(self, name: str) -> str | None: ...

    def report_retention_error(self, message: str | None) -> None: ...

    def subtransaction(self) -> AbstractContextManager[None]: ...


if TYPE_CHECKING:
    # Checked by mypy only: importing alive_worker.spi needs the server.
    from alive_worker import spi as _worker_spi
    from alive_worker.runner import client_spi as _client_spi

    _in_the_worker: Statements = _worker_spi
    _in_the_runner: Statements = _client_spi
