"""Writes the shim's build configuration header, touching it only on change.

Usage: write_config_header.py HEADER PYTHON PYTHON_ENV PG_CONFIG

The header says where the server's virtual environment is and which file in
it is the cffi embedding library, so that the shim needs no run-time search.
"""

import subprocess
import sys
from pathlib import Path


def main() -> None:
    header, python, python_env, pg_config = sys.argv[1:5]
    # The library's path is decided by the Python that builds it.
    query = (
        "import sysconfig, sys; env = sys.argv[1]; "
        "print(sysconfig.get_path('platlib', scheme='venv', vars={'base': env, 'platbase': env})"
        " + '/alive_worker/_native' + sysconfig.get_config_var('EXT_SUFFIX'))"
    )
    library = subprocess.check_output([python, "-c", query, python_env], text=True).strip()
    version = subprocess.check_output([pg_config, "--version"], text=True).strip()
    text = (
        "/* Written by scripts/write_config_header.py; do not edit. */\n"
        f'#define ALIVE_WORKER_PYTHON_EXECUTABLE "{python_env}/bin/python3"\n'
        f'#define ALIVE_WORKER_PYTHON_LIBRARY "{library}"\n'
        f'#define ALIVE_WORKER_BUILT_FOR "{version}"\n'
    )
    path = Path(header)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    main()
