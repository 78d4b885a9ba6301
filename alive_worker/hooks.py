"""alive_worker.hook: a Python callable run in every tick, after the INSERT."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from alive_worker.errors import QueryCanceled
from alive_worker.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path


class Tick(NamedTuple):
    """What a hook is told about the tick it runs in."""

    number: int
    message: str
    settings: Settings


Hook = Callable[[Tick], None]


class HookError(Exception):
    """alive_worker.hook names nothing that can be called."""


class Interrupted(BaseException):
    """No longer raised: kept so that hooks that name it still import.

    Until 1.3 it was raised in a running hook when the worker had to stop
    it.  Hooks now run in the hook host, which the worker ends instead
    (SIGTERM, the tick timeout, a cancel request, the postmaster's death):
    nothing in the hook is told, and nothing it catches holds the worker up.
    """

    # What PostgreSQL raises for the same causes.
    sqlstate = QueryCanceled.sqlstate


def load(spec: str) -> Hook | None:
    """The callable named by ``module:function`` or ``/path/file.py:function``."""
    if not spec:
        return None
    source, sep, attribute = spec.rpartition(":")
    if not sep or not source or not attribute:
        raise HookError(
            f'alive_worker.hook = "{spec}" is not of the form module:function or /path/file.py:function'
        )
    try:
        module = _import(source)
    except Exception as error:
        raise HookError(
            f'alive_worker.hook = "{spec}": cannot import {source}: {type(error).__name__}: {error}'
        ) from error
    hook = getattr(module, attribute, None)
    if not callable(hook):
        raise HookError(f'alive_worker.hook = "{spec}": {source} has no callable "{attribute}"')
    return hook  # type: ignore[no-any-return]


def _import(source: str) -> object:
    if not source.endswith(".py"):
        return importlib.import_module(source)
    # Only for a hook given by path: the default tick imports neither.
    from importlib.util import module_from_spec, spec_from_file_location
    from pathlib import Path

    path = Path(source)
    _check_no_one_else_can_change(path)
    spec = spec_from_file_location(f"alive_worker_hook_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_no_one_else_can_change(path: Path) -> None:
    """A hook file is code run inside the server: refuse it if another OS user could change it.

    That is, the file and its directory belong to the server's OS user or
    root, and neither is writable by group or others (a directory with the
    sticky bit, such as /tmp, lets no one else replace the file).
    """
    import os
    import stat

    trusted_owners = (0, os.geteuid())
    for target, is_directory in ((path, False), (path.parent, True)):
        status = target.stat()
        if status.st_uid not in trusted_owners:
            raise PermissionError(
                f"{target} belongs to OS user {status.st_uid}, not to the server's OS user or root"
            )
        writable_by_others = status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if writable_by_others and not (is_directory and status.st_mode & stat.S_ISVTX):
            raise PermissionError(
                f"{target} may be changed by other OS users (mode {stat.filemode(status.st_mode)}): chmod go-w it"
            )
