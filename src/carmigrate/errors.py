"""The single exception tree of carmigrate.

Every error carmigrate raises on purpose derives from
[CarmigrateError][carmigrate.errors.CarmigrateError]. Where a
builtin is the natural thing to catch, the error also derives from it, so
``except FileNotFoundError`` keeps working around a store and ``except
ValueError`` around a parser::

    CarmigrateError
    ├── StorageError
    │   ├── ObjectNotFound        (also FileNotFoundError)
    │   ├── ObjectExists          (also FileExistsError)
    │   ├── InvalidKey            (also ValueError)
    │   ├── ColdObject            needs a restore first; carries restore state
    │   ├── SizeMismatch          carries .declared and .actual
    │   ├── ChecksumMismatch      carries .algorithm, .expected and .actual
    │   └── BackendUnavailable    transient
    ├── FormatError               (also ValueError)
    │   ├── CarFormatError        carries .offset
    │   ├── LimitExceeded         carries .limit and .actual
    │   └── BlockHashMismatch     carries .cid and .offset
    ├── PieceError                (also ValueError)
    ├── AggregateError
    │   └── AggregateFullError    carries the reason
    ├── PlanError
    ├── BagError                  a BagIt bag cannot be read at all; carries .path
    ├── RecordsError              rows: a database, a table, a record plan
    │   ├── MappingError          (also ValueError) carries .path, .table, .key
    │   ├── PreflightError        carries the .findings that must not pass
    │   ├── RecordsIntegrityError carries the .stage and the .problems found
    │   └── RollbackRefused       carries the .stage and the .changed rows
    └── VerificationError         groups per-item mismatches

Every error has a ``transient`` attribute: ``True`` when the same call may
succeed if retried (a throttled or unreachable backend), ``False`` when it
will fail again. Retry logic reads only that attribute. Messages name the
object, the byte offset and the limit involved.

Vendor errors (botocore, ``OSError``) are translated into this tree at the
storage backend boundary and nowhere else; the original is kept as
``__cause__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "AggregateError",
    "AggregateFullError",
    "BackendUnavailable",
    "BagError",
    "BlockHashMismatch",
    "CarFormatError",
    "CarmigrateError",
    "ChecksumMismatch",
    "ColdObject",
    "FormatError",
    "InvalidKey",
    "LimitExceeded",
    "MappingError",
    "ObjectExists",
    "ObjectNotFound",
    "PieceError",
    "PlanError",
    "PreflightError",
    "RecordsError",
    "RecordsIntegrityError",
    "RollbackRefused",
    "SizeMismatch",
    "StorageError",
    "VerificationError",
]


def _restore(
    cls: type[CarmigrateError], args: tuple[object, ...], state: dict[str, object]
) -> CarmigrateError:
    """Rebuild a pickled error without calling its ``__init__``."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class CarmigrateError(Exception):
    """Base class of every error carmigrate raises on purpose.

    Every error pickles with all its attributes (it travels back from
    process and Dask workers), whatever its constructor asks for.

    Attributes:
        transient: ``True`` if retrying the same operation may succeed.
            Subclasses set a class default; an instance may override it.
    """

    transient: bool = False

    def __reduce__(self) -> tuple[object, ...]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class StorageError(CarmigrateError):
    """A store could not carry out an operation.

    Args:
        message: What failed, naming the store and key.
        key: The object key involved, if any.
        transient: Override of the class default for retries.
    """

    def __init__(
        self, message: str, *, key: str | None = None, transient: bool | None = None
    ) -> None:
        super().__init__(message)
        self.key = key
        if transient is not None:
            self.transient = transient


class ObjectNotFound(StorageError, FileNotFoundError):
    """The object does not exist under the given key."""


class ObjectExists(StorageError, FileExistsError):
    """An if-absent write found an object already under the key."""


class InvalidKey(StorageError, ValueError):
    """The key is not acceptable to the store (escapes its root, has NUL, ...)."""


