"""SPIError and its subclasses: the class named for each SQLSTATE, as psycopg names it."""

from __future__ import annotations

import psycopg.errors
import pytest

from alive_worker import errors
from alive_worker.errors import SPIError, from_sqlstate, lookup

CLASSES = [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, SPIError)]
SUBCLASSES = [cls for cls in CLASSES if cls is not SPIError]


@pytest.mark.parametrize("cls", SUBCLASSES, ids=lambda cls: cls.__name__)
def test_each_class_is_named_as_psycopg_names_its_sqlstate(cls: type[SPIError]) -> None:
    assert lookup(cls.sqlstate) is cls
    assert psycopg.errors.lookup(cls.sqlstate).__name__ == cls.__name__


def test_no_two_classes_claim_one_sqlstate() -> None:
    codes = [cls.sqlstate for cls in CLASSES]
    assert len(codes) == len(set(codes))


def test_an_error_keeps_its_own_code_and_diagnostics() -> None:
    error = from_sqlstate("42501", "permission denied for table t", detail="d", hint="h", context="c")
    assert isinstance(error, errors.InsufficientPrivilege)
    assert (error.sqlstate, error.detail, error.hint, error.context) == ("42501", "d", "h", "c")
    assert str(error) == "permission denied for table t (SQLSTATE 42501)"


def test_a_code_without_a_class_is_a_plain_spierror_that_keeps_the_code() -> None:
    error = from_sqlstate("22P02", "invalid input syntax for type integer")
    assert type(error) is SPIError and error.sqlstate == "22P02"
    assert SPIError("no code").sqlstate == "XX000"


def test_a_hooks_own_subclass_does_not_change_what_the_bridge_raises() -> None:
    class MyCanceled(errors.QueryCanceled):
        pass

    class MyError(SPIError):
        sqlstate = "P0001"

    assert lookup("57014") is errors.QueryCanceled
    assert lookup("P0001") is SPIError
