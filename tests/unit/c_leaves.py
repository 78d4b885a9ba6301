"""Compiling the C leaves' pure functions (src/*.c) for unit tests, with no server.

A leaf's file is compiled whole, against the server's headers, into a shared
object that exports only the functions named pure; the linker then drops
every other function (--gc-sections) and must resolve what is left without
the server (--no-undefined).  So a pure function that comes to read a clock
of the server's, palloc or elog fails to link here, naming the symbol, rather
than pass a test by luck.  The object is loaded with cffi in ABI mode.

The compiler is the system's cc; the headers are those of PG_CONFIG
(scripts/test-unit and scripts/test-run set it; Debian's 15 by default, as
they do).  Without either the tests fail, saying which: scripts/setup-host
installs both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cffi import FFI

ROOT = Path(__file__).resolve().parents[2]
DEBIAN_PG_CONFIG = "/usr/lib/postgresql/15/bin/pg_config"


def server_include_dir() -> Path:
    pg_config = os.environ.get("PG_CONFIG") or DEBIAN_PG_CONFIG
    if pg_config == "pg_config":
        pg_config = DEBIAN_PG_CONFIG
    try:
        found = subprocess.run(
            [pg_config, "--includedir-server"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.fail(
            f"cannot ask {pg_config} for the server's headers ({error}): set PG_CONFIG, "
            "or run scripts/setup-host"
        )
    include_dir = Path(found)
    if not (include_dir / "postgres.h").is_file():
        pytest.fail(f"no server headers in {include_dir} ({pg_config}): run scripts/setup-host")
    return include_dir


def compile_leaf(leaf: str, pure: list[str], into: Path) -> Path:
    """src/<leaf>.c as a shared object in into, exporting only the functions in pure."""
    compiler = shutil.which("cc")
    if compiler is None:
        pytest.fail("no C compiler (cc) on PATH: run scripts/setup-host")
    exports = into / f"{leaf}.map"
    exports.write_text("{ global: " + "".join(f"{name}; " for name in pure) + "local: *; };\n")
    shared_object = into / f"{leaf}.so"
    command = [
        compiler,
        "-O2",
        "-fPIC",
        "-shared",
        "-Wall",
        "-Werror",
        "-ffunction-sections",
        "-fdata-sections",
        f"-I{ROOT / 'src'}",
        f"-I{ROOT}",
        f"-I{server_include_dir()}",
        "-Wl,--gc-sections",
        "-Wl,--no-undefined",
        f"-Wl,--version-script={exports}",
        "-o",
        str(shared_object),
        str(ROOT / "src" / f"{leaf}.c"),
    ]
    built = subprocess.run(command, capture_output=True, text=True)
    if built.returncode != 0:
        pytest.fail(f"src/{leaf}.c did not compile alone:\n{' '.join(command)}\n{built.stderr}")
    return shared_object


def load_leaf(leaf: str, declarations: str, into: Path) -> tuple[FFI, Any]:
    """Compiles src/<leaf>.c's pure functions, declared in C in declarations, and loads them."""
    ffi = FFI()
    ffi.cdef(declarations)
    pure = re.findall(r"(\w+)\s*\(", declarations)
    return ffi, ffi.dlopen(str(compile_leaf(leaf, pure, into)))


def header_constant(header: str, name: str) -> int:
    """A #define of a number in src/<header> (digits and + - * only), so that a test does not repeat it."""
    text = (ROOT / "src" / header).read_text()
    found = re.search(rf"^#define {name} ([0-9 ()*+-]+)$", text, re.MULTILINE)
    assert found, f"no #define {name} of a number in src/{header}"
    return int(eval(found.group(1), {"__builtins__": {}}))
