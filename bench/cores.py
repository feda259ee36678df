#!/usr/bin/env python3
"""How a first backup scales from one core to two: the same backup pinned with ``taskset`` to one CPU and to
two, for each tool, the pinnings interleaved.

Why a harness of its own: ``run.py --taskset 0`` and ``run.py --taskset 0,1`` are two series run one after
the other, minutes apart, each of every step.  On a VM whose speed drifts over minutes (a host that takes back
the guest's free memory, so that fresh pages are faulted in slowly for a while), the two series met different
machines, and the speedup read off them moved by more than what was being measured.  Here each round runs
the first backup of every tool on one core and on two, back to back, and the order of the pinnings is
reversed every other round (ABBA), so drift hits both sides alike; medians over ``--rounds`` damp the rest.

Each backup is what ``run.py``'s ``backup-1`` step is: a fresh ``cp -a`` copy of day 1, a fresh repository
(``init``, not timed), ``sync``, then the tool's own backup command measured alone (``measure_child.py``).

Each backup's trees are set aside until the end, as in ``run.py``; ``--delete-trees`` deletes them at once
instead.  The difference matters on a VM whose host takes back the memory the guest frees: set aside, the
trees hold on to their page cache, and every later backup writes into memory the host has to fault in again;
deleted, the next backup reuses the pages they held (bench/README.md, twentieth round).

Reported per tool and pinning: median wall, median CPU (user + system), median of each run's CPU / wall; and
the speedup, the one-core median wall over the two-core one.

Usage::

    python bench/cores.py --home-files 25000 --rounds 4
    python bench/cores.py --home-files 25000 --tools packvault --cpus 0 0,1 --json-out cores.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import gen_dataset
from run import (
    BENCH_DIR,
    Session,
    build_tools,
    copy_tree,
    ensure_dataset,
    run_measured,
    set_aside,
)

from packvault.units import parse_size


def _measure_first_backup(tool, sdir: Path, day1: Path, pin: list[str]) -> dict:  # noqa: ANN001 - run.Tool
    """One first backup of day 1 into a fresh repository, pinned by ``pin``: wall, user, sys, rc."""
    sdir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RESTIC_", "BORG_", "PACKVAULT_"))}
    s = Session(tool=tool.name, target="local", run=0, dir=sdir, src=sdir / "src", env=env, pin=pin,
                repo_dir=sdir / "repo")
    copy_tree(day1, s.src)
    tool.setup_env(s)
    restore_dir = sdir / "restore"
    for argv in tool.plan("init", s, restore_dir).cmds:
        init = run_measured(argv, s.env, s.dir, s.logdir, "init")
        if init.rc != 0:
            return {"rc": init.rc, "wall": 0.0, "user": 0.0, "sys": 0.0, "error": init.stderr.strip()[-300:]}
    (argv,) = tool.plan("backup-1", s, restore_dir).cmds
    os.sync()  # what the copy left dirty is written back before, not during, the measured command
    res = run_measured([*pin, *argv], s.env, s.dir, s.logdir, "backup-1")
    out = {"rc": res.rc, "wall": res.wall, "user": res.user, "sys": res.sys}
    if res.rc not in (0, 1):
        out["error"] = res.stderr.strip()[-300:]
    return out


def pinning_order(round_no: int, cpu_sets: list[str]) -> list[str]:
    """The pinnings of one round (counted from 1): as given in odd rounds, reversed in even ones (ABBA)."""
    return list(cpu_sets) if round_no % 2 else list(reversed(cpu_sets))


def summarize(runs: list[dict], cpu_sets: list[str]) -> dict:
    """Medians per tool and pinning, and each tool's speedup from the first pinning to the last."""
    summary: dict = {}
    for tool in sorted({r["tool"] for r in runs}):
        per_pin = {}
        for cpus in cpu_sets:
            ok = [r for r in runs if r["tool"] == tool and r["cpus"] == cpus and r["rc"] in (0, 1) and r["wall"] > 0]
            if not ok:
                continue
            per_pin[cpus] = {
                "runs": len(ok),
                "wall": statistics.median(r["wall"] for r in ok),
                "cpu": statistics.median(r["user"] + r["sys"] for r in ok),
                "cpu_per_wall": statistics.median((r["user"] + r["sys"]) / r["wall"] for r in ok),
                "walls": [round(r["wall"], 3) for r in ok],
            }
        first, last = cpu_sets[0], cpu_sets[-1]
        speedup = per_pin[first]["wall"] / per_pin[last]["wall"] if first in per_pin and last in per_pin else None
        summary[tool] = {"pinnings": per_pin, "speedup": speedup}
    return summary


