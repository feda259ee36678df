"""Requests of an S3 Object Lock retention extension (``packvault retention extend``), counted at the wire.

A repository with Object Lock (GOVERNANCE, 1 day) is created on a moto server behind the counting proxy
(``countingproxy.py``), for a few sizes (number of files, so of data packs); then, per size:

1. ``retention extend --retention 3d``: every live object has less than half of 3 days left, so every one
   is extended (one HEAD to read its date, one PutObjectRetention);
2. the same command again at once: every object has enough left, so only the HEADs remain.

Both are counted by the proxy (every HTTP request, retries included) and compared with the live objects
the command reports.  moto enforces Object Lock, so the requests are real ones; only their latency is not.

    .venv/bin/python bench/retention_requests.py [--sizes 8,32,128] [--workdir bench/work/retention]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from countingproxy import CountingProxy  # noqa: E402

FILE_SIZE = 96 * 1024
PACK_SIZE = "128K"  # about one file per data pack: the number of live objects follows the number of files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1).close()  # noqa: S310 - local
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


def packvault(*args: str, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "packvault.cli.main", *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"packvault {' '.join(args)} -> {result.returncode}\n{result.stderr}")
    return json.loads(result.stdout) if "--json" in args else {}


def measure(size: int, endpoint: str, proxy: CountingProxy, workdir: Path, env: dict[str, str]) -> list[dict]:
    import boto3

    bucket = f"pv-retention-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket, ObjectLockEnabledForBucket=True
    )
    src = workdir / f"src-{size}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    rnd = random.Random(size)
    for n in range(size):
        (src / f"f{n:04d}.bin").write_bytes(rnd.randbytes(FILE_SIZE))
    url = f"s3://{bucket}/repo?endpoint={proxy.url}"
    packvault("init", url, "--pack-size", PACK_SIZE, "--object-lock", "governance", "--retention", "1d", env=env)
    packvault("create", f"{url}::a", str(src), env=env)
    rows = []
    for run in ("extend (all due)", "again (none due)"):
        proxy.counters.reset()
        report = packvault("retention", "extend", "--json", "--retention", "3d", url, env=env)["retention"]
        counted = proxy.snapshot()
        rows.append(
            {
                "files": size,
                "run": run,
                "live": report["objects_live"],
                "extended": report["objects_extended"],
                "PUT?retention": counted.get("detail", {}).get("PUT?retention", 0),
                "HEAD": counted.get("HEAD", 0),
                "LIST": counted.get("LIST", 0),
                "GET": counted.get("GET", 0),
                "PUT": counted.get("PUT", 0),
                "total": sum(counted.get(kind, 0) for kind in ("PUT", "GET", "HEAD", "LIST", "DELETE", "POST", "COPY")),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,32,128", help="numbers of files (about one data pack each)")
    parser.add_argument("--workdir", default=str(ROOT / "bench" / "work" / "retention"))
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "PACKVAULT_PASSPHRASE": "bench",
        "PACKVAULT_KDF_MEMORY_KIB": "1024",
        "PACKVAULT_CACHE_DIR": str(workdir / "cache"),
        "PACKVAULT_CONFIG_DIR": str(workdir / "config"),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        os.environ.setdefault(key, env[key])
    moto, endpoint = start_moto()
    rows: list[dict] = []
    try:
        with CountingProxy(endpoint) as proxy:
            for size in (int(s) for s in args.sizes.split(",")):
                rows += measure(size, endpoint, proxy, workdir, env)
    finally:
        moto.terminate()
        moto.wait(timeout=10)
    columns = ["files", "run", "live", "extended", "PUT?retention", "HEAD", "LIST", "GET", "PUT", "total"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
