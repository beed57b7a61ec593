"""GAL-Rec, its ablations and the LM baselines as named models of ``galrec.registry``.

``galrec compare`` and ``galrec evaluate`` find them by their bundled config names (``gal_rec``,
``text_lm``, ``id_lm``, ``no_l1`` ...); each trains through :func:`galrec.train.train` into the
run directory the registry hands over and reopens from it with its best checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

from galrec.evaluate import Scorer
from galrec.registry import ModelSpec, TrainedModel, TrainRequest, register, write_run

#: config name -> (registry kind, description)
LANGUAGE_MODELS = {
    "gal_rec": (
        "method",
        "GAL-Rec: LoRA LM, ID embeddings, L0 + graph-aware L1-L3, momentum queue",
    ),
    "text_lm": ("baseline", "text-only LM: L0 only, no ID tokens, no graph learning"),
    "id_lm": ("baseline", "ID-token LM without graph learning (CLLM4Rec-like)"),
    "no_l1": ("ablation", "GAL-Rec without L1 (user hop-2 vs hop-0/1)"),
    "no_l2": ("ablation", "GAL-Rec without L2 (item hop-2 vs hop-0/1)"),
    "no_l3": ("ablation", "GAL-Rec without L3 (user hop-1 vs item hop-0)"),
    "no_queue": ("ablation", "GAL-Rec without the momentum queue"),
    "no_hop2": ("ablation", "GAL-Rec without 2-hop prompts"),
}


def _trainer(name: str):
    def train_model(request: TrainRequest) -> TrainedModel:
        from galrec.config import config_from_dict
        from galrec.train import train

        cfg = config_from_dict({**request.config, "name": name, "out_dir": str(request.run_dir)})
        cfg.train.seed = request.seed
        cfg.train.device = request.device
        cfg.train.progress = request.progress
        if request.dataset_dir is not None:
            cfg.data.dataset = str(request.dataset_dir)
        else:  # an in-memory dataset: the run directory keeps a copy (build_run loads it)
            request.dataset.save(Path(request.run_dir) / "dataset", overwrite=True)
        started = time.perf_counter()
        result = train(cfg, request.run_dir)
        seconds = time.perf_counter() - started
        meta = {
            "model": name,
            "dataset": None if request.dataset_dir is None else str(request.dataset_dir),
            "seed": request.seed,
            "config": cfg.to_dict(),
            "train_seconds": seconds,
            "best_step": result.best_step,
        }
        write_run(Path(request.run_dir), meta, result.history)
        return TrainedModel(
            scorer=_open(Path(request.run_dir)),
            history=result.history,
            train_seconds=seconds,
            info={"best_step": result.best_step},
        )

    return train_model


def _open(run_dir: Path) -> Scorer:
    from galrec.run import open_run

    return open_run(run_dir).scorer()


for _name, (_kind, _description) in LANGUAGE_MODELS.items():
    register(ModelSpec(_name, _kind, _description, _trainer(_name), _open))
