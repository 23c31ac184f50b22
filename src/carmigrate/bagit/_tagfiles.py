"""The tag files of a bag, read as streams: bagit.txt, bag-info.txt, manifests, fetch.txt.

Each reader comes in two forms: a lenient one for the verifier, which
collects every problem and goes on, and a public strict one that raises
[BagError][carmigrate.errors.BagError] at the first. Lines end with LF, CR
or CRLF (RFC 8493 section 2); every file is read in 1 MiB chunks and a line
longer than [MAX_LINE][carmigrate.bagit.MAX_LINE] is a problem, never an
allocation.
"""

from __future__ import annotations

import datetime
import re
from typing import TYPE_CHECKING, Final

import attrs

from carmigrate.digests import algorithm
from carmigrate.errors import BagError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

__all__ = [
    "BAGIT_ALGORITHMS",
    "MAX_DECLARATION_SIZE",
    "MAX_LINE",
    "MAX_TAG_FILE_SIZE",
    "BagDeclaration",
    "BagInfo",
    "FetchEntry",
    "ManifestEntry",
    "PayloadOxum",
    "decode_path",
    "encode_path",
    "iter_fetch",
    "iter_manifest",
    "read_bag_info",
    "read_declaration",
]

BAGIT_ALGORITHMS: Final = ("md5", "sha1", "sha256", "sha512")
"""The manifest algorithms carmigrate reads, weakest first.

A manifest of any other algorithm (``manifest-blake2b.txt``) cannot be
checked, so verification reports it. The names are those of RFC 8493
section 2.4 and of [carmigrate.digests][].
"""

MAX_LINE: Final = 1 << 20
"""The longest line accepted in a manifest, ``fetch.txt`` or ``bag-info.txt``, in bytes."""

MAX_DECLARATION_SIZE: Final = 4096
"""The largest ``bagit.txt`` read, in bytes: it holds two short lines."""

MAX_TAG_FILE_SIZE: Final = 16 << 20
"""The largest ``bag-info.txt`` read, in bytes (it is held in memory, as fields)."""

_CHUNK: Final = 1 << 20
_BOM: Final = b"\xef\xbb\xbf"
_PERCENT: Final = re.compile(r"%(?:0[AaDd]|25)")
_DECODED: Final = {"%0a": "\n", "%0d": "\r", "%25": "%"}
_MANIFEST_LINE: Final = re.compile(r"([0-9A-Fa-f]+)[ \t]+(.*)", re.DOTALL)
_FETCH_LINE: Final = re.compile(r"([^ \t]+)[ \t]+([^ \t]+)[ \t]+(.*)", re.DOTALL)
_VERSION_LINE: Final = re.compile(r"BagIt-Version: ([0-9]+\.[0-9]+)")
_ENCODING_LINE: Final = re.compile(r"Tag-File-Character-Encoding: (.*)")
_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_OXUM: Final = re.compile(r"([0-9]+)\.([0-9]+)")
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def decode_path(text: str) -> str:
    """A path as a manifest or ``fetch.txt`` writes it, decoded.

    RFC 8493 section 2.1.3: LF, CR and ``%`` in a path, and only those, are
    percent-encoded (``%0A``, ``%0D``, ``%25``, either case). Any other
    ``%`` sequence is left as it is written, as the LoC ``bagit`` package
    and the Wellcome storage service read it.
    """
    if "%" not in text:
        return text
    return _PERCENT.sub(lambda m: _DECODED[m.group(0).lower()], text)


def encode_path(path: str) -> str:
    """A path as a manifest or ``fetch.txt`` must write it (the inverse of [decode_path][carmigrate.bagit.decode_path])."""
    return path.replace("%", "%25").replace("\n", "%0A").replace("\r", "%0D")


