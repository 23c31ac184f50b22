"""verify_bag: each rule, on real LoC-made bags and variants broken for that rule.

Every rule has at least one test that fails if the rule stops being
checked: the broken variant is resealed (its tag manifests rewritten) so
that exactly the rule under test fails, and the test asserts the set of
failing rules, not just "invalid".
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from bag_helpers import (
    EXTERNAL_IDENTIFIER,
    NFC_NAME,
    NFD_NAME,
    PAYLOAD,
    add_manifest_line,
    copy_bag,
    drop_manifest_line,
    edit_bag_info,
    make_loc_bag,
    payload_size,
    reseal,
    rules,
    verify,
)

from carmigrate.bagit import (
    RULES,
    BagFailure,
    BagSource,
    folder_source,
    verify_bag,
)
from carmigrate.errors import BagError

OXUM = f"{payload_size()}.{len(PAYLOAD)}"
BIG = "data/big/three-megabytes.bin"
FETCH_URL = f"s3://storage/digitised/{EXTERNAL_IDENTIFIER}/v1/{BIG}"


# -- a good bag -----------------------------------------------------------------


def test_a_loc_bag_is_valid(bag: Path) -> None:
    """A bag made by the LoC package (nested, unicode, NFD, empty and 3 MB files) passes every rule."""
    result = verify(bag, external_identifier=EXTERNAL_IDENTIFIER)

    assert result.failures == ()
    assert result.valid
    assert result.algorithm == "sha512"
    assert result.files == len(PAYLOAD)
    assert result.bytes == payload_size()
    assert result.to_dict() == {
        "valid": True,
        "algorithm": "sha512",
        "files": len(PAYLOAD),
        "bytes": payload_size(),
        "failures": [],
    }


def test_the_nfd_name_is_stored_nfd(loc_bag: Path) -> None:
    """The fixture really holds a decomposed name on disk (the NFD tests rely on it)."""
    names = {p.name for p in (loc_bag / "data" / "unicode").iterdir()}

    assert NFD_NAME in names
    assert unicodedata.normalize("NFC", NFD_NAME) != NFD_NAME
    assert NFC_NAME in names


def test_a_manifest_in_nfc_matches_a_file_stored_nfd(bag: Path) -> None:
    """Names are compared in NFC: an NFC manifest line finds the file stored NFD."""
    for manifest in bag.glob("manifest-*.txt"):
        text = manifest.read_text(encoding="utf-8")
        assert NFD_NAME in text
        manifest.write_text(unicodedata.normalize("NFC", text), encoding="utf-8")
    reseal(bag)

    result = verify(bag)

    assert result.failures == ()
    assert result.bytes == payload_size()


@pytest.mark.parametrize(
    ("checksums", "expected"),
    [
        (["sha256"], "sha256"),
        (["sha512"], "sha512"),
        (["sha1", "sha256"], "sha256"),
        (["md5", "sha512"], "sha512"),
    ],
)
def test_algorithm_is_the_strongest_in_both_kinds(
    tmp_path: Path, checksums: list[str], expected: str
) -> None:
    """The result names the strongest algorithm of the payload and tag manifests."""
    bag = make_loc_bag(tmp_path / "bag", checksums=checksums)

    result = verify(bag)

    assert result.failures == ()
    assert result.algorithm == expected


def test_every_failing_rule_is_reported_at_once(bag: Path) -> None:
    """Three unrelated faults give three rules, in the order of RULES."""
    (bag / "data" / "a.txt").write_bytes(b"HELLO\n")
    (bag / "data" / "stray.txt").write_bytes(b"stray")

    result = verify(bag, external_identifier="b00000000")

    assert result.rules_failed() == (
        "external-identifier",
        "checksum",
        "unreferenced-files",
    )
    assert not result.valid
    assert [f.rule for f in result.failures] == sorted(
        (f.rule for f in result.failures), key=RULES.index
    )


# -- bag-declaration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            b"BagIt-Version: 1.0\nTag-File-Character-Encoding: ISO-8859-1\n",
            "carmigrate reads UTF-8 tag files only",
        ),
        (b"BagIt-Version: one\nTag-File-Character-Encoding: UTF-8\n", "line 1"),
        (b"BagIt-Version: 1.0\nEncoding: UTF-8\n", "line 2"),
        (
            b"\xef\xbb\xbfBagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
            "byte-order mark",
        ),
        (b"BagIt-Version: 1.0\n", "has 1 line;"),
        (
            b"BagIt-Version: 1.0\r\nTag-File-Character-Encoding: UTF-8\r\nX\r\n",
            "3 lines",
        ),
        (b"x" * 5000, "longer than 4096 bytes"),
    ],
)
def test_bag_declaration(bag: Path, text: bytes, expected: str) -> None:
    """bagit.txt must be exactly the two lines RFC 8493 section 2.1.1 gives, in UTF-8."""
    (bag / "bagit.txt").write_bytes(text)
    reseal(bag)

    result = verify(bag)

    assert rules(result) == {"bag-declaration"}
    assert expected in result.failures[0].message
    assert result.failures[0].path == "bagit.txt"


def test_bag_declaration_accepts_crlf_and_version_1_0(bag: Path) -> None:
    """CRLF line ends and BagIt-Version 1.0 are fine."""
    (bag / "bagit.txt").write_bytes(
        b"BagIt-Version: 1.0\r\nTag-File-Character-Encoding: UTF-8\r\n"
    )
    reseal(bag)

    assert verify(bag).failures == ()


def test_missing_bagit_txt(bag: Path) -> None:
    """A bag without bagit.txt fails bag-declaration (it is still read)."""
    (bag / "bagit.txt").unlink()
    reseal(bag)

    result = verify(bag)

    assert rules(result) == {"bag-declaration"}
    assert result.failures[0].message == "bagit.txt is missing"


# -- bag-info ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"External-Identifier": None}, "bag-info.txt has no External-Identifier"),
        ({"Payload-Oxum": None}, "bag-info.txt has no Payload-Oxum"),
        ({"Bagging-Date": None}, "bag-info.txt has no Bagging-Date"),
        ({"Bagging-Date": "03/12/2026"}, "is not YYYY-MM-DD"),
        ({"Bagging-Date": "2026-02-30"}, "is not a date"),
        ({"Payload-Oxum": "12 files"}, "OctetCount.StreamCount"),
        ({"External-Identifier": "b123/"}, "starts or ends with '/'"),
        ({"External-Identifier": "b123 "}, None),  # trailing space is stripped
        ({"External-Identifier": "a/v1"}, "looks like a version folder"),
        ({"External-Identifier": "café"}, "characters other than ASCII"),
    ],
)
def test_bag_info_required_fields(
    bag: Path, changes: dict[str, str | None], expected: str | None
) -> None:
    """Payload-Oxum, Bagging-Date and External-Identifier are required and well-formed."""
    edit_bag_info(bag, changes)

    result = verify(bag)

    if expected is None:
        assert result.failures == ()
        return
    assert rules(result) == {"bag-info"}
    assert expected in result.failures[0].message


def test_bag_info_repeated_field_with_two_values(bag: Path) -> None:
    """A required field given twice with different values fails; the same value twice is one."""
    with (bag / "bag-info.txt").open("a", encoding="utf-8") as f:
        f.write(f"External-Identifier: {EXTERNAL_IDENTIFIER}\n")
    reseal(bag)
    assert verify(bag).failures == ()

    with (bag / "bag-info.txt").open("a", encoding="utf-8") as f:
        f.write("External-Identifier: b99999999\n")
    reseal(bag)

    result = verify(bag)

    assert rules(result) == {"bag-info"}
    assert "2 different External-Identifier values" in result.failures[0].message


def test_bag_info_syntax(bag: Path) -> None:
    """A line that is neither a field nor a continuation fails; continuation lines are fine."""
    with (bag / "bag-info.txt").open("a", encoding="utf-8") as f:
        f.write("External-Description: a long value\n  continued here\n")
    reseal(bag)
    assert verify(bag).failures == ()

    with (bag / "bag-info.txt").open("a", encoding="utf-8") as f:
        f.write("this line has no colon\n")
    reseal(bag)

    result = verify(bag)

    assert rules(result) == {"bag-info"}
    assert "is not 'Label: value'" in result.failures[0].message


def test_missing_bag_info(bag: Path) -> None:
    """Without bag-info.txt, bag-info fails and the Payload-Oxum rules are skipped."""
    (bag / "bag-info.txt").unlink()
    reseal(bag)

    result = verify(bag, external_identifier=EXTERNAL_IDENTIFIER)

    assert rules(result) == {"bag-info"}


# -- manifests ----------------------------------------------------------------------


def test_every_payload_manifest_lists_the_same_files(bag: Path) -> None:
    """A file listed in manifest-sha256.txt but not manifest-sha512.txt fails manifests."""
    drop_manifest_line(bag, "manifest-sha512.txt", "data/a.txt")

    result = verify(bag)

    assert rules(result) == {"manifests"}
    assert result.failures[0].message == (
        "'data/a.txt' is listed in manifest-sha256.txt but not in manifest-sha512.txt"
    )


def test_every_tag_manifest_lists_the_same_files(bag: Path) -> None:
    """The rule holds for tag manifests too."""
    drop_manifest_line(bag, "manifest-sha256.txt", "data/a.txt")
    drop_manifest_line(bag, "manifest-sha512.txt", "data/a.txt")
    (bag / "data" / "a.txt").unlink()
    edit_bag_info(bag, {"Payload-Oxum": f"{payload_size() - 6}.{len(PAYLOAD) - 1}"})
    lines = (bag / "tagmanifest-sha512.txt").read_text().splitlines(keepends=True)
    (bag / "tagmanifest-sha512.txt").write_text(
        "".join(ln for ln in lines if not ln.endswith(" bagit.txt\n"))
    )

    result = verify(bag)

    assert rules(result) == {"manifests"}
    assert "'bagit.txt' is listed in tagmanifest-sha256.txt but not in" in (
        result.failures[0].message
    )


def test_a_path_twice_in_one_manifest(bag: Path) -> None:
    """A manifest must not list a path twice, even with the same digest."""
    m = bag / "manifest-sha256.txt"
    first = m.read_text(encoding="utf-8").splitlines(keepends=True)[0]
    with m.open("a", encoding="utf-8") as f:
        f.write(first)
    reseal(bag)

    result = verify(bag)

    assert rules(result) == {"manifests"}
    assert "2 times" in result.failures[0].message


def test_a_malformed_manifest_line(bag: Path) -> None:
    """Lines that are not '<digest> <path>' with a digest of the right length fail."""
    with (bag / "manifest-sha256.txt").open("a", encoding="utf-8") as f:
        f.write("not-hex  data/x\n")
        f.write("abcd  data/short-digest\n")
        f.write("\n")
    reseal(bag)

    result = verify(bag)

    assert rules(result) == {"manifests"}
    messages = [f.message for f in result.failures]
    assert len(messages) == 2
    assert "is not '<sha256 digest> <path>'" in messages[0]
    assert "is not a sha256 digest (64 hex digits)" in messages[1]


def test_payload_and_tag_manifests_use_the_same_algorithms(bag: Path) -> None:
    """Dropping tagmanifest-sha512.txt leaves algorithms that differ: manifests fails."""
    (bag / "tagmanifest-sha512.txt").unlink()

    result = verify(bag)

    assert rules(result) == {"manifests"}
    assert "must use the same algorithms" in result.failures[0].message
    assert result.algorithm == "sha256"


def test_a_tag_manifest_is_required(bag: Path) -> None:
    """A bag without any tag manifest fails (RFC 8493 makes them optional)."""
    for m in bag.glob("tagmanifest-*.txt"):
        m.unlink()

    result = verify(bag)

    assert rules(result) == {"manifests", "unreferenced-files"}
    assert result.algorithm is None


@pytest.mark.parametrize("checksums", [["md5"], ["md5", "sha1"]])
def test_weak_algorithms_alone_fail(tmp_path: Path, checksums: list[str]) -> None:
    """md5 or sha1 manifests alone fail: a forger can defeat them."""
    bag = make_loc_bag(tmp_path / "bag", checksums=checksums)

    result = verify(bag)

    assert rules(result) == {"manifests"}
    assert [f.message for f in result.failures] == [
        f"the payload manifests use only {', '.join(checksums)}, which a forger can "
        "defeat: add manifest-sha256.txt or manifest-sha512.txt",
        f"the tag manifests use only {', '.join(checksums)}, which a forger can "
        "defeat: add tagmanifest-sha256.txt or tagmanifest-sha512.txt",
    ]


def test_a_manifest_of_an_algorithm_carmigrate_cannot_check(tmp_path: Path) -> None:
    """manifest-blake2b.txt cannot be checked: manifests fails (and says so)."""
    bag = make_loc_bag(tmp_path / "bag", checksums=["sha256", "blake2b"])

    result = verify(bag)

    assert rules(result) == {"manifests", "unreferenced-files"}
    assert "carmigrate cannot check blake2b digests" in result.failures[0].message
    assert [f.path for f in result.failures if f.rule == "unreferenced-files"] == [
        "tagmanifest-blake2b.txt"
    ]


# -- fetch.txt ------------------------------------------------------------------------


@pytest.fixture
def fetched(bag: Path, tmp_path: Path) -> tuple[Path, dict[str, BagSource]]:
    """The standard bag with its 3 MB file moved to a 'previous version' and fetched."""
    store = tmp_path / "store" / "digitised"
    target = store / EXTERNAL_IDENTIFIER / "v1" / BIG
    target.parent.mkdir(parents=True)
    (bag / BIG).rename(target)
    (bag / "fetch.txt").write_text(
        f"{FETCH_URL} {target.stat().st_size} {BIG}\n", encoding="utf-8"
    )
    reseal(bag)
    return bag, {"s3://storage/digitised/": folder_source(store)}


def _write_fetch(bag: Path, text: str) -> None:
    (bag / "fetch.txt").write_text(text, encoding="utf-8")
    reseal(bag)


def test_a_fetched_file_is_read_through_its_fetch_root(
    fetched: tuple[Path, dict[str, BagSource]],
) -> None:
    """A fetched payload file is read at its URL and checked like a stored one."""
    bag, roots = fetched

    result = verify(
        bag,
        fetch_roots=roots,
        allowed_fetch_prefix=f"s3://storage/digitised/{EXTERNAL_IDENTIFIER}",
    )

    assert result.failures == ()
    assert result.bytes == payload_size()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"{FETCH_URL} {BIG}", "is not 'URL LENGTH PATH'"),
        (f"digitised/x 5 {BIG}", "is not an absolute URL"),
        (f"{FETCH_URL} five {BIG}", "the length 'five' is neither a number nor '-'"),
    ],
)
def test_fetch_format_malformed_lines(
    fetched: tuple[Path, dict[str, BagSource]], line: str, expected: str
) -> None:
    """Each line of fetch.txt is 'URL LENGTH PATH'."""
    bag, roots = fetched
    with (bag / "fetch.txt").open("a", encoding="utf-8") as f:
        f.write(line + "\n")
    reseal(bag)

    result = verify(bag, fetch_roots=roots)

    assert rules(result) == {"fetch-format"}
    assert expected in result.failures[0].message


def test_fetch_format_paths(fetched: tuple[Path, dict[str, BagSource]]) -> None:
    """Fetched paths are payload files listed by the manifests, each listed once."""
    bag, roots = fetched
    text = (bag / "fetch.txt").read_text(encoding="utf-8")
    _write_fetch(
        bag,
        text
        + text
        + "s3://storage/digitised/x/notes.txt - notes.txt\n"
        + "s3://storage/digitised/x/other.bin - data/other.bin\n",
    )

    result = verify(bag, fetch_roots=roots)

    assert rules(result) == {"fetch-format"}
    assert [f.message for f in result.failures] == [
        f"fetch.txt lists '{BIG}' 2 times",
        "fetch.txt line 4 lists 'data/other.bin', which no payload manifest lists",
        "fetch.txt line 3 lists 'notes.txt', which is not a payload file (not under data/)",
    ]


def test_a_fetch_length_of_dash_is_unknown(
    fetched: tuple[Path, dict[str, BagSource]],
) -> None:
    """'-' as length means unknown: no length check."""
    bag, roots = fetched
    _write_fetch(bag, f"{FETCH_URL} - {BIG}\n")

    assert verify(bag, fetch_roots=roots).failures == ()


@pytest.mark.parametrize(
    ("prefix", "url", "expected"),
    [
        (
            "s3://storage/digitised/b99999999",
            FETCH_URL,
            "is not under s3://storage/digitised/b99999999/",
        ),
        (
            # a prefix is a folder: b1234567 is not a prefix of b12345678
            f"s3://storage/digitised/{EXTERNAL_IDENTIFIER[:-1]}",
            FETCH_URL,
            "is not under",
        ),
        (
            f"s3://storage/digitised/{EXTERNAL_IDENTIFIER}/",
            f"s3://storage/digitised/{EXTERNAL_IDENTIFIER}/../b99999999/v1/{BIG}",
            "has an empty, '.' or '..' segment",
        ),
        (
            f"s3://storage/digitised/{EXTERNAL_IDENTIFIER}/",
            f"s3://storage/digitised/{EXTERNAL_IDENTIFIER}/%2E%2E/b99999999/v1/{BIG}",
            "has an empty, '.' or '..' segment",
        ),
    ],
)
def test_fetch_prefix(
    fetched: tuple[Path, dict[str, BagSource]], prefix: str, url: str, expected: str
) -> None:
    """Every fetch.txt URL lies under the allowed prefix, with no dot segment after it."""
    bag, _ = fetched
    _write_fetch(bag, f"{url} - {BIG}\n")

    result = verify(bag, allowed_fetch_prefix=prefix)

    assert "fetch-prefix" in rules(result)
    failure = next(f for f in result.failures if f.rule == "fetch-prefix")
    assert expected in failure.message
    assert failure.path == BIG


def test_fetch_prefix_is_checked_only_when_given(
    fetched: tuple[Path, dict[str, BagSource]],
) -> None:
    """Without allowed_fetch_prefix, any URL a fetch root covers is accepted."""
    bag, roots = fetched

    assert "fetch-prefix" not in rules(verify(bag, fetch_roots=roots))


def test_a_fetched_file_with_wrong_bytes(
    fetched: tuple[Path, dict[str, BagSource]], tmp_path: Path
) -> None:
    """Fetched bytes are hashed: the same length with other bytes fails checksum."""
    bag, roots = fetched
    target = tmp_path / "store" / "digitised" / EXTERNAL_IDENTIFIER / "v1" / BIG
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))

    result = verify(bag, fetch_roots=roots)

    assert rules(result) == {"checksum"}
    assert [(f.path, f.message.split()[2]) for f in result.failures] == [
        (BIG, "sha256"),
        (BIG, "sha512"),
    ]


def test_a_fetched_file_with_the_wrong_length(
    fetched: tuple[Path, dict[str, BagSource]],
) -> None:
    """The length fetch.txt gives is checked."""
    bag, roots = fetched
    _write_fetch(bag, f"{FETCH_URL} 5 {BIG}\n")

    result = verify(bag, fetch_roots=roots)

    assert rules(result) == {"checksum"}
    assert "fetch.txt says 5" in result.failures[0].message


def test_a_fetched_file_no_root_covers(
    fetched: tuple[Path, dict[str, BagSource]],
) -> None:
    """Without a fetch root for its URL a fetched file cannot be read: checksum fails."""
    bag, _ = fetched

    result = verify(bag)

    assert rules(result) == {"checksum"}
    assert "which no fetch root covers" in result.failures[0].message


def test_a_fetched_file_missing_at_its_url(
    fetched: tuple[Path, dict[str, BagSource]], tmp_path: Path
) -> None:
    """Nothing at the URL: checksum fails, and Payload-Oxum's size is not judged."""
    bag, roots = fetched
    (tmp_path / "store" / "digitised" / EXTERNAL_IDENTIFIER / "v1" / BIG).unlink()

    result = verify(bag, fetch_roots=roots)

    assert rules(result) == {"checksum"}
    assert "where nothing is stored" in result.failures[0].message


