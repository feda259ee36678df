"""The shared arena (``sharedarena.py``): regions never overlap while reserved, space comes back once every
older region is released, and what a worker process writes is what the command reads."""

from __future__ import annotations

import random

import pytest

from packvault.processes import start_workers, worker_pool
from packvault.sharedarena import RegionWriter, SharedArena
from tests.support import importcount


@pytest.fixture
def arena():
    arena = SharedArena(1000)
    yield arena
    arena.close()


def test_regions_follow_each_other_and_wrap_once_the_oldest_are_released(arena):
    assert arena.reserve(400) == 0
    assert arena.reserve(400) == 400
    assert arena.reserve(300) is None  # 200 left at the end: no room
    arena.release(400)  # out of order: the space of the oldest is still reserved
    assert arena.reserve(300) is None
    arena.release(0)  # now both are free: the ring is empty again
    assert arena.reserve(1000) == 0
    assert arena.reserve(1) is None
    arena.release(0)
    assert arena.reserve(600) == 0
    assert arena.reserve(300) == 600
    arena.release(0)
    assert arena.reserve(200) == 0  # 100 left at the end, 600 free before the oldest: it wraps


def test_a_wrapped_region_stops_before_the_oldest_one(arena):
    assert arena.reserve(600) == 0
    assert arena.reserve(300) == 600
    arena.release(0)  # the oldest is now the one at 600
    assert arena.reserve(200) == 0  # 100 left at the end: it wraps to the start
    assert arena.reserve(400) == 200  # up to the region at 600, not into it
    assert arena.reserve(1) is None
    arena.release(600)
    arena.release(0)
    arena.release(200)
    assert arena.reserve(1000) == 0


def test_random_reservations_never_overlap():
    arena = SharedArena(64 * 1024)
    rnd = random.Random(5)
    live: dict[int, int] = {}
    try:
        for _ in range(5000):
            if live and rnd.random() < 0.45:
                start = rnd.choice(list(live))
                arena.release(start)
                del live[start]
                continue
            length = rnd.randrange(1, 20 * 1024)
            start = arena.reserve(length)
            if start is None:
                continue
            assert start >= 0 and start + length <= arena.size
            for other, other_length in live.items():
                assert start + length <= other or other + other_length <= start
            live[start] = length
        for start in list(live):
            arena.release(start)
        assert arena.reserve(arena.size) == 0  # everything came back
    finally:
        arena.close()


def test_a_closed_arena_reserves_nothing(arena):
    arena.close()
    assert arena.reserve(10) is None
    arena.close()  # twice is fine


def test_region_writer_spills_what_does_not_fit_into_memory_of_its_own(arena):
    import mmap

    mapping = mmap.mmap(-1, 100)
    writer = RegionWriter(mapping, 10, 20)
    writer.add(b"a" * 8)
    writer.add(b"b" * 8)
    assert writer.result() == 16
    assert mapping[10:26] == b"a" * 8 + b"b" * 8
    writer.add(b"c" * 8)  # past the 20 bytes reserved: all of it goes the other way
    assert writer.result() == bytearray(b"a" * 8 + b"b" * 8 + b"c" * 8)
    writer.add(b"d")
    assert writer.result() == bytearray(b"a" * 8 + b"b" * 8 + b"c" * 8 + b"d")
    unreserved = RegionWriter(None, None, 0)
    unreserved.add(b"xy")
    assert unreserved.result() == bytearray(b"xy")


def test_a_worker_process_writes_into_the_commands_arena():
    arena = SharedArena(1 << 20)
    pool = worker_pool(1, importcount.keep_arena, (arena.for_worker(),))
    try:
        for future in start_workers(pool, 1):
            future.result(timeout=60)
        start = arena.reserve(4096)
        assert pool.submit(importcount.write_into_arena, start, b"from the worker").result(timeout=60) == 15
        assert arena.read(start, 15) == b"from the worker"
    finally:
        pool.shutdown()
        arena.close()
