"""Fast checks of the benchmark harness (bench/): no backup tool, no S3 server, a few MiB of data.

Why these exist: a benchmark whose dataset silently changes between runs, or whose report mangles a
number, produces comparisons that look valid and are not.  So the generator's determinism, the day-2
sync, the restore comparison and the table/JSON formatting are pinned here; the numbers themselves are
bench/run.py's business, never a unit test's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import countingproxy  # noqa: E402
import gen_dataset  # noqa: E402
import run as bench_run  # noqa: E402

SMALL = 3 * gen_dataset.MiB


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything about a tree that the benchmark relies on: names, types, bytes, link targets, mtimes and
    which names share an inode."""
    out: dict[str, tuple] = {}
    first: dict[tuple[int, int], str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                key = (st.st_dev, st.st_ino)
                linked_to = first.setdefault(key, rel)
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns,
                            linked_to if linked_to != rel else None)
    return out


def hardlink_groups(snap: dict[str, tuple]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for rel, v in snap.items():
        if v[0] == "file" and v[3]:
            groups.setdefault(v[3], {v[3]}).add(rel)
    return {frozenset(g) for g in groups.values()}


def strip_links(snap: dict[str, tuple]) -> dict[str, tuple]:
    return {k: (v[:3] if v[0] == "file" else v) for k, v in snap.items()}


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("bench")
    day1, day2 = base / "day1", base / "day2"
    day1.mkdir()
    day2.mkdir()
    gen_dataset.gen_day1(7, SMALL, day1, verbose=False)
    gen_dataset.gen_day2(7, day1, day2, verbose=False)
    return day1, day2


def test_parse_size() -> None:
    assert gen_dataset.parse_size("1GiB") == 1 << 30
    assert gen_dataset.parse_size("100MiB") == 100 << 20
    assert gen_dataset.parse_size("512M") == 512 << 20
    assert gen_dataset.parse_size("4096") == 4096
    with pytest.raises(ValueError):
        gen_dataset.parse_size("lots")


def test_day1_is_deterministic_for_a_seed(days: tuple[Path, Path], tmp_path: Path) -> None:
    day1, _ = days
    again, other = tmp_path / "again", tmp_path / "other"
    again.mkdir()
    other.mkdir()
    gen_dataset.gen_day1(7, SMALL, again, verbose=False)
    gen_dataset.gen_day1(8, SMALL, other, verbose=False)
    a, b = snapshot(day1), snapshot(again)
    assert strip_links(a) == strip_links(b)
    assert hardlink_groups(a) == hardlink_groups(b)
    assert strip_links(snapshot(other)) != strip_links(a)

    kinds = [v[0] for v in a.values()]
    assert kinds.count("link") >= 3 and kinds.count("dir") >= 8
    assert hardlink_groups(a), "day 1 must contain hardlinks"
    total = sum((day1 / k).stat().st_size for k, v in a.items() if v[0] == "file")
    assert 0.9 * SMALL < total < 1.2 * SMALL


def test_day2_is_deterministic_and_changes_some_files(days: tuple[Path, Path], tmp_path: Path) -> None:
    day1, day2 = days
    again = tmp_path / "day2"
    again.mkdir()
    gen_dataset.gen_day2(7, day1, again, verbose=False)
    s1, s2 = snapshot(day1), snapshot(day2)
    assert strip_links(s2) == strip_links(snapshot(again))
    files1 = {k for k, v in s1.items() if v[0] == "file"}
    files2 = {k for k, v in s2.items() if v[0] == "file"}
    assert files1 - files2, "some files deleted"
    assert files2 - files1, "some files added"
    changed = {k for k in files1 & files2 if s1[k][1] != s2[k][1]}
    assert changed, "some files modified"
    # A fresh tree: no file of day 2 shares an inode with day 1.
    inodes1 = {(day1 / k).stat().st_ino for k in files1}
    assert not any((day2 / k).stat().st_ino in inodes1 for k in files2)


def test_sync_tree_then_compare(days: tuple[Path, Path], tmp_path: Path) -> None:
    day1, day2 = days
    work = tmp_path / "src"
    bench_run.copy_tree(day1, work)
    unchanged = next(k for k, v in snapshot(day1).items() if v[0] == "file" and snapshot(day2).get(k) == v)
    ino_before = (work / unchanged).stat().st_ino
    counts = bench_run.sync_tree(day2, work)
    assert counts["changed"] and counts["removed"] and counts["created"]
    assert (work / unchanged).stat().st_ino == ino_before, "unchanged files must keep their inode"
    result = bench_run.compare_trees(day2, work)
    assert result["ok"], result
    assert result["meta_mismatches"] == 0, result
    assert strip_links(snapshot(work)) == strip_links(snapshot(day2))

    victim = next(k for k, v in snapshot(work).items() if v[0] == "file" and (work / k).stat().st_size > 100)
    with open(work / victim, "r+b") as f:
        f.seek(50)
        b = f.read(1)
        f.seek(50)
        f.write(bytes([b[0] ^ 1]))
    bad = bench_run.compare_trees(day2, work)
    assert not bad["ok"] and any(victim in p for p in bad["problems"])
    assert bench_run.find_dataset_root(tmp_path) == work
    assert bench_run.find_dataset_root(tmp_path / "nothing-here") is None


def test_classify_requests() -> None:
    c = countingproxy.classify
    assert c("PUT", "/b/packs/ab", {})[0] == "PUT"
    assert c("PUT", "/b/packs/ab?partNumber=2&uploadId=x", {"x-amz-copy-source": "/b/k"})[0] == "COPY"
    assert c("GET", "/b?list-type=2&prefix=packs/", {}) == ("LIST", "LIST?v2")
    assert c("GET", "/b?location", {})[0] == "GET"
    assert c("GET", "/b/k", {"range": "bytes=0-9"}) == ("GET", "GET?range")
    assert c("HEAD", "/b/k", {})[0] == "HEAD"
    assert c("POST", "/b?delete", {}) == ("POST", "POST?delete")
    assert c("DELETE", "/b/k", {})[0] == "DELETE"
    before = {"PUT": 1, "detail": {"PUT": 1}}
    after = {"PUT": 3, "detail": {"PUT": 3, "GET": 1}}
    assert countingproxy.delta(after, before) == {"PUT": 2, "detail": {"PUT": 2, "GET": 1}}


def test_run_measured(tmp_path: Path) -> None:
    res = bench_run.run_measured([sys.executable, "-c", "print('{\"a\": 1}')"], dict(os.environ), tmp_path,
                                 tmp_path / "logs", "t")
    assert res.rc == 0 and res.wall > 0 and res.maxrss > 0
    assert bench_run.last_json_object(res.stdout) == {"a": 1}
    assert bench_run.last_json_object('progress\n{"x": 2}\n') == {"x": 2}
    missing = bench_run.run_measured(["/nonexistent-bench-tool"], {}, tmp_path, tmp_path / "logs", "m")
    assert missing.rc == 127


def test_peak_rss_is_the_commands_own_not_the_harness(tmp_path: Path) -> None:
    """A child's ru_maxrss starts from its spawner's memory: a big harness must not inflate a small tool."""
    ballast = bytearray(150 << 20)  # the harness holding 150 MiB, touched
    ballast[::4096] = b"x" * len(ballast[::4096])
    small = bench_run.run_measured([sys.executable, "-c", "pass"], dict(os.environ), tmp_path, tmp_path / "l", "s")
    big = bench_run.run_measured([sys.executable, "-c", "b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096])"],
                                 dict(os.environ), tmp_path, tmp_path / "l", "b")
    del ballast
    assert small.maxrss < 60 << 20, small.maxrss
    assert big.maxrss > 200 << 20, big.maxrss


def _result(
    tool: str, step: str, target: str, run: int, wall: float, puts: int, status: str = "ok"
) -> bench_run.StepResult:
    r = bench_run.StepResult(step=step, tool=tool, target=target, run=run, status=status, wall=wall, cpu=wall / 2,
                             maxrss=100 << 20, repo_size=50 << 20)
    if target == "s3":
        r.proxy = {"PUT": puts, "GET": 2, "HEAD": 1, "LIST": 3, "DELETE": 0, "POST": 0, "COPY": 0,
                   "detail": {"PUT": puts}}
        if tool == "packvault":
            r.own = {"PUT": puts, "GET": 2, "HEAD": 0, "LIST": 3, "DELETE": 0, "COPY": 0}
    return r


def test_summary_table_and_json() -> None:
    results = []
    for run in (1, 2, 3):
        for target in ("local", "s3"):
            results.append(_result("restic", "backup-1", target, run, 2.0 * run, 10))
            results.append(_result("packvault", "backup-1", target, run, 1.0 * run, 5))
    results.append(_result("packvault", "check", "local", 1, 1.0, 0, status="failed"))
    rows = bench_run.summarize(results)
    by = {(r["target"], r["step"], r["tool"]): r for r in rows}
    pv = by[("s3", "backup-1", "packvault")]
    assert pv["wall"] == 2.0 and pv["proxy"]["PUT"] == 5
    assert pv["ratio_vs_restic"]["wall"] == pytest.approx(0.5)
    assert pv["ratio_vs_restic"]["requests"] == pytest.approx(11 / 16)
    assert pv["own_minus_proxy"] == {"HEAD": -1}
    assert by[("local", "check", "packvault")]["status"] == "failed"
    assert rows[0]["target"] == "local"

    table = bench_run.format_table(rows)
    assert "== target: local ==" in table and "== target: s3 ==" in table
    line = next(ln for ln in table.splitlines() if ln.startswith("backup-1") and "packvault" in ln
                and "proxy" in ln)
    assert "0.50" in line and "50.0 MiB" in line and "100.0 MiB" in line
    assert "failed" in table

    derived = bench_run.derive(rows, 2 * gen_dataset.GiB)
    assert derived["put_per_gib_first_backup"]["s3"] == {"packvault": 2.5, "restic": 5.0}
    assert "packvault 2.5" in bench_run.format_derived(derived)
    assert "HEAD -1" in bench_run.format_discrepancies(rows)
    json.loads(json.dumps({"summary": rows, "derived": derived}))


def test_gen_dataset_cli(tmp_path: Path) -> None:
    out = tmp_path / "d1"
    cmd = [sys.executable, str(BENCH / "gen_dataset.py"), "--seed", "1", "--size", "1MiB", "--out", str(out), "-q"]
    subprocess.run(cmd, check=True)
    assert json.loads((out / gen_dataset.MARKER_NAME).read_text())["seed"] == 1
    assert subprocess.run(cmd, capture_output=True).returncode != 0, "refuses a non-empty --out without --force"


def test_home_shaped_dataset_is_deterministic_and_mostly_small(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        out.mkdir()
        gen_dataset.gen_day1(7, 0, out, verbose=False, home_files=600)
    assert snapshot(a) == snapshot(b)
    sizes = [p.stat().st_size for p in a.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len(sizes) >= 600
    assert sum(1 for n in sizes if n <= 8 * 1024) / len(sizes) > 0.9  # mostly small files
    image = a / "vm" / "disk.img"
    st = image.stat()
    assert st.st_blocks * 512 < st.st_size / 2  # a sparse image: holes are not written
    day2 = tmp_path / "day2"
    day2.mkdir()
    gen_dataset.gen_day2(7, a, day2, verbose=False)
    assert (day2 / "vm" / "disk.img").stat().st_blocks * 512 < st.st_size / 2  # and stays sparse on day 2


@contextlib.contextmanager
def _upstream_answering_ok() -> Iterator[str]:
    """An HTTP server on a free port answering every GET with ``ok``; yields its URL."""
    import http.server
    import threading

    class Upstream(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _get_ok(url: str) -> None:
    import urllib.request

    with urllib.request.urlopen(url) as resp:
        assert resp.read() == b"ok"


def test_counting_proxy_snapshot_waits_for_requests_it_has_not_counted_yet(monkeypatch) -> None:
    """The proxy counts a request after relaying its answer: a snapshot read as soon as the client has the
    answer still includes it (the proxy's thread may not have got that far on a loaded machine)."""
    import time

    add = countingproxy.Counters.add

    def late_add(self, *args) -> None:
        time.sleep(0.5)  # the client has its answer; the proxy's thread has not counted it yet
        add(self, *args)

    monkeypatch.setattr(countingproxy.Counters, "add", late_add)
    with _upstream_answering_ok() as upstream, countingproxy.CountingProxy(upstream) as proxy:
        _get_ok(f"{proxy.url}/bucket/key")
        assert proxy.snapshot()["GET"] == 1


def test_counting_proxy_latency_holds_every_request() -> None:
    import time

    with _upstream_answering_ok() as upstream, countingproxy.CountingProxy(upstream, latency=0.05) as proxy:
        started = time.monotonic()
        for _ in range(3):
            _get_ok(f"{proxy.url}/bucket/key")
        assert time.monotonic() - started >= 0.15  # three requests, each held 50 ms at least
        # counted once relayed: the snapshot waits for the last one if it is not yet
        assert proxy.snapshot()["GET"] == 3


def test_restores_get_a_fresh_journaled_file_system_where_one_can_be_made(tmp_path: Path) -> None:
    import restorefs

    logged: list[str] = []
    reason = restorefs.unusable_reason(tmp_path)
    if reason is not None:  # not root, or no loop device: the benchmark says so and uses its work directory
        assert restorefs.choose("auto", tmp_path, logged.append) == "workdir"
        assert reason in logged[0]
        with pytest.raises(SystemExit, match="--restore-fs ext4"):
            restorefs.choose("ext4", tmp_path, logged.append)
        return
    assert restorefs.choose("auto", tmp_path, logged.append) == "ext4" and not logged
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the probe left nothing behind
    fresh = restorefs.FreshExt4(tmp_path / "fs.img", 128 * 1024 * 1024)
    at = tmp_path / "restore"
    fresh.mount(at)
    try:
        assert os.stat(at).st_dev != os.stat(tmp_path).st_dev
        device = next(line.split()[0] for line in Path("/proc/mounts").read_text().splitlines()
                      if line.split()[1] == str(at))
        features = subprocess.run(["dumpe2fs", "-h", device], capture_output=True, text=True).stdout
        assert "has_journal" in features
        assert fresh.device is not None and device == fresh.device
        loop = Path("/sys/block") / Path(device).name / "loop" / "dio"
        assert loop.read_text().strip() == "1"  # no second copy of the data in the image file's page cache
        (at / "f").write_bytes(b"x" * 10_000)
    finally:
        fresh.unmount()
    assert not os.path.ismount(at) and not (tmp_path / "fs.img").exists()
    assert not (Path("/sys/block") / Path(device).name / "loop").exists()  # detached


def test_a_restore_file_system_held_for_a_moment_is_unmounted_and_the_holder_named(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import restorefs

    if restorefs.unusable_reason(tmp_path) is not None:
        pytest.skip("no fresh file system here (not root, or no loop device)")
    fresh = restorefs.FreshExt4(tmp_path / "fs.img", 128 * 1024 * 1024)
    at = tmp_path / "restore"
    fresh.mount(at)
    held = os.open(at / "f", os.O_CREAT | os.O_WRONLY, 0o600)  # a process left behind in the restore target
    find_holders = restorefs.holders

    def named_then_gone(mountpoint: Path) -> list[str]:
        names = find_holders(mountpoint)  # the unmount was refused: the holder is named ...
        os.close(held)  # ... and goes away before the retry
        return names

    monkeypatch.setattr(restorefs, "holders", named_then_gone)
    try:
        fresh.unmount()
    finally:
        if os.path.ismount(at):  # the test failed: leave no mount or loop device behind
            subprocess.run(["umount", str(at)], check=False)
            subprocess.run(["losetup", "--detach", str(fresh.device)], check=False)
    assert not os.path.ismount(at) and not (tmp_path / "fs.img").exists()
    said = capsys.readouterr().err
    assert "busy after the restore" in said and f"{os.getpid()} " in said


def test_restore_file_system_falls_back_to_the_work_directory_and_says_why(tmp_path: Path) -> None:
    import restorefs

    logged: list[str] = []
    missing = ("no-such-mkfs-tool",)
    assert restorefs.choose("auto", tmp_path, logged.append, mkfs=missing) == "workdir"
    assert len(logged) == 1
    assert ("no-such-mkfs-tool is not installed" in logged[0]) or ("needs root" in logged[0])
    assert restorefs.choose("workdir", tmp_path, logged.append) == "workdir" and len(logged) == 1
    assert list(tmp_path.iterdir()) == []


def test_cores_alternates_the_pinnings_abba() -> None:
    import cores

    assert [cores.pinning_order(r, ["0", "0,1"]) for r in (1, 2, 3, 4)] == [
        ["0", "0,1"], ["0,1", "0"], ["0", "0,1"], ["0,1", "0"]]


def test_cores_summary_takes_medians_and_the_speedup_of_the_medians() -> None:
    import cores

    def run(tool: str, cpus: str, wall: float, cpu: float, rc: int = 0) -> dict:
        return {"tool": tool, "cpus": cpus, "wall": wall, "user": cpu * 0.75, "sys": cpu * 0.25, "rc": rc}

    runs = [run("pv", "0", 3.0, 3.0), run("pv", "0", 3.4, 3.3), run("pv", "0", 2.8, 2.8),
            run("pv", "0,1", 1.6, 2.8), run("pv", "0,1", 2.0, 3.0), run("pv", "0,1", 1.5, 2.7),
            run("pv", "0,1", 0.1, 0.1, rc=2)]  # a failed backup is no measurement
    summary = cores.summarize(runs, ["0", "0,1"])["pv"]
    one, two = summary["pinnings"]["0"], summary["pinnings"]["0,1"]
    assert (one["runs"], two["runs"]) == (3, 3)
    assert one["wall"] == pytest.approx(3.0) and two["wall"] == pytest.approx(1.6)
    assert two["cpu"] == pytest.approx(2.8)
    assert two["cpu_per_wall"] == pytest.approx(2.8 / 1.6)  # the median of the runs' ratios (1.5, 1.75, 1.8)
    assert summary["speedup"] == pytest.approx(3.0 / 1.6)
    assert "speedup 0 -> 0,1: 1.88x" in cores.format_summary(cores.summarize(runs, ["0", "0,1"]), ["0", "0,1"])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or not shutil.which("taskset"),
                    reason="needs two CPUs and taskset")
@pytest.mark.parametrize("delete_trees", [False, True], ids=["set-aside", "deleted"])
def test_cores_runs_real_first_backups_on_one_cpu_and_on_two(tmp_path: Path, delete_trees: bool) -> None:
    import cores

    packvault = Path(sys.executable).with_name("packvault")
    one, two = sorted(os.sched_getaffinity(0))[:2]
    cpu_sets = [str(one), f"{one},{two}"]
    out = tmp_path / "cores.json"
    argv = ["--tools", "packvault", "--packvault-bin", str(packvault), "--home-files", "0", "--size", "2MiB",
            "--rounds", "2", "--cpus", *cpu_sets, "--data-dir", str(tmp_path / "data"),
            "--work-dir", str(tmp_path / "work"), "--json-out", str(out)] + (["--delete-trees"] if delete_trees else [])
    assert cores.main(argv) == 0
    doc = json.loads(out.read_text())
    assert [(r["round"], r["cpus"], r["rc"]) for r in doc["runs"]] == [
        (1, cpu_sets[0], 0), (1, cpu_sets[1], 0), (2, cpu_sets[1], 0), (2, cpu_sets[0], 0)]
    assert all(r["wall"] > 0 and r["user"] > 0 for r in doc["runs"])
    assert doc["summary"]["packvault"]["speedup"] > 0
    assert list((tmp_path / "work").iterdir()) == []  # the work tree is removed
