"""w3up legacy records: CAR CIDs from keys, listing parsing, export round trip."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.cid import CID, Multihash
from carmigrate.errors import FormatError, PlanError
from carmigrate.recipes import (
    CAR_CODEC,
    Shard,
    UploadRecords,
    car_cid_from_key,
    parse_legacy_uploads,
    read_space_export,
    w3up_records,
    write_space_export,
)


def car_cid(data: bytes) -> CID:
    return CID.create(1, CAR_CODEC, Multihash(0x12, hashlib.sha256(data).digest()))


def test_both_naming_schemes_name_the_same_car() -> None:
    """…/<CAR CID>.car and …/<base32 multihash>.car derive the same CAR CID."""
    cid = car_cid(b"a car")
    b32 = base64.b32encode(cid.multihash_bytes).decode().lower().rstrip("=")

    by_cid = car_cid_from_key(f"https://carpark.example/{cid}/{cid}.car")
    by_mh = car_cid_from_key(f"https://bucket.example/raw/bafyroot/42/{b32}.car")

    assert by_cid == by_mh == cid
    assert str(cid).startswith("bagbaiera")
    assert b32.startswith("ciq")


def test_non_car_codec_is_retagged() -> None:
    """A raw-codec CID of the CAR bytes names the same CAR."""
    raw = CID.from_data(b"a car")

    assert car_cid_from_key(f"x/{raw}.car") == car_cid(b"a car")


def test_underivable_key_names_every_scheme() -> None:
    """One error says why each naming scheme failed."""
    with pytest.raises(
        FormatError, match=r"not a CID.*not a base32 sha2-256 multihash"
    ):
        car_cid_from_key("s3://bucket/raw/not-a-name.car")


def test_listing_variants_and_errors() -> None:
    """backupUrls and shards variants parse; a bad line names its number."""
    c1, c2 = car_cid(b"1"), car_cid(b"2")
    root = CID.from_data(b"root", codec="dag-pb")
    lines = [
        json.dumps(
            {
                "cid": str(root),
                "name": "ünïcødé ☃",
                "created": "2021-01-01",
                "dagSize": 3,
                "backupUrls": [
                    f"https://h/{c1}.car",
                    f"https://h/{c1}.car",
                    f"https://h/{c2}.car",
                ],
            }
        ),
        "",
        json.dumps({"root": str(root.to_v1()), "shards": [str(c2)]}),
    ]

    a, b = parse_legacy_uploads(lines)

    assert [s.link for s in a.shards] == [c1, c2]
    assert a.name == "ünïcødé ☃"
    assert a.dag_size == 3
    assert b.shards == (Shard(c2),)
    assert b.line == 3
    with pytest.raises(PlanError, match="line 2"):
        list(parse_legacy_uploads(["", '{"name": "no root"}']))


def test_records_only_when_every_shard_verified() -> None:
    """upload/add is produced only with every shard's verified size."""
    c1, c2 = car_cid(b"1"), car_cid(b"2")
    (up,) = parse_legacy_uploads(
        [
            json.dumps(
                {
                    "cid": str(CID.from_data(b"r")),
                    "name": "n",
                    "shards": [str(c1), str(c2)],
                }
            )
        ]
    )

    with pytest.raises(PlanError, match="unverified shards"):
        w3up_records(up, {c1: 10})
    rec = w3up_records(up, {c1: 10, c2: 20})

    inv = rec.invocations()
    assert [i["can"] for i in inv] == ["store/add", "store/add", "upload/add"]
    assert inv[0]["nb"] == {"link": {"/": str(c1)}, "size": 10}
    assert inv[2]["nb"]["shards"] == [{"/": str(c1)}, {"/": str(c2)}]
    assert inv[2]["fct"] == [{"name": "n", "created": None}]


records_st = st.lists(
    st.builds(
        lambda r, shards, name: UploadRecords(
            CID.from_data(r),
            tuple(Shard(car_cid(s), size=len(s)) for s in shards),
            name,
            None,
        ),
        st.binary(min_size=1, max_size=8),
        st.lists(st.binary(max_size=8), min_size=1, max_size=3, unique=True),
        st.text(max_size=10),
    ),
    max_size=12,
    unique_by=lambda r: r.root,
)


