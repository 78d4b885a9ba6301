"""Backing off between failed attempts to connect (src/connect_backoff.c), compiled alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from c_leaves import header_constant, load_leaf
from hypothesis import given
from hypothesis import strategies as st

DECLARATIONS = """
long connect_delay_seconds(int failed_attempts, int restart_delay_s);
long connect_retry_in_seconds(int earlier_failures, int restart_delay_s);
"""

RESTART_DELAY_S = header_constant("worker_status.h", "WORKER_RESTART_DELAY_SECONDS")
MAX_DELAY_S = header_constant("connect_backoff.c", "MAX_CONNECT_DELAY_SECONDS")

failures = st.integers(min_value=0, max_value=2**31 - 2)
restart_delays = st.integers(min_value=1, max_value=MAX_DELAY_S)


@pytest.fixture(scope="module")
def backoff(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    _, lib = load_leaf("connect_backoff", DECLARATIONS, Path(tmp_path_factory.mktemp("c_backoff")))
    yield lib


def test_the_first_failure_waits_only_the_restart_delay(backoff: Any) -> None:
    assert backoff.connect_delay_seconds(0, RESTART_DELAY_S) == 0
    assert backoff.connect_delay_seconds(1, RESTART_DELAY_S) == 0
    assert backoff.connect_retry_in_seconds(0, RESTART_DELAY_S) == RESTART_DELAY_S


def test_each_further_failure_doubles_the_wait_up_to_five_minutes_in_all(backoff: Any) -> None:
    # With the restart delay of 5 s, attempts come 5, 10, 20, 40, 80, 160, 300 s apart.
    delays = [backoff.connect_delay_seconds(attempts, 5) for attempts in range(1, 10)]
    assert delays == [0, 5, 15, 35, 75, 155, 295, 295, 295]
    assert [5 + delay for delay in delays] == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert backoff.connect_delay_seconds(2**31 - 1, 5) == MAX_DELAY_S - 5


def test_a_connection_resets_the_backoff(backoff: Any) -> None:
    # crash_guard_connected() sets the failures to 0: the next attempt is at once.
    assert backoff.connect_delay_seconds(0, RESTART_DELAY_S) == 0
    assert backoff.connect_delay_seconds(-1, RESTART_DELAY_S) == 0


def test_the_view_tells_when_the_attempt_after_a_failure_comes(backoff: Any) -> None:
    # The status shows, before the attempt, when the next comes should it fail.
    assert backoff.connect_retry_in_seconds(2, 5) == 5 + backoff.connect_delay_seconds(3, 5) == 20


@given(attempts=failures, restart_delay_s=restart_delays)
def test_the_wait_grows_with_failures_and_never_passes_the_cap(
    backoff: Any, attempts: int, restart_delay_s: int
) -> None:
    delay = backoff.connect_delay_seconds(attempts, restart_delay_s)
    assert 0 <= delay <= MAX_DELAY_S - restart_delay_s
    assert backoff.connect_delay_seconds(attempts + 1, restart_delay_s) >= delay
    assert backoff.connect_retry_in_seconds(attempts, restart_delay_s) == restart_delay_s + (
        backoff.connect_delay_seconds(attempts + 1, restart_delay_s)
    )