class SizeMismatch(StorageError):
    """A write's data was longer or shorter than the size declared for it.

    Nothing was written under the key. Not transient: the same data gives
    the same length.

    Args:
        message: What failed, naming the store and key.
        key: The object key.
        declared: The size the caller declared.
        actual: The bytes the data gave; for data longer than declared, as
            far as the store read before stopping (more than ``declared``).
    """

    def __init__(
        self, message: str, *, key: str | None = None, declared: int, actual: int
    ) -> None:
        super().__init__(message, key=key, transient=False)
        self.declared = declared
        self.actual = actual


class ChecksumMismatch(StorageError):
    """A write's data did not have the checksum the caller expected.

    Nothing was written under the key. Not transient: the same data gives
    the same digest.

    Args:
        message: What failed, naming the store and key.
        key: The object key.
        algorithm: The digest that differed (``md5``, ``sha256``, ...).
        expected: The hex digest the caller gave.
        actual: The hex digest of the data, or ``None`` if it was not
            computed.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        algorithm: str,
        expected: str,
        actual: str | None,
    ) -> None:
        super().__init__(message, key=key, transient=False)
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual


class ColdObject(StorageError):
    """The object sits in a cold tier and must be restored before it is read.

    Args:
        message: What failed.
        key: The object key.
        storage_class: The object's storage class (for example ``GLACIER``).
        restore_in_progress: Whether a restore was already requested.
        restore_expiry: When a finished restore expires, as the backend
            reported it, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        storage_class: str | None = None,
        restore_in_progress: bool = False,
        restore_expiry: str | None = None,
    ) -> None:
        super().__init__(message, key=key)
        self.storage_class = storage_class
        self.restore_in_progress = restore_in_progress
        self.restore_expiry = restore_expiry


class BackendUnavailable(StorageError):
    """The backend is throttling, unreachable or failing; retry later."""

    transient = True


class FormatError(CarmigrateError, ValueError):
    """Bytes do not follow the format they claim (CID, CAR, DAG-CBOR, ...)."""


class CarFormatError(FormatError):
    """A CAR file is malformed.

    Args:
        message: What was expected and what was found.
        offset: Byte offset in the file where the problem was detected.
    """

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(f"{message} (at byte offset {offset})")
        self.offset = offset
        self.reason = message


class LimitExceeded(CarFormatError):
    """A length read from untrusted input exceeds a configured limit.

    Raised before anything of that length is allocated.

    Args:
        what: Which quantity exceeded its limit (``"header"``, ``"section"``).
        limit: The configured limit, in bytes.
        actual: The length the input declared.
        offset: Byte offset of the length prefix.
    """

    def __init__(self, what: str, *, limit: int, actual: int, offset: int) -> None:
        super().__init__(
            f"{what} length {actual} exceeds the limit of {limit} bytes", offset=offset
        )
        self.what = what
        self.limit = limit
        self.actual = actual


class BlockHashMismatch(CarFormatError):
    """A block's bytes do not hash to the digest in its CID.

    Args:
        cid: The CID, as a string.
        offset: Byte offset of the block's data in the file.
        message: Optional detail; a default naming the CID is used otherwise.
    """

    def __init__(self, cid: str, *, offset: int, message: str | None = None) -> None:
        super().__init__(
            message or f"block data does not match CID {cid}", offset=offset
        )
        self.cid = cid


class PieceError(CarmigrateError, ValueError):
    """A piece size, PieceCID or commP input is invalid."""


class AggregateError(CarmigrateError):
    """An FRC-0058 aggregate cannot be built or checked as asked."""


