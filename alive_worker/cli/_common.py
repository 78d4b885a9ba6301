"""What the subcommands share: exit codes, connections, errors, terminal output, JSON.

This runs in an ordinary Python process, a client of the server: nothing here
(or anywhere under alive_worker.cli) may import alive_worker._native, which
only loads inside the server.
"""

from __future__ import annotations

import enum
import io
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, TextIO, cast

import psycopg
import psycopg.conninfo
import psycopg.errors
import psycopg.types.datetime
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.rows import dict_row

CONNECT_TIMEOUT_SECONDS = 10

# The server-side settings of every session the command opens, given as
# startup options: they outrank ALTER DATABASE / ALTER ROLE ... SET, which a
# database owner controls (docs/SECURITY.md).  search_path: no name in our
# SQL can resolve to an object of theirs (pg_temp last: only this session can
# create objects there, and functions and operators are never looked up in
# it); every catalog name is written with its schema too.  role: the session
# runs as the role that connected, not one the database names.  DateStyle and
# IntervalStyle: the formats psycopg reads (iso_8601 intervals it cannot).
PINNED_SETTINGS = (
    "-c search_path=pg_catalog,pg_temp -c role=none -c DateStyle=ISO,MDY -c IntervalStyle=postgres"
)


class Status(enum.IntEnum):
    """Exit codes, as monitoring plugins (Nagios, Icinga) read them."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


class CliError(Exception):
    """A failure to report in one clear message, with how to fix it: never a traceback."""

    def __init__(self, message: str, hint: str | None = None, status: Status = Status.UNKNOWN) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.status = status


# ---- connections ----

Connection = psycopg.Connection[dict[str, Any]]


def describe_target(dsn: str) -> str:
    """The server a connection string names, for messages: without its password."""
    if not dsn:
        return "the server named by the PG* environment variables (or libpq's defaults)"
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    shown = " ".join(f"{key}={value}" for key, value in params.items() if key != "password")
    return f'"{shown}"'


def connect(dsn: str, dbname: str | None = None) -> Connection:
    """An autocommit connection from the usual libpq sources: dsn, PG* variables, service file.

    The one way the command and the exporter connect: PINNED_SETTINGS at
    connection start, after any options of the user's own.
    """
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as error:
        raise CliError(f"invalid --dsn: {error}", "Give a libpq connection string or URI.") from error
    own_options = params.get("options") or os.environ.get("PGOPTIONS", "")
    extra: dict[str, Any] = {
        "fallback_application_name": "alive-worker",
        "options": f"{own_options} {PINNED_SETTINGS}".strip(),
    }
    if dbname is not None:
        extra["dbname"] = dbname
    if "connect_timeout" not in params and "PGCONNECT_TIMEOUT" not in os.environ:
        extra["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    try:
        conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row, **extra)
    except psycopg.Error as error:
        target = describe_target(psycopg.conninfo.make_conninfo(dsn, dbname=dbname) if dbname else dsn)
        raise CliError(
            f"cannot connect to {target}: {one_paragraph(error)}",
            "Check --dsn, the PG* environment variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGSERVICE) "
            "or the service file, and that the server is running.",
        ) from error
    except ValueError as error:  # an unknown or malformed setting that libpq refuses
        raise CliError(f"invalid connection settings: {error}") from error
    conn.adapters.register_loader("timestamptz", InfinityTimestamptzLoader)
    conn.adapters.register_loader("timestamp", InfinityTimestampLoader)
    return conn


class InfinityTimestamptzLoader(psycopg.types.datetime.TimestamptzLoader):
    """timestamptz, with +-infinity as the latest and earliest datetimes.

    A heartbeat row anyone with INSERT can write may say 'infinity'
    (lag() reports it as future_heartbeat_at): shown, never a failure to read.
    """

    def load(self, data: Buffer) -> datetime:
        if bytes(data) in (b"infinity", b"-infinity"):
            return (datetime.max if bytes(data) == b"infinity" else datetime.min).replace(tzinfo=UTC)
        return super().load(data)


class InfinityTimestampLoader(psycopg.types.datetime.TimestampLoader):
    """timestamp, with +-infinity as the latest and earliest datetimes."""

    def load(self, data: Buffer) -> datetime:
        if bytes(data) in (b"infinity", b"-infinity"):
            return datetime.max if bytes(data) == b"infinity" else datetime.min
        return super().load(data)


def one_paragraph(error: BaseException) -> str:
    """A server or libpq message on one line."""
    text = getattr(getattr(error, "diag", None), "message_primary", None) or str(error)
    return re.sub(r"\s*\n\s*", "; ", text.strip())


def where(conn: Connection) -> str:
    """host:port (or socket directory:port), database and user of a connection."""
    info = conn.info
    return f"{info.host}:{info.port}, database {info.dbname}, as {info.user}"


def translate(error: psycopg.Error, conn: Connection | None = None) -> CliError:
    """A server error, with the fix for the ones an operator meets."""
    user = conn.info.user if conn is not None else "your role"
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        # A refusal of ours (a table another role's code reaches) carries its own fix.
        return CliError(
            f"permission denied: {one_paragraph(error)}",
            error.diag.message_hint
            or "A superuser can grant what monitoring needs: "
            + shown_sql(conn, "GRANT pg_monitor TO {};", sql.Identifier(user)),
        )
    if isinstance(error, psycopg.errors.ObjectNotInPrerequisiteState) and "shared_preload_libraries" in str(
        error
    ):
        return CliError(
            one_paragraph(error),
            "Add alive_worker to shared_preload_libraries in postgresql.conf and restart the server.",
        )
    if isinstance(error, psycopg.OperationalError):
        return CliError(f"lost the connection: {one_paragraph(error)}")
    sqlstate = f" (SQLSTATE {error.sqlstate})" if error.sqlstate else ""
    hint = error.diag.message_hint if isinstance(error, psycopg.errors.DatabaseError) else None
    return CliError(f"{one_paragraph(error)}{sqlstate}", hint)


def shown_sql(conn: Connection | None, template: str, *parts: sql.Composable) -> str:
    """A statement suggested to the user, composed as a query is (names by sql.Identifier).

    A name the server has already quoted (a heartbeat table, as format('%I.%I')
    gives it) is passed as sql.SQL.  Without a connection, psycopg quotes by
    its own rules, as libpq would.
    """
    return sql.SQL(template).format(*parts).as_string(conn)


@dataclass(frozen=True)
class Extension:
    """The installed extension: its version, and the schema its objects are named in."""

    version: str
    schema: str

    def name(self, obj: str) -> sql.Identifier:
        """One of the extension's objects, with its schema."""
        return sql.Identifier(self.schema, obj)


