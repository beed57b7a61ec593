"""Ranking evaluation shared by every galrec model: full ranking by default, sampled on request.

Every model is scored through one interface, the :class:`Scorer` protocol::

    class Scorer(Protocol):
        num_items: int
        def score_users(self, users: torch.Tensor) -> torch.Tensor: ...

``score_users`` takes a 1-D int64 tensor of user ids (``0..num_users-1``, on the evaluation
device) and returns a float tensor ``[len(users), num_items]``: a higher score means "recommend
first". The evaluator calls it under ``torch.no_grad()`` for chunks of users, masks the user's
training items (and validation items when testing), takes the top K and computes Recall, NDCG,
HR and MRR at every K. A model whose input depends on the split (a sequential model's history)
implements :class:`SplitScorer`: :func:`evaluate` scores through ``for_split(data, split)``, so
the held-out interaction never reaches the model's input. A model that can also hand out
representations implements :class:`EmbeddingModel` (``user_embeddings()`` /
``item_embeddings()``, 2-D tensors); those feed the alignment/uniformity analysis and ``galrec
diagnose``. GAL-Rec, the LM baselines, MF, LightGCN, popularity, SASRec and GRU4Rec all plug in
this way.

Metric definitions (per user, ``R`` the user's held-out items, ``hits`` the top-K items in ``R``):
``Recall@K = |hits| / |R|``; ``HR@K = 1 if hits else 0``; ``NDCG@K = DCG / IDCG`` with binary gains
and ``log2(rank + 1)`` discounts, IDCG over ``min(|R|, K)`` ideal hits; ``MRR@K = 1 / rank`` of
the first hit within K, else 0. Metrics are averaged over users with at least one held-out item.
With leave-one-out (one held-out item per user) Recall@K equals HR@K.

Sampled mode ranks the held-out items among ``num_negatives`` random items the user never
interacted with (or among a fixed candidate list, as in LLaRA). Sampled numbers can reorder models
(Krichene & Rendle, KDD 2020), so a sampled result carries ``mode="sampled"`` and every printed form
says so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)
METRICS: tuple[str, ...] = ("recall", "ndcg", "hr", "mrr")
# Bytes of working memory per (user, item) cell of a chunk: float32 scores plus boolean masks,
# and the int64 hash keys of sampled mode.
_BYTES_PER_CELL = 16
_DEFAULT_CHUNK_BYTES = 1 << 30


@runtime_checkable
class Scorer(Protocol):
    """A model that scores every item for a batch of users (higher = recommend first)."""

    num_items: int

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """Scores ``[len(users), num_items]`` for the int64 user ids ``users``."""
        ...


@runtime_checkable
class SplitScorer(Protocol):
    """A model whose input depends on the split it scores (a sequential model reads the user's
    history: the training items for validation, plus the validation item for test, see
    :mod:`galrec.data.sequences`). :func:`evaluate` scores through ``for_split(data, split)``."""

    def for_split(self, data: SplitDataset, split: str) -> Scorer:
        """The scorer of ``split`` of ``data``."""
        ...


def scorer_for_split(scorer: Scorer, data: SplitDataset, split: str) -> Scorer:
    """``scorer.for_split(data, split)`` for a :class:`SplitScorer`, else ``scorer`` itself."""
    return scorer.for_split(data, split) if isinstance(scorer, SplitScorer) else scorer


@runtime_checkable
class EmbeddingModel(Protocol):
    """A model whose user and item representations can be inspected (alignment, diagnose)."""

    def user_embeddings(self) -> torch.Tensor:
        """All user representations, ``[num_users, dim]``."""
        ...

    def item_embeddings(self) -> torch.Tensor:
        """All item representations, ``[num_items, dim]``."""
        ...


class Interactions(Protocol):
    """One split's interactions as parallel arrays (``galrec.data`` splits satisfy this)."""

    @property
    def users(self) -> np.ndarray: ...

    @property
    def items(self) -> np.ndarray: ...


