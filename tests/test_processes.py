"""Worker pools (``processes.worker_pool``): their modules are loaded once, not by every worker, and each
worker still gets the environment and working directory of the moment its pool was made."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script_env(**extra: str) -> dict[str, str]:
    """The environment of a script run in an interpreter of its own (a pools' server is one per process):
    this checkout importable, and ``extra``."""
    return {**os.environ, **extra, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}


def _run_script(script: str, *args: str, cwd: Path | None = None, **extra: str) -> str:
    """Run ``script`` with ``args`` (``_script_env(**extra)``); its standard output, once it succeeded."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args], env=_script_env(**extra), capture_output=True, text=True,
        timeout=120, cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from packvault.processes import start_workers, worker_pool
    from tests.support import importcount

    if __name__ == "__main__":
        first = worker_pool(2, importcount.start, ())
        for future in start_workers(first, 2):
            future.result(timeout=60)
        pids = {first.submit(os.getpid).result(timeout=60) for _ in range(20)}
        first.shutdown()
        # the server is running now, with the environment and directory it started with
        os.environ["PV_TEST_LATER"] = "set after the first pool"
        os.chdir(sys.argv[1])
        later = worker_pool(1, importcount.start, ())
        seen = later.submit(importcount.environment, "PV_TEST_LATER").result(timeout=60)
        later.shutdown()
        print(os.getpid(), sorted(pids), seen[0], seen[1])
    """
)


def test_a_pool_loads_its_modules_once_and_workers_see_the_callers_state(tmp_path: Path):
    log = tmp_path / "imports.log"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    output = _run_script(SCRIPT, str(elsewhere), cwd=tmp_path, PV_TEST_IMPORT_LOG=str(log))
    main_pid, *rest = output.split(maxsplit=1)
    importers = log.read_text().split()
    # the caller imported it, and so did the one server process the workers are forked from; no worker did
    assert importers[0] == main_pid
    assert len(importers) == 2, importers
    assert f"set after the first pool {elsewhere}" in rest[0]


BURN = textwrap.dedent(
    """
    from packvault.processes import start_workers, worker_pool
    from tests.support import importcount

    if __name__ == "__main__":
        pool = worker_pool(2, importcount.start, ())
        for future in start_workers(pool, 2):
            future.result(timeout=60)
        pids = {f.result(timeout=60) for f in [pool.submit(importcount.burn, 0.5) for _ in range(2)]}
        assert len(pids) == 2, pids
        pool.shutdown()
    """
)


def test_the_workers_cpu_time_is_the_commands(tmp_path: Path):
    """``time packvault ...`` (and the benchmark) count what the workers did: their server is reaped before
    the process exits, so the workers' CPU time reaches whoever waits for the command."""
    env = _script_env(PV_TEST_IMPORT_LOG=str(tmp_path / "imports.log"))
    proc = subprocess.Popen([sys.executable, "-c", BURN], env=env, cwd=tmp_path)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert usage.ru_utime + usage.ru_stime >= 0.95  # two workers' 0.5 s each, and a little of the caller's


EARLY = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from packvault.processes import start_server_early, start_workers, worker_pool

    if __name__ == "__main__":
        log = Path(os.environ["PV_TEST_IMPORT_LOG"])
        start_server_early("tests.support.importcount")
        deadline = time.monotonic() + 60
        # the server imports it on its own (a line once written: the file is created before the line is in it)
        while not (log.exists() and log.read_text().endswith("\\n")) and time.monotonic() < deadline:
            time.sleep(0.01)
        server_first = log.read_text().split()
        from tests.support import importcount

        pool = worker_pool(2, importcount.start, ())
        for future in start_workers(pool, 2):
            future.result(timeout=60)
        pool.shutdown()
        print(os.getpid(), " ".join(server_first))
    """
)


def test_a_server_started_early_has_imported_the_workers_module_before_any_pool(tmp_path: Path):
    """``start_server_early``: the server imports while the command does other work, and the first pool's
    workers are forked from it (no worker imports the module itself)."""
    log = tmp_path / "imports.log"
    main_pid, server_pid = _run_script(EARLY, cwd=tmp_path, PV_TEST_IMPORT_LOG=str(log)).split()
    assert server_pid != main_pid  # imported by another process before this one imported it
    assert log.read_text().split() == [server_pid, main_pid]  # and by no worker


def test_a_server_that_cannot_start_early_is_left_to_the_pool(monkeypatch):
    import multiprocessing.forkserver

    from packvault import processes

    def fail() -> None:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", fail)
    monkeypatch.setattr(processes, "_reap_server_at_exit", lambda: None)
    processes.start_server_early("tests.support.importcount")  # no exception: the pool will meet it


def test_only_a_backup_of_local_files_starts_the_readers_server_early():
    from packvault.archive.source_paths import reads_local_files

    assert reads_local_files(["/home/me", "rel/dir"])
    assert not reads_local_files(["-"])  # standard input
    assert not reads_local_files(["pg_dump", "db"], stdin_command=True)
    assert not reads_local_files(["s3://bucket/prefix"])


def test_the_commands_that_start_the_server_early(pv, tmp_path, monkeypatch):
    """A backup of local files starts its readers' server before anything else (``cli/early_readers.py``),
    the restore of a whole archive into a directory before it opens the repository; a restore of a few
    paths, a dry run and a listing do not."""
    from packvault.archive import restorers
    from packvault.cli import early_readers

    started: list[str] = []
    for module in (early_readers, restorers):
        monkeypatch.setattr(module, "start_server_early", lambda module, preload=(): started.append(module))
    monkeypatch.setenv("PACKVAULT_READ_PROCESSES", "2")  # as on a machine of two cores or more
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    repo = tmp_path / "repo"
    pv("init", "--encryption", "repokey", repo)
    pv("create", f"{repo}::one", src)
    assert started == ["packvault.archive.readerprocess"]
    started.clear()
    pv("extract", f"{repo}::one", "--target", tmp_path / "whole")
    assert started == ["packvault.archive.restorers"]
    started.clear()
    pv("extract", f"{repo}::one", str(src / "a").lstrip("/"), "--target", tmp_path / "part")
    pv("extract", "--dry-run", f"{repo}::one", "--target", tmp_path / "dry")
    pv("list", repo)
    assert started == []


def test_the_early_server_imports_the_module_of_the_readers_initializer():
    """``early_readers`` names the module by a string (importing it would be the wait it avoids): the name
    must be that of the module whose ``start_reader`` the pool runs, or the server would import the wrong
    thing and every reader would import the right one itself."""
    from packvault.archive import readerprocess
    from packvault.cli import early_readers

    assert early_readers.READER_PROCESS_MODULE == readerprocess.__name__ == readerprocess.start_reader.__module__


MEANWHILE = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from packvault.processes import start_server_early, start_workers_meanwhile, worker_pool
    from tests.support import importcount

    if __name__ == "__main__":
        start_server_early("tests.support.slowimport")
        pool = worker_pool(2, importcount.start, ())
        started = start_workers_meanwhile(pool, 2)  # returns while the server still imports
        Path(os.environ["PV_TEST_IMPORT_GATE"]).touch()
        deadline = time.monotonic() + 60
        while len(started) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        print(len(started), all(future.result(timeout=60) != os.getpid() for future in started))
        pool.shutdown()
    """
)


