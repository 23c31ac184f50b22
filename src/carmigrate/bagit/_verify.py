"""verify_bag: every rule a storage service applies to a bag, every failure at once."""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import unicodedata
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

import attrs

from carmigrate.bagit._names import check_external_identifier, path_problem
from carmigrate.bagit._tagfiles import (
    BAGIT_ALGORITHMS,
    PayloadOxum,
    check_bag_info,
    check_bagging_date,
    check_declaration,
    fetch_rows,
    manifest_rows,
)
from carmigrate.digests import algorithm, strongest
from carmigrate.errors import BagError, CarmigrateError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import BinaryIO

    from carmigrate.bagit._source import BagSource
    from carmigrate.digests import Hasher

__all__ = [
    "DEFAULT_MAX_FAILURES_PER_RULE",
    "RULES",
    "BagFailure",
    "BagVerifyResult",
    "verify_bag",
]

RULES: Final = (
    "bag-declaration",
    "bag-info",
    "manifests",
    "fetch-format",
    "source-tag-manifest",
    "external-identifier",
    "payload-oxum-count",
    "filenames",
    "fetch-prefix",
    "checksum",
    "fetch-concrete",
    "unreferenced-files",
    "payload-oxum-size",
)
"""The names of the rules [verify_bag][carmigrate.bagit.verify_bag] applies, in the order it reports them.

- ``bag-declaration``: ``bagit.txt`` is present and is exactly
  ``BagIt-Version: M.N`` and ``Tag-File-Character-Encoding: UTF-8``, in UTF-8
  without a byte-order mark, at most 4 KiB.
- ``bag-info``: ``bag-info.txt`` is present, every line is a field or a
  continuation, and it holds exactly one value (repeats of the same value
  count as one) of ``Payload-Oxum`` (``OctetCount.StreamCount``),
  ``Bagging-Date`` (``YYYY-MM-DD``) and ``External-Identifier`` (see
  [check_external_identifier][carmigrate.bagit.check_external_identifier]).
- ``manifests``: at least one payload manifest and one tag manifest; only
  md5, sha1, sha256 and sha512 manifests; every line well-formed; no path
  twice in one manifest; every manifest of a kind lists the same files;
  payload and tag manifests use the same algorithms; and not only weak
  ones (md5 or sha1 alone fails).
- ``fetch-format``: every line of ``fetch.txt`` is ``URL LENGTH PATH``
  with an absolute URL; no path twice; every path is a payload file (under
  ``data/``) listed in the payload manifests.
- ``source-tag-manifest``: with ``replica_of``, this bag's tag manifest of
  the strongest algorithm both bags have is byte for byte the source bag's.
- ``external-identifier``: with ``external_identifier``, bag-info's
  ``External-Identifier`` equals it.
- ``payload-oxum-count``: Payload-Oxum's stream count equals the number of
  files the payload manifests list (fetched ones included).
- ``filenames``: payload manifest paths are under ``data/`` and tag
  manifest paths are not; no path is absolute or has an empty, ``.`` or
  ``..`` segment (such a file is never opened), a segment ending in ``.``
  (Azure cannot store it) or a control character; no two stored names are
  equal once normalized to NFC.
- ``fetch-prefix``: with ``allowed_fetch_prefix``, every URL of ``fetch.txt``
  lies under it (as a folder) with no ``.`` or ``..`` segment after it.
- ``checksum``: every file of every payload and tag manifest is there and
  has every digest listed for it; fetched files are read at their URL
  through the fetch roots and have the length ``fetch.txt`` gives.
- ``fetch-concrete``: no path of ``fetch.txt`` is also stored in the bag.
- ``unreferenced-files``: every file stored in the bag is listed in a
  manifest, except the tag manifests ``tagmanifest-<alg>.txt`` themselves.
- ``payload-oxum-size``: Payload-Oxum's octet count equals the bytes of the
  payload files read; checked only when every payload file could be read.
"""

DEFAULT_MAX_FAILURES_PER_RULE: Final = 1000
"""How many failures of one rule [verify_bag][carmigrate.bagit.verify_bag] lists by default.

Past it, one more failure of the rule (with ``path`` ``None``) says how
many were left out, so a bag with a million broken files costs bounded
memory to report.
"""

