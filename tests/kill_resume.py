"""Kill-and-resume check (issue 15): a tiny ``galrec train`` run is killed with a real SIGKILL
at seeded random points, including inside checkpoint writes and always once between
save_checkpoint's two renames, resumed with ``--resume``, and must end bit-identical to the
uninterrupted run: torch.equal on every tensor group of ``last/`` and ``best/`` (adapter
included), the same state.json, metrics (timings aside) and result.json, and no stale
checkpoint copy left.

Kill points: ``<point>:<n>`` is galrec.training.checkpoint's ``GALREC_KILL_AT`` hook (the process
kills itself at that point of its n-th checkpoint write); ``step:<k>`` is a kill from outside as
soon as step k's metrics record appears, which lands wherever the run then is (a step, a validation,
a write). Every run is a fork of this process, which imports torch once and computes nothing
with it before the last run, so a run costs seconds, not an interpreter start.

Usage (repository root):  .venv/bin/python tests/kill_resume.py --points 20 [--seed 0] [--work DIR]
Prints one line per point; exits 1 unless every point resumed bit-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Imported here, before the forks, so that no run imports them again:
import galrec.model.backbone
import galrec.training.trainer  # noqa: F401
import torch
from galrec.cli import main
from galrec.training.checkpoint import KILL_POINTS, load_checkpoint
from safetensors.torch import load_file
from train_helpers import TINY_OVERRIDES

STEPS = 8
ARGS = (
    "train", "--config", "gal_rec", *TINY_OVERRIDES, f"train.steps={STEPS}",
    "train.checkpoint_every=2", "train.eval_every=2", "train.patience=0",
)  # fmt: skip
TIMINGS = ("time", "elapsed_s", "train/prompts_per_s", "train/tokens_per_s",
           "train/data_wait_share", "train/data_wait_share_total")  # fmt: skip


def train(out: Path, *flags: str, kill_at: str | None = None) -> int:
    """Run ``galrec train`` into ``out`` in a forked child (output to ``out``.log); its exit
    status, negative when a signal ended it. ``kill_at``: a kill point (module docstring)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            log = os.open(f"{out}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.environ.pop("GALREC_KILL_AT", None)
            if kill_at is not None and not kill_at.startswith("step:"):
                os.environ["GALREC_KILL_AT"] = kill_at
            main(args=[*ARGS, "--out", str(out), *flags], standalone_mode=False)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    if kill_at is not None and kill_at.startswith("step:"):
        _kill_after_step(pid, out / "metrics.jsonl", int(kill_at.split(":")[1]))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _kill_after_step(pid: int, metrics: Path, step: int) -> None:
    """SIGKILL ``pid`` as soon as ``metrics`` holds step ``step``'s training record."""
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        lines = metrics.read_text().splitlines() if metrics.is_file() else []
        if any((r := json.loads(line))["step"] == step and "train/loss" in r for line in lines):
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.005)


def kill_points(reference: Path, count: int, seed: int) -> list[str]:
    """``count`` seeded points among every checkpoint write of the reference run (each point
    of it) and steps 1..STEPS-2; the first always between the renames."""
    records = [json.loads(line) for line in (reference / "metrics.jsonl").open()]
    best, improved = -float("inf"), 0  # best/ is written whenever validation improves
    for record in records:
        if "valid/ndcg@10" in record and record["valid/ndcg@10"] > best:
            best, improved = record["valid/ndcg@10"], improved + 1
    writes = improved + STEPS // 2  # last/ every 2 steps
    between = [f"between-renames:{n}" for n in range(1, writes + 1)]
    others = [f"{p}:{n}" for p in KILL_POINTS for n in range(1, writes + 1)]
    others += [f"step:{k}" for k in range(1, STEPS - 1)]
    rng = random.Random(seed)
    first = rng.choice(between)
    others.remove(first)
    return [first, *rng.sample(others, count - 1)]


def differences(reference: Path, run: Path) -> list[str]:
    """What differs between two finished run directories (empty: bit-identical)."""
    found = []
    for name in ("last", "best"):
        (a, a_state), (b, b_state) = load_checkpoint(reference / name), load_checkpoint(run / name)
        a["adapter"] = load_file(str(reference / name / "adapter" / "adapter_model.safetensors"))
        b["adapter"] = load_file(str(run / name / "adapter" / "adapter_model.safetensors"))
        for group in sorted(a.keys() | b.keys()):
            if a.get(group, {}).keys() != b.get(group, {}).keys():
                found.append(f"{name}/{group}: other tensors")
            elif not all(torch.equal(t, b[group][k]) for k, t in a[group].items()):
                found.append(f"{name}/{group}: other values")
        if a_state != b_state:
            found.append(f"{name}/state.json")
    if _metrics(reference) != _metrics(run):
        found.append("metrics.jsonl")
    if json.loads((reference / "result.json").read_text()) != json.loads(
        (run / "result.json").read_text()
    ):
        found.append("result.json")
    found += [f"stale {p.name}" for p in run.glob(".*") if p.name != ".galrec-cache"]
    return found


def _metrics(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in records]


def check(points: int, seed: int, work: Path) -> bool:
    """Run the reference and ``points`` killed-and-resumed runs; print a line each."""
    reference = work / "reference"
    if train(reference) != 0:
        raise SystemExit(f"the uninterrupted run failed; see {reference}.log")
    runs = []
    for index, point in enumerate(kill_points(reference, points, seed)):
        out = work / f"p{index:02d}-{point.replace(':', '-')}"
        killed = train(out, kill_at=point)
        resumed = train(out, "--resume")
        runs.append((point, out, killed, resumed))
    ok = 0
    for point, out, killed, resumed in runs:
        notes = [
            line for line in Path(f"{out}.log").read_text().splitlines() if "--resume:" in line
        ]
        if killed != -signal.SIGKILL:
            problems = [f"not killed (exit {killed}): the point was never reached"]
        elif resumed != 0:
            problems = [f"resume failed (exit {resumed}); see {out}.log"]
        else:
            problems = differences(reference, out)
        ok += not problems
        verdict = "identical" if not problems else "DIFFERENT: " + ", ".join(problems)
        print(f"{point:20s} {verdict}  [{' | '.join(n.removeprefix('--resume: ') for n in notes)}]")
    print(f"{ok}/{len(runs)} seeded kill points resumed bit-identical (seed {seed}, {work})")
    return ok == len(runs)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="Default: a new temporary dir.")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="galrec-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    sys.exit(0 if check(args.points, args.seed, work) else 1)


if __name__ == "__main__":
    cli()
