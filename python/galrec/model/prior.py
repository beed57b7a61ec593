"""The score prior of GAL-Rec's L0 score: trained ID models' own scores and the frozen language
model's title similarity, to which the language model's trained term is added
(``model.score_prior``, docs/method.md)::

    s(u, i) = sum_k exp(a_k) <p_u^k, q_i^k>  +  <W h_u, E_i>

``W`` starts at zero, so at step 0 the model ranks exactly like the prior, and training can
only move away from it where the language model helps. The parts:
- ``cf``: the collaborative features' own dot product (LightGCN with the baseline's settings, or
  a user-supplied ``.npy``); ``p_u`` does not depend on the history;
- ``sasrec``: a SASRec trained with the baseline's settings; ``p_u`` is its state after reading
  the user's latest items: before the training cut, or the history that scoring a split may
  show (galrec.data.sequences), so it never sees what is being predicted;
- ``text``: the backbone's frozen title vectors, ``p_u`` a recency-weighted sum over the same
  history, so an item is scored by how its title reads next to the latest ones.
The scales ``a`` are calibrated once on the validation split (the pairs no part was trained
on) and then kept fixed: trained on training pairs they would drift to whichever part
memorised its training edges best.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from galrec.data.sequences import Histories, histories


class PriorPart(nn.Module):
    """One trained ID model inside the prior: user states ``p_u`` against item vectors ``q_i``."""

    item_vectors: torch.Tensor

    def __init__(self, item_vectors: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("item_vectors", item_vectors.detach().float(), persistent=False)

    @property
    def dim(self) -> int:
        return int(self.item_vectors.shape[1])

    def user_states(
        self, users: torch.Tensor, split: str, cut: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``p_u`` [len(users), dim] of users scoring ``split`` ("train": before ``cut``)."""
        raise NotImplementedError

    def states_from_history(self, history: Histories) -> torch.Tensor:
        """``p_u`` [history.num_users, dim] of users who are not in the data, from their
        histories (oldest first): what ``galrec.api`` scores a new user's history with."""
        raise NotImplementedError


