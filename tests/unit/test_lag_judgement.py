"""alive-worker lag judges a reading: the lag against --warn/--crit, and what makes it doubtful."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

import pytest

from alive_worker.cli._common import Status
from alive_worker.cli.lag import describe, judge, perfdata, seconds_arg


def reading(lag: float = 0.05, age: float = 0.3, **columns: Any) -> dict[str, Any]:
    """What alive_worker.lag() returns on a streaming standby."""
    return {
        "lag": timedelta(seconds=lag),
        "heartbeat_age": timedelta(seconds=age),
        "tick_interval": timedelta(seconds=1),
        "in_recovery": True,
        "system_identifier": 7400000000000000001,
        "upstream": "127.0.0.1:5432",
        "receiver_status": "streaming",
        "replay_paused": False,
        "source_table": "public.log_table",
        "clock_skew": None,
        **columns,
    }


def limits(warn: float | None = None, crit: float | None = None, max_skew: float = 1.0) -> argparse.Namespace:
    return argparse.Namespace(warn=warn, crit=crit, max_skew=max_skew)


@pytest.mark.parametrize(
    ("lag", "expected"),
    [(0.5, Status.OK), (1.0, Status.WARNING), (4.9, Status.WARNING), (5.0, Status.CRITICAL)],
)
def test_the_lag_is_warning_from_warn_and_critical_from_crit(lag: float, expected: Status) -> None:
    assert judge(reading(lag), limits(warn=1.0, crit=5.0)) == (expected, [])


def test_without_limits_any_lag_is_ok() -> None:
    assert judge(reading(lag=3600), limits())[0] == Status.OK


def test_a_skewed_clock_beyond_max_skew_is_a_warning_that_says_which_way() -> None:
    ahead = judge(reading(clock_skew=timedelta(seconds=2.5)), limits())
    behind = judge(reading(clock_skew=timedelta(seconds=-2.5)), limits())
    within = judge(reading(clock_skew=timedelta(seconds=0.5)), limits())
    assert ahead == (
        Status.WARNING,
        ["this server's clock is 2.50 s ahead of the primary's (--max-skew 1 s)"],
    )
    assert behind[0] == Status.WARNING and "2.50 s behind the primary's" in behind[1][0]
    assert within == (Status.OK, [])


def test_a_heartbeat_from_the_future_makes_the_lag_unknown_but_a_hair_early_is_now() -> None:
    future = judge(reading(age=-1.0), limits())
    assert future[0] == Status.WARNING and "from the future" in future[1][0]
    assert judge(reading(age=-0.01), limits()) == (Status.OK, [])


def test_a_doubt_never_lowers_a_critical_lag() -> None:
    status, doubts = judge(reading(lag=10, age=-1.0), limits(crit=5.0))
    assert status == Status.CRITICAL and len(doubts) == 1


def test_the_plugin_line_names_where_the_lag_comes_from() -> None:
    assert describe(reading()) == (
        "lag 50 ms, standby of system 7400000000000000001 via 127.0.0.1:5432 (streaming), "
        "newest heartbeat 300 ms old, interval 1.00 s"
    )
    cut_off = describe(reading(upstream=None, replay_paused=True))
    assert ", no WAL receiver, replay paused," in cut_off
    subscriber = describe(reading(in_recovery=False))
    assert "from public.log_table" in subscriber and "standby" not in subscriber


def test_perfdata_is_in_seconds_with_the_limits_in_their_slots() -> None:
    assert perfdata(reading(), 1.0, 5.0) == "lag=0.050000s;1;5;0; heartbeat_age=0.300000s"
    assert perfdata(reading(), None, None) == "lag=0.050000s;;;0; heartbeat_age=0.300000s"
    skewed = perfdata(reading(clock_skew=timedelta(seconds=-0.25)), None, None)
    assert skewed.endswith(" clock_skew=-0.250000s")


@pytest.mark.parametrize("text", ["-1", "soon"])
def test_seconds_must_be_a_number_not_below_zero(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        seconds_arg(text)
    assert seconds_arg("0") == 0.0