def test_a_fetched_path_also_in_the_bag(
    fetched: tuple[Path, dict[str, BagSource]], loc_bag: Path
) -> None:
    """A path of fetch.txt must not also be stored in the bag."""
    bag, roots = fetched
    (bag / BIG).write_bytes((loc_bag / BIG).read_bytes())

    result = verify(bag, fetch_roots=roots)

    assert rules(result) == {"fetch-concrete"}
    assert result.failures[0] == BagFailure(
        rule="fetch-concrete",
        path=BIG,
        message=f"'{BIG}' is listed in fetch.txt and also stored in the bag (as '{BIG}')",
    )


# -- source-tag-manifest ---------------------------------------------------------------


def test_a_true_replica_passes(bag: Path, tmp_path: Path) -> None:
    """A byte-for-byte copy has its source's tag manifest."""
    replica = copy_bag(bag, tmp_path / "replica")

    assert verify(replica, replica_of=folder_source(bag)).failures == ()


def test_a_replica_whose_tag_manifest_differs(bag: Path, tmp_path: Path) -> None:
    """A replica that is a valid bag, but not the source's, fails source-tag-manifest."""
    replica = copy_bag(bag, tmp_path / "replica")
    edit_bag_info(replica, {"Source-Organization": "someone else"})
    assert verify(replica).failures == ()

    result = verify(replica, replica_of=folder_source(bag))

    assert rules(result) == {"source-tag-manifest"}
    assert result.failures[0].path == "tagmanifest-sha512.txt"