def format_summary(summary: dict, cpu_sets: list[str]) -> str:
    lines = [f"{'tool':10} {'CPUs':6} {'runs':>4} {'wall':>7} {'CPU':>7} {'CPU/wall':>8}  walls"]
    for tool, entry in summary.items():
        for cpus in cpu_sets:
            p = entry["pinnings"].get(cpus)
            if p is None:
                continue
            walls = " ".join(f"{w:.2f}" for w in p["walls"])
            lines.append(f"{tool:10} {cpus:6} {p['runs']:4d} {p['wall']:7.2f} {p['cpu']:7.2f} {p['cpu_per_wall']:8.2f}"
                         f"  {walls}")
        if entry["speedup"] is not None:
            lines.append(f"{tool:10} speedup {cpu_sets[0]} -> {cpu_sets[-1]}: {entry['speedup']:.2f}x")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="First backup pinned to one core and to two, interleaved.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4, help="rounds; each runs every tool on every pinning once")
    ap.add_argument("--cpus", nargs="+", default=["0", "0,1"], help="taskset CPU lists, fewest first")
    ap.add_argument("--home-files", type=int, metavar="N", default=25000,
                    help="home-directory-shaped dataset of N files (0: the --size dataset instead)")
    ap.add_argument("--size", default="1GiB", help="day-1 dataset size when --home-files is 0")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tools", default="packvault,restic", help="comma list; missing tools are skipped")
    ap.add_argument("--packvault-bin", metavar="EXE")
    ap.add_argument("--restic-bin", metavar="EXE")
    ap.add_argument("--borg-bin", metavar="EXE")
    ap.add_argument("--data-dir", type=Path, default=BENCH_DIR / "data", help="datasets (reused between runs)")
    ap.add_argument("--work-dir", type=Path, default=BENCH_DIR / "work", help="repositories, copies, logs")
    ap.add_argument("--delete-trees", action="store_true",
                    help="delete each backup's source copy and repository at once, so that the next backup reuses "
                    "the memory they held (default: set aside until the end, as run.py does)")
    ap.add_argument("--json-out", type=Path, help="write every run and the summary here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if shutil.which("taskset") is None:
        raise SystemExit("taskset not found (util-linux)")
    tools = build_tools(args, log)
    if not tools:
        raise SystemExit("no tool available")
    size = parse_size(args.size, what="--size")
    day1, _day2, dataset_bytes = ensure_dataset(args.data_dir, args.seed, size, log, args.home_files or None)
    work = args.work_dir / f"cores-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True)
    runs: list[dict] = []
    try:
        for round_no in range(1, args.rounds + 1):
            for cpus in pinning_order(round_no, args.cpus):
                for tool in tools:
                    sdir = work / f"r{round_no}-{tool.name}-cpus{cpus.replace(',', '_')}"
                    result = _measure_first_backup(tool, sdir, day1, ["taskset", "-c", cpus])
                    result.update(tool=tool.name, cpus=cpus, round=round_no)
                    runs.append(result)
                    cpu = result["user"] + result["sys"]
                    log(f"round {round_no} {tool.name:9} CPUs {cpus:5} rc {result['rc']} wall {result['wall']:6.2f}s "
                        f"CPU {cpu:6.2f}s CPU/wall {cpu / result['wall'] if result['wall'] else 0:5.2f}"
                        + (f"  {result['error']}" if "error" in result else ""))
                    if args.delete_trees:
                        shutil.rmtree(sdir)
                    else:
                        set_aside(sdir, work / ".trash")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(runs, args.cpus)
    shape = f"home-shaped, {args.home_files} files, " if args.home_files else ""
    trees = "deleted after each backup" if args.delete_trees else "set aside until the end"
    print(f"first backup, local; dataset: {shape}{gen_dataset.fmt_size(dataset_bytes)} (seed {args.seed}); "
          f"{args.rounds} rounds, pinnings alternated ABBA; trees {trees}; medians")
    print(format_summary(summary, args.cpus))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
