"""alive-worker run's settings: the worker's names and units, from a file, the environment and flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from alive_worker.runner import config, state
from alive_worker.runner.schedule import after_tick, next_deadline


def test_later_sources_win_file_then_environment_then_flags(tmp_path: Path) -> None:
    conf = tmp_path / "runner.conf"
    conf.write_text(
        "# copied from postgresql.conf\n"
        "alive_worker.interval = '1s'\n"
        "alive_worker.message = 'it''s alive'   # quoted, as PostgreSQL writes it\n"
        "retention = 7d\n"
        "table = beats\n"
    )
    settings = config.build(
        conf,
        {"table": "flagged", "schema": None},
        {
            "ALIVE_WORKER_TABLE": "from_env",
            "ALIVE_WORKER_CLOCK_ALIGNED": "on",
            "ALIVE_WORKER_UPGRADE_FROM": "x",
        },
    )
    assert settings.interval == 1000
    assert settings.message == "it's alive"
    assert settings.retention == 7 * 86400
    assert settings.table == "flagged"
    assert settings.clock_aligned is True
    assert settings.schema == "public"
    # What alive_worker.spi.setting() answers a hook in the runner: the worker's units.
    assert settings.alive_worker_setting("alive_worker.interval") == "1000"
    assert settings.alive_worker_setting("alive_worker.clock_aligned") == "on"
    assert settings.alive_worker_setting("alive_worker.nonesuch") is None


def test_the_config_file_is_found_through_the_environment(tmp_path: Path) -> None:
    conf = tmp_path / "runner.conf"
    conf.write_text("interval = 250ms\n")
    assert config.build(None, {}, {"ALIVE_WORKER_CONFIG": str(conf)}).interval == 250


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"interval": "soon"}, "--interval: interval: not a time: 'soon'"),
        ({"interval": "5"}, "interval: 5 ms is outside 10 ms"),
        ({"interval": "3 fortnights"}, "unknown unit 'fortnights'"),
        ({"hook_failure": "explode"}, "hook_failure: 'explode' is not one of log, fail_tick"),
        ({"table": ""}, "table: must be a non-empty name"),
        ({"metrics_listen": "9188"}, "not ADDRESS:PORT"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(flags: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(")):
        config.build(None, flags, {})


def test_a_bad_line_of_the_file_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "runner.conf"
    conf.write_text("interval = 1s\nmessage = two words\n")
    with pytest.raises(config.ConfigError, match=r"runner.conf:2: cannot read 'message = two words'"):
        config.build(conf, {}, {})
    conf.write_text("intervall = 1s\n")
    with pytest.raises(config.ConfigError, match=r"runner.conf:1: unknown setting 'intervall'"):
        config.build(conf, {}, {})


def test_the_grid_ignores_how_long_a_tick_takes_and_skips_ticks_more_than_an_interval_late() -> None:
    # A tick due at 10.0 that took 0.03 s: the next is due at 10.1, not 10.13.
    following = after_tick(10.0, 10.03, 0.1, False, 0.0)
    assert following.skipped == 0 and following.deadline == pytest.approx(10.1)
    # Done at 10.35: the ticks due at 10.1 and 10.2 are skipped, the next is 10.3's.
    following = after_tick(10.0, 10.35, 0.1, False, 0.0)
    assert following.skipped == 2 and following.deadline == pytest.approx(10.3)


def test_clock_aligned_deadlines_fall_on_wall_clock_multiples_of_the_interval() -> None:
    # Monotonic 5.0 is wall-clock 1000.237: the next deadline half an interval on is wall 1001.0.
    offset = 995.237
    deadline = next_deadline(5.0, 1.0, True, offset)
    assert deadline + offset == pytest.approx(1001.0)
    # Less than half an interval before a multiple: that one is skipped, as the worker does.
    deadline = next_deadline(5.0, 1.0, True, 995.8)
    assert deadline + 995.8 == pytest.approx(1002.0)


def test_the_published_state_reads_back_and_nothing_else_passes_for_a_runner() -> None:
    for name in state.STATES:
        written = state.application_name(name, 86_400_000)
        assert len(written.encode()) < 64
        assert state.read_application_name(written) == (name, 86_400_000)
    assert state.read_application_name("alive-worker run: happy (1ms)") is None
    assert state.read_application_name("psql") is None
    assert state.read_application_name(None) is None