@pytest.mark.parametrize(
    ("reordered", "fails"),
    [("tagmanifest-sha256.txt", False), ("tagmanifest-sha512.txt", True)],
)
def test_the_replica_check_uses_the_strongest_shared_algorithm(
    bag: Path, tmp_path: Path, reordered: str, fails: bool
) -> None:
    """sha512 is compared when both bags have it: a sha256 tag manifest may differ."""
    replica = copy_bag(bag, tmp_path / "replica")
    m = replica / reordered
    m.write_text("".join(reversed(m.read_text().splitlines(keepends=True))))
    assert verify(replica).failures == ()

    result = verify(replica, replica_of=folder_source(bag))

    assert rules(result) == ({"source-tag-manifest"} if fails else set())


def test_the_replica_check_with_sha256_only(tmp_path: Path) -> None:
    """Bags with only sha256 are compared with sha256 (no algorithm is hard-wired)."""
    source = make_loc_bag(tmp_path / "source", checksums=["sha256"])
    replica = copy_bag(source, tmp_path / "replica")
    edit_bag_info(replica, {"Source-Organization": "someone else"})

    result = verify(replica, replica_of=folder_source(source))

    assert rules(result) == {"source-tag-manifest"}
    assert result.failures[0].path == "tagmanifest-sha256.txt"


