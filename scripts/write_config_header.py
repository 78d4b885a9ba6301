"""Writes the shim's build configuration header, touching it only on change.

Usage: write_config_header.py HEADER PYTHON PYTHON_ENV PG_CONFIG COMPILE_COMMAND

The header says where the server's virtual environment is and which file in
it is the cffi embedding library, so that the shim needs no run-time search,
and which server, package version and compiler command the build is for.
Everything built depends on it, so that building for another server (or with
other flags) in the same checkout rebuilds everything.
"""

import subprocess
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def main() -> None:
    header, python, python_env, pg_config, compile_command = sys.argv[1:6]
    # The library's path is decided by the Python that builds it.
    query = (
        "import sysconfig, sys; env = sys.argv[1]; "
        "print(sysconfig.get_path('platlib', scheme='venv', vars={'base': env, 'platbase': env})"
        " + '/alive_worker/_native' + sysconfig.get_config_var('EXT_SUFFIX'))"
    )
    library = subprocess.check_output([python, "-c", query, python_env], text=True).strip()
    server = subprocess.check_output([pg_config, "--version"], text=True).strip()
    version = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    text = (
        "/* Written by scripts/write_config_header.py; do not edit. */\n"
        f"/* Compiled with: {compile_command.replace('*/', '* /')} */\n"
        f'#define ALIVE_WORKER_VERSION "{version}"\n'
        f'#define ALIVE_WORKER_PYTHON_EXECUTABLE "{python_env}/bin/python3"\n'
        f'#define ALIVE_WORKER_PYTHON_LIBRARY "{library}"\n'
        f'#define ALIVE_WORKER_BUILT_FOR "{server}"\n'
    )
    path = Path(header)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    main()