# The extension, and why its schema could not be trusted: a schema that a
# role below superuser owns, may create objects in, or has objects in could
# hold look-alikes of our view and functions (the same check as
# sql/alive_worker--1.2--1.3.sql's at installation; the schema may have been
# given away since).
INSTALLED_EXTENSION = """
SELECT e.extversion, n.nspname, pg_catalog.quote_ident(n.nspname) AS quoted_schema, o.rolname AS schema_owner, o.rolsuper AS owner_is_superuser,
       (SELECT pg_catalog.string_agg(CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid
                                          THEN 'PUBLIC' ELSE r.rolname::pg_catalog.text END, ', ')
        FROM pg_catalog.aclexplode(n.nspacl) a LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
        WHERE a.privilege_type = 'CREATE'::pg_catalog.text AND NOT coalesce(r.rolsuper, false)) AS creators,
       (SELECT pg_catalog.string_agg(DISTINCT r.rolname::pg_catalog.text, ', ')
        FROM (SELECT c.relowner AS owner FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid
              UNION ALL SELECT p.proowner FROM pg_catalog.pg_proc p WHERE p.pronamespace = n.oid
              UNION ALL SELECT t.typowner FROM pg_catalog.pg_type t WHERE t.typnamespace = n.oid
              UNION ALL SELECT x.oprowner FROM pg_catalog.pg_operator x WHERE x.oprnamespace = n.oid) objects
        JOIN pg_catalog.pg_roles r ON r.oid = objects.owner
        WHERE NOT r.rolsuper) AS foreign_owners
FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
JOIN pg_catalog.pg_roles o ON o.oid = n.nspowner
WHERE e.extname = 'alive_worker'::pg_catalog.name
"""