def test_a_replica_sharing_no_algorithm(tmp_path: Path) -> None:
    """Source and replica with no tag manifest algorithm in common fail."""
    source = make_loc_bag(tmp_path / "source", checksums=["sha256"])
    replica = make_loc_bag(tmp_path / "replica", checksums=["sha512"])

    result = verify(replica, replica_of=folder_source(source))

    assert rules(result) == {"source-tag-manifest"}
    assert "share no algorithm" in result.failures[0].message


def test_a_replica_of_nothing(bag: Path, tmp_path: Path) -> None:
    """No bag at replica_of is unusable input."""
    (tmp_path / "empty").mkdir()

    with pytest.raises(BagError, match="the replica's source"):
        verify(bag, replica_of=folder_source(tmp_path / "empty"))


# -- external-identifier --------------------------------------------------------------


def test_external_identifier(bag: Path) -> None:
    """bag-info's External-Identifier must equal the expected one, when one is given."""
    assert verify(bag, external_identifier=EXTERNAL_IDENTIFIER).failures == ()

    result = verify(bag, external_identifier="b1")

    assert rules(result) == {"external-identifier"}
    assert result.failures[0].message == (
        f"bag-info.txt's External-Identifier is '{EXTERNAL_IDENTIFIER}', not 'b1'"
    )