class SplitDataset(Protocol):
    """A dataset with train/valid/test splits (``galrec.data.PreparedDataset`` satisfies this)."""

    @property
    def num_users(self) -> int: ...

    @property
    def num_items(self) -> int: ...

    @property
    def train(self) -> Interactions: ...

    @property
    def valid(self) -> Interactions: ...

    @property
    def test(self) -> Interactions: ...


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` picks the GPU when there is one, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """Column names in a fixed order: ``recall@5, ..., mrr@20``."""
    return [f"{metric}@{k}" for metric in METRICS for k in ks]


@dataclass(frozen=True)
class UserItemSets:
    """Each user's set of items in CSR form (sorted, deduplicated), for masks and ground truth."""

    indptr: np.ndarray  # int64 [num_users + 1]
    indices: np.ndarray  # int64 [nnz]

    @classmethod
    def from_pairs(
        cls, users: np.ndarray, items: np.ndarray, num_users: int, num_items: int
    ) -> UserItemSets:
        """Group ``(users[j], items[j])`` pairs by user; out-of-range ids are an error."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError(
                f"users and items must be 1-D arrays of equal length, got shapes "
                f"{users.shape} and {items.shape}"
            )
        _check_range("user", users, num_users)
        _check_range("item", items, num_items)
        keys = np.unique(users * num_items + items)
        grouped_users, grouped_items = np.divmod(keys, num_items)
        counts = np.bincount(grouped_users, minlength=num_users)
        indptr = np.zeros(num_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr=indptr, indices=grouped_items.astype(np.int64))

    def users_with_items(self) -> np.ndarray:
        """Users that have at least one item."""
        return np.flatnonzero(np.diff(self.indptr) > 0)

    def mask(self, users: np.ndarray, num_items: int) -> torch.Tensor:
        """Dense ``[len(users), num_items]`` bool: True where the user holds the item."""
        sets = (torch.from_numpy(self.indptr), torch.from_numpy(self.indices))
        rows, items = _rows_of(sets, torch.from_numpy(np.asarray(users, dtype=np.int64)))
        out = torch.zeros(len(users), num_items, dtype=torch.bool)
        out[rows, items] = True
        return out


def _check_range(what: str, ids: np.ndarray, bound: int) -> None:
    if len(ids) and (ids.min() < 0 or ids.max() >= bound):
        bad = ids[(ids < 0) | (ids >= bound)][0]
        raise ValueError(f"{what} id {bad} is outside 0..{bound - 1}")


@dataclass
class EvalResult:
    """Per-user metrics of one evaluation, with how they were obtained."""

    mode: str  # "full" or "sampled"
    split: str
    ks: tuple[int, ...]
    users: np.ndarray  # the evaluated users, int64
    per_user: dict[str, np.ndarray]  # "ndcg@10" -> float64 [len(users)]
    num_items: int
    candidates: str = "all items"  # what the held-out items were ranked against
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        """Metrics averaged over the evaluated users."""
        return {name: float(values.mean()) for name, values in self.per_user.items()}

    @property
    def label(self) -> str:
        """How to cite the numbers: full ranking, or which sampled protocol."""
        if self.mode == "full":
            return f"full ranking over {self.num_items} items"
        return f"SAMPLED metrics ({self.candidates}), not comparable to full ranking"

    def format(self) -> str:
        """A small table of the averaged metrics, headed by the protocol label."""
        suffix = " (sampled)" if self.mode == "sampled" else ""
        width = max(len(metric) for metric in METRICS) + len(suffix) + 2
        lines = [f"{self.split} split, {len(self.users)} users, {self.label}"]
        lines.append("metric".ljust(width) + "".join(f"@{k}".rjust(10) for k in self.ks))
        for metric in METRICS:
            row = "".join(f"{self.metrics[f'{metric}@{k}']:10.4f}" for k in self.ks)
            lines.append(f"{metric}{suffix}".ljust(width) + row)
        return "\n".join(lines)

    def save(self, directory: str | Path) -> None:
        """Write ``metrics.json`` (averages, protocol) and ``per_user.npz`` (for paired tests)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        summary = {
            "mode": self.mode,
            "label": self.label,
            "split": self.split,
            "ks": list(self.ks),
            "num_users": len(self.users),
            "num_items": self.num_items,
            "candidates": self.candidates,
            "seconds": self.seconds,
            "metrics": self.metrics,
            "extra": self.extra,
        }
        (directory / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        arrays = {"users": self.users, **self.per_user}
        # numpy's stub types **kwds like its own bool keyword (allow_pickle); the values are arrays.
        np.savez(directory / "per_user.npz", **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, directory: str | Path) -> EvalResult:
        """Read back what :meth:`save` wrote."""
        directory = Path(directory)
        summary = json.loads((directory / "metrics.json").read_text())
        with np.load(directory / "per_user.npz") as arrays:
            users = arrays["users"]
            per_user = {name: arrays[name] for name in arrays.files if name != "users"}
        return cls(
            mode=summary["mode"],
            split=summary["split"],
            ks=tuple(summary["ks"]),
            users=users,
            per_user=per_user,
            num_items=summary["num_items"],
            candidates=summary["candidates"],
            seconds=summary["seconds"],
            extra=summary.get("extra", {}),
        )


def ranking_metrics(
    hits: torch.Tensor, num_relevant: torch.Tensor, ks: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per-user metrics from ``hits`` ``[B, max(ks)]`` (top-ranked first) and ``|R|`` per user."""
    hits = hits.to(torch.float64)
    num_relevant = num_relevant.to(torch.float64)
    ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64, device=hits.device)
    discounts = 1.0 / torch.log2(ranks + 1.0)
    ideal = torch.cumsum(discounts, 0)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        top = hits[:, :k]
        num_hits = top.sum(1)
        ideal_count = torch.clamp(num_relevant, max=k).long()
        out[f"recall@{k}"] = num_hits / num_relevant
        out[f"ndcg@{k}"] = (top * discounts[:k]).sum(1) / ideal[ideal_count - 1]
        out[f"hr@{k}"] = (num_hits > 0).to(torch.float64)
        out[f"mrr@{k}"] = (top / ranks[:k]).amax(1)
    return out


def _rows_of(
    sets: tuple[torch.Tensor, torch.Tensor], users: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row position in the chunk, item) for every item of every user in ``users``."""
    indptr, indices = sets
    starts = indptr[users]
    counts = indptr[users + 1] - starts
    rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
    first = torch.cumsum(counts, 0) - counts
    within = torch.arange(int(counts.sum()), device=users.device) - first[rows]
    return rows, indices[starts[rows] + within]


def _hash_keys(seed: int, users: torch.Tensor, num_items: int) -> torch.Tensor:
    """A pseudo-random key per (user, item) that depends only on (seed, user, item).

    Negatives drawn by these keys do not depend on the chunk size or the device.
    """
    mask = 0xFFFFFFFF
    items = torch.arange(num_items, device=users.device, dtype=torch.int64)
    x = (users[:, None] * 0x9E3779B1 + items[None, :] * 0x85EBCA77 + seed * 0x27D4EB2F) & mask
    for multiplier in (0x7FEB352D, 0x2C1B3C6D):  # both < 2**31, so no int64 overflow
        x = x ^ (x >> 16)
        x = (x * multiplier) & mask
    return x ^ (x >> 15)


def default_chunk_size(num_items: int, budget_bytes: int = _DEFAULT_CHUNK_BYTES) -> int:
    """Users per chunk so that one chunk's score matrix and masks stay within ``budget_bytes``."""
    return max(1, min(8192, budget_bytes // (_BYTES_PER_CELL * max(num_items, 1))))


def _score_chunk(
    scorer: Scorer, users: torch.Tensor, num_items: int, device: torch.device
) -> torch.Tensor:
    """The scorer's float32 scores for ``users`` as a fresh tensor we may modify in place."""
    scores = scorer.score_users(users)
    if scores.shape != (len(users), num_items):
        raise ValueError(
            f"score_users returned shape {tuple(scores.shape)}, "
            f"expected ({len(users)}, {num_items})"
        )
    scores = scores.to(device, torch.float32, copy=True)
    # The sum is one pass with no temporary; only when it is NaN (a NaN, or +inf with -inf) is
    # the exact, slower check needed.
    if torch.isnan(scores.sum()) and torch.isnan(scores).any():
        raise ValueError("score_users returned NaN scores")
    return scores


def _device_sets(sets: UserItemSets, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(sets.indptr).to(device), torch.from_numpy(sets.indices).to(device)


def top_k(
    scorer: Scorer,
    users: np.ndarray,
    exclude: UserItemSets | None,
    k: int,
    *,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` items ``[len(users), k]`` per user, never an item in ``exclude`` (int64, -1
    past the items left after masking), and their scores (float32, -inf there)."""
    num_items = int(scorer.num_items)
    dev = resolve_device(device)
    users = np.asarray(users, dtype=np.int64)
    chunk = chunk_size or default_chunk_size(num_items)
    exclude_t = None if exclude is None else _device_sets(exclude, dev)
    out = np.full((len(users), k), -1, dtype=np.int64)
    out_scores = np.full((len(users), k), -np.inf, dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(users), chunk):
            users_t = torch.from_numpy(users[start : start + chunk]).to(dev)
            scores = _score_chunk(scorer, users_t, num_items, dev)
            if exclude_t is not None:
                scores[_rows_of(exclude_t, users_t)] = -torch.inf
            rows = slice(start, start + len(users_t))
            out[rows], out_scores[rows] = top_of_scores(scores, k)
    return out, out_scores


def top_of_scores(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` of each row of ``scores`` [n, num_items], masked entries set to -inf: item
    indices ``[n, k]`` (int64, -1 past the finite scores) and their scores (float32, -inf)."""
    kept = min(k, scores.shape[1])
    items = np.full((scores.shape[0], k), -1, dtype=np.int64)
    values = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    top_scores, top_items = torch.topk(scores, kept, dim=1)
    top_items[~torch.isfinite(top_scores)] = -1
    items[:, :kept] = top_items.cpu().numpy()
    values[:, :kept] = top_scores.float().cpu().numpy()
    return items, values


