"""The diff: one action per source key, extras exactly the destination-only keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.errors import PlanError
from carmigrate.migrate import Action, ListingEntry, compare, diff

md5s = st.sampled_from(["a" * 32, "b" * 32, None])
shas = st.sampled_from(["a" * 64, "b" * 64, None])
adlers = st.sampled_from(["0000000a", "0000000b", None])
entry_fields = st.tuples(st.integers(0, 3), md5s, shas, adlers)


def _digests(
    md5: str | None, sha: str | None, adler: str | None
) -> dict[str, str] | None:
    out = {k: v for k, v in (("md5", md5), ("sha256", sha), ("adler32", adler)) if v}
    return out or None


@st.composite
def listings(draw: st.DrawFn) -> tuple[list[ListingEntry], list[ListingEntry]]:
    names = draw(
        st.lists(st.text("abc/", min_size=1, max_size=5), unique=True, max_size=40)
    )
    src, dst = [], []
    for name in sorted(names):
        side = draw(st.sampled_from(["src", "dst", "both"]))
        if side in ("src", "both"):
            size, *ds = draw(entry_fields)
            src.append(ListingEntry.checked(name, size, None, _digests(*ds)))
        if side in ("dst", "both"):
            size, *ds = draw(entry_fields)
            dst.append(ListingEntry.checked(name, size, None, _digests(*ds)))
    return src, dst


@given(listings())
def test_every_source_key_gets_exactly_one_action(pair) -> None:
    """Source keys: one of COPY/SKIP/VERIFY/CONFLICT each; extras: exactly dst-only keys; sorted output."""
    src, dst = pair
    out = list(diff(src, dst))
    src_keys = {e.key for e in src}
    dst_keys = {e.key for e in dst}

    assert [d.key for d in out] == sorted(src_keys | dst_keys)
    assert {d.key for d in out if d.action is not Action.EXTRA} == src_keys
    assert {d.key for d in out if d.action is Action.EXTRA} == dst_keys - src_keys
    assert {d.key for d in out if d.action is Action.COPY} == src_keys - dst_keys
    for d in out:
        if d.action in (Action.SKIP, Action.VERIFY):
            assert d.source is not None
            assert d.destination is not None
            assert d.source.size == d.destination.size


@given(listings())
def test_skip_only_when_proven(pair) -> None:
    """SKIP needs equal size and an equal digest both sides vouch for; never a difference."""
    src, dst = pair
    for d in diff(src, dst):
        if d.action is Action.SKIP:
            s, t = d.source, d.destination
            sd, td = s.digests or {}, t.digests or {}
            common = [(sd[n], td[n]) for n in sd if n in td]
            assert common
            assert all(a == b for a, b in common)


def test_compare_rules() -> None:
    """Size first, then every common digest; nothing common means VERIFY."""

    def e(key: str, size: int, etag: str | None = None, **digests: str) -> ListingEntry:
        return ListingEntry.checked(key, size, etag, digests)

    assert (
        compare(e("k", 1, md5="a" * 32), e("k", 2, md5="a" * 32))[0] is Action.CONFLICT
    )
    assert compare(e("k", 1, sha256="a" * 64), e("k", 1, sha256="a" * 64)) == (
        Action.SKIP,
        "same size and sha256",
    )
    assert compare(e("k", 1, md5="a" * 32), e("k", 1, md5="b" * 32)) == (
        Action.CONFLICT,
        "md5 differs",
    )
    assert (
        compare(
            e("k", 1, md5="a" * 32, sha256="a" * 64),
            e("k", 1, md5="a" * 32, sha256="c" * 64),
        )[0]
        is Action.CONFLICT
    )
    assert compare(e("k", 1, md5="a" * 32), e("k", 1, sha256="a" * 64)) == (
        Action.VERIFY,
        None,
    )
    # any registered digest counts, and the reason names the strongest one
    assert compare(
        e("k", 1, adler32="0000000a", sha512="c" * 128),
        e("k", 1, adler32="0000000a", sha512="c" * 128, md5="d" * 32),
    ) == (Action.SKIP, "same size and sha512")
    assert compare(
        e("k", 1, adler32="0000000a", sha1="c" * 40),
        e("k", 1, adler32="0000000b", sha1="c" * 40),
    ) == (Action.CONFLICT, "adler32 differs")
    assert compare(
        e("k", 1, md5="a" * 32, sha256="a" * 64),
        e("k", 1, md5="b" * 32, sha256="c" * 64),
    ) == (Action.CONFLICT, "sha256 differs")
    # equal ETags prove nothing
    assert compare(e("k", 1, etag="x-2"), e("k", 1, etag="x-2")) == (
        Action.VERIFY,
        None,
    )


def test_diff_checks_order() -> None:
    """An unsorted listing is refused when the bad entry is reached."""
    with pytest.raises(PlanError, match="source listing"):
        list(diff([ListingEntry("b", 1), ListingEntry("a", 1)], []))
    with pytest.raises(PlanError, match="destination listing"):
        list(diff([], [ListingEntry("b", 1), ListingEntry("b", 1)]))


def test_compare_takes_digests_as_their_canonical_json() -> None:
    """The planner's external sort carries digests as JSON text: same decisions."""
    from carmigrate.migrate._schema import digests_json

    pairs = [
        ({"md5": "a" * 32}, {"md5": "a" * 32}),
        ({"md5": "a" * 32}, {"md5": "b" * 32}),
        ({"md5": "a" * 32, "sha256": "a" * 64}, {"md5": "a" * 32, "sha256": "a" * 64}),
        ({"md5": "a" * 32, "sha256": "a" * 64}, {"md5": "a" * 32, "sha256": "c" * 64}),
        ({"md5": "a" * 32}, {"sha256": "a" * 64}),
    ]
    for s, d in pairs:
        want = compare(ListingEntry("k", 1, None, s), ListingEntry("k", 1, None, d))
        for a, b in (
            (digests_json(s), digests_json(d)),
            (digests_json(s), d),
            (s, digests_json(d)),
        ):
            assert compare(("k", 1, None, a, False), ("k", 1, None, b, False)) == want
