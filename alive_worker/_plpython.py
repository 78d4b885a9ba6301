"""PL/Python in the worker's process: its ``plpy`` module, found in the interpreter the worker started.

PL/Python makes ``plpy`` a built-in module (PyImport_AppendInittab) and then
calls Py_Initialize.  In the worker, Python is already running when the
first plpython3u function or trigger is called (a trigger on the log table,
a function a hook calls), so the built-in table is read already and
``import plpy`` fails: "'plpy' is not a built-in module", at every tick.

One interpreter serves both: this finder loads ``plpy`` from the
plpython3.so that PostgreSQL has already loaded into the process, as an
extension module (its PyInit_plpy is exported, as every module's is).  It
runs only for that one name, so the tick's imports cost a dictionary miss
at most.  A plpython3u built against another libpython than the worker's
would make two interpreters in one process: not supported (the server's
packages and `make install` use the same /usr/bin/python3).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _loaded_plpython() -> str | None:
    """The path of the plpython3.so this process has loaded, if any."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.rstrip("\n").partition("/")[2]
            if path.endswith("/plpython3.so"):
                return "/" + path
    return None


class PlpyFinder:
    """A meta path finder for ``plpy`` alone."""

    @classmethod
    def find_spec(cls, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> Any:
        if name != "plpy":
            return None
        library = _loaded_plpython()
        if library is None:
            return None
        # Imported only now: the worker's tick never needs them.
        from importlib.machinery import ExtensionFileLoader
        from importlib.util import spec_from_file_location

        return spec_from_file_location("plpy", library, loader=ExtensionFileLoader("plpy", library))


def install() -> None:
    # First: PL/Python's late PyImport_AppendInittab makes the built-in
    # importer claim "plpy" and then fail to create it.
    if PlpyFinder not in sys.meta_path:
        sys.meta_path.insert(0, PlpyFinder)