_CHUNK: Final = 1 << 20
_PAYLOAD: Final = 0
_TAG: Final = 1
_KINDS: Final = {_PAYLOAD: "payload", _TAG: "tag"}
_MANIFEST_NAME: Final = re.compile(r"(tag)?manifest-([A-Za-z0-9]+)\.txt")
_TAG_MANIFESTS: Final = frozenset(f"tagmanifest-{a}.txt" for a in BAGIT_ALGORITHMS)
_SQLITE_CACHE_KIB: Final = 4 << 10
_SCHEMA: Final = (
    # name: the path normalized to NFC; key/raw: as stored/written when different
    "CREATE TABLE listed (name TEXT NOT NULL, key TEXT, size INTEGER NOT NULL)",
    "CREATE TABLE entry (name TEXT NOT NULL, kind INTEGER NOT NULL,"
    " alg TEXT NOT NULL, digest TEXT NOT NULL, raw TEXT)",
    "CREATE TABLE fetch (name TEXT NOT NULL, url TEXT NOT NULL, length INTEGER,"
    " line INTEGER NOT NULL, raw TEXT)",
)
_INDEXES: Final = (
    "CREATE INDEX listed_name ON listed (name)",
    "CREATE INDEX entry_name ON entry (name, kind, alg)",
    "CREATE INDEX fetch_name ON fetch (name)",
)


@attrs.frozen
class BagFailure:
    """One way a bag breaks one rule.

    Attributes:
        rule: The rule's name, one of [RULES][carmigrate.bagit.RULES].
        path: The file in the bag the failure is about (as the manifest or
            the store writes it), or ``None`` for the bag as a whole.
        message: What is wrong, naming the file, the values found and the
            values expected.
    """

    rule: str
    path: str | None
    message: str

    def to_dict(self) -> dict[str, str | None]:
        """``{"rule", "path", "message"}`` for JSON."""
        return {"rule": self.rule, "path": self.path, "message": self.message}


@attrs.frozen
class BagVerifyResult:
    """What [verify_bag][carmigrate.bagit.verify_bag] found.

    Attributes:
        algorithm: The strongest algorithm present in both the payload and
            the tag manifests (``"sha512"``), or ``None`` if they share none.
        files: Payload files: the distinct paths the payload manifests list,
            fetched ones included.
        bytes: Bytes of the payload files read (missing or unreadable files
            count nothing).
        failures: Every failure, grouped by rule in the order of
            [RULES][carmigrate.bagit.RULES], then in the order found (by
            path for the per-file rules).
    """

    algorithm: str | None
    files: int
    bytes: int
    failures: tuple[BagFailure, ...]

    @property
    def valid(self) -> bool:
        """Whether the bag passed every rule (no failure)."""
        return not self.failures

    def rules_failed(self) -> tuple[str, ...]:
        """The names of the rules with at least one failure, in the order of [RULES][carmigrate.bagit.RULES]."""
        failed = {f.rule for f in self.failures}
        return tuple(r for r in RULES if r in failed)

    def to_dict(self) -> dict[str, object]:
        """``{"valid", "algorithm", "files", "bytes", "failures": [...]}`` for JSON."""
        return {
            "valid": self.valid,
            "algorithm": self.algorithm,
            "files": self.files,
            "bytes": self.bytes,
            "failures": [f.to_dict() for f in self.failures],
        }


def _nfc(path: str) -> str:
    if path.isascii():
        return path
    return unicodedata.normalize("NFC", path)


def _unusable(source: BagSource, what: str, error: OSError) -> BagError:
    transient = getattr(error, "transient", None)
    return BagError(
        f"{source.url}: cannot {what}: {error}",
        transient=transient if isinstance(transient, bool) else None,
    )


@contextlib.contextmanager
def _reading(source: BagSource, what: str) -> Iterator[None]:
    """Turn an ``OSError`` of a source into [BagError][carmigrate.errors.BagError]; let ours pass."""
    try:
        yield
    except CarmigrateError:
        raise
    except OSError as e:
        raise _unusable(source, what, e) from e