# -- Payload-Oxum -------------------------------------------------------------------------


def test_payload_oxum_count(bag: Path) -> None:
    """The stream count of Payload-Oxum equals the number of payload files listed."""
    edit_bag_info(bag, {"Payload-Oxum": f"{payload_size()}.{len(PAYLOAD) + 1}"})

    result = verify(bag)

    assert rules(result) == {"payload-oxum-count"}
    assert result.failures[0].message == (
        f"Payload-Oxum says {len(PAYLOAD) + 1} payload files, the payload manifests "
        f"list {len(PAYLOAD)}"
    )


def test_payload_oxum_size(bag: Path) -> None:
    """The octet count of Payload-Oxum equals the payload's bytes."""
    edit_bag_info(bag, {"Payload-Oxum": f"{payload_size() + 1}.{len(PAYLOAD)}"})

    result = verify(bag)

    assert rules(result) == {"payload-oxum-size"}
    assert result.failures[0].message == (
        f"Payload-Oxum says {payload_size() + 1} payload bytes, the payload files "
        f"hold {payload_size()}"
    )


# -- filenames -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["report.", "folder./inside.txt"])
def test_a_name_ending_in_a_dot(tmp_path: Path, name: str) -> None:
    """A path segment ending in '.' cannot be stored in Azure: filenames fails."""
    bag = make_loc_bag(tmp_path / "bag", {name: b"x", "ok.txt": b"y"})

    result = verify(bag)

    assert rules(result) == {"filenames"}
    assert result.failures[0].path == f"data/{name}"
    assert "ending in '.'" in result.failures[0].message


