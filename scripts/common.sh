# Sourced by the scripts: where things are, and how to run as the server user.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=${PG_MAJOR:-15}
# make passes its default, "pg_config"; the scripts want the server's own.
case "${PG_CONFIG:-pg_config}" in
    pg_config) PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config ;;
esac
export PG_CONFIG
SERVER_USER=${SERVER_USER:-postgres}

# Runs a command as the server's OS user with a clean environment: runuser
# would pass on root's PATH and PYTHON* variables otherwise.
as_server_user() {
    local bindir
    bindir=$("$PG_CONFIG" --bindir)
    local env=(env -i "PATH=$bindir:/usr/local/bin:/usr/bin:/bin" "HOME=${SERVER_HOME:-/tmp}"
               "LANG=C.UTF-8" "PG_CONFIG=$PG_CONFIG" "TMPDIR=${TMPDIR:-/tmp}"
               "PYTHONDONTWRITEBYTECODE=1" "CI=${CI:-}")
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