class _Verifier:
    """One verification: the index of the bag's names and the failures found.

    State: an SQLite database in a private temporary file (deleted when the
    connection closes), holding the listing, the manifests' entries and the
    fetch entries, so that a bag of millions of files is joined on disk, not
    in dicts; and the failures so far, bucketed by rule.
    """

    def __init__(
        self,
        source: BagSource,
        *,
        fetch_roots: Mapping[str, BagSource],
        max_failures: int | None,
    ) -> None:
        self.source = source
        # a prefix is a folder; the longest first, so the most specific root wins
        self.fetch_roots = sorted(
            ((p if p.endswith("/") else p + "/", s) for p, s in fetch_roots.items()),
            key=lambda kv: -len(kv[0]),
        )
        self.max_failures = max_failures
        self.failures: dict[str, list[BagFailure]] = {r: [] for r in RULES}
        self.left_out: dict[str, int] = dict.fromkeys(RULES, 0)
        self.db = sqlite3.connect("", isolation_level=None)
        for pragma in (
            "PRAGMA journal_mode = OFF",
            "PRAGMA synchronous = OFF",
            f"PRAGMA cache_size = -{_SQLITE_CACHE_KIB}",
            "PRAGMA temp_store = FILE",
        ):
            self.db.execute(pragma)
        for statement in _SCHEMA:
            self.db.execute(statement)
        self.root: set[str] = set()  # the tag files stored at the root
        self.payload_algs: list[str] = []
        self.tag_algs: list[str] = []
        self.info_oxum: PayloadOxum | None = None
        self.info_identifier: str | None = None
        self.info_present = False
        self.files = 0
        self.bytes = 0
        self.payload_complete = True

    def close(self) -> None:
        self.db.close()

    # -- failures --------------------------------------------------------

    def fail(self, rule: str, path: str | None, message: str) -> None:
        bucket = self.failures[rule]
        if self.max_failures is not None and len(bucket) >= self.max_failures:
            self.left_out[rule] += 1
            return
        bucket.append(BagFailure(rule=rule, path=path, message=message))

    def all_failures(self) -> tuple[BagFailure, ...]:
        out: list[BagFailure] = []
        for rule in RULES:
            out += self.failures[rule]
            if self.left_out[rule]:
                out.append(
                    BagFailure(
                        rule=rule,
                        path=None,
                        message=f"{self.left_out[rule]} more failures of this rule "
                        "are not listed",
                    )
                )
        return tuple(out)

    # -- reading ----------------------------------------------------------

    def open(self, key: str) -> BinaryIO | None:
        """Open a file of the bag; ``None`` if it went missing."""
        try:
            return self.source.open_read(key)
        except FileNotFoundError:
            return None
        except CarmigrateError:
            raise
        except OSError as e:
            raise _unusable(self.source, f"read {key!r}", e) from e

    def list_bag(self) -> None:
        """Index every stored file; note the tag files at the root."""
        root = self.root

        def rows() -> Iterator[tuple[str, str | None, int]]:
            for path, size in self.source.list(""):
                if "/" not in path and (
                    path in ("bagit.txt", "bag-info.txt", "fetch.txt")
                    or _MANIFEST_NAME.fullmatch(path)
                ):
                    root.add(path)
                name = _nfc(path)
                yield name, None if name == path else path, size

        self.db.execute("BEGIN")
        try:
            with _reading(self.source, "list the bag"):
                self.db.executemany("INSERT INTO listed VALUES (?, ?, ?)", rows())
        finally:
            self.db.execute("COMMIT")
        (count,) = self.db.execute("SELECT count(*) FROM listed").fetchone()
        if not count:
            raise BagError(f"no bag at {self.source.url}: nothing is stored there")
        self.db.execute(_INDEXES[0])

    # -- bagit.txt and bag-info.txt ----------------------------------------

    def check_declaration(self) -> None:
        rule = "bag-declaration"
        stream = self.open("bagit.txt") if "bagit.txt" in self.root else None
        if stream is None:
            self.fail(rule, "bagit.txt", "bagit.txt is missing")
            return
        with stream, _reading(self.source, "read 'bagit.txt'"):
            _, problems = check_declaration(stream)
        for problem in problems:
            self.fail(rule, "bagit.txt", f"bagit.txt {problem}")

    def check_bag_info(self) -> None:
        rule = "bag-info"
        stream = self.open("bag-info.txt") if "bag-info.txt" in self.root else None
        if stream is None:
            self.fail(rule, "bag-info.txt", "bag-info.txt is missing")
            return
        self.info_present = True
        with stream, _reading(self.source, "read 'bag-info.txt'"):
            info, problems = check_bag_info(stream)
        for _, problem in problems:
            self.fail(rule, "bag-info.txt", f"bag-info.txt: {problem}")
        checks: dict[str, Callable[[str], str | None]] = {
            "Payload-Oxum": _oxum_problem,
            "Bagging-Date": check_bagging_date,
            "External-Identifier": _identifier_problem,
        }
        for label, check in checks.items():
            values = list(dict.fromkeys(info.values(label)))
            if not values:
                self.fail(rule, "bag-info.txt", f"bag-info.txt has no {label}")
                continue
            if len(values) > 1:
                self.fail(
                    rule,
                    "bag-info.txt",
                    f"bag-info.txt has {len(values)} different {label} values "
                    f"({', '.join(map(repr, values))}); one is allowed",
                )
                continue
            issue = check(values[0])
            if issue is not None:
                self.fail(rule, "bag-info.txt", f"bag-info.txt: {issue}")
                continue
            if label == "Payload-Oxum":
                self.info_oxum = PayloadOxum.parse(values[0])
            elif label == "External-Identifier":
                self.info_identifier = values[0]
        if self.info_identifier is None:
            # compared with the expected identifier even if it breaks the syntax
            found = list(dict.fromkeys(info.values("External-Identifier")))
            if len(found) == 1:
                self.info_identifier = found[0]

    # -- manifests ---------------------------------------------------------

    def load_manifests(self) -> None:
        rule = "manifests"
        for name in sorted(self.root):
            m = _MANIFEST_NAME.fullmatch(name)
            if m is None:
                continue
            kind = _TAG if m.group(1) else _PAYLOAD
            alg = m.group(2)
            if alg not in BAGIT_ALGORITHMS:
                self.fail(
                    rule,
                    name,
                    f"{name}: carmigrate cannot check {alg} digests (it reads "
                    f"{', '.join(BAGIT_ALGORITHMS)})",
                )
                continue
            stream = self.open(name)
            if stream is None:
                continue  # removed meanwhile: the checksum rule reports it
            problems: list[tuple[int, str]] = []
            rows = _entry_rows(manifest_rows(stream, alg, problems), kind, alg)
            with stream:
                self.db.execute("BEGIN")
                try:
                    with _reading(self.source, f"read {name!r}"):
                        self.db.executemany(
                            "INSERT INTO entry VALUES (?, ?, ?, ?, ?)", rows
                        )
                finally:
                    self.db.execute("COMMIT")
            for _, problem in problems:
                self.fail(rule, name, f"{name}: {problem}")
            (self.tag_algs if kind == _TAG else self.payload_algs).append(alg)
        self.db.execute(_INDEXES[1])

    def check_manifests(self) -> None:
        rule = "manifests"
        if not self.payload_algs:
            self.fail(
                rule, None, "the bag has no payload manifest (manifest-<alg>.txt)"
            )
        if not self.tag_algs:
            self.fail(
                rule,
                None,
                "the bag has no tag manifest (tagmanifest-<alg>.txt); carmigrate "
                "requires one, as the Wellcome storage service does",
            )
        if (
            self.payload_algs
            and self.tag_algs
            and set(self.payload_algs) != set(self.tag_algs)
        ):
            self.fail(
                rule,
                None,
                f"payload manifests use {', '.join(self.payload_algs)} but tag "
                f"manifests use {', '.join(self.tag_algs)}; they must use the same "
                "algorithms",
            )
        for kind, algs in ((_PAYLOAD, self.payload_algs), (_TAG, self.tag_algs)):
            if algs and not any(algorithm(a).cryptographic for a in algs):
                prefix = "tagmanifest" if kind == _TAG else "manifest"
                self.fail(
                    rule,
                    None,
                    f"the {_KINDS[kind]} manifests use only {', '.join(algs)}, "
                    f"which a forger can defeat: add {prefix}-sha256.txt or "
                    f"{prefix}-sha512.txt",
                )
        for name, kind, alg, count, raw in self.db.execute(
            "SELECT name, kind, alg, count(*), min(raw) FROM entry"
            " GROUP BY name, kind, alg HAVING count(*) > 1 ORDER BY name"
        ):
            manifest = _manifest_file(kind, alg)
            self.fail(
                rule, raw or name, f"{manifest} lists {raw or name!r} {count} times"
            )
        for kind, algs in ((_PAYLOAD, self.payload_algs), (_TAG, self.tag_algs)):
            if len(algs) < 2:
                continue
            for name, present, raw in self.db.execute(
                "SELECT name, group_concat(DISTINCT alg), min(raw) FROM entry"
                " WHERE kind = ? GROUP BY name HAVING count(DISTINCT alg) < ?"
                " ORDER BY name",
                (kind, len(algs)),
            ):
                has = sorted(present.split(","))
                missing = [a for a in algs if a not in has]
                self.fail(
                    rule,
                    raw or name,
                    f"{raw or name!r} is listed in "
                    f"{', '.join(_manifest_file(kind, a) for a in has)} but not in "
                    f"{', '.join(_manifest_file(kind, a) for a in missing)}",
                )

    # -- fetch.txt -----------------------------------------------------------

    def load_fetch(self) -> bool:
        if "fetch.txt" not in self.root:
            return False
        stream = self.open("fetch.txt")
        if stream is None:
            return False
        problems: list[tuple[int, str]] = []
        rows = (
            (_nfc(path), url, length, number, None if _nfc(path) == path else path)
            for number, url, length, path in fetch_rows(stream, problems)
        )
        with stream:
            self.db.execute("BEGIN")
            try:
                with _reading(self.source, "read 'fetch.txt'"):
                    self.db.executemany(
                        "INSERT INTO fetch VALUES (?, ?, ?, ?, ?)", rows
                    )
            finally:
                self.db.execute("COMMIT")
        for _, problem in problems:
            self.fail("fetch-format", "fetch.txt", f"fetch.txt: {problem}")
        self.db.execute(_INDEXES[2])
        return True

    def check_fetch(self, allowed_prefix: str | None) -> None:
        rule = "fetch-format"
        for name, count, raw in self.db.execute(
            "SELECT name, count(*), min(raw) FROM fetch GROUP BY name"
            " HAVING count(*) > 1 ORDER BY name"
        ):
            self.fail(
                rule, raw or name, f"fetch.txt lists {raw or name!r} {count} times"
            )
        for name, raw, line, listed in self.db.execute(
            "SELECT f.name, f.raw, f.line, EXISTS (SELECT 1 FROM entry e"
            " WHERE e.name = f.name AND e.kind = ?) FROM fetch f ORDER BY f.name",
            (_PAYLOAD,),
        ):
            path = raw or name
            if not name.startswith("data/"):
                self.fail(
                    rule,
                    path,
                    f"fetch.txt line {line} lists {path!r}, which is not a payload "
                    "file (not under data/)",
                )
            elif not listed:
                self.fail(
                    rule,
                    path,
                    f"fetch.txt line {line} lists {path!r}, which no payload "
                    "manifest lists",
                )
        if allowed_prefix is not None:
            folder = (
                allowed_prefix if allowed_prefix.endswith("/") else allowed_prefix + "/"
            )
            for name, raw, url, line in self.db.execute(
                "SELECT name, raw, url, line FROM fetch ORDER BY name"
            ):
                problem = _fetch_url_problem(url, folder)
                if problem is not None:
                    self.fail(
                        "fetch-prefix", raw or name, f"fetch.txt line {line}: {problem}"
                    )
        for name, raw, key in self.db.execute(
            "SELECT f.name, f.raw, (SELECT coalesce(l.key, l.name) FROM listed l"
            " WHERE l.name = f.name ORDER BY l.key LIMIT 1) FROM fetch f"
            " WHERE EXISTS (SELECT 1 FROM listed l WHERE l.name = f.name)"
            " ORDER BY f.name"
        ):
            self.fail(
                "fetch-concrete",
                raw or name,
                f"{raw or name!r} is listed in fetch.txt and also stored in the bag "
                f"(as {key!r})",
            )

    # -- the replica's source ------------------------------------------------

    def check_source_tag_manifest(self, replica_of: BagSource) -> None:
        rule = "source-tag-manifest"
        with _reading(replica_of, "list the source bag"):
            theirs = {
                path[len("tagmanifest-") : -len(".txt")]
                for path, _ in replica_of.list("tagmanifest-")
                if path in _TAG_MANIFESTS
            }
            declared = any(p == "bagit.txt" for p, _ in replica_of.list("bagit.txt"))
        if not theirs and not declared:
            raise BagError(f"no bag at {replica_of.url} (the replica's source)")
        common = set(theirs) & set(self.tag_algs)
        best = strongest(common)
        if best is None:
            self.fail(
                rule,
                None,
                f"this bag's tag manifests ({', '.join(sorted(self.tag_algs)) or 'none'}) "
                f"and the source bag's ({', '.join(sorted(theirs)) or 'none'}) share "
                "no algorithm",
            )
            return
        name = f"tagmanifest-{best}.txt"
        mine = self._file_digest(self.source, name, name)
        source = self._file_digest(replica_of, name, name)
        if mine is None or source is None or mine != source:
            self.fail(
                rule,
                name,
                f"{name} differs from the source bag's ({replica_of.url})"
                if mine is not None and source is not None
                else f"{name} cannot be read from "
                f"{self.source.url if mine is None else replica_of.url}",
            )

    def _file_digest(self, source: BagSource, key: str, name: str) -> str | None:
        try:
            stream = source.open_read(key)
        except FileNotFoundError:
            return None
        except CarmigrateError:
            raise
        except OSError as e:
            raise _unusable(source, f"read {name!r}", e) from e
        with stream, _reading(source, f"read {name!r}"):
            _, found = _hash(stream, ("sha512",))
        return found["sha512"]

    # -- bag-info against the manifests ----------------------------------------

    def check_identifier(self, expected: str | None) -> None:
        if expected is None or not self.info_present:
            return
        found = self.info_identifier
        if found is None:
            self.fail(
                "external-identifier",
                "bag-info.txt",
                f"bag-info.txt has no single External-Identifier; expected {expected!r}",
            )
        elif found != expected:
            self.fail(
                "external-identifier",
                "bag-info.txt",
                f"bag-info.txt's External-Identifier is {found!r}, not {expected!r}",
            )

    def check_oxum_count(self) -> None:
        oxum = self.info_oxum
        if oxum is None:
            return
        (count,) = self.db.execute(
            "SELECT count(DISTINCT name) FROM entry WHERE kind = ?", (_PAYLOAD,)
        ).fetchone()
        if count != oxum.streams:
            self.fail(
                "payload-oxum-count",
                "bag-info.txt",
                f"Payload-Oxum says {oxum.streams} payload files, the payload "
                f"manifests list {count}",
            )

    # -- every file ----------------------------------------------------------

    def check_files(self) -> None:
        """Rules ``filenames`` and ``checksum``: every entry, read once."""
        for name, count in self.db.execute(
            "SELECT name, count(*) FROM listed GROUP BY name HAVING count(*) > 1"
            " ORDER BY name"
        ):
            keys = [
                k
                for (k,) in self.db.execute(
                    "SELECT coalesce(key, name) FROM listed WHERE name = ?"
                    " ORDER BY key",
                    (name,),
                )
            ]
            self.fail(
                "filenames",
                keys[0],
                f"{count} stored names are equal once normalized to NFC: "
                f"{', '.join(map(ascii, keys))}",
            )
        query = (
            "SELECT e.name, e.kind, group_concat(e.alg || ' ' || e.digest, ' '),"
            " min(e.raw),"
            " (SELECT coalesce(l.key, l.name) FROM listed l WHERE l.name = e.name"
            "  ORDER BY l.key LIMIT 1),"
            " (SELECT f.url FROM fetch f WHERE f.name = e.name ORDER BY f.line LIMIT 1),"
            " (SELECT f.length FROM fetch f WHERE f.name = e.name ORDER BY f.line"
            "  LIMIT 1)"
            " FROM entry e GROUP BY e.name, e.kind ORDER BY e.name, e.kind"
        )
        for name, kind, pairs, raw, key, url, length in self.db.execute(query):
            path = raw or name
            digests = pairs.split(" ")
            expected = list(zip(digests[::2], digests[1::2], strict=True))
            if kind == _PAYLOAD:
                self.files += 1
            if not self._check_name(name, path, kind):
                if kind == _PAYLOAD:
                    self.payload_complete = False
                continue
            if url is not None and kind == _PAYLOAD:
                size = self._check_fetched(path, url, length, expected)
            elif key is not None:
                size = self._check_stored(path, key, kind, expected)
            else:
                self.fail(
                    "checksum",
                    path,
                    f"{path!r} is listed in "
                    f"{', '.join(sorted({_manifest_file(kind, a) for a, _ in expected}))} "
                    "but is not in the bag",
                )
                size = None
            if kind == _PAYLOAD:
                if size is None:
                    self.payload_complete = False
                else:
                    self.bytes += size

    def _check_name(self, name: str, path: str, kind: int) -> bool:
        """Rule ``filenames`` for one entry; ``False`` if it must not be opened."""
        if kind == _PAYLOAD and not name.startswith("data/"):
            self.fail(
                "filenames",
                path,
                f"{path!r} is listed in a payload manifest but is not under data/",
            )
        elif kind == _TAG and name.startswith("data/"):
            self.fail(
                "filenames",
                path,
                f"{path!r} is listed in a tag manifest but is a payload file (under data/)",
            )
        problem = path_problem(name)
        if problem is None:
            return True
        self.fail("filenames", path, f"{path!r} {problem}")
        # a path that could leave the bag is never opened; others are checked
        return not (
            name.startswith("/") or any(s in ("", ".", "..") for s in name.split("/"))
        )

    def _check_stored(
        self, path: str, key: str, kind: int, expected: list[tuple[str, str]]
    ) -> int | None:
        stream = self.open(key)
        if stream is None:
            self.fail("checksum", path, f"{path!r} went missing while the bag was read")
            return None
        with stream, _reading(self.source, f"read {key!r}"):
            size, found = _hash(stream, tuple(a for a, _ in expected))
        self._compare(path, kind, expected, found)
        return size

    def _check_fetched(
        self,
        path: str,
        url: str,
        length: int | None,
        expected: list[tuple[str, str]],
    ) -> int | None:
        found_root = next(
            ((p, s) for p, s in self.fetch_roots if url.startswith(p)), None
        )
        if found_root is None:
            self.fail(
                "checksum",
                path,
                f"{path!r} is fetched from {url}, which no fetch root covers: it "
                "cannot be read",
            )
            return None
        prefix, root = found_root
        key = unquote(url[len(prefix) :])
        if any(s in ("", ".", "..") for s in key.split("/")):
            self.fail(
                "checksum",
                path,
                f"{path!r} is fetched from {url}, which is not a file under the "
                f"fetch root {prefix}",
            )
            return None
        try:
            stream = root.open_read(key)
        except FileNotFoundError:
            self.fail(
                "checksum",
                path,
                f"{path!r} is fetched from {url}, where nothing is stored "
                f"({root.url}: {key!r})",
            )
            return None
        except CarmigrateError:
            raise
        except OSError as e:
            raise _unusable(root, f"read {key!r} (fetched from {url})", e) from e
        with stream, _reading(root, f"read {key!r} (fetched from {url})"):
            size, found = _hash(stream, tuple(a for a, _ in expected))
        if length is not None and size != length:
            self.fail(
                "checksum",
                path,
                f"{path!r} fetched from {url} is {size} bytes; fetch.txt says {length}",
            )
        self._compare(path, _PAYLOAD, expected, found)
        return size

    def _compare(
        self,
        path: str,
        kind: int,
        expected: list[tuple[str, str]],
        found: dict[str, str],
    ) -> None:
        for alg, digest in expected:
            actual = found[alg]
            if actual != digest:
                self.fail(
                    "checksum",
                    path,
                    f"{path!r} has {alg} {actual}; {_manifest_file(kind, alg)} "
                    f"says {digest}",
                )

    # -- what nothing lists ----------------------------------------------------

    def check_unreferenced(self) -> None:
        for key in self.db.execute(
            "SELECT coalesce(l.key, l.name) FROM listed l WHERE NOT EXISTS"
            " (SELECT 1 FROM entry e WHERE e.name = l.name) ORDER BY l.name"
        ):
            path = key[0]
            if path in _TAG_MANIFESTS:
                continue
            self.fail(
                "unreferenced-files",
                path,
                f"{path!r} is stored in the bag but no manifest lists it",
            )

    def check_oxum_size(self) -> None:
        oxum = self.info_oxum
        if oxum is None or not self.payload_complete:
            return
        if oxum.octets != self.bytes:
            self.fail(
                "payload-oxum-size",
                "bag-info.txt",
                f"Payload-Oxum says {oxum.octets} payload bytes, the payload files "
                f"hold {self.bytes}",
            )