def test_workers_start_meanwhile_without_waiting_for_their_servers_imports(tmp_path: Path):
    """``start_workers_meanwhile`` returns at once: the server's imports cannot end before it returns (they
    wait for a gate opened afterwards), so a version that waited for them would hang until the timeout."""
    output = _run_script(MEANWHILE, cwd=tmp_path, PV_TEST_IMPORT_GATE=str(tmp_path / "gate"))
    assert output.split() == ["2", "True"]


SERVER_END = textwrap.dedent(
    """
    import multiprocessing.forkserver, os
    from packvault.processes import start_server_early, start_workers, worker_pool
    from tests.support import importcount, teardownmark  # noqa: F401 - the command's own exit handler

    if __name__ == "__main__":
        start_server_early("tests.support.teardownmark")
        pool = worker_pool(2, importcount.start, ())
        for future in start_workers(pool, 2):
            future.result(timeout=60)
        pool.shutdown()
        server = multiprocessing.forkserver._forkserver._forkserver_pid
        multiprocessing.forkserver._forkserver._stop()
        print(os.getpid(), server)
    """
)


def test_the_server_ends_without_the_interpreters_teardown(tmp_path: Path):
    """The command waits for the server at exit; its teardown (unloading what the workers needed) was time
    both cores sat idle.  ``serverexit`` ends it first: an exit handler registered by a module it imported
    before never runs there, while the command's own does."""
    log = tmp_path / "imports.log"
    main_pid, server_pid = _run_script(SERVER_END, cwd=tmp_path, PV_TEST_IMPORT_LOG=str(log)).split()
    notes = log.read_text().splitlines()
    assert f"teardown {main_pid}" in notes  # the mark works: the command went through its teardown
    assert f"teardown {server_pid}" not in notes


