"""The request counts in a command's --json output are the requests the server saw, opening included: all of
them but the lock's release, which follows the report."""

from __future__ import annotations

import json

import pytest

from tests.support.s3servers import new_bucket

KINDS = ("GET", "PUT", "HEAD", "LIST", "DELETE", "COPY")


@pytest.mark.parametrize(
    "command",
    [
        ["check"],
        ["check", "--verify-data"],
        ["check", "--verify-data", "--processes", "2"],
        ["list"],
        ["prune", "--keep-last", "1"],
        ["compact"],
    ],
    ids=lambda c: " ".join(c),
)
def test_reported_requests_are_the_servers(pv, moto_endpoint, fault_proxy, tmp_path, s3_env, command):
    counter = fault_proxy(moto_endpoint, fault_rate=0)  # forwards everything, counts every request
    url = f"s3://{new_bucket(moto_endpoint)}/repo?endpoint={counter.endpoint}"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(bytes(range(256)) * 400)
    pv("init", url)
    pv("create", f"{url}::one", src)
    pv("create", f"{url}::two", src)
    seen_before = counter.requests
    doc = json.loads(pv(command[0], url, *command[1:], "--json").out)
    reported = doc.get("requests") or doc["stats"]["requests"]
    lock_release = 1
    assert sum(reported[kind] for kind in KINDS) == counter.requests - seen_before - lock_release, reported