def _entry_rows(
    rows: Iterator[tuple[int, str, str]], kind: int, alg: str
) -> Iterator[tuple[str, int, str, str, str | None]]:
    for _, path, digest in rows:
        name = _nfc(path)
        yield name, kind, alg, digest, None if name == path else path


def _manifest_file(kind: int, alg: str) -> str:
    return f"{'tagmanifest' if kind == _TAG else 'manifest'}-{alg}.txt"


def _oxum_problem(text: str) -> str | None:
    try:
        PayloadOxum.parse(text)
    except ValueError as e:
        return str(e)
    return None


def _identifier_problem(text: str) -> str | None:
    try:
        check_external_identifier(text)
    except ValueError as e:
        return str(e)
    return None


def _fetch_url_problem(url: str, folder: str) -> str | None:
    if not url.startswith(folder):
        return f"{url} is not under {folder}"
    rest = url[len(folder) :]
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        return f"{url} has a query or a fragment"
    if any(s in ("", ".", "..") for s in unquote(rest).split("/")):
        return f"{url} has an empty, '.' or '..' segment after {folder}"
    return None


@functools.cache
def _factories(algs: tuple[str, ...]) -> tuple[tuple[str, Callable[[], Hasher]], ...]:
    return tuple((a, algorithm(a).factory) for a in dict.fromkeys(algs))