def test_a_name_with_a_line_break(tmp_path: Path) -> None:
    """A percent-encoded LF is decoded, and refused as a control character."""
    bag = make_loc_bag(tmp_path / "bag", {"line\nbreak.txt": b"y"})
    assert "data/line%0Abreak.txt" in (bag / "manifest-sha256.txt").read_text()

    result = verify(bag)

    assert rules(result) == {"filenames"}
    assert result.failures[0].path == "data/line\nbreak.txt"


def test_a_payload_path_outside_data(bag: Path) -> None:
    """Payload manifest paths lie under data/."""
    (bag / "outside.txt").write_bytes(b"outside")
    add_manifest_line(bag, "outside.txt", b"outside")
    edit_bag_info(bag, {"Payload-Oxum": f"{payload_size() + 7}.{len(PAYLOAD) + 1}"})

    result = verify(bag)

    assert rules(result) == {"filenames"}
    assert result.failures[0].message == (
        "'outside.txt' is listed in a payload manifest but is not under data/"
    )


def test_a_path_escaping_the_bag_is_never_opened(bag: Path, tmp_path: Path) -> None:
    """'data/../../secret' fails filenames and is not read (no checksum verdict on it)."""
    (tmp_path / "secret").write_bytes(b"not what the manifest says")
    add_manifest_line(bag, "data/../../secret", b"what the manifest says")
    edit_bag_info(bag, {"Payload-Oxum": f"{payload_size()}.{len(PAYLOAD) + 1}"})

    result = verify(bag)

    assert "filenames" in rules(result)
    assert [f.path for f in result.failures if f.rule == "filenames"] == [
        "data/../../secret"
    ]
    assert not [
        f
        for f in result.failures
        if f.path == "data/../../secret" and f.rule == "checksum"
    ]


