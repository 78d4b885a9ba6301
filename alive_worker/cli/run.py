"""alive-worker run: write the heartbeat from outside, for servers that cannot load the extension.

The loop is alive_worker.runner.loop; this module reads the arguments and
the configuration (alive_worker.runner.config) and starts it.  Unlike the
other subcommands it runs until SIGTERM, and exits 0 then; a configuration
that cannot be read exits 3 (UNKNOWN) before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn, TextIO

from alive_worker.cli._common import CliError, Status, Style, escape_controls, one_line
from alive_worker.runner import config

FLAG_HELP = {
    "schema": "schema of the heartbeat table (default public)",
    "table": "heartbeat table; created if missing and the role may (default log_table)",
    "message": 'message prefix of each row, which reads "<message> <N>"',
    "interval": "time between heartbeats, e.g. 1s, 500ms (default 10s)",
    "hook": "Python callable run in every tick after the INSERT, in this process: module:function or /path/file.py:function",
    "hook_failure": "log (the heartbeat commits) or fail_tick (the tick is rolled back) when the hook fails",
    "tick_timeout": "longest a tick may run: its statement is then cancelled, its connection closed a second later; 0 means the interval",
    "retention": "heartbeats older than this are deleted, in batches; 0 keeps them all (e.g. 7d)",
    "clock_aligned": "on: ticks fall on wall-clock multiples of the interval",
    "metrics_listen": "serve the runner's own /metrics on ADDRESS:PORT (e.g. 127.0.0.1:9188)",
    "reconnect_max": "longest wait between two connection attempts (default 30s)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write alive_worker's heartbeat into a server from outside, as an ordinary client: the worker's "
        "table, rows, numbering, schedule, retention and hooks, for servers that cannot preload the "
        "extension (managed services).  Settings come from --config FILE (alive_worker.NAME = value lines, "
        "as in postgresql.conf), then ALIVE_WORKER_NAME environment variables, then these flags.  "
        "Runs until SIGTERM; see docs/MANAGED.md."
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="settings file (or ALIVE_WORKER_CONFIG)")
    for name, text in FLAG_HELP.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=f"setting_{name}", metavar="VALUE", help=text)
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning"),
        default="info",
        help="what to log on stderr (default info)",
    )


def settings_from(args: argparse.Namespace) -> config.RunnerSettings:
    flags: dict[str, str | None] = {name: getattr(args, f"setting_{name}") for name in FLAG_HELP}
    # --dsn is the command's common option: given, it wins; empty, the file's or the environment's.
    flags["dsn"] = args.dsn or None
    return config.build(args.config, flags)


class OneLineFormatter(logging.Formatter):
    """Each record on one line, its control characters escaped: a server's text in it (a trigger's
    error message) forges no line of the log and sends nothing to a terminal (a red team did both).
    A traceback, the runner's own, stays as Python writes it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(one_line(super().formatMessage(record)))


def run(args: argparse.Namespace, out: TextIO, style: Style) -> NoReturn:
    try:
        settings = settings_from(args)
    except config.ConfigError as error:
        raise CliError(str(error), "See alive-worker run --help and docs/MANAGED.md.") from error
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), handlers=[handler])
    from alive_worker.runner.loop import Runner

    runner = Runner(settings, reread=lambda: settings_from(args))
    runner.run()
    # Stopped: the connection is closed and the logs are flushed; the interpreter's own
    # teardown of every module (40 to 120 ms measured on a busy host) would outlast the
    # 100 ms SIGTERM is given, and has nothing left to do.
    logging.shutdown()
    out.flush()
    sys.stderr.flush()
    os._exit(int(Status.OK))