@given(records_st)
def test_export_import_export_is_identical(records: list[UploadRecords]) -> None:
    """Export → import → export gives the same CAR bytes and the same records."""
    first = io.BytesIO()
    write_space_export(records, first)

    back = read_space_export(io.BytesIO(first.getvalue()))
    second = io.BytesIO()
    write_space_export(back, second)

    assert second.getvalue() == first.getvalue()
    assert sorted(back, key=lambda r: bytes(r.root)) == sorted(
        records, key=lambda r: bytes(r.root)
    )


def test_import_rejects_other_cars() -> None:
    """A CAR that is not a space export is refused clearly."""
    from carmigrate.car import CarWriter

    buf = io.BytesIO()
    cid = CID.from_data(b"x")
    with CarWriter(buf, [cid]) as w:
        w.write(cid, b"x")
    buf.seek(0)

    with pytest.raises(FormatError):
        read_space_export(buf)


@pytest.mark.parametrize(
    "line",
    [
        "[]",
        "null",
        '"str"',
        json.dumps({"cid": str(CID.from_data(b"r")), "shards": [], "dagSize": "abc"}),
        json.dumps({"cid": str(CID.from_data(b"r")), "shards": [], "dagSize": 1e300}),
        json.dumps({"cid": str(CID.from_data(b"r")), "shards": [], "dagSize": True}),
        json.dumps({"cid": str(CID.from_data(b"r")), "shards": "bag…"}),
        json.dumps({"cid": str(CID.from_data(b"r")), "shards": [], "name": 5}),
    ],
)
def test_malformed_listing_lines_are_plan_errors(line: str) -> None:
    """Whatever a line holds, a bad one is a PlanError naming the line."""
    with pytest.raises(PlanError, match="line 1"):
        list(parse_legacy_uploads([line]))


def test_urls_with_queries_fragments_and_dag_roots() -> None:
    """Query strings and fragments are ignored; a DAG root CID is not a CAR."""
    cid = car_cid(b"car bytes")
    url = f"https://b.example/{cid}.car?X-Amz-Credential=AKIA/2023/aws4_request#frag"

    assert car_cid_from_key(url) == cid
    with pytest.raises(FormatError, match="not a CAR"):
        car_cid_from_key(f"complete/{CID.from_data(b'root', codec='dag-pb')}.car")


def test_export_bytes_do_not_depend_on_order_when_roots_repeat() -> None:
    """Two uploads of one root: the export is the same whatever the input order."""
    root = CID.from_data(b"same root")
    a = UploadRecords(root, (Shard(car_cid(b"1"), size=1),), "first", None)
    b = UploadRecords(root, (Shard(car_cid(b"2"), size=1),), "second", None)
    one, two = io.BytesIO(), io.BytesIO()

    write_space_export([a, b], one)
    write_space_export([b, a], two)

    assert one.getvalue() == two.getvalue()


def test_records_with_wrong_types_are_refused() -> None:
    """from_ipld checks types explicitly (not with assert)."""
    with pytest.raises(FormatError, match="CID root"):
        UploadRecords.from_ipld({"root": "not-a-cid", "shards": []})
    with pytest.raises(FormatError, match="size"):
        UploadRecords.from_ipld(
            {
                "root": CID.from_data(b"r"),
                "shards": [{"link": car_cid(b"1"), "size": "big"}],
                "name": "",
                "created": None,
            }
        )


def test_export_names_of_long_tenants_fit_a_file_system() -> None:
    from carmigrate.recipes import export_name

    long = "t" * 240
    name = export_name(long)
    assert len(name.encode()) <= 255
    assert name.startswith("tenant-" + "t" * 100 + "-")
    assert export_name(long) == name  # stable
    assert export_name(long + "x") != name
    utf = "é" * 200  # percent-encoded: 6 bytes each; no escape cut in half
    name = export_name(utf)
    assert len(name.encode()) <= 255
    assert name.split("-")[1].endswith("%C3%A9")  # whole characters only
    assert export_name("alice") == "tenant-alice.car"