def _lines(
    stream: BinaryIO, *, max_line: int = MAX_LINE, max_size: int | None = None
) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes without the line end)`` of a stream, from 1.

    A line longer than ``max_line`` gives ``None`` once and ends the
    iteration; so does going past ``max_size`` bytes in all.
    """
    buf = b""
    number = 0
    total = 0
    while True:
        chunk = stream.read(_CHUNK)
        total += len(chunk)
        if max_size is not None and total > max_size:
            yield number + 1, None
            return
        if not chunk:
            break
        buf += chunk
        parts = buf.splitlines(keepends=True)
        buf = b""
        if parts and not parts[-1].endswith((b"\n", b"\r")):
            buf = parts.pop()
        elif parts and parts[-1].endswith(b"\r"):
            buf = parts.pop()  # may be the first half of a CRLF split by the chunk
        for part in parts:
            number += 1
            yield number, _strip_end(part)
        if len(buf) > max_line:
            yield number + 1, None
            return
    if buf:
        yield number + 1, _strip_end(buf)


def _strip_end(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith((b"\n", b"\r")):
        return line[:-1]
    return line


def _text(raw: bytes, number: int, problems: list[tuple[int, str]]) -> str | None:
    if number == 1 and raw.startswith(_BOM):
        problems.append((1, "begins with a byte-order mark, which RFC 8493 forbids"))
        raw = raw[len(_BOM) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append((number, f"line {number} is not UTF-8"))
        return None


# -- bagit.txt ---------------------------------------------------------------


@attrs.frozen
class BagDeclaration:
    """The bag declaration, ``bagit.txt`` (RFC 8493 section 2.1.1).

    Attributes:
        version: ``BagIt-Version``, as ``"M.N"`` (``"1.0"``, ``"0.97"``).
        encoding: ``Tag-File-Character-Encoding`` as written (always
            ``UTF-8`` in a declaration carmigrate accepts).
    """

    version: str
    encoding: str


def check_declaration(
    stream: BinaryIO,
) -> tuple[BagDeclaration | None, list[str]]:
    """The declaration, and every way it breaks the rules (lenient form)."""
    data = stream.read(MAX_DECLARATION_SIZE + 1)
    while data and len(data) <= MAX_DECLARATION_SIZE:
        more = stream.read(MAX_DECLARATION_SIZE + 1 - len(data))
        if not more:
            break
        data += more
    if len(data) > MAX_DECLARATION_SIZE:
        return None, [f"is longer than {MAX_DECLARATION_SIZE} bytes"]
    problems: list[str] = []
    if data.startswith(_BOM):
        problems.append("begins with a byte-order mark, which RFC 8493 forbids")
        data = data[len(_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, [*problems, "is not UTF-8"]
    lines = _split_text(text)
    if len(lines) != 2:
        return None, [
            *problems,
            f"has {len(lines)} line{'' if len(lines) == 1 else 's'}; it must have two: "
            "'BagIt-Version: M.N' and 'Tag-File-Character-Encoding: UTF-8'",
        ]
    version = _VERSION_LINE.fullmatch(lines[0])
    encoding = _ENCODING_LINE.fullmatch(lines[1])
    if version is None:
        problems.append(f"line 1 is {lines[0]!r}, not 'BagIt-Version: M.N'")
    if encoding is None:
        problems.append(
            f"line 2 is {lines[1]!r}, not 'Tag-File-Character-Encoding: ENCODING'"
        )
    elif encoding.group(1).upper() != "UTF-8":
        problems.append(
            f"declares the encoding {encoding.group(1)!r}; carmigrate reads UTF-8 tag files only"
        )
    if version is None or encoding is None:
        return None, problems
    return BagDeclaration(
        version=version.group(1), encoding=encoding.group(1)
    ), problems


def _split_text(text: str) -> list[str]:
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_declaration(stream: BinaryIO) -> BagDeclaration:
    """Read ``bagit.txt`` from a binary stream.

    Exactly two lines, ``BagIt-Version: M.N`` and
    ``Tag-File-Character-Encoding: UTF-8``, in UTF-8 without a byte-order
    mark (RFC 8493 section 2.1.1). At most
    [MAX_DECLARATION_SIZE][carmigrate.bagit.MAX_DECLARATION_SIZE] bytes are
    read. Other encodings are refused: every tag file carmigrate reads is
    UTF-8 (as the Wellcome storage service requires).

    Raises:
        BagError: The declaration breaks one of these rules; the message
            lists each.
    """
    declaration, problems = check_declaration(stream)
    if problems or declaration is None:
        raise BagError("bagit.txt " + "; ".join(problems), path="bagit.txt")
    return declaration


# -- bag-info.txt ------------------------------------------------------------


@attrs.frozen
class PayloadOxum:
    """A ``Payload-Oxum`` value: ``OctetCount.StreamCount`` (RFC 8493 section 2.2.2).

    Attributes:
        octets: The payload's size in bytes.
        streams: The number of payload files.
    """

    octets: int
    streams: int

    @classmethod
    def parse(cls, text: str) -> PayloadOxum:
        """Read ``"279164409832.1198"``.

        Raises:
            ValueError: Not two decimal numbers joined by a dot.
        """
        m = _OXUM.fullmatch(text.strip())
        if m is None:
            raise ValueError(
                f"Payload-Oxum {text!r} is not OctetCount.StreamCount (two decimal numbers)"
            )
        return cls(octets=int(m.group(1)), streams=int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.octets}.{self.streams}"


def _fields(value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in value)


@attrs.frozen
class BagInfo:
    """The metadata of ``bag-info.txt``, in file order (RFC 8493 section 2.2.2).

    Labels may repeat; a continued value keeps its line breaks but not the
    indentation of its continuation lines. Labels are matched without regard
    to case by [values][carmigrate.bagit.BagInfo.values] and
    [get][carmigrate.bagit.BagInfo.get].

    Attributes:
        fields: ``(label, value)`` pairs, as written.
    """

    fields: tuple[tuple[str, str], ...] = attrs.field(converter=_fields)

    def values(self, label: str) -> tuple[str, ...]:
        """Every value of ``label``, in file order (empty if it is absent)."""
        folded = label.casefold()
        return tuple(v for k, v in self.fields if k.casefold() == folded)

    def get(self, label: str) -> str | None:
        """The first value of ``label``, or ``None``."""
        found = self.values(label)
        return found[0] if found else None


def check_bag_info(stream: BinaryIO) -> tuple[BagInfo, list[tuple[int, str]]]:
    """The fields, and every line that breaks the syntax (lenient form)."""
    problems: list[tuple[int, str]] = []
    fields: list[tuple[str, str]] = []
    for number, raw in _lines(stream, max_size=MAX_TAG_FILE_SIZE):
        if raw is None:
            problems.append(
                (
                    number,
                    f"is longer than {MAX_TAG_FILE_SIZE} bytes or has a line longer than {MAX_LINE}",
                )
            )
            break
        line = _text(raw, number, problems)
        if line is None or not line.strip():
            continue
        if line[0] in " \t":
            if not fields:
                problems.append((number, f"line {number} continues no field"))
                continue
            label, value = fields[-1]
            fields[-1] = (label, value + "\n" + line.lstrip(" \t"))
            continue
        label, colon, value = line.partition(":")
        if not colon or not label.strip():
            problems.append((number, f"line {number} is not 'Label: value': {line!r}"))
            continue
        if label != label.strip():
            problems.append(
                (
                    number,
                    f"line {number}: the label {label!r} starts or ends with whitespace",
                )
            )
            continue
        fields.append((label, value.strip(" \t")))
    return BagInfo(tuple(fields)), problems


def read_bag_info(stream: BinaryIO) -> BagInfo:
    """Read ``bag-info.txt`` from a binary stream.

    Each field is ``Label: value`` (a label without a colon, not starting or
    ending with whitespace); a line indented with spaces or tabs continues
    the previous value; blank lines are skipped; labels may repeat (RFC 8493
    section 2.2.2). Which fields are required is the verifier's business
    (rule ``bag-info``), not the reader's.

    Raises:
        BagError: A line breaks the syntax, the file is not UTF-8, or it is
            larger than [MAX_TAG_FILE_SIZE][carmigrate.bagit.MAX_TAG_FILE_SIZE].
    """
    info, problems = check_bag_info(stream)
    if problems:
        raise BagError(
            "bag-info.txt " + "; ".join(p for _, p in problems), path="bag-info.txt"
        )
    return info


# -- manifests ---------------------------------------------------------------


@attrs.frozen
class ManifestEntry:
    """One line of a payload or tag manifest (RFC 8493 sections 2.1.3 and 2.2.1).

    Attributes:
        path: The file's path in the bag, percent-decoded, as written
            otherwise (no Unicode normalization).
        digest: The digest, as lowercase hex.
    """

    path: str
    digest: str


def manifest_rows(
    stream: BinaryIO,
    alg: str,
    problems: list[tuple[int, str]],
) -> Iterator[tuple[int, str, str]]:
    """``(line number, decoded path, lowercase digest)`` of each good line.

    Every bad line is appended to ``problems`` as ``(line number, why)``,
    and reading goes on (lenient form). Blank lines are skipped.
    """
    hex_length = algorithm(alg).hex_length
    match = _MANIFEST_LINE.fullmatch
    for number, raw in _lines(stream):
        if raw is None:
            problems.append((number, f"line {number} is longer than {MAX_LINE} bytes"))
            return
        line = _text(raw, number, problems)
        if line is None or not line.strip():
            continue
        m = match(line)
        if m is None or not m.group(2):
            problems.append(
                (number, f"line {number} is not '<{alg} digest> <path>': {line!r}")
            )
            continue
        digest = m.group(1)
        if len(digest) != hex_length:
            problems.append(
                (
                    number,
                    f"line {number}: {digest!r} is not a {alg} digest "
                    f"({hex_length} hex digits)",
                )
            )
            continue
        yield number, decode_path(m.group(2)), digest.lower()


def iter_manifest(stream: BinaryIO, alg: str) -> Iterator[ManifestEntry]:
    """Read a payload or tag manifest of algorithm ``alg`` from a binary stream, lazily.

    Each line is ``<digest> <path>``: the digest in hex of the algorithm's
    length (either case), one or more spaces or tabs, then the path,
    percent-decoded by [decode_path][carmigrate.bagit.decode_path]. Blank
    lines are skipped. Memory stays bounded whatever the manifest's size:
    one 1 MiB chunk and one line at a time.

    Args:
        stream: The manifest's bytes.
        alg: Its algorithm (``"sha256"``, any registered spelling).

    Raises:
        BagError: At the first line that breaks the syntax, after the
            entries before it were yielded.
        ValueError: ``alg`` is not a registered algorithm.
    """
    problems: list[tuple[int, str]] = []
    for _, path, digest in manifest_rows(stream, alg, problems):
        if problems:
            break
        yield ManifestEntry(path=path, digest=digest)
    if problems:
        raise BagError(f"manifest: {problems[0][1]}")


# -- fetch.txt ---------------------------------------------------------------


@attrs.frozen
class FetchEntry:
    """One line of ``fetch.txt`` (RFC 8493 section 2.2.3).

    Attributes:
        url: Where the file is to be fetched from, as written.
        length: Its size in bytes, or ``None`` for ``-`` (unknown).
        path: Where it belongs in the bag, percent-decoded.
    """

    url: str
    length: int | None
    path: str


def fetch_rows(
    stream: BinaryIO, problems: list[tuple[int, str]]
) -> Iterator[tuple[int, str, int | None, str]]:
    """``(line number, url, length, decoded path)`` of each good line (lenient form)."""
    for number, raw in _lines(stream):
        if raw is None:
            problems.append((number, f"line {number} is longer than {MAX_LINE} bytes"))
            return
        line = _text(raw, number, problems)
        if line is None or not line.strip():
            continue
        m = _FETCH_LINE.fullmatch(line)
        if m is None:
            problems.append(
                (number, f"line {number} is not 'URL LENGTH PATH': {line!r}")
            )
            continue
        url, length_text, path = m.groups()
        if not _URL.fullmatch(url):
            problems.append((number, f"line {number}: {url!r} is not an absolute URL"))
            continue
        if length_text == "-":
            length = None
        elif length_text.isascii() and length_text.isdigit():
            length = int(length_text)
        else:
            problems.append(
                (
                    number,
                    f"line {number}: the length {length_text!r} is neither a number nor '-'",
                )
            )
            continue
        yield number, url, length, decode_path(path)


def iter_fetch(stream: BinaryIO) -> Iterator[FetchEntry]:
    """Read ``fetch.txt`` from a binary stream, lazily.

    Each line is ``URL LENGTH PATH``: an absolute URL (whitespace in it must
    be percent-encoded, so it holds none), the size in bytes or ``-``, and
    the path in the bag, percent-decoded by
    [decode_path][carmigrate.bagit.decode_path]. Blank lines are skipped.

    Raises:
        BagError: At the first line that breaks the syntax, after the
            entries before it were yielded.
    """
    problems: list[tuple[int, str]] = []
    for _, url, length, path in fetch_rows(stream, problems):
        if problems:
            break
        yield FetchEntry(url=url, length=length, path=path)
    if problems:
        raise BagError(f"fetch.txt {problems[0][1]}", path="fetch.txt")


# -- bag-info field rules ----------------------------------------------------


def check_bagging_date(text: str) -> str | None:
    """Why ``text`` is not a ``Bagging-Date`` (``YYYY-MM-DD``), or ``None``."""
    if not _DATE.fullmatch(text):
        return f"Bagging-Date {text!r} is not YYYY-MM-DD"
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return f"Bagging-Date {text!r} is not a date"
    return None
