"""``gather`` on S3: how many GETs it spends, and that it holds its result and the reads in flight, not every
read's answer plus their concatenation (compact copies packs forward through ``gather`` on S3: twice a pack's
live bytes was its peak memory)."""

from __future__ import annotations

import os
import tracemalloc

from packvault.storage.s3.plan import COALESCE_GAP

MiB = 1024 * 1024


def test_gather_reads_through_holes_a_request_would_cost_more_than(moto_endpoint, open_s3):
    """The live objects compact copies out of a partly dead pack lie between holes of a few hundred KiB to
    a few MiB (deleted files' chunks).  A ranged GET costs a round trip, in which S3 delivers megabytes on
    one stream; reading through a 2 MiB hole is cheaper than another request."""
    be = open_s3(moto_endpoint)
    blob = os.urandom(16 * MiB)
    be.store("packs/data/aa", blob)
    holes = [150 * 1024, 900 * 1024, 2 * MiB]
    sources, offset = [], 0
    for hole in holes:
        sources.append(("packs/data/aa", offset, 300 * 1024))
        offset += 300 * 1024 + hole
    sources.append(("packs/data/aa", offset, 300 * 1024))
    far = offset + 300 * 1024 + COALESCE_GAP + 1  # a hole above the limit: a GET of its own
    sources.append(("packs/data/aa", far, 1000))
    be.reset_request_stats()
    result = be.gather(sources)
    assert bytes(result) == b"".join(blob[o : o + s] for _, o, s in sources)
    assert be.request_stats().get("GET", 0) == 2


def test_gather_of_many_ranges_peaks_near_its_result(moto_endpoint, open_s3):
    be = open_s3(moto_endpoint)
    # 16 ranges of 1 MiB with holes above the coalescing gap between them: no two share a GET
    apart = MiB + COALESCE_GAP + 1
    blob = os.urandom(16 * apart)
    be.store("packs/meta/aa", blob)
    sources = [("packs/meta/aa", n * apart, MiB) for n in range(16)]
    tracemalloc.start()
    try:
        result = be.gather(sources)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bytes(result) == b"".join(blob[o : o + s] for _, o, s in sources)
    assert peak < 1.6 * 16 * MiB, peak / MiB
