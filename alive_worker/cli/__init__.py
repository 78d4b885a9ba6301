"""The alive-worker command: status, tail, lag, doctor, report, metrics, rules, exporter and run, from any client machine.

Installed as a console script of the package (into the server's virtual
environment by make install).  It connects as any libpq client does: --dsn,
else the PG* environment variables and the service file.  Every subcommand
exits as a monitoring plugin does: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
(including bad arguments and unreachable servers), and reports failures in
one message with a hint, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NoReturn, TextIO

import psycopg

from alive_worker import __version__
from alive_worker.cli._common import CliError, Status, Style, print_json, safe_output, translate

Runner = Callable[[argparse.Namespace, TextIO, Style], Status]


class Subcommand(NamedTuple):
    """A subcommand's summary, and where its arguments and its run are (a module of alive_worker.cli).

    Named, not imported: a command imports the one module it runs (a
    monitoring system may start it every few seconds), not those of the other
    eight (prometheus_client, the report's page, the doctor's checks).
    """

    summary: str
    module: str
    add_arguments: str = "add_arguments"
    run: str = "run"

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        add: Callable[[argparse.ArgumentParser], None] = self._attribute(self.add_arguments)
        add(parser)

    def runner(self) -> Runner:
        run: Runner = self._attribute(self.run)
        return run

    def _attribute(self, name: str) -> Any:
        return getattr(importlib.import_module(f"alive_worker.cli.{self.module}"), name)


SUBCOMMANDS: dict[str, Subcommand] = {
    "status": Subcommand("the workers: state, counters, last error, tick times", "status"),
    "tail": Subcommand("follow the heartbeats as they arrive, with each tick's lateness", "tail"),
    "lag": Subcommand("a standby's replication lag, for monitoring (exit 0/1/2/3)", "lag"),
    "doctor": Subcommand("check an installation end to end and say how to fix it", "doctor"),
    "metrics": Subcommand(
        "the workers' status in Prometheus' text format (stdout or --output FILE)", "metrics"
    ),
    "report": Subcommand(
        "write outages, availability per day, week and month, and the SLO's error budget", "report"
    ),
    "rules": Subcommand(
        "Prometheus recording rules and burn-rate alerts for a write-availability SLO", "rules"
    ),
    "exporter": Subcommand(
        "serve the workers' status on /metrics for Prometheus",
        "metrics",
        "add_exporter_arguments",
        "run_exporter",
    ),
    "run": Subcommand(
        "write the heartbeat from outside, for servers without the extension (until SIGTERM)", "run"
    ),
}


def chosen_subcommand(argv: Sequence[str]) -> str | None:
    """The subcommand argv names: its first word that is not an option (the top level takes no values)."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in SUBCOMMANDS else None
    return None


class Parser(argparse.ArgumentParser):
    """Usage errors exit 3 (UNKNOWN), as a monitoring plugin's must."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(Status.UNKNOWN, f"{self.prog}: error: {message}\n")


def parser(chosen: str | None = None) -> Parser:
    """The command's parser; only the chosen subcommand's arguments are added (None: every one's)."""
    common = Parser(add_help=False)
    common.add_argument(
        "--dsn",
        default="",
        metavar="DSN",
        help='libpq connection string or URI, e.g. "host=/var/run/postgresql dbname=postgres" or '
        '"service=standby" (default: the PG* environment variables and the service file)',
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")
    common.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the output: on a terminal (auto, the default; NO_COLOR turns it off), always, never",
    )
    top = Parser(
        prog="alive-worker",
        description="Watch and check alive_worker, the PostgreSQL heartbeat background worker.",
        epilog="Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (as Nagios and Icinga read them).",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name, subcommand in SUBCOMMANDS.items():
        sub = commands.add_parser(name, parents=[common], help=subcommand.summary)
        if chosen is None or name == chosen:
            subcommand.add_to(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = parser(chosen_subcommand(words)).parse_args(words)
    # Nothing the server sends reaches the terminal unescaped (_common.SafeOutput).
    out = safe_output(sys.stdout)
    style = Style(out, args.color)
    run = SUBCOMMANDS[args.command].runner()
    try:
        return int(run(args, out, style))
    except CliError as error:
        report_failure(error, args, out, style)
        return int(error.status)
    except psycopg.Error as error:
        failure = translate(error)
        report_failure(failure, args, out, style)
        return int(failure.status)
    except KeyboardInterrupt:
        return int(Status.UNKNOWN)
    except BrokenPipeError:
        # The reader went away (| head): not an error, and nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(Status.OK)
    except Exception as error:
        # A monitoring plugin must answer UNKNOWN, in one line, never a traceback.
        failure = CliError(f"unexpected {type(error).__name__}: {one_line(str(error))}")
        report_failure(failure, args, out, style)
        return int(Status.UNKNOWN)


def one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


def report_failure(error: CliError, args: argparse.Namespace, out: TextIO, style: Style) -> None:
    """On stdout as JSON with --json; as the plugin line for lag; else on stderr."""
    if args.json:
        print_json({"status": error.status, "error": error.message, "hint": error.hint}, out)
        return
    if args.command == "lag":
        out.write(f"{style.status(error.status)}: {error.message}\n")
        if error.hint:
            out.write(f"hint: {error.hint}\n")
        return
    err = safe_output(sys.stderr)
    err_style = Style(err, args.color)
    err.write(f"alive-worker {args.command}: {err_style('error', 'critical')}: {error.message}\n")
    if error.hint:
        err.write(f"hint: {error.hint}\n")