def test_a_tag_path_under_data(bag: Path) -> None:
    """Tag manifest paths are not payload files."""
    with (bag / "tagmanifest-sha256.txt").open("a") as f:
        f.write(f"{'0' * 64} data/a.txt\n")
    with (bag / "tagmanifest-sha512.txt").open("a") as f:
        f.write(f"{'0' * 128} data/a.txt\n")

    result = verify(bag)

    assert "filenames" in rules(result)
    assert result.failures[0].message == (
        "'data/a.txt' is listed in a tag manifest but is a payload file (under data/)"
    )


def test_two_names_equal_in_nfc(tmp_path: Path) -> None:
    """Two stored names that are one name in NFC fail filenames."""
    nfc = unicodedata.normalize("NFC", "é.txt")
    nfd = unicodedata.normalize("NFD", "é.txt")
    bag = make_loc_bag(tmp_path / "bag", {nfc: b"1", nfd: b"2"})

    result = verify(bag)

    assert "filenames" in rules(result)
    failure = next(f for f in result.failures if f.rule == "filenames")
    assert failure.message == (
        "2 stored names are equal once normalized to NFC: "
        "'data/\\xe9.txt', 'data/e\\u0301.txt'"
    )


# -- checksum -----------------------------------------------------------------------------


def test_a_payload_file_with_other_bytes(bag: Path) -> None:
    """Every algorithm listed for a file is checked: two failures for one changed file."""
    (bag / "data" / "a.txt").write_bytes(b"HELLO\n")

    result = verify(bag)

    assert rules(result) == {"checksum"}
    assert [(f.path, f.message.split()[2]) for f in result.failures] == [
        ("data/a.txt", "sha256"),
        ("data/a.txt", "sha512"),
    ]
    assert "manifest-sha256.txt says 5891b5b5" in result.failures[0].message


def test_a_missing_payload_file(bag: Path) -> None:
    """A listed file that is not stored fails checksum; Payload-Oxum's size is not judged."""
    (bag / BIG).unlink()

    result = verify(bag)

    assert rules(result) == {"checksum"}
    assert result.failures[0] == BagFailure(
        rule="checksum",
        path=BIG,
        message=f"'{BIG}' is listed in manifest-sha256.txt, manifest-sha512.txt but "
        "is not in the bag",
    )
    assert result.bytes == payload_size() - len(PAYLOAD["big/three-megabytes.bin"])