REAP = textwrap.dedent(
    """
    import os, time
    from packvault.serverexit import reap_children

    def child(seconds):
        pid = os.fork()
        if pid == 0:
            time.sleep(seconds)
            os._exit(0)
        return pid

    quick = [child(0.05), child(0.1)]
    reap_children(time.monotonic() + 30)
    try:
        os.waitpid(-1, os.WNOHANG)
        print("a child was left")
    except ChildProcessError:
        print("all reaped")
    slow = child(60)
    started = time.monotonic()
    reap_children(time.monotonic() + 0.2)
    os.kill(slow, 0)  # still running: left, not waited for
    print("left after", "short" if time.monotonic() - started < 30 else "long")
    os.kill(slow, 9)
    os.waitpid(slow, 0)
    """
)


def test_the_server_reaps_its_children_before_it_ends_and_leaves_a_hung_one():
    """What ``serverexit`` does first: every child that ended is waited for (so its CPU time is counted),
    and one still running at the deadline is left rather than holding up the command's exit."""
    assert _run_script(REAP).split("\n")[:2] == ["all reaped", "left after short"]


def test_the_console_script_guesses_a_backup_of_local_files_from_the_words(monkeypatch):
    """``start_readers_before_parsing``: the server starts for what looks like a backup of local files, and
    not for standard input, a command's output, S3 objects or another command."""
    from packvault.cli import early_readers

    started: list[str] = []
    monkeypatch.setattr(early_readers, "start_server_early", lambda module: started.append(module))
    monkeypatch.setattr(early_readers, "usable_processes", lambda requested: 2)

    def starts(*argv: str) -> bool:
        started.clear()
        early_readers.start_readers_before_parsing(list(argv))
        return started == [early_readers.READER_PROCESS_MODULE]

    assert starts("create", "/srv/repo::monday", "/home/me", "rel/dir")
    assert starts("create", "--exclude", "*.tmp", "s3://bucket/repo::monday", "/home/me")  # an S3 repository
    assert starts("create", "::monday", "/home/me")  # PACKVAULT_REPO names the repository
    assert not starts("create", "/srv/repo::db", "-")
    assert not starts("create", "--stdin-from-command", "/srv/repo::db", "pg_dump", "db")
    assert not starts("create", "/srv/repo::objects", "s3://bucket/prefix")
    assert not starts("list", "/srv/repo")
    assert not starts()
    monkeypatch.setattr(early_readers, "usable_processes", lambda requested: 0)  # one core
    assert not starts("create", "/srv/repo::monday", "/home/me")