class AggregateFullError(AggregateError):
    """A piece does not fit in the aggregate.

    Args:
        reason: Why it does not fit (count limit, size, alignment).
        failed_at: 0-based position of the piece that did not fit, if known.
    """

    def __init__(self, reason: str, *, failed_at: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failed_at = failed_at


class PlanError(CarmigrateError):
    """A migration plan is invalid or does not match the ledger."""


class BagError(CarmigrateError):
    """A BagIt bag cannot be read at all, so it cannot be judged valid or not.

    Raised by ``carmigrate.bagit`` for unusable input: nothing is stored
    where the bag should be, a source fails while it is read (a folder that
    cannot be listed, a file that cannot be opened), or a tag file handed to
    one of the stream readers breaks the BagIt syntax. A bag that can be read
    but breaks a rule is not an error: verification reports it as a failure.
    A [StorageError][carmigrate.errors.StorageError] raised by a store behind
    a bag source is not wrapped: it propagates as it is.

    Args:
        message: What failed, naming the bag and the file.
        path: The file in the bag involved (``"manifest-sha256.txt"``), if
            any.
        transient: Override of the class default for retries (``True`` when
            the source's failure may pass).
    """

    def __init__(
        self, message: str, *, path: str | None = None, transient: bool | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        if transient is not None:
            self.transient = transient


class RecordsError(CarmigrateError):
    """Rows cannot be read, planned or mapped as asked.

    The message names the database (its URL without the password), the table
    and the row involved. Not transient unless the database was unreachable.

    Args:
        message: What failed, naming the database, table and row.
        table: The table involved, if any.
        transient: Override of the class default for retries.
    """

    def __init__(
        self, message: str, *, table: str | None = None, transient: bool | None = None
    ) -> None:
        super().__init__(message)
        self.table = table
        if transient is not None:
            self.transient = transient


class MappingError(RecordsError, ValueError):
    """A record mapping (TOML file or values) is invalid.

    Raised when the mapping is loaded or checked against a schema, before
    anything is read or planned.

    Args:
        message: What is wrong and what was expected.
        path: The mapping file, if the mapping came from one.
        table: The table the bad entry is about, if any.
        key: The key in the file (dotted, ``ids.users.rule``), if known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        table: str | None = None,
        key: str | None = None,
    ) -> None:
        where = ", ".join(
            part
            for part in (
                f"in {path}" if path else "",
                f"table {table!r}" if table else "",
                f"key {key!r}" if key else "",
            )
            if part
        )
        super().__init__(f"{message} ({where})" if where else message, table=table)
        self.path = path
        self.key = key
        self.reason = message


class PreflightError(RecordsError):
    """A record plan holds findings whose policy is ``fail``.

    Args:
        message: Summary naming how many findings and of which kinds.
        findings: The findings that failed (values of
            ``carmigrate.records.Finding``), in plan order.
    """

    def __init__(self, message: str, findings: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.findings = tuple(findings)


class RecordsIntegrityError(RecordsError):
    """A stage's rows failed the integrity checks run before its commit.

    Raised by ``carmigrate.migrate.execute_records`` after it rolled the
    stage's destination transaction back: nothing of the stage is left at
    the destination, earlier stages stay committed, and the ledger records
    the stage as failed with these problems.

    Args:
        message: Summary naming the stage and how many problems.
        stage: The stage's name.
        problems: One line per problem (the table, the row's key and what
            differs: a count, a digest, a dangling reference, a duplicate).
    """

    def __init__(
        self, message: str, *, stage: str, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.problems = tuple(problems)


class RollbackRefused(RecordsError):
    """Rows a stage wrote were changed at the destination since it committed.

    Raised by ``carmigrate.migrate.rollback_records`` before it changes
    anything (unless ``force=True``): deleting or restoring those rows would
    lose someone else's change.

    Args:
        message: Summary naming the stage and how many rows changed.
        stage: The stage's name.
        changed: One line per changed or missing row (table and key).
    """

    def __init__(
        self, message: str, *, stage: str, changed: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.stage = stage
        self.changed = tuple(changed)


class VerificationError(CarmigrateError):
    """One or more items failed verification.

    Args:
        message: Summary.
        failures: The per-item errors, in the order they were found.
    """

    def __init__(self, message: str, failures: Sequence[Exception] = ()) -> None:
        super().__init__(message)
        self.failures = tuple(failures)
