"""cffi builder of alive_worker's embedding library (``alive_worker._native``).

setup.py hands ``ffibuilder`` to setuptools through ``cffi_modules``.  The
result is one shared library that embeds CPython: the C shim dlopens it in the
worker process only, and its first call starts the interpreter, which runs the
init code below and so imports :mod:`alive_worker._worker`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import cffi

PACKAGE_DIR = Path(__file__).resolve().parent
BRIDGE_HEADER = PACKAGE_DIR / "_bridge.h"
# The bridge: its guard (_bridge.c), its statements, and the hook host's descendants.
BRIDGE_SOURCES = [
    PACKAGE_DIR / "_bridge.c",
    PACKAGE_DIR / "_bridge_statements.c",
    PACKAGE_DIR / "_hook_host.c",
]
# The GIL for the bridge: the one C file with Python.h.
GIL_SOURCE = PACKAGE_DIR / "_gil.c"


def bridge_section(name: str) -> str:
    """The declarations between the NAME BEGIN and NAME END markers of _bridge.h.

    EMBEDDING: implemented in Python (alive_worker/_worker.py), called by the
    C shim.  CDEF: implemented in C (_bridge.c, _bridge_statements.c, _hook_host.c), called by Python.
    """
    header = BRIDGE_HEADER.read_text()
    match = re.search(rf"/\* {name} BEGIN \*/(.*)/\* {name} END \*/", header, re.S)
    if match is None:
        raise RuntimeError(f"{BRIDGE_HEADER} has no {name} section")
    return match.group(1)


def pg_config(option: str) -> str:
    """One value from the pg_config named by $PG_CONFIG (default: on PATH)."""
    command = os.environ.get("PG_CONFIG", "pg_config")
    return subprocess.check_output([command, option], text=True).strip()


def compile_args() -> list[str]:
    """The server's own compiler flags, as make passes them, else the few its headers need.

    make gives the CFLAGS it compiles the shim with (PostgreSQL's warning
    flags, less those this compiler lacks, plus any COPT) in
    $ALIVE_WORKER_CFLAGS, and the compiler in $CC, so that the bridge is held
    to the same warnings as the shim.
    """
    flags = os.environ.get("ALIVE_WORKER_CFLAGS")
    if flags is None:
        # PostgreSQL's headers are written for these, as PGXS builds use them.
        return ["-fno-strict-aliasing", "-fwrapv", "-Wall"]
    return shlex.split(flags)


def libpython() -> tuple[str, str]:
    """Name and directory of the shared libpython to link the library with."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        sys.exit(
            f"{sys.executable} has no shared libpython; alive_worker embeds "
            "Python and needs one (Debian's /usr/bin/python3 has it)"
        )
    version = sysconfig.get_config_var("LDVERSION") or sysconfig.get_config_var("VERSION")
    return f"python{version}", str(sysconfig.get_config_var("LIBDIR"))


def relative(path: Path) -> str:
    """setuptools wants source paths relative to setup.py's directory."""
    return os.path.relpath(path, Path.cwd())


library_name, library_dir = libpython()

ffibuilder = cffi.FFI()
ffibuilder.embedding_api(bridge_section("EMBEDDING"))
ffibuilder.cdef(bridge_section("CDEF"))
ffibuilder.set_source(
    "alive_worker._native",
    '#include "_bridge.h"',
    sources=[*map(relative, BRIDGE_SOURCES), relative(GIL_SOURCE)],
    include_dirs=[str(PACKAGE_DIR), pg_config("--includedir-server")],
    libraries=[library_name],
    library_dirs=[library_dir],
    extra_compile_args=compile_args(),
    # The shim loads the library by its full name, which the limited API changes.
    py_limited_api=False,
)
ffibuilder.embedding_init_code("import alive_worker._worker")

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
