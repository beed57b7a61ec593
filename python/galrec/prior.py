"""The score prior of GAL-Rec's L0 score: a trained ID model's own score, to which the language
model's term is added (``model.score_prior``, docs/method.md)::

    s(u, i) = exp(a) <p_u, q_i>  +  <W h_u, E_i>

``W`` starts at zero, so at step 0 the model ranks exactly like the prior, and training can
only move away from it where the language model helps. Two priors:
- ``cf``: the collaborative features' own dot product (LightGCN with the baseline's settings, or
  a user-supplied ``.npy``); ``p_u`` does not depend on the history;
- ``sasrec``: a SASRec trained with the baseline's settings; ``p_u`` is its state after reading
  the user's latest items: before the training cut, or the history that scoring a split may
  show (galrec.sequences), so it never sees what is being predicted.
``a`` is calibrated once on training pairs, then trained with the rest.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from galrec.sequences import Histories, histories


class ScorePrior(nn.Module):
    """``exp(a) <p_u, q_i>`` for user states ``p_u`` against every item vector ``q_i``."""

    item_vectors: torch.Tensor

    def __init__(self, item_vectors: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("item_vectors", item_vectors.detach().float(), persistent=False)
        self.log_scale = nn.Parameter(torch.zeros(()))

    def user_states(
        self, users: torch.Tensor, split: str, cut: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``p_u`` [len(users), d] of users scoring ``split`` ("train": before ``cut``)."""
        raise NotImplementedError

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Scores [len(states), num_items], in fp32."""
        return self.log_scale.exp() * (states.float() @ self.item_vectors.T)

    @torch.no_grad()
    def calibrate(self, states: torch.Tensor, items: torch.Tensor) -> float:
        """Set ``a`` to the scale under which the prior best explains (state, item) pairs (the
        lowest softmax cross-entropy over a log-spaced grid); returns ``exp(a)``.

        The prior's training loss leaves its scale arbitrary (BPR) or fitted to itself alone;
        a calibrated start keeps L0's early gradients on the LM's term.
        """
        raw = states.float() @ self.item_vectors.T
        grid = torch.logspace(-2, 2, 41)
        losses = torch.tensor([F.cross_entropy(raw * scale, items).item() for scale in grid])
        best = float(grid[int(losses.argmin())])
        self.log_scale.fill_(float(np.log(best)))
        return best


class CFPrior(ScorePrior):
    """The CF model's own score: ``p_u`` is the user's CF vector, whatever the history."""

    user_vectors: torch.Tensor

    def __init__(self, user_vectors: torch.Tensor, item_vectors: torch.Tensor) -> None:
        super().__init__(item_vectors)
        self.register_buffer("user_vectors", user_vectors.detach().float(), persistent=False)

    def user_states(
        self, users: torch.Tensor, split: str, cut: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.user_vectors[users]


class SequentialPrior(ScorePrior):
    """A trained sequential model's score: ``p_u`` is its last state over the user's latest
    items (the baseline's ``max_len``) that the split, or the training cut, allows."""

    def __init__(self, model: Any, dataset: Any) -> None:
        super().__init__(model.items.weight[1:])
        self.model = model.eval().requires_grad_(False)
        self._dataset = dataset
        self._histories: dict[str, Histories] = {}

    def train(self, mode: bool = True) -> SequentialPrior:
        super().train(mode)
        self.model.eval()  # frozen: dropout stays off
        return self

    def user_states(
        self, users: torch.Tensor, split: str, cut: torch.Tensor | None = None
    ) -> torch.Tensor:
        from galrec.baselines.sequential import recent_sequences

        if split not in self._histories:
            self._histories[split] = histories(self._dataset, split)
        if split == "train" and cut is None:
            raise ValueError("a sequential prior scoring training users needs the cut")
        ids = users.detach().cpu().numpy().astype(np.int64)
        cuts = None if cut is None else cut.detach().cpu().numpy().astype(np.int64)
        seqs = recent_sequences(self._histories[split], ids, self.model.config.max_len, cuts)
        with torch.no_grad():
            return self.model.encode(torch.from_numpy(seqs).to(users.device))[:, -1]


def fit_sasrec_prior(
    dataset: Any, seed: int, epochs: int, cache_dir: Path, run_file: Path | None
) -> Any:
    """SASRec with the baseline's packaged settings (configs/sasrec.yaml) at ``seed`` on CPU,
    at most ``epochs``: with the baseline's epochs, the model of ``galrec compare``'s ``sasrec``
    row. Loaded from ``run_file`` (a finished run's copy), else from ``cache_dir``, else trained
    (and written to both)."""
    from galrec.baselines.sequential import SequentialScorer, build_model, fit_sequential
    from galrec.registry import default_config

    if run_file is not None and run_file.is_file():
        return SequentialScorer.load(run_file).model
    config = {**default_config("sasrec"), "epochs": epochs, "seed": seed, "device": "cpu"}
    key = hashlib.sha256(f"sasrec\0{sorted(config.items())}".encode())
    for part in (dataset.train, dataset.valid):
        for array in (part.users, part.items, part.timestamps):
            key.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    cached = Path(cache_dir) / f"{key.hexdigest()[:32]}.safetensors"
    if cached.is_file():
        scorer = SequentialScorer.load(cached)
    else:
        model = build_model("sasrec", int(dataset.num_items), config)
        scorer = fit_sequential(model, dataset).scorer()
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        scorer.save(tmp)
        tmp.replace(cached)
    if run_file is not None:
        tmp = run_file.with_suffix(".tmp")
        scorer.save(tmp)
        tmp.replace(run_file)
    return scorer.model
