"""Repeated failures reported once, then summarised (src/error_throttle.c), compiled alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from c_leaves import header_constant, load_leaf
from hypothesis import given
from hypothesis import strategies as st

DECLARATIONS = """
bool error_throttle_repeats(const char *last_message, int last_sqlerrcode,
                            const char *message, int sqlerrcode);
bool error_throttle_summary_due(int64_t last_report_at, int64_t now);
"""

SUMMARY_EVERY_US = header_constant("error_throttle.c", "REPEAT_REPORT_INTERVAL_MS") * 1000
# PostgreSQL's timestamps: microseconds since 2000-01-01.
NOW = 849_744_000 * 1_000_000
INSUFFICIENT_PRIVILEGE = 0x0A8  # any two distinct codes will do
LOCK_NOT_AVAILABLE = 0x3B5


@pytest.fixture(scope="module")
def throttle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    ffi, lib = load_leaf("error_throttle", DECLARATIONS, Path(tmp_path_factory.mktemp("c_throttle")))

    class Throttle:
        summary_due = lib.error_throttle_summary_due

        @staticmethod
        def repeats(last: bytes | None, last_code: int, message: bytes | None, code: int) -> bool:
            return bool(
                lib.error_throttle_repeats(
                    ffi.NULL if last is None else ffi.new("char[]", last),
                    last_code,
                    ffi.NULL if message is None else ffi.new("char[]", message),
                    code,
                )
            )

    yield Throttle


def test_the_same_sqlstate_and_message_is_a_repeat(throttle: Any) -> None:
    denied = b"permission denied for table beat"
    assert throttle.repeats(denied, INSUFFICIENT_PRIVILEGE, denied, INSUFFICIENT_PRIVILEGE)


def test_another_message_or_sqlstate_is_reported_in_full(throttle: Any) -> None:
    denied = b"permission denied for table beat"
    assert not throttle.repeats(
        denied, INSUFFICIENT_PRIVILEGE, b"permission denied for schema s", INSUFFICIENT_PRIVILEGE
    )
    assert not throttle.repeats(denied, INSUFFICIENT_PRIVILEGE, denied, LOCK_NOT_AVAILABLE)


def test_the_first_failure_after_a_success_is_never_a_repeat(throttle: Any) -> None:
    assert not throttle.repeats(None, 0, b"", 0)
    assert not throttle.repeats(None, 0, None, 0)


def test_an_error_without_a_message_repeats_one_without_a_message(throttle: Any) -> None:
    assert throttle.repeats(b"", LOCK_NOT_AVAILABLE, None, LOCK_NOT_AVAILABLE)


def test_repeats_are_summarised_once_a_minute(throttle: Any) -> None:
    assert not throttle.summary_due(NOW, NOW)
    assert not throttle.summary_due(NOW, NOW + SUMMARY_EVERY_US - 1)
    assert throttle.summary_due(NOW, NOW + SUMMARY_EVERY_US)


@given(elapsed=st.integers(min_value=-(10**12), max_value=10**12))
def test_a_summary_is_due_exactly_when_a_minute_has_passed_on_the_clock(throttle: Any, elapsed: int) -> None:
    # A wall clock stepped back (elapsed < 0) holds the summary until it has caught up.
    assert throttle.summary_due(NOW, NOW + elapsed) == (elapsed >= SUMMARY_EVERY_US)
