"""The descriptor table grown up front (``descriptors.py``), so that no thread waits for it to grow later."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import os, resource, sys
    if len(sys.argv) > 1:
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    def table():
        return int(open("/proc/self/status").read().split("FDSize:")[1].split()[0])
    before = table()
    kept = os.open(os.devnull, os.O_RDONLY)
    high = os.dup2(kept, 300)  # a descriptor in use where the table grows: it must stay what it is
    from packvault.descriptors import grow_descriptor_table
    grow_descriptor_table()
    same = os.path.sameopenfile(high, kept)
    print(before, table(), same, len(os.listdir("/proc/self/fd")))
    """
)


def _probe(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_table_holds_a_thousand_descriptors_and_nothing_in_use_moves():
    before, after, same, open_now = _probe()
    assert int(before) < 1024 <= int(after)
    assert same == "True"
    assert int(open_now) < 10  # the descriptors it used to grow the table are closed again


def test_a_lower_limit_on_open_files_is_respected():
    _, after, same, _ = _probe("512")
    assert int(after) <= 512 and same == "True"