def test_a_server_started_on_a_wrong_guess_is_stopped_once_the_arguments_are_parsed(monkeypatch):
    """``start_readers_early`` decides again from the parsed arguments and the settings: the readers turned
    off (PACKVAULT_READ_PROCESSES=0) or standard input stops the server the words made it start."""
    import argparse

    from packvault.cli import early_readers
    from packvault.cli.run import Run

    calls: list[str] = []
    monkeypatch.setattr(early_readers, "start_server_early", lambda module: calls.append("start"))
    monkeypatch.setattr(early_readers, "stop_server", lambda: calls.append("stop"))
    local = argparse.Namespace(paths=["/home/me"], stdin_from_command=False)
    early_readers.start_readers_early(local, Run.from_environ())
    assert calls == ["start"]
    calls.clear()
    monkeypatch.setenv("PACKVAULT_READ_PROCESSES", "0")
    early_readers.start_readers_early(local, Run.from_environ())
    monkeypatch.delenv("PACKVAULT_READ_PROCESSES")
    early_readers.start_readers_early(argparse.Namespace(paths=["-"], stdin_from_command=False), Run.from_environ())
    assert calls == ["stop", "stop"]


BEFORE_PARSING = textwrap.dedent(
    """
    import sys
    from packvault.cli import early_readers

    seen = []
    early_readers.start_server_early = lambda module: seen.append(("packvault.cli.parser" in sys.modules, module))
    early_readers.usable_processes = lambda requested: 2
    sys.argv = ["packvault", "create", "--help"]
    from packvault.cli import entry

    try:
        entry.main()
    except SystemExit as exc:
        print(exc.code, seen)
    """
)


def test_the_console_script_starts_the_server_before_the_command_line_is_loaded():
    """The point of ``cli/entry.py``: the server is started before the argument parser's modules load."""
    assert _run_script(BEFORE_PARSING).strip().splitlines()[-1] == "0 [(False, 'packvault.archive.readerprocess')]"


def test_stopping_the_server_ends_it_and_a_later_pool_starts_another(tmp_path: Path):
    script = textwrap.dedent(
        """
        import multiprocessing.forkserver, os
        from packvault.processes import start_server_early, stop_server, start_workers, worker_pool
        from tests.support import importcount

        if __name__ == "__main__":
            start_server_early("tests.support.importcount")
            first = multiprocessing.forkserver._forkserver._forkserver_pid
            stop_server()
            try:
                os.kill(first, 0)
                print("still running")
            except ProcessLookupError:
                print("stopped")
            pool = worker_pool(1, importcount.start, ())
            print(pool.submit(os.getpid).result(timeout=60) != os.getpid())
            pool.shutdown()
        """
    )
    assert _run_script(script, PV_TEST_IMPORT_LOG=str(tmp_path / "log")).split() == ["stopped", "True"]


KILLED_OWNER_SCRIPT = textwrap.dedent(
    """
    import multiprocessing.forkserver, os, signal, sys
    from packvault.processes import start_workers, worker_pool
    from tests.support import importcount

    if __name__ == "__main__":
        pool = worker_pool(2, importcount.start, ())
        workers = [future.result() for future in start_workers(pool, 2)]
        server = multiprocessing.forkserver._forkserver._forkserver_pid
        print(*workers, server, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or kill -9 would end a backup
    """
)


def _alive(pid: int) -> bool:
    """A process that still runs (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_and_their_server_end_when_the_process_that_started_them_is_killed(tmp_path: Path):
    """Killed with SIGKILL (no exit handler runs), the pool's owner leaves workers blocked on a task queue
    whose both ends they hold, and a server they keep alive: they used to stay forever, each holding its
    memory.  Each worker watches its pool's owner and ends with it; the server then sees no one left.
    (The output goes to files: the workers hold the script's descriptors, and a pipe would not end.)"""
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        returncode = subprocess.run([sys.executable, "-c", KILLED_OWNER_SCRIPT], env=_script_env(), stdout=stdout,
                                    stderr=stderr, timeout=120, cwd=ROOT).returncode
    assert returncode == -signal.SIGKILL, err.read_text()
    pids = [int(pid) for pid in out.read_text().split()]
    assert len(pids) == 3
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in pids if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []
