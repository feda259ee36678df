"""``gather`` on S3 holds its result and the reads in flight, not every read's answer plus their concatenation
(compact copies packs forward through ``gather`` on S3: twice a pack's live bytes was its peak memory)."""

from __future__ import annotations

import os
import tracemalloc

MiB = 1024 * 1024


def test_gather_of_many_ranges_peaks_near_its_result(moto_endpoint, open_s3):
    be = open_s3(moto_endpoint)
    blob = os.urandom(24 * MiB)
    be.store("packs/meta/aa", blob)
    # 16 ranges of 1 MiB, 512 KiB apart: no two share a GET (their gap is above the coalescing gap)
    sources = [("packs/meta/aa", n * (MiB + MiB // 2), MiB) for n in range(16)]
    tracemalloc.start()
    try:
        result = be.gather(sources)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bytes(result) == b"".join(blob[o : o + s] for _, o, s in sources)
    assert peak < 1.6 * 16 * MiB, peak / MiB
