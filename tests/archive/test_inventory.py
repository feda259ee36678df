"""Plans from an S3 Inventory report (``archive/inventory.py``): CSV (gzip) and Parquet data files laid out and
described by a manifest.json as S3 writes them, uploaded to a real moto server.  A plan from the report must
be the plan a listing of the bucket gives."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.s3servers import new_bucket, s3_client

KEYS = {
    "logs/2026/01/a.log": 5_000,
    "logs/2026/01/b.log": 7_000,
    "logs/2026/02/a b+c.log": 300_000,  # a space and a plus: URL-encoded in CSV
    "logs/2026.txt": 10,
    "logs/\u00fcml/x": 90_000,
    **{f"logs/bulk/{i:04d}": 1000 + i for i in range(200)},
}
OTHER = {"other/skip": 1}  # outside the planned prefix: in the report, not in the plan


@pytest.fixture
def buckets(moto_endpoint, s3_env) -> tuple[str, str]:
    client = s3_client(moto_endpoint)
    source, reports = new_bucket(moto_endpoint), new_bucket(moto_endpoint)
    for key, size in {**KEYS, **OTHER}.items():
        client.put_object(Bucket=source, Key=key, Body=b"\0" * size)
    return source, reports


def _rows(source: str) -> list[dict]:
    rows = [{"bucket": source, "key": k, "size": s, "is_latest": True} for k, s in {**KEYS, **OTHER}.items()]
    rows.append({"bucket": source, "key": "logs/2026/01/a.log", "size": 123, "is_latest": False})  # old version
    rows.reverse()  # a report is in no particular order
    return rows


def _put_report(endpoint: str, source: str, reports: str, fmt: str, files: list[bytes], schema: str) -> str:
    client = s3_client(endpoint)
    base = f"inv/{source}/daily/2026-12-03T00-00Z"
    entries = []
    for n, data in enumerate(files):
        key = f"inv/{source}/daily/data/{n:04d}.{'csv.gz' if fmt == 'CSV' else 'parquet'}"
        client.put_object(Bucket=reports, Key=key, Body=data)
        entries.append({"key": key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()})
    manifest = {
        "sourceBucket": source,
        "destinationBucket": f"arn:aws:s3:::{reports}",
        "version": "2016-11-30",
        "creationTimestamp": "1764720000000",
        "fileFormat": fmt,
        "fileSchema": schema,
        "files": entries,
    }
    client.put_object(Bucket=reports, Key=f"{base}/manifest.json", Body=json.dumps(manifest).encode())
    return f"s3://{reports}/{base}/manifest.json?endpoint={endpoint}"


def csv_report(endpoint: str, source: str, reports: str) -> str:
    rows = _rows(source)
    files = []
    for half in (rows[: len(rows) // 2], rows[len(rows) // 2 :]):
        text = io.StringIO()
        writer = csv.writer(text, quoting=csv.QUOTE_ALL)
        for r in half:
            writer.writerow([r["bucket"], quote_plus(r["key"], safe="/"), r["size"], "2026-12-01T00:00:00.000Z",
                             "etag", str(r["is_latest"]).lower()])  # fmt: skip
        files.append(gzip.compress(text.getvalue().encode()))
    return _put_report(endpoint, source, reports, "CSV", files, "Bucket, Key, Size, LastModifiedDate, ETag, IsLatest")


def parquet_report(endpoint: str, source: str, reports: str) -> str:
    rows = _rows(source)
    files = []
    for half in (rows[: len(rows) // 2], rows[len(rows) // 2 :]):
        table = pa.table(
            {
                "bucket": [r["bucket"] for r in half],
                "key": [r["key"] for r in half],
                "size": pa.array([r["size"] for r in half], pa.int64()),
                "last_modified_date": pa.array([0] * len(half), pa.timestamp("ms")),
                "e_tag": ["etag"] * len(half),
                "is_latest": [r["is_latest"] for r in half],
            }
        )
        out = io.BytesIO()
        pq.write_table(table, out, row_group_size=50)  # several row groups per file
        files.append(out.getvalue())
    schema = "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); ... }"
    return _put_report(endpoint, source, reports, "Parquet", files, schema)


@pytest.mark.parametrize("report", [csv_report, parquet_report], ids=["csv-gzip", "parquet"])
def test_a_plan_from_the_inventory_is_the_plan_from_a_listing(pv, moto_endpoint, buckets, report, tmp_path):
    source, reports = buckets
    manifest = report(moto_endpoint, source, reports)
    url = f"s3://{source}/logs?endpoint={moto_endpoint}"
    listed = json.loads(pv("plan-source", url, "--parts", "4").out)
    inventoried = pv("plan-source", url, "--parts", "4", "--inventory", manifest, "--stats")
    assert json.loads(inventoried.out) == listed
    assert sum(p["objects"] for p in listed) == len(KEYS)
    assert sum(p["bytes"] for p in listed) == sum(KEYS.values())
    assert "LIST" not in inventoried.err  # the report is read with GETs, the source is not listed
    assert "GET 3" in inventoried.err  # the manifest and its two data files


def test_a_damaged_data_file_is_refused_in_one_line(pv, moto_endpoint, buckets):
    source, reports = buckets
    manifest = csv_report(moto_endpoint, source, reports)
    client = s3_client(moto_endpoint)
    key = f"inv/{source}/daily/data/0001.csv.gz"
    client.put_object(Bucket=reports, Key=key, Body=gzip.compress(b'"x","y","1"\n'))
    refused = pv("plan-source", f"s3://{source}/logs?endpoint={moto_endpoint}", "--parts", "2", "--inventory",
                 manifest, expect=2)  # fmt: skip
    assert "does not match its MD5" in refused.err and len(refused.err.strip().splitlines()) == 1


def test_an_orc_report_is_refused_in_one_line(pv, moto_endpoint, buckets):
    source, reports = buckets
    manifest = _put_report(moto_endpoint, source, reports, "ORC", [b"orc"], "struct<bucket:string>")
    refused = pv("plan-source", f"s3://{source}?endpoint={moto_endpoint}", "--parts", "2", "--inventory",
                 manifest, expect=2)  # fmt: skip
    assert "ORC is not supported" in refused.err


def test_the_plan_can_be_written_to_a_bucket(pv, moto_endpoint, buckets):
    source, reports = buckets
    pv("plan-source", f"s3://{source}/logs?endpoint={moto_endpoint}", "--parts", "3",
       "--output", f"s3://{reports}/plans/p.json?endpoint={moto_endpoint}")  # fmt: skip
    body = s3_client(moto_endpoint).get_object(Bucket=reports, Key="plans/p.json")["Body"].read()
    plan = json.loads(body)
    assert isinstance(plan, list) and [p["part"] for p in plan] == [0, 1, 2]
    assert plan[0]["start"] == "" and plan[-1]["end"] is None
