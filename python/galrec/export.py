"""``galrec export``'s formats: embeddings as ``.npy``, or a self-contained folder (``hf``).

An ``hf`` folder holds everything a language-model run serves with and nothing of where it was
trained, so ``galrec.load(folder)`` on another machine gives the run's recommendations:

- ``galrec_export.json``: what it is (format, model, backbone, source checkpoint);
- ``config.yaml``: the resolved config (its dataset is the folder's ``dataset/``);
- ``adapter/``: the peft LoRA adapter; ``adapter_config.json`` names the base by the backbone's
  config name (``minilm``, ``tiny-bert``, a Hugging Face name), and
  ``PeftModel.from_pretrained(base, folder / "adapter")`` loads it on that base alone;
- ``model.safetensors``: every trained tensor (adapter, projector, per-ID residual, heads, the
  score prior's calibrated scales), as galrec loads them;
- ``external.safetensors``: the external embeddings' inputs ``features`` ([t_v ; c_v]) and
  ``cf_vectors`` (the CF part of the score prior);
- ``prior.safetensors``: the SASRec part of the score prior, when the run has one;
- ``dataset/``: the prepared dataset (splits, item texts, raw id maps), which prompts, histories
  and the prior read; ``user_ids.json`` / ``item_ids.json``: raw id by contiguous index;
- the tokenizer (where the backbone loader reads it: ``tokenizer.json`` for the in-code tiny
  models, ``tokenizer/tokenizer.json`` otherwise) and ``templates.json``, the prompt templates.

The base model's weights are not copied: ``minilm`` / ``smollm2`` come from their pip packages,
a Hugging Face name from the hub or its cache, the tiny models are rebuilt from their seed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from galrec.api import Recommender
    from galrec.training.run import Run


def export_arrays(model: Recommender, target: Path) -> dict[str, tuple[int, ...]]:
    """``users.npy`` / ``items.npy`` (the scoring space, :meth:`Recommender.embeddings`),
    ``user_ids.json`` / ``item_ids.json`` (raw ids by row) and, for a language model,
    ``user_z.npy`` / ``item_z.npy`` (its unit representations). Returns the arrays' shapes."""
    from galrec.api import LanguageModelRecommender

    embeddings = model.embeddings()
    arrays = {"users": embeddings.users, "items": embeddings.items}
    if isinstance(model, LanguageModelRecommender):
        arrays["user_z"], arrays["item_z"] = model.representations()
    target.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(target / f"{name}.npy", np.asarray(array, dtype=np.float32), allow_pickle=False)
    _write_json(target / "user_ids.json", embeddings.user_ids)
    _write_json(target / "item_ids.json", embeddings.item_ids)
    return {name: tuple(array.shape) for name, array in arrays.items()}


def export_hf(model: Recommender, target: Path) -> Path:
    """Write ``model`` (a language-model run) as a self-contained folder (see the module doc);
    ``target`` must not exist or be empty. Returns the folder."""
    import yaml
    from safetensors.torch import save_file

    from galrec.api import LanguageModelRecommender
    from galrec.graph.prompts import PromptTemplates
    from galrec.training.run import EXPORT_FILE, FORMAT

    if not isinstance(model, LanguageModelRecommender):
        raise ValueError(
            f"--format hf exports language-model runs; {model.name} is a baseline: "
            "use --format npy for its embeddings"
        )
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty")
    run = model.run
    target.mkdir(parents=True, exist_ok=True)
    run.dataset.save(target / "dataset", overwrite=True)
    cfg = run.cfg.to_dict()
    cfg["out_dir"] = "."
    cfg["data"]["dataset"] = "dataset"
    (target / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    state = {name: t.detach().cpu().contiguous() for name, t in run.model.named_parameters()}
    trained = {k: v for k, v in state.items() if k in _trainable_names(run)}
    save_file(trained, str(target / "model.safetensors"))
    external = {"features": run.model.external.features.detach().cpu().contiguous()}
    cf = run.out_dir / "cf_vectors.npy"
    if cf.is_file():
        external["cf_vectors"] = _tensor(np.load(cf, allow_pickle=False))
    save_file(external, str(target / "external.safetensors"))
    if (run.out_dir / "prior.safetensors").is_file():
        shutil.copyfile(run.out_dir / "prior.safetensors", target / "prior.safetensors")
    _save_adapter(run, target / "adapter")
    _copy_tokenizer(run, target)
    templates = dataclasses.asdict(
        PromptTemplates() if run.cfg.prompts.neighbor_titles else PromptTemplates(neighbor="{node}")
    )
    _write_json(target / "templates.json", templates)
    _write_json(target / "user_ids.json", list(run.dataset.user_ids))
    _write_json(target / "item_ids.json", list(run.dataset.item_ids))
    _write_json(
        target / EXPORT_FILE,
        {
            "format": FORMAT,
            "version": 1,
            "model": model.name,
            "backbone": run.cfg.model.backbone,
            "source": str(run.out_dir.resolve()),
        },
    )
    return target


def _trainable_names(run: Run) -> set[str]:
    """The tensors a checkpoint holds (the trainable ones) and the prior's fixed scales."""
    names = set(run.model.trainable_state())
    if run.model.prior is not None:
        names.add("prior.log_scale")
    return names


def _save_adapter(run: Run, target: Path) -> None:
    """peft's adapter files, the base named by the backbone's config name (not a local path
    of this machine, e.g. the minilm package inside a virtual environment)."""
    run.model.backbone.model.save_pretrained(str(target))
    config_file = target / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = run.cfg.model.backbone
    _write_json(config_file, config)


def _copy_tokenizer(run: Run, target: Path) -> None:
    """The tokenizer at the path the backbone loader reads in ``target``: the run's own
    relative path when the run wrote it, else ``tokenizer/tokenizer.json``."""
    source = run.tokenizer_json
    try:
        relative = source.resolve().relative_to(run.out_dir.resolve())
    except ValueError:
        relative = Path("tokenizer") / "tokenizer.json"
    (target / relative).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target / relative)


def _tensor(array: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")
