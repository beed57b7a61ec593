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
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "state.json"


def save_checkpoint(
    directory: str | Path,
    tensors: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    adapter: Any | None = None,
) -> Path:
    """Write ``tensors`` (group -> name -> tensor) and JSON ``state`` atomically to ``directory``.

    ``adapter``: a peft model whose ``save_pretrained`` writes the adapters into ``adapter/``.
    """
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        for group, named in tensors.items():
            if "/" in group or group.startswith("."):
                raise ValueError(f"tensor group name {group!r} must be a plain file stem")
            flat = {name: t.detach().to("cpu").contiguous() for name, t in named.items()}
            save_file(flat, str(staging / f"{group}.safetensors"))
        (staging / STATE_FILE).write_text(json.dumps(state, indent=1))
        if adapter is not None:
            adapter.save_pretrained(str(staging / "adapter"))
        _fsync_tree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    staging.rename(target)
    if old.exists():
        shutil.rmtree(old)
    return target


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
