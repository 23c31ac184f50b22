"""The error tree: every error pickles whole, and keeps its place in the tree."""

from __future__ import annotations

import pickle

import pytest

import carmigrate.errors as errors_module
from carmigrate.errors import (
    AggregateFullError,
    BackendUnavailable,
    BagError,
    BlockHashMismatch,
    CarFormatError,
    CarmigrateError,
    ChecksumMismatch,
    ColdObject,
    InvalidKey,
    LimitExceeded,
    MappingError,
    ObjectExists,
    ObjectNotFound,
    PieceError,
    PlanError,
    PreflightError,
    RecordsError,
    RecordsIntegrityError,
    RollbackRefused,
    SizeMismatch,
    StorageError,
    VerificationError,
)

SAMPLES: list[CarmigrateError] = [
    StorageError("s", key="k", transient=True),
    ObjectNotFound("missing", key="k"),
    ObjectExists("there", key="k"),
    InvalidKey("bad key", key="../k"),
    ColdObject("cold", key="k", storage_class="GLACIER", restore_in_progress=True),
    BackendUnavailable("busy", key="k"),
    SizeMismatch("size", key="k", declared=10, actual=11),
    ChecksumMismatch("sum", key="k", algorithm="md5", expected="a" * 32, actual=None),
    CarFormatError("broken", offset=7),
    LimitExceeded("section", limit=10, actual=20, offset=3),
    BlockHashMismatch("bafkqaaa", offset=99),
    PieceError("piece"),
    AggregateFullError("full", failed_at=2),
    PlanError("plan"),
    BagError("no bag at memory://x/b1/", path="bagit.txt", transient=False),
    VerificationError("failed", [BlockHashMismatch("bafkqaaa", offset=1)]),
    RecordsError("reading table 'users' failed", table="users", transient=True),
    MappingError(
        "unknown ID rule 'x'", path="m.toml", table="users", key="ids[0].rule"
    ),
    PreflightError("1 finding fails", ["users (1,): key clash"]),
    RecordsIntegrityError("stage failed", stage="accounts", problems=["users (1,)"]),
    RollbackRefused("changed", stage="accounts", changed=["users (1001,)"]),
]


def test_every_public_error_has_a_sample() -> None:
    """The samples below cover the whole tree (a new error needs one)."""
    public = {
        getattr(errors_module, name)
        for name in errors_module.__all__
        if isinstance(getattr(errors_module, name), type)
    }
    assert public - {
        CarmigrateError,
        errors_module.FormatError,
        errors_module.AggregateError,
    } <= {type(e) for e in SAMPLES}


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_every_attribute(error: CarmigrateError) -> None:
    """Errors come back from process and Dask workers as they were raised."""
    back = pickle.loads(pickle.dumps(error))

    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.args == error.args
    assert back.transient == error.transient
    assert {k: repr(v) for k, v in vars(back).items()} == {
        k: repr(v) for k, v in vars(error).items()
    }


def test_mismatches_are_storage_errors_that_do_not_retry() -> None:
    """Code that catches StorageError keeps working; retrying would not help."""
    size = SizeMismatch("m", key="k", declared=1, actual=2)
    digest = ChecksumMismatch(
        "m", key="k", algorithm="sha256", expected="0", actual="1"
    )

    assert isinstance(size, StorageError)
    assert isinstance(digest, StorageError)
    assert not size.transient
    assert not digest.transient
    assert (size.declared, size.actual, size.key) == (1, 2, "k")
    assert (digest.algorithm, digest.expected, digest.actual) == ("sha256", "0", "1")


def test_records_errors_name_file_table_and_key() -> None:
    """A bad mapping says where: the file, the table and the key; and is a ValueError."""
    e = MappingError(
        "unknown ID rule 'x'", path="m.toml", table="users", key="ids[0].rule"
    )

    assert str(e) == "unknown ID rule 'x' (in m.toml, table 'users', key 'ids[0].rule')"
    assert isinstance(e, RecordsError)
    assert isinstance(e, ValueError)
    assert (e.path, e.table, e.key, e.reason) == (
        "m.toml",
        "users",
        "ids[0].rule",
        "unknown ID rule 'x'",
    )
    assert not e.transient
    assert str(MappingError("bad")) == "bad"
    assert PreflightError("p", ["f"]).findings == ("f",)