def rank_users(
    scorer: Scorer,
    truth: UserItemSets,
    exclude: UserItemSets | None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    split: str = "test",
    users: np.ndarray | None = None,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
    num_negatives: int | None = None,
    candidates: np.ndarray | None = None,
    seed: int = 0,
) -> EvalResult:
    """Rank items for every user with held-out items and compute the metrics.

    ``truth`` holds each user's held-out items, ``exclude`` the items never to be recommended
    (training, plus validation when testing). Full ranking by default; ``num_negatives=N`` ranks
    the held-out items against N sampled items the user has not interacted with, and
    ``candidates`` (``[len(users), C]`` item ids, one row per evaluated user) against a fixed list;
    both give a result with ``mode="sampled"``.
    """
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if num_negatives is not None and candidates is not None:
        raise ValueError("give num_negatives or candidates, not both")
    num_items = int(scorer.num_items)
    dev = resolve_device(device)
    eval_users = truth.users_with_items() if users is None else np.asarray(users, np.int64)
    if candidates is not None:
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.ndim != 2 or len(candidates) != len(eval_users):
            raise ValueError(
                f"candidates must be [num_evaluated_users={len(eval_users)}, C], "
                f"got shape {candidates.shape}"
            )
        _check_range("candidate item", candidates.ravel(), num_items)
    if num_negatives is not None and num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    chunk = chunk_size or default_chunk_size(num_items)
    truth_t = _device_sets(truth, dev)
    exclude_t = None if exclude is None else _device_sets(exclude, dev)
    kmax = min(ks[-1], num_items)
    per_user: dict[str, list[torch.Tensor]] = {name: [] for name in metric_names(ks)}
    start_time = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(eval_users), chunk):
            users_t = torch.from_numpy(eval_users[start : start + chunk]).to(dev)
            scores = _score_chunk(scorer, users_t, num_items, dev)
            relevant = torch.zeros_like(scores, dtype=torch.bool)
            relevant[_rows_of(truth_t, users_t)] = True
            num_relevant = truth_t[0][users_t + 1] - truth_t[0][users_t]  # sets are deduplicated
            if bool((num_relevant == 0).any()):
                raise ValueError("every evaluated user needs at least one held-out item")
            excluded = None if exclude_t is None else _rows_of(exclude_t, users_t)
            allowed = None
            if num_negatives is not None:
                keys = _hash_keys(seed, users_t, num_items)
                keys[relevant] = -1
                if excluded is not None:
                    keys[excluded] = -1
                available = (keys >= 0).sum(1)
                if bool((available < num_negatives).any()):
                    raise ValueError(
                        f"a user has fewer than num_negatives={num_negatives} items to sample"
                    )
                allowed = relevant.clone()
                allowed.scatter_(1, torch.topk(keys, num_negatives, dim=1).indices, True)
            elif candidates is not None:
                rows = torch.from_numpy(candidates[start : start + chunk]).to(dev)
                allowed = torch.zeros_like(relevant)
                allowed.scatter_(1, rows, True)
                if bool((relevant & ~allowed).any()):
                    raise ValueError("a user's held-out item is missing from its candidate list")
            if allowed is not None:
                scores.masked_fill_(~allowed, -torch.inf)
            elif excluded is not None:
                # Full ranking: mask the excluded (user, item) cells directly, O(excluded items)
                # rather than through a dense mask over the chunk (same scores, same ranking).
                scores[excluded] = -torch.inf
            top_scores, top_items = torch.topk(scores, kmax, dim=1)
            hits = relevant.gather(1, top_items) & torch.isfinite(top_scores)
            if kmax < ks[-1]:
                hits = torch.nn.functional.pad(hits, (0, ks[-1] - kmax))
            for name, values in ranking_metrics(hits, num_relevant, ks).items():
                per_user[name].append(values.cpu())
    seconds = time.perf_counter() - start_time
    mode, described = "full", "all items"
    if num_negatives is not None:
        mode, described = "sampled", f"{num_negatives} random negatives, seed {seed}"
    elif candidates is not None:
        mode, described = "sampled", f"fixed lists of {candidates.shape[1]} candidates"
    return EvalResult(
        mode=mode,
        split=split,
        ks=ks,
        users=eval_users,
        per_user={
            name: (torch.cat(parts).numpy() if parts else np.zeros(0))
            for name, parts in per_user.items()
        },
        num_items=num_items,
        candidates=described,
        seconds=seconds,
    )


