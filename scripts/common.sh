# Sourced by the scripts: where things are, and how to run as the server user.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=${PG_MAJOR:-15}
# make passes its default, "pg_config": that means Debian's server of
# PG_MAJOR.  Any other value is a path that wins everywhere; it is made
# absolute, since the tests may run from another directory.
case "${PG_CONFIG:-pg_config}" in
    pg_config) PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config ;;
    /*) ;;
    *) PG_CONFIG=$(cd "$(dirname "$PG_CONFIG")" && pwd)/$(basename "$PG_CONFIG") ;;
esac
export PG_CONFIG
SERVER_USER=${SERVER_USER:-postgres}

# The major of a Debian server's pg_config (/usr/lib/postgresql/MAJOR/bin),
# empty for any other installation.
debian_major() {
    case "$1" in
        /usr/lib/postgresql/*/bin/pg_config) basename "$(dirname "$(dirname "$1")")" ;;
    esac
}

# Runs a command as the server's OS user with a clean environment: runuser
# would pass on root's PATH and PYTHON* variables otherwise.
as_server_user() {
    local bindir
    # Empty while the server is not installed yet: the command needs none of it.
    bindir=$("$PG_CONFIG" --bindir 2>/dev/null || true)
    local env=(env -i "PATH=${bindir:+$bindir:}/usr/local/bin:/usr/bin:/bin" "HOME=${SERVER_HOME:-/tmp}"
               "LANG=C.UTF-8" "PG_CONFIG=$PG_CONFIG" "TMPDIR=${TMPDIR:-/tmp}"
               "PYTHONDONTWRITEBYTECODE=1" "CI=${CI:-}"
               "ALIVE_WORKER_UPGRADE_FROM=${ALIVE_WORKER_UPGRADE_FROM:-}"
               "ALIVE_WORKER_UPGRADE_TO=${ALIVE_WORKER_UPGRADE_TO:-}")
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$SERVER_USER" -- "${env[@]}" "$@"
    else
        "${env[@]}" "$@"
    fi
}

# True if the server user can read (and enter) the given path.
server_user_can_read() {
    as_server_user test -r "$1" -a -x "$(dirname "$1")"
}

# A directory of NAME's own (its cluster, its log) that the server user can
# enter: under the checkout if it can reach it, else in /var/tmp.  Prints
# its path.
server_run_dir() {
    local dir=$ROOT/.run/$1
    mkdir -p "$dir"
    if ! as_server_user test -x "$dir"; then
        dir=/var/tmp/alive_worker-$1
        mkdir -p "$dir"
    fi
    if [ "$(id -u)" = 0 ]; then
        chown "$SERVER_USER" "$dir"
    fi
    echo "$dir"
}

# tests/test_upgrade.py runs pg_upgrade between two servers, each with
# alive_worker installed: by default the pair this major belongs to, in the
# issue's pairs (15 -> 18, 16 -> 17) or, for 18, from 17, so that a run on a
# fetched tree never installs into Debian's server.  Set either variable
# (empty: no upgrade test) to choose.  Sets and exports both; scripts/test-setup
# builds for them and scripts/test-run hands them to the tests.
choose_upgrade_pair() {
    local major
    major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
    if [ -z "${ALIVE_WORKER_UPGRADE_FROM+set}${ALIVE_WORKER_UPGRADE_TO+set}" ]; then
        case $major in
            # Not from Debian's 15: its 15.20 stores an attribute option
            # (pg_attver) on every column that the packaged 18.6 does not know,
            # so pg_upgrade of any table from it to 18.6 fails, with or without
            # alive_worker.  The packaged 15.19 is the 15 of that release.
            15) ALIVE_WORKER_UPGRADE_FROM=$(FETCH_DEBIAN_15=no "$ROOT/scripts/fetch-server" 15)
                ALIVE_WORKER_UPGRADE_TO=$("$ROOT/scripts/fetch-server" 18) ;;
            16) ALIVE_WORKER_UPGRADE_FROM=$PG_CONFIG ALIVE_WORKER_UPGRADE_TO=$("$ROOT/scripts/fetch-server" 17) ;;
            17) ALIVE_WORKER_UPGRADE_FROM=$("$ROOT/scripts/fetch-server" 16) ALIVE_WORKER_UPGRADE_TO=$PG_CONFIG ;;
            18) ALIVE_WORKER_UPGRADE_FROM=$("$ROOT/scripts/fetch-server" 17) ALIVE_WORKER_UPGRADE_TO=$PG_CONFIG ;;
        esac
    fi
    export ALIVE_WORKER_UPGRADE_FROM=${ALIVE_WORKER_UPGRADE_FROM:-} ALIVE_WORKER_UPGRADE_TO=${ALIVE_WORKER_UPGRADE_TO:-}
}

# Copies the checkout's files as they are (what git tracks, with any
# uncommitted change) into DEST, for a server user who cannot read the
# checkout: the tests read more than themselves (the pins, the Prometheus
# rules, the version's homes, the files META.json names).  DEST's virtual
# environment is kept from one run to the next.
copy_checkout() {
    local dest=$1
    # DEST is under /var/tmp, where anyone may create it first: a directory
    # (or a link) of another user's would have root copy into what that user
    # controls.
    if [ -L "$dest" ] || { [ -e "$dest" ] && [ "$(stat -c %u "$dest")" != "$(id -u)" ]; }; then
        echo "copy_checkout: $dest is not this user's own directory; remove it first" >&2
        return 1
    fi
    mkdir -p "$dest"
    find "$dest" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
    git -C "$ROOT" ls-files -z | tar -C "$ROOT" --null --ignore-failed-read -T - -cf - | tar -C "$dest" -xf -
}
