"""The command's plumbing: JSON values, connection strings, errors turned into one message and a hint."""

from __future__ import annotations

import enum
import io
import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import psycopg.errors
import pytest

from alive_worker.cli import chosen_subcommand, main
from alive_worker.cli._common import (
    CliError,
    Status,
    connect,
    describe_target,
    one_paragraph,
    print_json,
    shown_sql,
    to_json,
    translate,
    version_key,
)
from alive_worker.cli.doctor.python import unreadable_by_others
from alive_worker.cli.metrics import server_name, write_atomically


class Colour(enum.Enum):
    RED = 1


def test_json_has_times_in_iso_8601_durations_in_seconds_and_names_for_enums() -> None:
    value = {
        "at": datetime(2026, 12, 4, 12, 0, tzinfo=UTC),
        "on": date(2026, 12, 4),
        "interval": timedelta(milliseconds=1500),
        "lag": Decimal("0.25"),
        "status": Status.WARNING,
        "nested": [(Colour.RED, None)],
    }
    assert to_json(value) == {
        "at": "2026-12-04T12:00:00+00:00",
        "on": "2026-12-04",
        "interval": 1.5,
        "lag": 0.25,
        "status": "WARNING",
        "nested": [["RED", None]],
    }


def test_json_output_keeps_control_characters_escaped() -> None:
    out = io.StringIO()
    print_json({"message": "\x1b[2J\x9b"}, out, indent=None)
    assert out.getvalue() == '{"message": "\\u001b[2J\\u009b"}\n'
    assert json.loads(out.getvalue()) == {"message": "\x1b[2J\x9b"}


def test_versions_compare_as_numbers() -> None:
    assert version_key("1.10") > version_key("1.9") > version_key("1.2.3") > version_key("1")


def test_a_connection_string_is_described_without_its_password() -> None:
    assert describe_target("host=db port=5433 password=secret") == '"host=db port=5433"'
    assert "PG* environment variables" in describe_target("")


def test_a_malformed_dsn_is_refused_before_connecting() -> None:
    with pytest.raises(CliError) as refused:
        connect("host='unterminated")
    assert refused.value.message.startswith("invalid --dsn: ")
    assert refused.value.status == Status.UNKNOWN


def test_a_malformed_dsn_exits_unknown_with_the_error_and_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--dsn", "host='unterminated"]) == Status.UNKNOWN
    err = capsys.readouterr().err
    assert err.startswith("alive-worker status: error: invalid --dsn: unterminated quoted string")
    assert "\nhint: Give a libpq connection string or URI.\n" in err


def test_bad_arguments_exit_unknown_as_a_monitoring_plugin_must(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["status", "--warn", "0"])
    assert exited.value.code == Status.UNKNOWN
    assert "must be above 0" in capsys.readouterr().err


def test_a_server_message_is_put_on_one_line() -> None:
    assert one_paragraph(ValueError("first\n  second\nthird  ")) == "first; second; third"


def test_a_denied_permission_comes_with_the_grant_that_fixes_it() -> None:
    error = translate(psycopg.errors.InsufficientPrivilege("permission denied for view workers"))
    assert error.message == "permission denied: permission denied for view workers"
    assert error.hint is not None and error.hint.endswith('GRANT pg_monitor TO "your role";')


def test_a_lost_connection_is_said_as_such() -> None:
    error = translate(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert error.message == "lost the connection: server closed the connection unexpectedly"


def test_suggested_sql_quotes_names_as_the_server_would() -> None:
    assert shown_sql(None, "GRANT pg_monitor TO {};", psycopg.sql.Identifier('mal"lory')) == (
        'GRANT pg_monitor TO "mal""lory";'
    )


def test_the_server_label_is_host_and_port_without_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHOST", raising=False)
    monkeypatch.delenv("PGPORT", raising=False)
    assert server_name("host=db1 port=5433 password=secret") == "db1:5433"
    assert server_name("") == "localhost:5432"
    monkeypatch.setenv("PGHOST", "/var/run/postgresql")
    assert server_name("dbname=postgres") == "/var/run/postgresql:5432"


def test_the_metrics_file_is_replaced_whole_and_readable_by_node_exporter(tmp_path: Path) -> None:
    target = tmp_path / "alive_worker.prom"
    target.write_bytes(b"old\n")
    write_atomically(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["alive_worker.prom"]


def test_the_first_file_other_users_cannot_read_is_named(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir(mode=0o755)
    (tmp_path / "lib" / "ok.py").write_text("")
    (tmp_path / "lib" / "ok.py").chmod(0o644)
    assert unreadable_by_others(tmp_path) is None
    (tmp_path / "lib" / "secret.py").write_text("")
    (tmp_path / "lib" / "secret.py").chmod(0o600)
    assert unreadable_by_others(tmp_path) == tmp_path / "lib" / "secret.py"
    (tmp_path / "lib").chmod(0o750)
    assert unreadable_by_others(tmp_path) == tmp_path / "lib"


# A subcommand's module and what it alone needs: none of them is imported for another subcommand.
OTHER_SUBCOMMANDS_MODULES = (
    "alive_worker.cli.doctor",
    "alive_worker.cli.metrics",
    "alive_worker.cli.report",
    "alive_worker.cli.report_page",
    "alive_worker.cli.rules",
    "alive_worker.cli.run",
    "alive_worker.cli.tail",
    "alive_worker.cli.lag",
    "alive_worker.ledger",
    "prometheus_client",
)


def test_the_command_imports_only_the_module_of_the_subcommand_it_runs() -> None:
    """A monitoring system may start `alive-worker status` every few seconds: it pays for status alone."""
    probe = (
        "import sys\n"
        "from alive_worker.cli import main\n"
        "try:\n"
        "    main(['status', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    imported = set(result.stdout.split())
    assert "alive_worker.cli.status" in imported
    assert imported.isdisjoint(OTHER_SUBCOMMANDS_MODULES), imported & set(OTHER_SUBCOMMANDS_MODULES)


@pytest.mark.parametrize(
    ("argv", "chosen"),
    [
        (["status", "--json"], "status"),
        (["exporter", "--listen", "127.0.0.1:9187"], "exporter"),
        (["--version"], None),
        (["--help"], None),
        (["no-such-command"], None),
        (["--", "status"], None),
    ],
)
def test_the_subcommand_is_the_first_word_that_is_no_option(argv: list[str], chosen: str | None) -> None:
    assert chosen_subcommand(argv) == chosen


def test_a_command_unknown_or_mistyped_gets_argparse_s_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["no-such-command"], ["status", "--no-such-option"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == Status.UNKNOWN
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err
