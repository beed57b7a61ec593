"""Who may train in a run directory: a new run needs one that holds no run (or ``overwrite``),
``resume`` continues the run there from its newest complete checkpoint, and a resumed run whose
config changed in a way that can change its result needs ``allow_config_change``.

Before this, a new run in an old run's directory kept the old ``dataset/``, features and
``best/`` (its numbers came partly from the old run), and ``--resume`` after a kill inside a
checkpoint write, or with another config, started or continued silently.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from galrec.config import config_from_dict
from galrec.training.checkpoint import STATE_FILE, recover_checkpoint

CHECKPOINTS = ("last", "best")
CHANGES_FILE = "config_changes.jsonl"

RUN_FILE = "run.json"
HISTORY_FILE = "history.jsonl"


#: Files and directories a run writes into its directory (galrec.training.run,
#: galrec.training.trainer, and galrec.experiments.registry for ``galrec compare``); ``overwrite``
#: deletes exactly these (and the checkpoints' staging copies), never anything else found there.
RUN_ENTRIES = (
    "config.yaml", CHANGES_FILE, "dataset", "tokenizer.json", "tokenizer", "smollm2-tokenizer",
    "features.npy", "features.tmp.npy", "cf_vectors.npy", "cf_vectors.tmp.npy",
    "prior.safetensors", *CHECKPOINTS, "metrics.jsonl", "metrics.jsonl.tmp", "result.json",
    "tensorboard", RUN_FILE, HISTORY_FILE, "eval_test", "export",
)  # fmt: skip

#: What marks a directory as holding a run (any one of them).
RUN_MARKERS = ("config.yaml", *CHECKPOINTS, "metrics.jsonl", "result.json")

#: Config keys a resumed run may change without ``allow_config_change``: none of them changes a
#: weight or a metric. ``out_dir`` is where the run was (a moved directory resumes);
#: ``train.progress`` is the progress output, ``train.tensorboard`` a copy of the records;
#: ``train.log_every`` thins which steps' records ``metrics.jsonl`` keeps, not their values;
#: ``train.checkpoint_every`` only decides where a later resume may start (resuming from any
#: checkpoint is bit-identical). Everything else may change the result (``train.threads`` and
#: ``train.device`` the floating-point reductions, ``train.steps`` the learning-rate schedule)
#: and needs the flag.
NEUTRAL_KEYS = frozenset(
    {"out_dir", "train.progress", "train.tensorboard", "train.log_every", "train.checkpoint_every"}
)


class RunDirError(ValueError):
    """The run directory cannot be used as asked; the one-line message says why and which flag
    would allow it."""


@dataclass
class Claim:
    """How a trainer took its run directory over."""

    checkpoint: Path | None
    """The checkpoint to continue from (None: start from step 0)."""
    notes: list[str] = field(default_factory=list)
    """What was found and done, one line each (printed by ``galrec train``)."""


def _checkpoint_copies(out_dir: Path) -> list[Path]:
    """Staging and superseded checkpoint copies (``.last.tmp-PID``, ``.best.old-PID`` ...)."""
    return [p for name in CHECKPOINTS for p in out_dir.glob(f".{name}.*-*")]


def owned_entries(out_dir: Path) -> list[Path]:
    """The galrec-owned entries of ``out_dir``: :data:`RUN_ENTRIES` and checkpoint copies."""
    entries = [out_dir / name for name in RUN_ENTRIES if (out_dir / name).exists()]
    return sorted(entries + _checkpoint_copies(out_dir))


def holds_run(out_dir: Path) -> bool:
    """Whether a run has trained (or started training) in ``out_dir``."""
    markers = any((out_dir / name).exists() for name in RUN_MARKERS)
    return markers or bool(_checkpoint_copies(out_dir))


def clear_run(out_dir: Path) -> list[str]:
    """Delete the galrec-owned entries of ``out_dir``; the names deleted."""
    removed = owned_entries(out_dir)
    _remove(removed)
    return [p.name for p in removed]


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextmanager
def undone_on_error(out_dir: Path) -> Iterator[None]:
    """When the block fails, delete the galrec-owned entries it added to ``out_dir`` (and
    ``out_dir`` itself when the block created it and nothing else is left in it).

    A run that fails while being built (a damaged dataset, an unknown backbone, Ctrl-C during
    the text features) then leaves its directory as it found it, not a ``config.yaml`` that
    makes the next attempt "another run" needing ``--overwrite``.
    """
    existed = out_dir.exists()
    before = set(owned_entries(out_dir))
    try:
        yield
    except BaseException:
        _remove([path for path in owned_entries(out_dir) if path not in before])
        if not existed and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old, new) for every value that differs (``old`` normalised by
    :func:`galrec.config.config_from_dict`, so keys added since it was saved hold defaults)."""
    before, after = _flat(config_from_dict(old).to_dict()), _flat(new)
    return {
        k: (before.get(k), after.get(k)) for k in after | before if before.get(k) != after.get(k)
    }


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """``section.key`` -> value (a section's values are leaves, ``data.generator`` included)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}.{leaf}": v for leaf, v in value.items()})
        else:
            out[key] = value
    return out


def claim_run_dir(
    out_dir: Path,
    config: dict[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    allow_config_change: bool = False,
) -> Claim:
    """Check (and with ``overwrite`` or ``resume``, prepare) ``out_dir`` for a run of ``config``.

    New run: refused when ``out_dir`` holds a run. ``overwrite``: its galrec-owned entries are
    deleted first. ``resume``: ``last/`` and ``best/`` are recovered (galrec.training.checkpoint's
    recover_checkpoint keeps the newest complete copy of each, deletes stale ones) and the
    newer of the two is continued from (both hold the whole training state; ``best/`` is the
    newer after a kill before ``last/`` was written at its step); a directory without a run
    starts from step 0 (with a note), one with a run but no complete checkpoint is refused.
    Config changes outside :data:`NEUTRAL_KEYS` are refused unless ``allow_config_change``;
    every change is appended to ``config_changes.jsonl``.
    """
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other")
    if allow_config_change and not resume:
        raise RunDirError("--allow-config-change applies to --resume only")
    if overwrite:
        removed = clear_run(out_dir)
        return Claim(None, [f"--overwrite: removed {', '.join(removed)}"] if removed else [])
    if not resume:
        if holds_run(out_dir):
            found = ", ".join(p.name for p in owned_entries(out_dir))
            raise RunDirError(
                f"{out_dir} holds another run ({found}); pass --resume to continue it or "
                "--overwrite to replace it"
            )
        return Claim(None)
    if not holds_run(out_dir):
        return Claim(None, [f"--resume: {out_dir} holds no run yet; starting from step 0"])
    found = ", ".join(p.name for p in owned_entries(out_dir))
    recovered = [recover_checkpoint(out_dir / name) for name in CHECKPOINTS]
    complete = [r for r in recovered if r.step is not None]
    if not complete:
        raise RunDirError(
            f"--resume: {out_dir} holds a run but no complete checkpoint to continue from "
            f"(found: {found}); pass --overwrite to start it again"
        )
    newest = max(complete, key=lambda r: (r.step or 0, r.directory.name == "last"))
    step = newest.step
    notes = [f"--resume: {r.describe()}" for r in recovered if r.step is not None or r.removed]
    notes.append(f"--resume: continuing from {newest.directory.name}/ at step {step}")
    state = json.loads((newest.directory / STATE_FILE).read_text())
    changes = config_changes(state["config"], config)
    changed = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in sorted(changes.items()))
    if set(changes) - NEUTRAL_KEYS and not allow_config_change:
        raise RunDirError(
            f"--resume: the config differs from the run's at step {step} ({changed}); "
            "pass --allow-config-change to continue with the new values"
        )
    if changes:
        record = {"step": step, "time": time.time(), "changes": changes}
        with open(out_dir / CHANGES_FILE, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        notes.append(f"--resume: config changed at step {step} ({changed}); see {CHANGES_FILE}")
    return Claim(newest.directory, notes)


def write_run(run_dir: Path, meta: dict[str, Any], history: list[dict[str, float]]) -> None:
    """``run.json`` and ``history.jsonl`` of a run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    with (run_dir / HISTORY_FILE).open("w") as out:
        for record in history:
            out.write(json.dumps(record) + "\n")


def read_history(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
