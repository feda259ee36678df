#!/usr/bin/env python3
"""Scale-out (issue 20) on one machine: plan, parts in parallel, merge; objects per second and requests.

A moto server holds a source bucket of ``--small`` small objects (1-4 KiB, spread over directories) plus
``--large`` large ones (``--large-mib`` each).  For each worker count W (``--workers 1,2,4``) a fresh
repository (same moto, another bucket) gets: ``plan-source --parts W``, then W ``packvault create
REPO::bench.partK SOURCE --source-range START END`` processes started together, then ``packvault merge``.
Every request of Packvault goes through a counting proxy (``bench/countingproxy.py``), one in front of the
source bucket and one in front of the repository, so each phase's requests are counted at the wire.  The
plan is also made from an S3 Inventory report (CSV, gzip, as S3 writes it; the bench writes it itself,
uncounted) to show what a plan costs without a LIST.

    .venv/bin/python bench/scaleout.py [--small 100000] [--large 8] [--large-mib 16] [--workers 1,2,4]
                                       [--out bench/results/scaleout.json]

Results go to a JSON file and a Markdown table on stdout (bench/README.md "Scale-out (issue 20)").  Wall
times depend on the machine and on what else runs on it: say so beside them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote_plus

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from countingproxy import CountingProxy, delta  # noqa: E402
from run import MotoServer, find_moto_server, s3_client  # noqa: E402

PASSPHRASE = "bench scale-out passphrase"


def fill_source(client, bucket: str, small: int, large: int, large_mib: int) -> tuple[int, int]:  # noqa: ANN001
    """(objects, bytes) written: small objects in 100 directories of 10 subdirectories, large ones apart."""
    client.create_bucket(Bucket=bucket)
    rng = random.Random(20)
    jobs = [(f"data/d{n % 100:02d}/s{(n // 100) % 10}/obj-{n:06d}.json", rng.randint(1024, 4096)) for n in range(small)]
    jobs += [(f"media/big-{n:02d}.bin", large_mib * 1024 * 1024) for n in range(large)]

    def put(job: tuple[str, int]) -> int:
        key, size = job
        client.put_object(Bucket=bucket, Key=key, Body=os.urandom(size))
        return size

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        total = sum(pool.map(put, jobs, chunksize=64))
    return len(jobs), total


def write_inventory(client, source: str, reports: str) -> str:  # noqa: ANN001
    """A CSV inventory report of ``source`` in ``reports`` (manifest.json + gzip data files of 50,000 rows),
    laid out as S3 Inventory writes it; its manifest key."""
    client.create_bucket(Bucket=reports)
    rows: list[list[str]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=source):
        for obj in page.get("Contents", ()):
            rows.append([source, quote_plus(obj["Key"], safe="/"), str(obj["Size"]), "2026-12-03T00:00:00.000Z",
                         obj["ETag"].strip('"')])  # fmt: skip
    files = []
    for start in range(0, len(rows), 50_000):
        text = io.StringIO()
        csv.writer(text, quoting=csv.QUOTE_ALL).writerows(rows[start : start + 50_000])
        data = gzip.compress(text.getvalue().encode())
        key = f"inventory/{source}/daily/data/{start // 50_000:04d}.csv.gz"
        client.put_object(Bucket=reports, Key=key, Body=data)
        files.append({"key": key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()})
    manifest = {
        "sourceBucket": source,
        "destinationBucket": f"arn:aws:s3:::{reports}",
        "version": "2016-11-30",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag",
        "files": files,
    }
    key = f"inventory/{source}/daily/2026-12-03T00-00Z/manifest.json"
    client.put_object(Bucket=reports, Key=key, Body=json.dumps(manifest).encode())
    return key


def packvault(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("packvault")
    done = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"packvault {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def measure(workers: int, *, src: CountingProxy, repo_proxy: CountingProxy, client, source: str,  # noqa: ANN001
            objects: int, nbytes: int, env: dict[str, str]) -> dict:  # fmt: skip
    bucket = f"bench-repo-w{workers}"
    client.create_bucket(Bucket=bucket)
    repo = f"s3://{bucket}/repo?endpoint={repo_proxy.url}"
    source_url = f"s3://{source}?endpoint={src.url}"
    packvault("init", repo, env=env)
    row: dict = {"workers": workers, "objects": objects, "bytes": nbytes}

    before = src.snapshot()
    started = time.monotonic()
    plan = json.loads(packvault("plan-source", source_url, "--parts", str(workers), env=env).stdout)
    row["plan_seconds"] = round(time.monotonic() - started, 2)
    row["plan_requests"] = _main(delta(src.snapshot(), before))
    row["parts"] = len(plan)
    row["part_objects"] = [p["objects"] for p in plan]
    row["part_bytes"] = [p["bytes"] for p in plan]

    src_before, repo_before = src.snapshot(), repo_proxy.snapshot()
    started = time.monotonic()
    procs = []
    for p in plan:
        end = "" if p["end"] is None else p["end"]
        args = ["create", f"{repo}::bench.part{p['part']}", source_url, "--source-range", p["start"], end,
                "--part", f"{p['part']}/{p['parts']}"]  # fmt: skip
        exe = Path(sys.executable).with_name("packvault")
        procs.append(subprocess.Popen([str(exe), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode not in (0, 1):
            raise SystemExit(f"a part failed ({proc.returncode}): {err.decode().strip()}")
    seconds = time.monotonic() - started
    source_requests = _main(delta(src.snapshot(), src_before))
    repo_requests = _main(delta(repo_proxy.snapshot(), repo_before))
    row["parts_seconds"] = round(seconds, 2)
    row["objects_per_second"] = round(objects / seconds, 1)
    row["mib_per_second"] = round(nbytes / seconds / 2**20, 1)
    row["source_requests"] = source_requests
    row["repo_requests"] = repo_requests
    row["requests_per_object"] = round((source_requests["total"] + repo_requests["total"]) / objects, 3)

    repo_before = repo_proxy.snapshot()
    started = time.monotonic()
    merged = json.loads(packvault("merge", "--json", f"{repo}::bench", "bench.part*", env=env).stdout)
    row["merge_seconds"] = round(time.monotonic() - started, 2)
    row["merge_requests"] = _main(delta(repo_proxy.snapshot(), repo_before))
    row["merge_items"] = merged["nitems"]
    row["merge_item_chunks"] = {"read": merged["item_chunks_read"], "written": merged["item_chunks_written"]}
    return row


def _main(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if k != "detail" and (v or k == "total")}


def table(rows: list[dict], inventory: dict, machine: str) -> str:
    lines = [
        f"Machine: {machine}.",
        "",
        "| workers | parts (objects each) | parts wall s | objects/s | MiB/s | requests/object | plan: LIST | "
        "merge s | merge requests |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        merge = r["merge_requests"]
        lines.append(
            f"| {r['workers']} | {r['parts']} ({', '.join(map(str, r['part_objects']))}) | {r['parts_seconds']} | "
            f"{r['objects_per_second']} | {r['mib_per_second']} | {r['requests_per_object']} | "
            f"{r['plan_requests'].get('LIST', 0)} | {r['merge_seconds']} | {merge['total']} "
            f"(GET {merge.get('GET', 0)}, PUT {merge.get('PUT', 0)}, LIST {merge.get('LIST', 0)}) |"
        )
    lines += [
        "",
        f"Plan from an S3 Inventory report instead of a listing: {inventory['requests'].get('GET', 0)} GETs, "
        f"{inventory['requests'].get('HEAD', 0)} HEADs, {inventory['requests'].get('LIST', 0)} LISTs of the "
        f"source, {inventory['seconds']} s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--large", type=int, default=8)
    ap.add_argument("--large-mib", type=int, default=16)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--out", type=Path, default=BENCH / "results" / "scaleout.json")
    ap.add_argument("--moto-server", default=None)
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="pv-scaleout-"))
    moto = MotoServer(find_moto_server(args.moto_server), workdir / "logs")
    try:
        client = s3_client(moto.url)
        started = time.monotonic()
        objects, nbytes = fill_source(client, "bench-source", args.small, args.large, args.large_mib)
        print(f"source: {objects} objects, {nbytes} bytes in {time.monotonic() - started:.0f} s", file=sys.stderr)
        manifest = write_inventory(client, "bench-source", "bench-reports")
        base_env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PACKVAULT_PASSPHRASE": PASSPHRASE,
            "PACKVAULT_CONFIG_DIR": str(workdir / "config"),
        }
        rows = []
        with CountingProxy(moto.url) as src, CountingProxy(moto.url) as repo_proxy:
            for workers in (int(w) for w in args.workers.split(",")):
                env = {**base_env, "PACKVAULT_CACHE_DIR": str(workdir / f"cache-w{workers}")}
                row = measure(workers, src=src, repo_proxy=repo_proxy, client=client, source="bench-source",
                              objects=objects, nbytes=nbytes, env=env)  # fmt: skip
                print(json.dumps(row), file=sys.stderr)
                rows.append(row)
            before = src.snapshot()
            started = time.monotonic()
            packvault("plan-source", f"s3://bench-source?endpoint={src.url}", "--parts", "4", "--inventory",
                      f"s3://bench-reports/{manifest}?endpoint={src.url}", env=base_env)  # fmt: skip
            inventory = {"requests": _main(delta(src.snapshot(), before)),
                         "seconds": round(time.monotonic() - started, 2)}  # fmt: skip
    finally:
        moto.stop()
    machine = f"{os.cpu_count()} cores, shared with other users while measured; moto server on the same machine"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "inventory_plan": inventory}, indent=1) + "\n")
    print(table(rows, inventory, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
