"""Scale-out plans (``archive/partition.py``) and key ranges of the S3 source (``s3source.KeyRange``).

The planner is pure over (key, size) records; the ranges are also read from a real moto bucket, where a part
must list its own stretch of keys and not the whole bucket.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packvault.archive.partition import OBJECT_WEIGHT, PartRecord, plan_ranges, prove_coverage
from packvault.archive.s3source import KeyRange, S3Source, start_after, walk_sort_key
from packvault.errors import UsageError
from packvault.storage.settings import from_environment
from tests.support.s3servers import new_bucket, s3_client

SOURCE = "s3://bucket/prefix"


def covering(plan) -> None:
    """The plan's ranges are contiguous from '' to the end, numbered 0..n-1 of n."""
    assert plan[0].start == "" and plan[-1].end is None
    for a, b in zip(plan, plan[1:], strict=False):
        assert a.end == b.start
        assert walk_sort_key(a.start) < walk_sort_key(b.start)
    assert [p.part for p in plan] == list(range(len(plan)))
    assert {p.parts for p in plan} == {len(plan)}


def owner(plan, key: str) -> int:
    owners = [p.part for p in plan if p.key_range.contains(key)]
    assert len(owners) == 1, (key, owners)
    return owners[0]


def test_balanced_bytes_and_every_key_in_exactly_one_part():
    rng = random.Random(5)
    records = [(f"d{rng.randint(0, 30)}/f{i:05d}.bin", rng.randint(100_000, 3_000_000)) for i in range(4000)]
    rng.shuffle(records)  # the planner sorts in walk order itself
    plan = plan_ranges(records, 8, SOURCE)
    assert len(plan) == 8
    covering(plan)
    total = sum(size for _, size in records)
    assert sum(p.bytes for p in plan) == total and sum(p.objects for p in plan) == len(records)
    biggest = max(size for _, size in records) + OBJECT_WEIGHT
    for p in plan:  # each part within one object of an eighth of the weight
        weight = p.bytes + OBJECT_WEIGHT * p.objects
        assert abs(weight - (total + OBJECT_WEIGHT * len(records)) / 8) <= biggest
    counted = [0] * 8
    for key, _ in records:
        counted[owner(plan, key)] += 1
    assert counted == [p.objects for p in plan]


def test_boundaries_follow_walk_order_not_s3_order():
    # S3 lists "a.txt" before "a/b"; the walk puts the directory a/ first
    records = [("a.txt", 1_000_000), ("a/b", 1_000_000), ("a/c", 1_000_000), ("a-z", 1_000_000)]
    plan = plan_ranges(records, 4, SOURCE)
    covering(plan)
    assert [p.start for p in plan] == ["", "a/c", "a-z", "a.txt"]
    assert [owner(plan, k) for k in ("a/b", "a/c", "a-z", "a.txt")] == [0, 1, 2, 3]


def test_empty_bucket_is_one_part_of_everything():
    plan = plan_ranges([], 16, SOURCE)
    assert [p.encode() for p in plan] == [
        {"part": 0, "parts": 1, "source": SOURCE, "start": "", "end": None, "objects": 0, "bytes": 0}
    ]


def test_one_huge_object_gets_a_part_of_its_own():
    records = [(f"small/{i:03d}", 1000) for i in range(100)] + [("huge.iso", 50 * 10**9)]
    records += [(f"tail/{i:03d}", 1000) for i in range(100)]
    plan = plan_ranges(records, 4, SOURCE)
    covering(plan)
    huge = plan[owner(plan, "huge.iso")]
    assert huge.objects == 1 and huge.bytes == 50 * 10**9
    assert len(plan) <= 4


def test_more_parts_than_objects_gives_one_part_per_object():
    records = [("x/1", 10), ("x/2", 10), ("y", 10)]
    plan = plan_ranges(records, 50, SOURCE)
    covering(plan)
    assert len(plan) == 3 and [p.objects for p in plan] == [1, 1, 1]


def test_a_plan_is_bounded_by_the_sort_not_by_the_bucket(monkeypatch):
    """More records than one in-memory sort run: the spilled sort still gives a covering plan."""
    import packvault.archive.s3source as s3source

    monkeypatch.setattr(s3source, "SORT_RUN_RECORDS", 100)
    records = [(f"k/{i:06d}", 10) for i in range(1000)]
    plan = plan_ranges(reversed(records), 5, SOURCE)
    covering(plan)
    assert [p.objects for p in plan] == [200] * 5


def test_parts_below_one_is_refused():
    with pytest.raises(UsageError):
        plan_ranges([("a", 1)], 0, SOURCE)