def installed_extension(conn: Connection) -> Extension | None:
    """The extension, if installed in this database; an error if its schema is not a superuser's alone."""
    row = conn.execute(INSTALLED_EXTENSION).fetchone()
    if row is None:
        return None
    schema = row["quoted_schema"]
    untrusted = None
    if not row["owner_is_superuser"]:
        untrusted = f"its schema {schema} belongs to role {row['schema_owner']}, which is not a superuser"
    elif row["creators"]:
        untrusted = f"roles below superuser may create objects in its schema {schema}: {row['creators']}"
    elif row["foreign_owners"]:
        untrusted = f"its schema {schema} holds objects of roles below superuser: {row['foreign_owners']}"
    if untrusted:
        raise CliError(
            f"the alive_worker extension in database {conn.info.dbname} is not to be trusted: {untrusted}",
            "Nothing was read from it: a look-alike there would run as you. A superuser can check the "
            "schema's contents, then drop it and the extension and CREATE EXTENSION alive_worker again.",
            Status.CRITICAL,
        )
    return Extension(str(row["extversion"]), str(row["nspname"]))


def extension_version(conn: Connection) -> str | None:
    extension = installed_extension(conn)
    return None if extension is None else extension.version


def require_extension(conn: Connection, at_least: str = "1.0") -> Extension:
    """The installed extension, or an error that says how to install it."""
    extension = installed_extension(conn)
    if extension is None:
        raise CliError(
            f"the alive_worker extension is not installed in database {conn.info.dbname}",
            "A superuser can install it in any database (the status view answers for every database): "
            "CREATE EXTENSION alive_worker;",
        )
    if version_key(extension.version) < version_key(at_least):
        raise CliError(
            f"the alive_worker extension in database {conn.info.dbname} is version {extension.version}; "
            f"this needs {at_least}",
            "A superuser can update it: ALTER EXTENSION alive_worker UPDATE;",
        )
    return extension


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


# The heartbeat table and role this database's settings name (the worker's
# defaults where the library is not loaded here), the table quoted by the
# server (format %I) as the status view's target_table is.
CONFIGURED_TABLE = """
SELECT schema, "table", role, pg_catalog.format('%I.%I', schema, "table") AS qualified
FROM (SELECT coalesce(nullif(pg_catalog.current_setting('alive_worker.schema', true), ''), 'public') AS schema,
             coalesce(nullif(pg_catalog.current_setting('alive_worker.table', true), ''), 'log_table') AS "table",
             coalesce(nullif(pg_catalog.current_setting('alive_worker.role', true), ''),
                      (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10)) AS role) configured
"""


def heartbeat_table(conn: Connection) -> str:
    """The configured heartbeat table, quoted, as the server's settings name it."""
    row = conn.execute(CONFIGURED_TABLE).fetchone()
    assert row is not None
    return str(row["qualified"])


# ---- output ----