def split_sets(data: SplitDataset, split: str) -> tuple[UserItemSets, UserItemSets]:
    """(held-out items, items to mask) for ``split``: training masked, plus validation on test."""
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")

    masked = [data.train] + ([data.valid] if split == "test" else [])
    held_out = getattr(data, split)
    truth = UserItemSets.from_pairs(held_out.users, held_out.items, data.num_users, data.num_items)
    exclude = UserItemSets.from_pairs(
        np.concatenate([np.asarray(part.users) for part in masked]),
        np.concatenate([np.asarray(part.items) for part in masked]),
        data.num_users,
        data.num_items,
    )
    return truth, exclude


def evaluate(
    scorer: Scorer,
    data: SplitDataset,
    *,
    split: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
    num_negatives: int | None = None,
    candidates: np.ndarray | None = None,
    seed: int = 0,
    users: np.ndarray | None = None,
) -> EvalResult:
    """Evaluate ``scorer`` on ``data``'s validation or test split (see :func:`rank_users`);
    a :class:`SplitScorer` is scored through its ``for_split(data, split)``. ``users``
    restricts it to those users (each needs a held-out item), e.g. a fixed sample."""
    truth, exclude = split_sets(data, split)
    return rank_users(
        scorer_for_split(scorer, data, split),
        truth,
        exclude,
        ks=ks,
        users=users,
        split=split,
        chunk_size=chunk_size,
        device=device,
        num_negatives=num_negatives,
        candidates=candidates,
        seed=seed,
    )


def parse_ks(text: str) -> tuple[int, ...]:
    """``"5,10,20"`` -> ``(5, 10, 20)``, with a clear error for anything else."""
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"--k expects comma-separated integers like 5,10,20, got {text!r}"
        ) from None
    if not ks or min(ks) < 1:
        raise ValueError(f"--k expects positive integers, got {text!r}")
    return ks


__all__ = [
    "DEFAULT_KS",
    "METRICS",
    "EmbeddingModel",
    "EvalResult",
    "Interactions",
    "Scorer",
    "SplitDataset",
    "SplitScorer",
    "UserItemSets",
    "default_chunk_size",
    "evaluate",
    "metric_names",
    "parse_ks",
    "rank_users",
    "ranking_metrics",
    "resolve_device",
    "scorer_for_split",
    "split_sets",
    "top_k",
    "top_of_scores",
]