def test_coverage_proof_refuses_gaps_overlaps_and_missing_parts():
    def rec(start, end, part=None, parts=None):
        return PartRecord(SOURCE, start, end, part, parts)

    ok = [("n.part1", rec("m", None, 1, 2)), ("n.part0", rec("", "m", 0, 2))]
    assert [name for name, _ in prove_coverage(ok)] == ["n.part0", "n.part1"]
    with pytest.raises(UsageError, match="gap"):
        prove_coverage([("a", rec("", "g")), ("b", rec("m", None))])
    with pytest.raises(UsageError, match="overlap"):
        prove_coverage([("a", rec("", "m")), ("b", rec("g", None))])
    with pytest.raises(UsageError, match="first key"):
        prove_coverage([("b", rec("m", None))])
    with pytest.raises(UsageError, match="last key"):
        prove_coverage([("a", rec("", "m"))])
    with pytest.raises(UsageError, match="part.s. 2 missing"):
        prove_coverage([("a", rec("", "m", 0, 3)), ("b", rec("m", None, 1, 3))])


# --- key ranges ---------------------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(["a", "b", ".", "/", "0", "-", " ", "\u00e9", "~"])
_KEYS = st.text(alphabet=_ALPHABET, min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(_KEYS, min_size=1, max_size=60, unique=True), data=st.data())
def test_listing_intervals_hold_exactly_the_range(keys, data):
    """Listing each interval from its StartAfter to its end yields exactly the keys of the range."""
    ordered = sorted(keys, key=walk_sort_key)
    i = data.draw(st.integers(0, len(ordered)))
    j = data.draw(st.integers(i, len(ordered)))
    start = ordered[i] if i < len(ordered) else ordered[-1] + "~"
    end = ordered[j] if j < len(ordered) else None
    if end is not None and walk_sort_key(end) <= walk_sort_key(start):
        return
    key_range = KeyRange("" if i == 0 else start, end)
    listed = []
    for lo, hi in key_range.listing_intervals():
        after = start_after(lo)
        listed += [k for k in sorted(keys) if (after is None or k > after) and k >= lo and (hi is None or k < hi)]
        assert after is None or len(after.encode()) <= 1024  # S3 takes it as a key
    assert sorted(listed) == sorted(k for k in keys if key_range.contains(k))


def test_an_empty_range_is_refused():
    with pytest.raises(UsageError, match="empty key range"):
        KeyRange("b", "a")


@pytest.fixture
def wide_bucket(moto_endpoint, s3_env) -> str:
    bucket = new_bucket(moto_endpoint)
    client = s3_client(moto_endpoint)
    for d in ("a", "b", "c"):
        for i in range(40):
            client.put_object(Bucket=bucket, Key=f"p/{d}/{i:03d}", Body=b"x")
    client.put_object(Bucket=bucket, Key="p/a.txt", Body=b"y")
    client.put_object(Bucket=bucket, Key="p/b-2", Body=b"z")
    return bucket


def _entries(bucket: str, endpoint: str, key_range: KeyRange | None) -> tuple[list[str], dict]:
    source = S3Source(
        [f"s3://{bucket}/p?endpoint={endpoint}"], warn=print, settings=from_environment(os.environ), key_range=key_range
    )
    paths = [e.item["p"].decode() for e in source]
    return paths, source.requests.snapshot()


def test_a_range_of_the_source_is_its_slice_of_the_whole_walk(moto_endpoint, wide_bucket, monkeypatch):
    import packvault.storage.s3.listing as listing

    # 10 keys per LIST: a full listing of the 122 keys is 13 requests
    monkeypatch.setattr(listing.pages, "__kwdefaults__", {**listing.pages.__kwdefaults__, "page_size": 10})
    whole, counted = _entries(wide_bucket, moto_endpoint, None)
    assert counted["LIST"] == 13
    files = [p for p in whole if p.count("/") >= 2 and not p.endswith(("/a", "/b", "/c"))]
    for start, end in [("", "p/a/010"), ("p/a/010", "p/b/000"), ("p/b/000", "p/b-2"), ("p/b-2", None)]:
        part, counted = _entries(wide_bucket, moto_endpoint, KeyRange(start, end))
        expected = [p for p in files if KeyRange(start, end).contains(p.split("/", 1)[1])]
        assert [p for p in part if p in expected] == expected
        assert [p for p in part if p.count("/") >= 2 and p not in expected] == [
            p for p in part if p.endswith(("/a", "/b", "/c"))
        ]  # besides its files, a part holds only directories
    _, counted = _entries(wide_bucket, moto_endpoint, KeyRange("p/b/000", "p/b/010"))
    assert counted["LIST"] <= 4  # its own stretch, not the 13 pages of the bucket


def test_a_range_without_objects_is_the_bucket_directory_only(moto_endpoint, wide_bucket):
    paths, _ = _entries(wide_bucket, moto_endpoint, KeyRange("p/zz", None))
    assert paths == [wide_bucket]
