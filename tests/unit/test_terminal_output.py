"""What the command writes: durations for people, aligned tables, colour, and nothing the server sends obeyed."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from alive_worker.cli._common import (
    STYLE_MARK,
    Cell,
    Status,
    Style,
    ago,
    escape_controls,
    interval_text,
    render_table,
    safe_output,
    seconds_text,
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0042, "4.2 ms"),
        (0.412, "412 ms"),
        (1.25, "1.25 s"),
        (200, "3 min 20 s"),
        (7500, "2 h 5 min"),
        (-0.412, "-412 ms"),
        (None, "-"),
    ],
)
def test_durations_are_written_in_the_unit_that_suits_them(seconds: float | None, text: str) -> None:
    assert seconds_text(seconds) == text


def test_moments_are_said_as_ago_or_in() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert ago(now - timedelta(seconds=2), now) == "2.00 s ago"
    assert ago(now + timedelta(milliseconds=250), now) == "in 250 ms"
    assert ago(None, now) == "-"
    assert interval_text(timedelta(minutes=1)) == "1 min 0 s" and interval_text(None) == "-"


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),  # a terminal title
        ("\x9b31m", "\\x9b31m"),  # C1 control sequence introducer
        ("admin\u202etxt.exe", "admin\\u202etxt.exe"),  # right-to-left override
        ("bell\x7f\x00", "bell\\x7f\\x00"),
        ("line one\n\ttabbed, été, 心", "line one\n\ttabbed, été, 心"),
    ],
)
def test_control_characters_from_the_server_are_shown_escaped(sent: str, shown: str) -> None:
    assert escape_controls(sent) == shown


def test_only_the_commands_own_styles_reach_the_terminal_as_escapes() -> None:
    screen = io.StringIO()
    out = safe_output(screen)
    style = Style(out, "always")
    out.write(style("OK", "ok") + ": role \x1b[2Jmallory\n")
    assert screen.getvalue() == "\x1b[32mOK\x1b[0m: role \\x1b[2Jmallory\n"
    assert STYLE_MARK not in screen.getvalue()


def test_colour_is_on_for_a_terminal_unless_no_color_or_a_dumb_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert Style(Terminal()).enabled
    assert not Style(io.StringIO()).enabled
    assert not Style(Terminal(), "never").enabled and Style(io.StringIO(), "always").enabled
    monkeypatch.setenv("TERM", "dumb")
    assert not Style(Terminal()).enabled
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("NO_COLOR", "")
    assert not Style(Terminal()).enabled


def test_status_words_carry_their_colour() -> None:
    style = Style(io.StringIO(), "always")
    assert style.status(Status.CRITICAL) == f"{STYLE_MARK}[31;1mCRITICAL{STYLE_MARK}[0m"
    assert Style(io.StringIO(), "never").status(Status.UNKNOWN) == "UNKNOWN"


def test_tables_align_on_the_widest_cell_numbers_to_the_right() -> None:
    text = render_table(
        ["DATABASE", "OK"],
        [[Cell("postgres"), Cell("7", right=True)], [Cell("db"), Cell("1234", right=True)]],
        Style(io.StringIO(), "never"),
    )
    assert text.splitlines() == [
        "DATABASE  OK",
        "postgres     7",
        "db        1234",
    ]


def test_styles_are_applied_after_padding() -> None:
    style = Style(io.StringIO(), "always")
    text = render_table(["A"], [[Cell("x", "critical")], [Cell("long")]], style)
    assert f"{STYLE_MARK}[31;1mx   {STYLE_MARK}[0m" in text


def test_a_runner_log_record_with_a_server_s_newlines_and_escapes_stays_one_inert_line() -> None:
    """A trigger's error message, logged by alive-worker run, forges no line and no terminal sequence."""
    import logging

    from alive_worker.cli.run import OneLineFormatter

    forged = "boom\n2026-12-06 08:00:00,000 INFO alive-worker run: sleeping\x1b]0;pwned\x07"
    record = logging.LogRecord("runner", logging.WARNING, __file__, 1, "the tick failed: %s", (forged,), None)
    line = OneLineFormatter("%(levelname)s %(message)s").format(record)
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line
    assert (
        line
        == "WARNING the tick failed: boom\\n2026-12-06 08:00:00,000 INFO alive-worker run: sleeping\\x1b]0;pwned\\x07"
    )
