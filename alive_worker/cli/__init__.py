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
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

import psycopg

from alive_worker import __version__
from alive_worker.cli import doctor, lag, metrics, report, rules, run, status, tail
from alive_worker.cli._common import CliError, Status, Style, print_json, safe_output, translate

Runner = Callable[[argparse.Namespace, TextIO, Style], Status]

SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]] = {
    "status": ("the workers: state, counters, last error, tick times", status.add_arguments, status.run),
    "tail": ("follow the heartbeats as they arrive, with each tick's lateness", tail.add_arguments, tail.run),
    "lag": ("a standby's replication lag, for monitoring (exit 0/1/2/3)", lag.add_arguments, lag.run),
    "doctor": ("check an installation end to end and say how to fix it", doctor.add_arguments, doctor.run),
    "metrics": (
        "the workers' status in Prometheus' text format (stdout or --output FILE)",
        metrics.add_arguments,
        metrics.run,
    ),
    "report": (
        "write outages, availability per day, week and month, and the SLO's error budget",
        report.add_arguments,
        report.run,
    ),
    "rules": (
        "Prometheus recording rules and burn-rate alerts for a write-availability SLO",
        rules.add_arguments,
        rules.run,
    ),
    "exporter": (
        "serve the workers' status on /metrics for Prometheus",
        metrics.add_exporter_arguments,
        metrics.run_exporter,
    ),
    "run": (
        "write the heartbeat from outside, for servers without the extension (until SIGTERM)",
        run.add_arguments,
        run.run,
    ),
}


class Parser(argparse.ArgumentParser):
    """Usage errors exit 3 (UNKNOWN), as a monitoring plugin's must."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(Status.UNKNOWN, f"{self.prog}: error: {message}\n")


def parser() -> Parser:
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
    for name, (summary, add_arguments, _) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, parents=[common], help=summary)
        add_arguments(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Nothing the server sends reaches the terminal unescaped (_common.SafeOutput).
    out = safe_output(sys.stdout)
    style = Style(out, args.color)
    run = SUBCOMMANDS[args.command][2]
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