def test_a_changed_tag_file(bag: Path) -> None:
    """Tag files are checked against the tag manifests."""
    with (bag / "bag-info.txt").open("a") as f:
        f.write("Source-Organization: edited after sealing\n")

    result = verify(bag)

    assert rules(result) == {"checksum"}
    assert {f.path for f in result.failures} == {"bag-info.txt"}


def test_the_empty_file_is_checked(bag: Path) -> None:
    """A zero-byte payload file is read and hashed like any other."""
    (bag / "data" / "empty.txt").write_bytes(b"x")

    result = verify(bag)

    assert rules(result) == {"checksum", "payload-oxum-size"}


# -- unreferenced-files --------------------------------------------------------------------


@pytest.mark.parametrize("extra", ["data/stray.txt", "notes.txt", "tags/more.txt"])
def test_unreferenced_files(bag: Path, extra: str) -> None:
    """Anything stored that no manifest lists fails, in data/ or not."""
    (bag / extra).parent.mkdir(exist_ok=True)
    (bag / extra).write_bytes(b"extra")

    result = verify(bag)

    assert rules(result) == {"unreferenced-files"}
    assert result.failures[0].path == extra


# -- limits, unusable input ----------------------------------------------------------------


def test_failures_per_rule_are_capped(bag: Path) -> None:
    """Past max_failures_per_rule, one failure says how many were left out."""
    for i in range(5):
        (bag / "data" / f"stray{i}.txt").write_bytes(b"x")

    result = verify(bag, max_failures_per_rule=2)

    assert [(f.rule, f.path) for f in result.failures] == [
        ("unreferenced-files", "data/stray0.txt"),
        ("unreferenced-files", "data/stray1.txt"),
        ("unreferenced-files", None),
    ]
    assert result.failures[-1].message == "3 more failures of this rule are not listed"
    with pytest.raises(ValueError, match="at least 1"):
        verify(bag, max_failures_per_rule=0)


def test_no_bag_at_all(tmp_path: Path) -> None:
    """An empty folder, or no folder, is not a bag: BagError, not a result."""
    (tmp_path / "empty").mkdir()

    with pytest.raises(BagError, match="nothing is stored there"):
        verify(tmp_path / "empty")
    with pytest.raises(BagError, match="not a folder"):
        folder_source(tmp_path / "missing")


class _FailingStream(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise OSError(5, "Input/output error")


class _Broken:
    """A source whose listing, opening or reading fails with an OSError."""

    def __init__(self, inner: BagSource, *, fails: str) -> None:
        self.inner = inner
        self.fails = fails

    @property
    def url(self) -> str:
        return "broken://bag"

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        if self.fails == "list":
            raise PermissionError("listing refused")
        return self.inner.list(prefix)

    def open_read(self, path: str) -> BinaryIO:
        if path.startswith("data/") and self.fails == "open":
            raise PermissionError(f"{path}: read refused")
        if path.startswith("data/") and self.fails == "read":
            return io.BufferedReader(_FailingStream())  # type: ignore[return-value]
        return self.inner.open_read(path)


@pytest.mark.parametrize("fails", ["list", "open", "read"])
def test_a_failing_source_is_unusable_input(bag: Path, fails: str) -> None:
    """OSError from a source (not 'file not found') raises BagError naming the source."""
    source = _Broken(folder_source(bag), fails=fails)
    assert isinstance(source, BagSource)

    with pytest.raises(BagError, match="broken://bag: cannot") as info:
        verify_bag(source)

    assert isinstance(info.value.__cause__, OSError)


def test_a_fetch_root_is_a_folder(
    fetched: tuple[Path, dict[str, BagSource]],
) -> None:
    """A fetch root prefix without '/' is a folder: it covers its files, not its siblings'."""
    bag, roots = fetched
    (root,) = roots.values()

    assert verify(bag, fetch_roots={"s3://storage/digitised": root}).failures == ()
    result = verify(bag, fetch_roots={"s3://storage/digit": root})
    assert rules(result) == {"checksum"}
    assert "which no fetch root covers" in result.failures[0].message
