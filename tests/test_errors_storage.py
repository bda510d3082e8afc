"""StorageError.outcome and ConflictError.exhausted: what a caller learns from a failed save."""

from __future__ import annotations

import pytest

from clp_core.errors import ClpError, ConflictError, CorruptStateError, StorageError


def test_storage_error_outcome_defaults_to_unknown_and_old_constructor_still_works() -> None:
    error = StorageError("boom", backend="redis")
    assert error.outcome == "unknown"
    assert error.backend == "redis"
    assert str(error) == "[redis] boom"


def test_storage_error_outcome_not_applied() -> None:
    assert StorageError("refused", backend="redis", outcome="not_applied").outcome == "not_applied"


def test_storage_error_refuses_an_unknown_outcome() -> None:
    with pytest.raises(ValueError, match="outcome"):
        StorageError("x", backend="redis", outcome="maybe")


def test_conflict_and_corrupt_errors_prove_nothing_was_applied() -> None:
    assert ConflictError("k", backend="sqlite").outcome == "not_applied"
    assert CorruptStateError("k", backend="sqlite").outcome == "not_applied"
    assert ConflictError("k", backend="sqlite").tries is None


def test_conflict_exhausted_says_how_many_tries() -> None:
    cause = ConflictError("key 'k' is at version 7, not 6", backend="sqlite")
    error = ConflictError.exhausted(100, cause)
    assert isinstance(error, ConflictError) and isinstance(error, ClpError)
    assert error.tries == 100
    assert error.backend == "sqlite"
    assert error.outcome == "not_applied"
    assert error.__cause__ is cause
    assert str(error) == "[sqlite] gave up after 100 conflicting tries: key 'k' is at version 7, not 6"
    assert "1 conflicting try:" in str(ConflictError.exhausted(1, cause))


@pytest.mark.parametrize("tries", [0, -1, True, 1.5])
def test_conflict_exhausted_needs_a_positive_count(tries: object) -> None:
    with pytest.raises(ValueError):
        ConflictError.exhausted(tries, ConflictError("x", backend="memory"))  # type: ignore[arg-type]