def _hash(stream: BinaryIO, algs: tuple[str, ...]) -> tuple[int, dict[str, str]]:
    """Size and digests of a stream, in one read of 1 MiB chunks."""
    hashers = [(a, make()) for a, make in _factories(algs)]
    size = 0
    read = stream.read
    if len(hashers) == 2:  # the usual sha256 + sha512 bag, without a loop per chunk
        update_1, update_2 = hashers[0][1].update, hashers[1][1].update
        while chunk := read(_CHUNK):
            update_1(chunk)
            update_2(chunk)
            size += len(chunk)
    else:
        while chunk := read(_CHUNK):
            for _, h in hashers:
                h.update(chunk)
            size += len(chunk)
    return size, {a: h.hexdigest() for a, h in hashers}


def verify_bag(
    source: BagSource,
    *,
    replica_of: BagSource | None = None,
    external_identifier: str | None = None,
    fetch_roots: Mapping[str, BagSource] | None = None,
    allowed_fetch_prefix: str | None = None,
    max_failures_per_rule: int | None = DEFAULT_MAX_FAILURES_PER_RULE,
) -> BagVerifyResult:
    """Verify a BagIt bag with the rules a storage service applies, and report every failure.

    Every rule of [RULES][carmigrate.bagit.RULES] is checked and every
    failure reported at once, so one run says everything that is wrong with
    a bag (the Wellcome storage service stops at the first failing rule; the
    LoC ``bagit`` package at the first failing step). The rules are stricter
    than RFC 8493 where a storage service must be: tag manifests are
    required, every stored file must be listed, names must survive S3 and
    Azure.

    Each file is read once, in 1 MiB chunks, and every digest its manifests
    list is computed in that one read. Memory stays bounded whatever the
    bag's size: the listing and the manifests are joined in an SQLite
    database in a private temporary file (under ``TMPDIR``; at most 4 MiB of
    it cached in memory), deleted when verification ends.

    Names are compared in Unicode NFC: a manifest that writes a name in NFC
    while the file is stored in NFD (as macOS file systems store it), or the
    reverse, verifies, and the file is read under its stored name. Two
    stored names that are equal in NFC are a ``filenames`` failure.

    A file listed in ``fetch.txt`` is read at its URL through
    ``fetch_roots``: the longest URL prefix the URL starts with names the
    source, and the rest of the URL, percent-decoded, is the path in it.
    A prefix is a folder (a trailing ``/`` is implied, so
    ``s3://bucket/b1`` never covers ``s3://bucket/b10/...``). A fetched
    file no root covers is a ``checksum`` failure.

    Args:
        source: The bag.
        replica_of: The bag this one is a replica of: rule
            ``source-tag-manifest`` is checked only when it is given.
        external_identifier: The identifier the bag must carry: rule
            ``external-identifier`` is checked only when it is given.
        fetch_roots: URL prefixes of ``fetch.txt`` URLs, each with the
            source that holds the files under it.
        allowed_fetch_prefix: The URL every ``fetch.txt`` URL must lie under
            (the bag's own space, such as
            ``s3://bucket/digitised/b12345678/``): rule ``fetch-prefix`` is
            checked only when it is given.
        max_failures_per_rule: How many failures of one rule are listed
            (``None``: all); see
            [DEFAULT_MAX_FAILURES_PER_RULE][carmigrate.bagit.DEFAULT_MAX_FAILURES_PER_RULE].

    Returns:
        The result; ``result.valid`` is ``True`` when no rule failed.

    Raises:
        BagError: Nothing is stored at ``source`` (or at ``replica_of``), or
            a source fails with an ``OSError`` while it is listed or read;
            ``transient`` says whether a retry may help.
        StorageError: A store behind a source fails (it propagates
            unchanged; a [ColdObject][carmigrate.errors.ColdObject] says a
            file must be restored first).
        ValueError: ``max_failures_per_rule`` is below 1.

    See: RFC 8493, https://www.rfc-editor.org/rfc/rfc8493
    """
    if max_failures_per_rule is not None and max_failures_per_rule < 1:
        raise ValueError(
            f"max_failures_per_rule must be at least 1, got {max_failures_per_rule}"
        )
    v = _Verifier(
        source, fetch_roots=fetch_roots or {}, max_failures=max_failures_per_rule
    )
    try:
        v.list_bag()
        v.check_declaration()
        v.check_bag_info()
        v.load_manifests()
        v.check_manifests()
        if v.load_fetch():
            v.check_fetch(allowed_fetch_prefix)
        if replica_of is not None:
            v.check_source_tag_manifest(replica_of)
        v.check_identifier(external_identifier)
        v.check_oxum_count()
        v.check_files()
        v.check_unreferenced()
        v.check_oxum_size()
        payload = set(v.payload_algs)
        return BagVerifyResult(
            algorithm=strongest(a for a in v.tag_algs if a in payload),
            files=v.files,
            bytes=v.bytes,
            failures=v.all_failures(),
        )
    finally:
        v.close()
