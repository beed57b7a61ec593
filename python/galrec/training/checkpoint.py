"""Checkpoints: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint is a directory: one ``<group>.safetensors`` per tensor group (trainable weights,
momentum shadow, queues, optimizer moments, RNG), ``state.json`` (step, scheduler, Python and
numpy RNG, early-stopping state) and, when given, ``adapter/`` as written by peft's
``save_pretrained`` (so the adapters load in peft alone). It is built in a temporary sibling
directory and renamed into place, so a killed run leaves either the old or the new checkpoint,
never half of one. Nothing is unpickled on load.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "state.json"

#: Where ``GALREC_KILL_AT`` may kill a checkpoint write: "write" (the tensors written, the state
#: not), "staged" (the staging copy complete, nothing renamed), "between-renames" (the old
#: checkpoint moved aside, the new one not yet in place), "renamed" (the new one in place, the
#: old copy not yet deleted).
KILL_POINTS = ("write", "staged", "between-renames", "renamed")
_writes = 0  # checkpoint writes of this process, counted for GALREC_KILL_AT


def save_checkpoint(
    directory: str | Path,
    tensors: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    adapter: Any | None = None,
) -> Path:
    """Write ``tensors`` (group -> name -> tensor) and JSON ``state`` atomically to ``directory``.

    ``adapter``: a peft model whose ``save_pretrained`` writes the adapters into ``adapter/``.
    """
    global _writes
    _writes += 1
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _copy(target, "tmp")
    if staging.exists():
        _remove(staging)
    staging.mkdir()
    try:
        for group, named in tensors.items():
            if "/" in group or group.startswith("."):
                raise ValueError(f"tensor group name {group!r} must be a plain file stem")
            flat = {name: t.detach().to("cpu").contiguous() for name, t in named.items()}
            save_file(flat, str(staging / f"{group}.safetensors"))
        _kill_point("write")
        if adapter is not None:
            adapter.save_pretrained(str(staging / "adapter"))
        _fsync_tree(staging)
        part = staging / f"{STATE_FILE}.part"
        with open(part, "w") as fh:
            fh.write(json.dumps(state, indent=1))
            fh.flush()
            os.fsync(fh.fileno())
        part.rename(staging / STATE_FILE)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _kill_point("staged")
    old = _copy(target, "old")
    if target.exists():
        if old.exists():  # left by an earlier process with this PID; target is newer
            _remove(old)
        target.rename(old)
    _kill_point("between-renames")
    staging.rename(target)
    _kill_point("renamed")
    if old.exists():
        _remove(old)
    return target


def _copy(target: Path, kind: str) -> Path:
    """This process's staging (``kind="tmp"``) or superseded (``"old"``) copy of ``target``."""
    return target.parent / f".{target.name}.{kind}-{os.getpid()}"


def _remove(directory: Path) -> None:
    """Delete a checkpoint directory, ``state.json`` first: what is left is never mistaken for
    a complete checkpoint, whenever a kill stops the deletion."""
    (directory / STATE_FILE).unlink(missing_ok=True)
    shutil.rmtree(directory)


def _kill_point(point: str) -> None:
    """SIGKILL this process here when ``GALREC_KILL_AT`` names this point and write."""
    if os.environ.get("GALREC_KILL_AT") == f"{point}:{_writes}":
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover_checkpoint` found for one checkpoint directory."""

    directory: Path
    step: int | None
    """The step of the complete checkpoint now at ``directory`` (None: there is none)."""
    source: str | None
    """The name it was found under (``last``, ``.last.old-123``, ``.last.tmp-123``)."""
    removed: tuple[str, ...]
    """The superseded or partial copies deleted."""

    def describe(self) -> str:
        """One line: what is at ``directory`` now and what was recovered or deleted."""
        name = self.directory.name
        if self.step is None:
            said = f"{name}/: no complete checkpoint"
        elif self.source == name:
            said = f"{name}/: step {self.step}"
        else:
            said = f"{name}/: step {self.step}, recovered from {self.source} (a kill interrupted "
            said += "a checkpoint write)"
        if self.removed:
            names = (f"the older {name}/" if n == name else n for n in self.removed)
            said += f"; removed {', '.join(names)}"
        return said


def recover_checkpoint(directory: str | Path) -> Recovery:
    """Put the newest complete checkpoint among ``directory`` and the copies a killed
    :func:`save_checkpoint` leaves beside it (``.NAME.tmp-PID``, ``.NAME.old-PID``) at
    ``directory``, and delete the rest, so no progress is lost and nothing stale stays.

    Complete means ``state.json`` is present (written last, deleted first); ties keep the copy
    already in place.
    """
    target = Path(directory)
    copies = [target] if target.is_dir() else []
    for kind in ("old", "tmp"):
        copies += sorted(target.parent.glob(f".{target.name}.{kind}-*"))
    complete = {p: _step(p) for p in copies if (p / STATE_FILE).is_file()}
    newest = max(complete, key=lambda p: (complete[p], p == target), default=None)
    removed = tuple(p.name for p in copies if p != newest)
    for path in copies:
        if path != newest:
            _remove(path)
    if newest is not None and newest != target:
        newest.rename(target)
    return Recovery(
        target,
        None if newest is None else complete[newest],
        None if newest is None else newest.name,
        removed,
    )


def checkpoint_state(directory: Path) -> dict[str, Any]:
    """The checkpoint's ``state.json`` (step, scheduler, history, config, threads, ...)."""
    state: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
    return state


def _step(directory: Path) -> int:
    return int(checkpoint_state(directory)["step"])


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def load_checkpoint(
    directory: str | Path,
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`: (tensor groups, state)."""
    root = Path(directory)
    state_path = root / STATE_FILE
    if not state_path.is_file():
        raise FileNotFoundError(f"{root} is not a galrec checkpoint (no {STATE_FILE})")
    state = json.loads(state_path.read_text())
    tensors = {p.stem: load_file(str(p)) for p in sorted(root.glob("*.safetensors"))}
    return tensors, state


def optimizer_to_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (``"<param>.<key>"``) and JSON-able rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, slots in sd["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Restore what :func:`optimizer_to_tensors` split."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, slots in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(slots)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch (CPU and CUDA) RNG as tensors, Python and numpy RNG as JSON."""
    import random

    import numpy as np

    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    meta = {
        "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [py_version, list(py_state), py_gauss],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    import random

    import numpy as np

    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
