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