class CFPart(PriorPart):
    """The CF model's own score: ``p_u`` is the user's CF vector, whatever the history."""

    user_vectors: torch.Tensor

    def __init__(self, user_vectors: torch.Tensor, item_vectors: torch.Tensor) -> None:
        super().__init__(item_vectors)
        self.register_buffer("user_vectors", user_vectors.detach().float(), persistent=False)

    def user_states(
        self, users: torch.Tensor, split: str, cut: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.user_vectors[users]

    def states_from_history(self, history: Histories) -> torch.Tensor:
        """A fold-in, not the CF model's own state: the mean CF vector of the history's items
        (zeros for an empty history), since the CF model has no state for an unseen user."""
        rows = np.repeat(np.arange(history.num_users), history.lengths())
        sums = torch.zeros(history.num_users, self.dim, device=self.item_vectors.device)
        sums.index_add_(0, torch.from_numpy(rows).to(sums.device), self.item_vectors[history.items])
        counts = torch.from_numpy(history.lengths()).clamp_min(1).to(sums)
        return sums / counts[:, None]


class HistoryPart(PriorPart):
    """A part whose ``p_u`` reads the user's time-ordered history: what the split scored allows
    (galrec.data.sequences), or for training users what comes before their ``cut``."""

    def __init__(self, item_vectors: torch.Tensor, dataset: Any) -> None:
        super().__init__(item_vectors)
        self._dataset = dataset
        self._histories: dict[str, Histories] = {}

    def read(
        self, users: torch.Tensor, split: str, cut: torch.Tensor | None
    ) -> tuple[Histories, np.ndarray, np.ndarray | None]:
        """The histories of ``split`` (memoised) with ``users`` and ``cut`` as int64 arrays;
        training users need their cut."""
        if split == "train" and cut is None:
            raise ValueError(f"{type(self).__name__} scoring training users needs the cut")
        if split not in self._histories:
            self._histories[split] = histories(self._dataset, split)
        ids = users.detach().cpu().numpy().astype(np.int64)
        cuts = None if cut is None else cut.detach().cpu().numpy().astype(np.int64)
        return self._histories[split], ids, cuts

    def user_states(
        self, users: torch.Tensor, split: str, cut: torch.Tensor | None = None
    ) -> torch.Tensor:
        history, ids, cuts = self.read(users, split, cut)
        return self.history_states(history, ids, cuts).to(users.device)

    def states_from_history(self, history: Histories) -> torch.Tensor:
        return self.history_states(history, np.arange(history.num_users), None)

    def history_states(
        self, history: Histories, users: np.ndarray, cut: np.ndarray | None
    ) -> torch.Tensor:
        """``p_u`` of rows ``users`` of ``history``, from their items before ``cut``."""
        raise NotImplementedError


class SequentialPart(HistoryPart):
    """A trained sequential model's score: ``p_u`` is its last state over the user's latest
    items (the model's ``max_len``) that the split, or the training cut, allows."""

    def __init__(self, model: Any, dataset: Any) -> None:
        super().__init__(model.items.weight[1:], dataset)
        self.model = model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> SequentialPart:
        super().train(mode)
        self.model.eval()  # frozen: dropout stays off
        return self

    def history_states(
        self, history: Histories, users: np.ndarray, cut: np.ndarray | None
    ) -> torch.Tensor:
        from galrec.baselines.sequential import recent_sequences

        seqs = recent_sequences(history, users, self.model.config.max_len, cut)
        with torch.no_grad():
            return self.model.encode(torch.from_numpy(seqs).to(self.item_vectors.device))[:, -1]


class TextPart(HistoryPart):
    """The frozen language model's title similarity, what no ID model can see:
    ``<sum_j decay^j t_(j), t_i>`` over the user's latest ``items`` items (``j = 0`` the most
    recent), ``t`` the backbone's title vectors, centred (their common direction removed) and
    unit length. Items with few interactions get a score from their text alone."""

    def __init__(
        self, item_text: torch.Tensor, dataset: Any, items: int = 5, decay: float = 0.5
    ) -> None:
        text = item_text.detach().float()
        super().__init__(F.normalize(text - text.mean(0), dim=-1), dataset)
        self.items = items
        self.decay = decay

    def history_states(
        self, history: Histories, users: np.ndarray, cut: np.ndarray | None
    ) -> torch.Tensor:
        offsets, items = history.recent(users, self.items, cut)
        rows = np.repeat(np.arange(len(users)), np.diff(offsets))
        age = np.arange(len(items)) - offsets[rows]  # 0 = the most recent
        weights = torch.from_numpy(self.decay**age).float().to(self.item_vectors.device)
        vectors = self.item_vectors[torch.from_numpy(items).to(self.item_vectors.device)]
        states = torch.zeros(len(users), self.dim, device=self.item_vectors.device)
        states.index_add_(0, torch.from_numpy(rows).to(states.device), vectors * weights[:, None])
        return states


class ScorePrior(nn.Module):
    """``sum_k exp(a_k) <p_u^k, q_i^k>`` over its parts; the states of all parts travel as one
    tensor, ``[B, sum of the parts' dims]``."""

    def __init__(self, parts: Sequence[PriorPart]) -> None:
        super().__init__()
        if not parts:
            raise ValueError("a score prior needs at least one part")
        self.parts = nn.ModuleList(parts)
        self.log_scale = nn.Parameter(torch.zeros(len(parts)))

    def part(self, index: int) -> PriorPart:
        part = self.parts[index]
        assert isinstance(part, PriorPart)
        return part

    def user_states(
        self, users: torch.Tensor, split: str, cut: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Every part's ``p_u`` side by side."""
        return torch.cat(
            [self.part(k).user_states(users, split, cut) for k in range(len(self.parts))], 1
        )

    def states_from_history(self, history: Histories) -> torch.Tensor:
        """Every part's ``p_u`` of users not in the data, from their histories (see the
        parts' :meth:`PriorPart.states_from_history`: the CF part folds the history in)."""
        return torch.cat(
            [self.part(k).states_from_history(history) for k in range(len(self.parts))], 1
        )

    def part_scores(self, states: torch.Tensor) -> list[torch.Tensor]:
        """Each part's unscaled scores [len(states), num_items], in fp32."""
        dims = [self.part(k).dim for k in range(len(self.parts))]
        return [
            s.float() @ self.part(k).item_vectors.T for k, s in enumerate(states.split(dims, dim=1))
        ]

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Scores [len(states), num_items], in fp32."""
        scales = self.log_scale.exp()
        return sum(scales[k] * raw for k, raw in enumerate(self.part_scores(states)))  # type: ignore[return-value]

    def calibrate(
        self,
        states: torch.Tensor,
        items: torch.Tensor,
        seen: torch.Tensor | None = None,
        max_iter: int = 100,
    ) -> list[float]:
        """Set the scales under which the prior best explains (state, item) pairs: the lowest
        softmax cross-entropy (``seen`` [B, num_items] marks items left out of the softmax, as
        evaluation masks them), all scales at once.

        The loss is convex in the scales, so L-BFGS (on their logs, from scales that give each
        part unit spread) finds the one optimum; a per-part grid search stopped short of it on
        amazon-scientific (validation cross-entropy 7.31 instead of 7.24, test NDCG@10 0.067
        instead of 0.081). The parts' training losses leave their scales arbitrary (BPR) or
        fitted to themselves alone. The pairs must be ones no part was trained on (the
        validation split): on training pairs a part that memorised its training edges
        (LightGCN on sparse data) looks far better than it ranks held-out items.
        """
        with torch.no_grad():
            raw = [r.detach() for r in self.part_scores(states)]
            spread = torch.stack([r.std().clamp_min(1e-6) for r in raw])
        log_scale = (-spread.log() - math.log(len(raw))).requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [log_scale], max_iter=max_iter, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
        )

        def loss() -> torch.Tensor:
            optimizer.zero_grad()
            scales = log_scale.clamp(max=30.0).exp()
            scores = sum((scales[k] * r for k, r in enumerate(raw)), torch.zeros_like(raw[0]))
            if seen is not None:
                scores = scores.masked_fill(seen, float("-inf"))
            value = F.cross_entropy(scores, items)
            value.backward()
            return value

        with torch.enable_grad():
            optimizer.step(loss)
        scales = log_scale.detach().clamp(min=math.log(1e-4), max=30.0)
        with torch.no_grad():
            self.log_scale.copy_(scales)
        return scales.exp().tolist()


def fit_term_scale(
    base: torch.Tensor,
    term: torch.Tensor,
    items: torch.Tensor,
    seen: torch.Tensor | None = None,
    max_iter: int = 50,
) -> float:
    """The weight ``s >= 0`` under which ``base + s * term`` best explains (row, item) pairs:
    the lowest softmax cross-entropy of ``items`` (``seen`` marks items left out of the
    softmax). How a separately trained term joins the calibrated prior (``model.lm_fusion``).

    The loss is convex in ``s``, so projected Newton steps (halved until the loss falls) find
    the optimum; ``s = 0`` when the term only hurts.
    """
    base, term = base.float(), term.float()
    if seen is not None:
        base = base.masked_fill(seen, float("-inf"))
        term = term.masked_fill(seen, 0.0)
    rows = torch.arange(len(items), device=items.device)
    target_base, target_term = base[rows, items], term[rows, items]

    def loss(scale: float) -> float:
        logits = base + scale * term
        return float((logits.logsumexp(1) - (target_base + scale * target_term)).mean())

    scale, current = 0.0, loss(0.0)
    for _ in range(max_iter):
        p = torch.softmax(base + scale * term, dim=1)
        mean = (p * term).sum(1)
        grad = float((mean - target_term).mean())
        curvature = float(((p * term * term).sum(1) - mean * mean).mean())
        step = grad / curvature if curvature > 1e-12 else grad
        while True:
            candidate = max(0.0, scale - step)
            value = loss(candidate)
            if value <= current or abs(step) < 1e-9:
                break
            step /= 2
        done = abs(candidate - scale) <= 1e-6 * (1.0 + scale)
        scale, current = candidate, min(value, current)
        if done:
            break
    return scale


def fit_sasrec_prior(
    dataset: Any, seed: int, epochs: int, cache_dir: Path, run_file: Path | None
) -> Any:
    """SASRec with the baseline's packaged settings (configs/sasrec.yaml) at ``seed`` on CPU,
    at most ``epochs``: with the baseline's epochs, the model of ``galrec compare``'s ``sasrec``
    row. Loaded from ``run_file`` (a finished run's copy), else from ``cache_dir``, else trained
    (and written to both)."""
    from galrec.baselines.sequential import SequentialScorer, build_model, fit_sequential
    from galrec.config import default_config

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
        with torch.random.fork_rng(devices=[]):  # the run's RNG must not depend on the cache
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
