"""Where carmigrate's verdict differs from the LoC ``bagit`` package's, on the same bags.

Each test makes one bag with the LoC package, asks
``bagit.Bag(path).is_valid()`` / ``validate()`` and ``verify_bag``, and
asserts both answers. These are the differences listed in
docs/how-to/verify-bags.md; a test failing here means the page is wrong.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from bag_helpers import (
    EXTERNAL_IDENTIFIER,
    PAYLOAD,
    copy_bag,
    drop_manifest_line,
    edit_bag_info,
    loc_errors,
    loc_valid,
    make_loc_bag,
    payload_size,
    reseal,
    rules,
    verify,
)

from carmigrate.bagit import folder_source

BIG = "data/big/three-megabytes.bin"


def test_both_accept_the_standard_bag(bag: Path) -> None:
    """The common ground: a fresh LoC bag is valid for both."""
    assert loc_valid(bag)
    assert verify(bag).valid


def test_both_refuse_changed_bytes(bag: Path) -> None:
    """Both re-hash the payload and catch a changed file."""
    (bag / "data" / "a.txt").write_bytes(b"HELLO\n")

    assert "data/a.txt sha256 validation failed" in loc_errors(bag)
    assert rules(verify(bag)) == {"checksum"}


def test_extra_files_outside_data(bag: Path) -> None:
    """LoC ignores files outside data/ that no tag manifest lists; carmigrate refuses them."""
    (bag / "notes.txt").write_bytes(b"left behind by a tool")

    assert loc_valid(bag)
    assert rules(verify(bag)) == {"unreferenced-files"}


def test_names_ending_in_a_dot(tmp_path: Path) -> None:
    """LoC accepts a name ending in '.', which Azure cannot store; carmigrate refuses it."""
    bag = make_loc_bag(tmp_path / "bag", {"report.": b"x"})

    assert loc_valid(bag)
    assert rules(verify(bag)) == {"filenames"}


def test_payload_oxum_is_checked_before_completeness(bag: Path) -> None:
    """An extra payload file: LoC stops at Payload-Oxum (it counts stored files), never naming the file.

    carmigrate counts Payload-Oxum against the manifests (as the Wellcome
    storage service does), so the Oxum still holds, and names the file
    no manifest lists.
    """
    (bag / "data" / "extra.txt").write_bytes(b"extra")

    message = loc_errors(bag)
    result = verify(bag)

    assert message.startswith("Payload-Oxum validation failed")
    assert "extra.txt" not in message
    assert rules(result) == {"unreferenced-files"}
    assert result.failures[0].path == "data/extra.txt"


def test_fetched_files(bag: Path, tmp_path: Path) -> None:
    """LoC cannot verify a fetched file (it fails on Payload-Oxum); carmigrate reads it at its URL."""
    store = tmp_path / "store"
    target = store / EXTERNAL_IDENTIFIER / "v1" / BIG
    target.parent.mkdir(parents=True)
    (bag / BIG).rename(target)
    url = f"s3://storage/digitised/{EXTERNAL_IDENTIFIER}/v1/{BIG}"
    (bag / "fetch.txt").write_text(f"{url} {target.stat().st_size} {BIG}\n")
    reseal(bag)

    assert loc_errors(bag).startswith("Payload-Oxum validation failed")
    result = verify(bag, fetch_roots={"s3://storage/digitised/": folder_source(store)})
    assert result.failures == ()
    assert result.bytes == payload_size()


@pytest.mark.parametrize("checksums", [["md5"], ["sha1"]])
def test_weak_algorithms_alone(tmp_path: Path, checksums: list[str]) -> None:
    """LoC accepts a bag checked by md5 or sha1 alone; carmigrate does not."""
    bag = make_loc_bag(tmp_path / "bag", checksums=checksums)

    assert loc_valid(bag)
    assert rules(verify(bag)) == {"manifests"}


def test_no_tag_manifest(bag: Path) -> None:
    """Tag manifests are optional for LoC (and RFC 8493), required by carmigrate."""
    for m in bag.glob("tagmanifest-*.txt"):
        m.unlink()

    assert loc_valid(bag)
    assert "manifests" in rules(verify(bag))


def test_payload_manifests_listing_different_files(bag: Path) -> None:
    """LoC does not check that every payload manifest lists every file (RFC 8493 section 3)."""
    drop_manifest_line(bag, "manifest-sha512.txt", "data/a.txt")

    assert loc_valid(bag)
    assert rules(verify(bag)) == {"manifests"}


@pytest.mark.parametrize(
    "changes",
    [
        {"External-Identifier": None},
        {"Bagging-Date": "yesterday"},
        {"External-Identifier": "b123/"},
    ],
)
def test_bag_info_fields(bag: Path, changes: dict[str, str | None]) -> None:
    """LoC requires no bag-info field; carmigrate requires three, well-formed."""
    edit_bag_info(bag, changes)

    assert loc_valid(bag)
    assert rules(verify(bag)) == {"bag-info"}


def test_other_tag_file_encodings(tmp_path: Path) -> None:
    """LoC reads any encoding Python knows; carmigrate reads UTF-8 only."""
    bag = make_loc_bag(tmp_path / "bag", {"a.txt": b"ASCII names read alike"})
    (bag / "bagit.txt").write_text(
        "BagIt-Version: 0.97\nTag-File-Character-Encoding: ISO-8859-1\n"
    )
    reseal(bag)

    assert loc_valid(bag)
    assert rules(verify(bag)) == {"bag-declaration"}


def test_two_names_equal_in_nfc(tmp_path: Path) -> None:
    """LoC accepts two stored names that are one name in NFC; carmigrate refuses them."""
    bag = make_loc_bag(
        tmp_path / "bag",
        {
            unicodedata.normalize("NFC", "é.txt"): b"1",
            unicodedata.normalize("NFD", "é.txt"): b"2",
        },
    )

    assert loc_valid(bag)
    assert "filenames" in rules(verify(bag))


def test_a_percent_sign_in_a_name(tmp_path: Path) -> None:
    """LoC writes '%' unencoded; carmigrate decodes '%25' as RFC 8493 says, so the name differs.

    The file ``50%25 off.txt`` is listed by LoC as ``data/50%25 off.txt``;
    RFC 8493 section 2.1.3 reads that line as ``data/50% off.txt``, which
    is not stored.
    """
    bag = make_loc_bag(tmp_path / "bag", {"50%25 off.txt": b"x"})

    assert loc_valid(bag)
    result = verify(bag)
    assert rules(result) == {"checksum", "unreferenced-files"}
    assert [f.path for f in result.failures] == [
        "data/50% off.txt",
        "data/50%25 off.txt",
    ]


def test_both_accept_nfc_manifests_for_nfd_files(bag: Path) -> None:
    """Both compare names in NFC: a manifest in NFC matches a file stored in NFD."""
    for manifest in bag.glob("manifest-*.txt"):
        text = manifest.read_text(encoding="utf-8")
        manifest.write_text(unicodedata.normalize("NFC", text), encoding="utf-8")
    reseal(bag)

    assert loc_valid(bag)
    assert verify(bag).valid


def test_loc_reports_one_step_carmigrate_every_rule(bag: Path, tmp_path: Path) -> None:
    """With several faults LoC reports the first failing step; carmigrate reports them all."""
    broken = copy_bag(bag, tmp_path / "broken")
    edit_bag_info(broken, {"Payload-Oxum": f"{payload_size()}.{len(PAYLOAD) + 1}"})
    (broken / "data" / "a.txt").write_bytes(b"HELLO\n")
    (broken / "notes.txt").write_bytes(b"x")

    message = loc_errors(broken)
    result = verify(broken)

    assert message.startswith("Payload-Oxum validation failed")
    assert "a.txt" not in message
    assert result.rules_failed() == (
        "payload-oxum-count",
        "checksum",
        "unreferenced-files",
    )
