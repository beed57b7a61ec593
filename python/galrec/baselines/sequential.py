"""Next-item training and history-based scoring shared by the sequential baselines.

A sequential model (:class:`SequentialModel`: SASRec, GRU4Rec) encodes a user's recent items,
oldest first, into one vector per position; the vector at a position scores every item as the
next one by a dot product with the shared item embedding table. Item ids are shifted by one so
that 0 pads a short history on the left.

Training (:func:`fit_sequential`): each user's training items are cut into windows of
``max_len + 1`` items; at every position the model predicts the next item with a full softmax
over all items (cross-entropy, RecBole's ``CE`` setting), Adam, early stopping on the
validation metric with full ranking, keeping the best weights.

Scoring follows the protocol of :mod:`galrec.data.sequences`: the input history depends on the split
scored, so a trained model is a :class:`SequentialScorer` whose ``for_split(data, split)`` gives
the scorer of one split (:func:`galrec.evaluation.evaluate.evaluate` calls it): validation is scored
from the training items, test from the training items plus the validation item.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from galrec.baselines.options import BaselineConfig
from galrec.baselines.selection import EarlyStopping, epoch_range
from galrec.data.sequences import Histories, histories
from galrec.evaluation.evaluate import SplitDataset, rank_users, resolve_device, split_sets


@dataclass
class SequentialConfig(BaselineConfig):
    """Hyperparameters shared by the sequential models (architecture ones in the subclasses)."""

    dim: int = 64
    max_len: int = 50  # items of history the model reads
    dropout: float = 0.2
    # Windows of a long history start every `stride` items (0: max_len, disjoint targets); each
    # window's loss covers only its last `stride` targets, so every training item is predicted
    # once, with at least max_len - stride + 1 items of context.
    stride: int = 0
    epochs: int = 200
    batch_size: int = 64  # windows per batch (about as many targets per step as RecBole)
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 1  # epochs between validation runs (early stopping, training curves)
    patience: int = 10  # validation runs without improvement before stopping
    eval_metric: str = "ndcg@10"
    seed: int = 0
    device: str = "auto"

    positive: ClassVar[tuple[str, ...]] = (*BaselineConfig.positive, "max_len")

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.stride <= self.max_len:
            raise ValueError(f"stride must be in 0..max_len={self.max_len}, got {self.stride}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class SequentialModel(nn.Module):
    """Base of the sequential encoders: the item table (row 0 = padding) and the scoring rule.

    A subclass names itself (``class SASRec(SequentialModel, name="sasrec",
    config=SASRecConfig)``), so a saved model is rebuilt from the name in its weights file.
    """

    name: ClassVar[str]
    config_type: ClassVar[type[SequentialConfig]]
    _registry: ClassVar[dict[str, type[SequentialModel]]] = {}

    def __init_subclass__(cls, name: str, config: type[SequentialConfig], **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name, cls.config_type = name, config
        SequentialModel._registry[name] = cls

    def __init__(self, num_items: int, config: SequentialConfig) -> None:
        super().__init__()
        self.num_items = num_items
        self.config = config
        self.items = nn.Embedding(num_items + 1, config.dim, padding_idx=0)

    def encode(self, sequences: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` item ids + 1, left-padded with 0 -> ``[B, L, dim]``; position ``t`` sees
        only positions ``<= t``."""
        raise NotImplementedError

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., dim]`` -> scores ``[..., num_items]`` of every item (unshifted ids)."""
        return hidden @ self.items.weight[1:].T


def build_model(
    name: str, num_items: int, config: SequentialConfig | Mapping[str, Any]
) -> SequentialModel:
    """The model ``name`` ("sasrec", "gru4rec"), initialised from ``config.seed`` alone, so the
    weights do not depend on what else ran in the process before."""
    if name not in SequentialModel._registry:
        known = ", ".join(sorted(SequentialModel._registry))
        raise KeyError(f"unknown sequential model {name!r}; known: {known}")
    model_type = SequentialModel._registry[name]
    if not isinstance(config, SequentialConfig):
        config = model_type.config_type.from_dict(config)
    if not isinstance(config, model_type.config_type):
        raise TypeError(f"{name} needs a {model_type.config_type.__name__}, got {config!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return model_type(num_items, config)


def training_windows(
    history: Histories, max_len: int, stride: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), both int64 ``[windows, max_len]``, from each user's items.

    A window ending at position ``e`` of a history reads items ``e - max_len - 1 .. e - 2``
    (shifted by one, left-padded with 0) and is asked for items ``e - max_len .. e - 1``; targets
    that an earlier-ending window predicts instead are -1 (ignored), so every item but a user's
    first is a target exactly once. Windows end at ``len, len - stride, ...``.
    """
    stride = stride or max_len
    lengths = history.lengths()
    counts = np.where(lengths >= 2, (lengths - 1 + stride - 1) // stride, 0)
    window_user = np.repeat(np.arange(len(lengths)), counts)
    first = np.cumsum(counts) - counts
    rank = np.arange(len(window_user)) - first[window_user]
    ends = lengths[window_user] - rank * stride  # exclusive end of each window's targets
    target_pos = ends[:, None] - max_len + np.arange(max_len)[None, :]
    base = history.indptr[window_user][:, None]
    has_input = target_pos >= 1
    inputs = np.where(has_input, history.items[base + np.maximum(target_pos - 1, 0)] + 1, 0)
    counted = has_input & (target_pos >= (ends - stride)[:, None])
    targets = np.where(counted, history.items[base + np.maximum(target_pos, 0)], -1)
    return inputs.astype(np.int64), targets.astype(np.int64)


def recent_sequences(
    history: Histories, users: np.ndarray, max_len: int, cut: np.ndarray | None = None
) -> np.ndarray:
    """Each user's last ``max_len`` items + 1 (before position ``cut``, if given), oldest first,
    left-padded with 0, ``[B, max_len]``: the input of a sequential model."""
    offsets, items = history.recent(users, max_len, cut)
    rows = np.repeat(np.arange(len(users)), np.diff(offsets))
    within = np.arange(len(items)) - offsets[rows]  # 0 = most recent
    out = np.zeros((len(users), max_len), dtype=np.int64)
    out[rows, max_len - 1 - within] = items + 1
    return out


class HistoryScorer:
    """A sequential model bound to the histories of one split: scores from each user's last
    ``max_len`` items of ``history``."""

    def __init__(self, model: SequentialModel, history: Histories, split: str) -> None:
        self.model = model
        self.history = history
        self.split = split
        self.num_items = model.num_items

    def sequences(self, users: torch.Tensor) -> torch.Tensor:
        """The model's input for ``users``: ``[len(users), max_len]`` item ids + 1."""
        ids = users.detach().cpu().numpy().astype(np.int64)
        seqs = recent_sequences(self.history, ids, self.model.config.max_len)
        return torch.from_numpy(seqs).to(users.device)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        if next(self.model.parameters()).device != users.device:
            self.model.to(users.device)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            hidden = self.model.encode(self.sequences(users))[:, -1]
            scores = self.model.logits(hidden)
        self.model.train(was_training)
        return scores


class SequentialScorer:
    """A trained sequential model. Its input depends on the split scored, so it scores only
    through :meth:`for_split`; ``score_users`` on it refuses rather than guess a history."""

    def __init__(self, model: SequentialModel) -> None:
        self.model = model.eval()
        self.num_items = model.num_items

    def for_split(self, data: SplitDataset, split: str) -> HistoryScorer:
        """The scorer of ``split``: training items as history for "valid", plus the validation
        item for "test" (:func:`galrec.data.sequences.histories`)."""
        return HistoryScorer(self.model, histories(data, split), split)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(
            f"{self.model.name} scores from a history that depends on the split: call "
            "for_split(data, split) (galrec.evaluation.evaluate.evaluate does) and score with its "
            "result"
        )

    def save(self, path: str | Path) -> None:
        """Weights in safetensors, with the model name and config as the file's metadata."""
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        metadata = {
            "model": self.model.name,
            "num_items": str(self.model.num_items),
            "config": json.dumps(dataclasses.asdict(self.model.config)),
        }
        save_file(state, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> SequentialScorer:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
        model = build_model(
            metadata["model"], int(metadata["num_items"]), json.loads(metadata["config"])
        )
        model.load_state_dict(load_file(str(path)))
        return cls(model)


@dataclass
class SequentialFit:
    """The outcome of training: the model with its best weights and the per-epoch history."""

    model: SequentialModel
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0

    def scorer(self) -> SequentialScorer:
        return SequentialScorer(self.model)


def fit_sequential(
    model: SequentialModel, data: SplitDataset, progress: bool = False
) -> SequentialFit:
    """Train ``model`` on ``data``'s training histories (next item at every position, full
    softmax), validating on the validation split with full ranking and keeping the best weights.

    Deterministic for a given ``model.config.seed`` on CPU.
    """
    config = model.config
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # dropout
    generator = torch.Generator(device=device).manual_seed(config.seed)
    model = model.to(device)
    inputs_np, targets_np = training_windows(
        histories(data, "train"), config.max_len, config.stride
    )
    inputs = torch.from_numpy(inputs_np).to(device)
    targets = torch.from_numpy(targets_np).to(device)
    num_targets = int((targets >= 0).sum())
    if num_targets == 0:
        raise ValueError("no user has two training items: nothing to learn the next item from")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    valid_scorer = HistoryScorer(model, histories(data, "valid"), "valid")
    truth, exclude = split_sets(data, "valid")
    k = int(config.eval_metric.split("@")[1])
    history: list[dict[str, float]] = []
    stopping: EarlyStopping[dict[str, torch.Tensor]] = EarlyStopping(config.patience)
    start = time.perf_counter()
    for epoch in epoch_range(config.epochs, progress, type(model).__name__):
        model.train()
        order = torch.randperm(len(inputs), generator=generator, device=device)
        total = 0.0
        for batch in order.split(config.batch_size):
            batch_targets = targets[batch]
            counted = batch_targets >= 0
            hidden = model.encode(inputs[batch])[counted]
            loss = nn.functional.cross_entropy(model.logits(hidden), batch_targets[counted])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * int(counted.sum())
        record = {"epoch": float(epoch), "loss": total / num_targets}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            result = rank_users(valid_scorer, truth, exclude, ks=(k,), split="valid", device=device)
            value = result.metrics[config.eval_metric]
            record[f"valid_{config.eval_metric}"] = value
            stopping.update(
                epoch, value, lambda: {n: t.detach().clone() for n, t in model.state_dict().items()}
            )
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        if stopping.should_stop:
            break
    if stopping.best_state is not None:
        model.load_state_dict(stopping.best_state)
    model.eval()
    return SequentialFit(
        model=model.cpu(),
        history=history,
        best_epoch=stopping.best_epoch,
        seconds=time.perf_counter() - start,
    )