# What the server sends is shown, never obeyed: a role name, an error message
# or a heartbeat row may hold escape sequences that would rewrite an
# operator's screen or title.  Every control character of the text written
# (C0 but newline and tab, DEL, C1, and the bidirectional overrides) is
# shown escaped, as Python writes it in a string literal.  Style's own
# sequences begin with STYLE_MARK instead of ESC, which no text from the
# server can hold (psycopg decodes valid UTF-8, and no valid UTF-8 decodes to
# a surrogate); the output turns the mark into ESC after escaping the rest.
STYLE_MARK = "\ud800"
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def escape_controls(text: str) -> str:
    """text with every control character written as \\xNN or \\uNNNN."""
    return CONTROL_CHARACTERS.sub(
        lambda match: f"\\x{ord(match[0]):02x}" if ord(match[0]) < 0x100 else f"\\u{ord(match[0]):04x}", text
    )


def one_line(text: str) -> str:
    """A server's text on one line of the command's output: a newline in it would forge a line."""
    return text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


class SafeOutput(io.TextIOBase):
    """A text stream that escapes control characters, but for Style's sequences."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        first, *styled = text.split(STYLE_MARK)
        self.stream.write(escape_controls(first) + "".join("\x1b" + escape_controls(part) for part in styled))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def safe_output(stream: TextIO) -> TextIO:
    return cast(TextIO, SafeOutput(stream))


class Style:
    """ANSI colour on a terminal, nothing elsewhere (or as --color says; NO_COLOR is obeyed)."""

    CODES: ClassVar[dict[str, str]] = {
        "ok": "32",
        "warning": "33",
        "critical": "31;1",
        "dim": "2",
        "bold": "1",
        "header": "1;4",
    }

    def __init__(self, stream: TextIO, mode: str = "auto") -> None:
        if mode == "auto":
            self.enabled = (
                stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM", "") != "dumb"
            )
        else:
            self.enabled = mode == "always"

    def __call__(self, text: str, style: str | None) -> str:
        if not self.enabled or not style:
            return text
        return f"{STYLE_MARK}[{self.CODES[style]}m{text}{STYLE_MARK}[0m"

    def status(self, status: Status) -> str:
        styles = {Status.OK: "ok", Status.WARNING: "warning", Status.CRITICAL: "critical"}
        return self(status.name, styles.get(status, "warning"))


@dataclass
class Cell:
    text: str
    style: str | None = None
    right: bool = False  # numbers align right


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], style: Style) -> str:
    """Columns aligned on their widest cell; styles applied after padding."""
    body = [list(row) for row in rows]
    widths = [max([len(header), *(len(row[i].text) for row in body)]) for i, header in enumerate(headers)]
    lines = ["  ".join(style(h.ljust(w), "bold") for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in body:
        cells = [
            style(cell.text.rjust(width) if cell.right else cell.text.ljust(width), cell.style)
            for cell, width in zip(row, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def seconds_text(value: float | None) -> str:
    """A duration for people: 4.2 ms, 412 ms, 1.25 s, 3 min 20 s, 2 h 5 min."""
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value < 0.00995:
        return f"{sign}{value * 1000:.1f} ms"
    if value < 0.9995:
        return f"{sign}{value * 1000:.0f} ms"
    if value < 60:
        return f"{sign}{value:.2f} s"
    if value < 3600:
        return f"{sign}{int(value // 60)} min {int(value % 60)} s"
    return f"{sign}{int(value // 3600)} h {int(value % 3600 // 60)} min"


def interval_text(value: timedelta | None) -> str:
    return "-" if value is None else seconds_text(value.total_seconds())


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    delta = (now - moment).total_seconds()
    return f"in {seconds_text(-delta)}" if delta < 0 else f"{seconds_text(delta)} ago"


def to_json(value: Any) -> Any:
    """Values as JSON has them: times in ISO 8601, durations in seconds."""
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, enum.Enum):
        return value.name
    return value


def print_json(value: Any, stream: TextIO = sys.stdout, indent: int | None = 2) -> None:
    # ensure_ascii: a control character of the server's, C1 included, stays an escape.
    stream.write(json.dumps(to_json(value), indent=indent, ensure_ascii=True) + "\n")
    stream.flush()
