"""Training batches from the Rust sampler and prompt assembler, prepared ahead in a thread.

A batch is a pure function of (seed, batch index, rank): the seeds, the held-out targets and
every sampled neighbourhood derive from them, so a resumed run sees exactly the batches the
uninterrupted run would have seen, whatever the prefetch depth. The sampler and assembler run
in Rust with the GIL released, so the thread really overlaps with the model's step.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galrec.config import PromptConfig
from galrec.data.sequences import Histories, histories
from galrec.model.objective import BatchIds, ViewPlan

Tokens = dict[str, torch.Tensor]
TOKEN_KEYS = ("input_ids", "attention_mask", "node_ids", "pool_index")
_EVAL_EPOCH = 2**31 - 1  # the sampling stream of evaluation prompts, apart from training's


class ViewBuilder:
    """Hop-0/1/2 prompts of users and items as token batches (docs/method.md).

    With ``sequential``, a user's hop-1 list is the user's most recent items (newest first)
    instead of a uniform sample, and the hop-2 list the co-users of those items: the prompt
    reads the history in time order, as a sequential recommender does.
    """

    def __init__(
        self,
        dataset: Any,
        graph: Any,
        tokenizer_json: Path,
        prompts: PromptConfig,
        seed: int,
        sequential: bool = False,
    ) -> None:
        from galrec.graph.prompts import (
            PromptAssembler,
            PromptTemplates,
            build_text_store,
            load_tokenizer,
        )

        self.graph = graph
        self.cfg = prompts
        self.seed = seed
        self.dataset = dataset
        self.sequential = sequential
        self._histories: dict[str, Histories] = {}
        tokenizer = load_tokenizer(tokenizer_json)
        store = build_text_store(
            tokenizer,
            dataset.item_texts,
            num_users=int(dataset.num_users),
            user_texts=getattr(dataset, "user_texts", None),
        )
        templates = (
            PromptTemplates() if prompts.neighbor_titles else PromptTemplates(neighbor="{node}")
        )
        self.assembler = PromptAssembler(
            tokenizer, store, templates, max_length=prompts.max_length, padding_side="right"
        )

    def sample(
        self,
        side: str,
        seeds: np.ndarray,
        epoch: int,
        exclude: tuple[np.ndarray, np.ndarray] | None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The sampler's hop-1 and hop-2 neighbourhoods of ``seeds`` (training edges only)."""
        return self.graph.sample(
            seeds.astype(np.uint32), side=side, fanouts=tuple(self.cfg.fanouts),
            strategy=self.cfg.strategy, seed=self.seed, epoch=epoch, exclude=exclude,
        )  # fmt: skip

    def assemble(
        self, side: str, hop: int, seeds: np.ndarray, hops: list[tuple[np.ndarray, np.ndarray]]
    ) -> Tokens:
        """Token tensors of the hop-``hop`` prompts of ``seeds`` from a sampler output."""
        batch = self.assembler.assemble(seeds, hops, side=side, hop=hop)  # type: ignore[arg-type]
        return {key: torch.from_numpy(getattr(batch, key)) for key in TOKEN_KEYS}

    def histories(self, split: str) -> Histories:
        """Users' histories as input for scoring ``split`` (galrec.data.sequences' protocol)."""
        if split not in self._histories:
            self._histories[split] = histories(self.dataset, split)
        return self._histories[split]

    def history_hops(
        self, users: np.ndarray, history: Histories, cut: np.ndarray | None, epoch: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Hop arrays of users' history prompts: hop 1 the ``fanouts[0]`` latest items before
        ``cut`` (newest first), hop 2 up to ``fanouts[1]`` other users of each of those items
        (training edges only; never the user itself)."""
        offsets, items = history.recent(users, self.cfg.fanouts[0], cut)
        hop1 = (offsets, items.astype(np.uint32))
        if len(items) == 0:
            return [hop1, (np.zeros(1, np.int64), np.zeros(0, np.uint32))]
        item_offsets, co_users = self.graph.sample(
            items.astype(np.uint32), side="item", fanouts=(self.cfg.fanouts[1] + 1,),
            strategy=self.cfg.strategy, seed=self.seed, epoch=epoch,
        )[0]  # fmt: skip
        parent = np.repeat(np.arange(len(items)), np.diff(item_offsets))
        owner = np.repeat(np.asarray(users, np.int64), np.diff(offsets))[parent]
        keep = co_users.astype(np.int64) != owner
        kept_so_far = np.cumsum(keep)
        kept_before = np.concatenate([[0], kept_so_far])[item_offsets[:-1]]
        keep &= kept_so_far - 1 - kept_before[parent] < self.cfg.fanouts[1]
        counts = np.bincount(parent[keep], minlength=len(items))
        hop2_offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(counts, out=hop2_offsets[1:])
        return [hop1, (hop2_offsets, co_users[keep])]

    def tokens(
        self,
        side: str,
        nodes: np.ndarray,
        hop: int,
        device: torch.device | str = "cpu",
        split: str = "valid",
    ) -> Tokens:
        """Evaluation prompts of ``nodes`` (a fixed sampling stream, no edge excluded); with
        ``sequential``, users' lists are their latest items as input for scoring ``split``."""
        nodes = np.asarray(nodes, dtype=np.int64)
        if hop == 0:
            hops = []
        elif side == "user" and self.sequential:
            hops = self.history_hops(nodes, self.histories(split), None, _EVAL_EPOCH)
        else:
            hops = self.sample(side, nodes, _EVAL_EPOCH, None)
        return {k: v.to(device) for k, v in self.assemble(side, hop, nodes, hops).items()}


@dataclass
class TrainBatch:
    """Token batches of every view a step needs, who is in them, and their size."""

    views: dict[str, Tokens]
    ids: BatchIds
    prompts: int
    tokens: int


class BatchSource:
    """Training batch ``index`` -> :class:`TrainBatch`, deterministic in (seed, index, rank).

    Seeds are users with at least two training items; each gets one of its training items as
    the held-out target (L0's label, L3's positive). That edge is excluded from every sampled
    neighbourhood of the batch, so no prompt shows the answer. The item views are the targets'.
    """

    def __init__(self, run: Any, plan: ViewPlan, rank: int = 0) -> None:
        self.views = run.views
        self.plan = plan
        self.seed = run.cfg.train.seed
        self.batch_size = run.cfg.train.batch_size
        self.num_targets = run.cfg.loss.l0_targets
        self.contrastive_batch = run.cfg.loss.contrastive_batch
        # Views whose every row a term needs: L0's user prompts. The rest feed L1-L3 only.
        self.full_views = {"user1"} if run.cfg.loss.l0 > 0 else set()
        self.sequential = run.cfg.train.target == "next"
        # With a held-out prior, cut only where the prior did not train (the targets' window).
        self.cut_window = run.cfg.train.cut_window or run.cfg.model.prior_holdout
        self.rank = rank
        data = run.dataset
        self.num_users = int(data.num_users)
        self.num_items = int(data.num_items)
        self.history = histories(data, "train")  # oldest first; the order matters when sequential
        self.eligible = np.flatnonzero(self.history.lengths() >= 2)
        if len(self.eligible) == 0:
            raise ValueError("no user has two training interactions; nothing to train on")

    def _targets(
        self, rng: np.random.Generator, users: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """L0 targets [B, m] (-1 padded), the cut of each history (sequential), and the seen
        mask [B, num_items] (sequential: every item before the cut)."""
        starts = self.history.indptr[users]
        counts = self.history.indptr[users + 1] - starts
        m = self.num_targets
        if self.sequential:  # a cut in 1..n-1: at least one item before it, the target at it
            first = np.maximum(1, counts - self.cut_window) if self.cut_window else 1
            cut = first + (rng.random(len(users)) * (counts - first)).astype(np.int64)
            positions = cut[:, None] + np.arange(m)
        else:  # m distinct random items, keeping at least one for the prompt
            cut = None
            keys = [rng.permutation(int(n))[: min(m, int(n) - 1)] for n in counts]
            positions = np.full((len(users), m), np.iinfo(np.int64).max)
            for row, chosen in enumerate(keys):
                positions[row, : len(chosen)] = chosen
        valid = positions < counts[:, None]
        flat = starts[:, None] + np.where(valid, positions, 0)
        targets = np.where(valid, self.history.items[flat], -1)
        if cut is None:
            return targets, None, None
        seen = np.zeros((len(users), self.num_items), dtype=bool)
        offsets, before = self.history.recent(users, int(cut.max()), cut)  # all before the cut
        seen[np.repeat(np.arange(len(users)), np.diff(offsets)), before] = True
        return targets, cut, seen

    def __call__(self, index: int) -> TrainBatch:
        rng = np.random.default_rng([self.seed, index, self.rank])
        users = rng.choice(
            self.eligible, self.batch_size, replace=len(self.eligible) < self.batch_size
        )
        contrastive = self.contrastive_batch or len(users)
        all_targets, cut, seen = self._targets(rng, users)
        targets = all_targets[:, 0]
        shown = all_targets >= 0
        exclude = (np.repeat(users, shown.sum(1)), all_targets[shown])
        views: dict[str, Tokens] = {}
        for side, seeds in (("user", users), ("item", targets)):
            wanted = sorted(int(v[4:]) for v in self.plan.all if v.startswith(side))
            if not wanted:
                continue
            epoch = 2 * index + (side == "item")
            if max(wanted) == 0:
                hops = []
            elif side == "user" and cut is not None:
                hops = self.views.history_hops(users, self.history, cut, epoch)
            else:
                hops = self.views.sample(side, seeds, epoch, exclude)
            for hop in wanted:
                rows = len(seeds) if f"{side}{hop}" in self.full_views else contrastive
                views[f"{side}{hop}"] = head_rows(self.views.assemble(side, hop, seeds, hops), rows)
        ids = BatchIds(
            torch.from_numpy(users),
            torch.from_numpy(targets),
            torch.from_numpy(targets + self.num_users),
            l0_targets=torch.from_numpy(all_targets) if self.num_targets > 1 else None,
            seen=None if seen is None else torch.from_numpy(seen),
            cut=None if cut is None else torch.from_numpy(cut),
        )
        n_prompts = sum(t["input_ids"].shape[0] for t in views.values())
        n_tokens = int(sum(int(t["attention_mask"].sum()) for t in views.values()))
        return TrainBatch(views, ids, n_prompts, n_tokens)


def head_rows(tokens: Tokens, rows: int) -> Tokens:
    """The first ``rows`` prompts of a token batch, without padding columns they do not use."""
    if rows >= tokens["input_ids"].shape[0]:
        return tokens
    return _rows_trimmed(tokens, slice(0, rows), int(_used_lengths(tokens)[:rows].max()))


def _used_lengths(tokens: Tokens) -> torch.Tensor:
    """Columns each prompt uses: its real tokens, and at least up to its pooling position."""
    return torch.maximum(tokens["attention_mask"].sum(1), tokens["pool_index"] + 1)


def _rows_trimmed(tokens: Tokens, rows: slice | torch.Tensor, width: int) -> Tokens:
    """Prompts ``rows`` of a token batch, cut to their first ``width`` columns."""
    return {
        key: value[rows] if key == "pool_index" else value[rows, :width]
        for key, value in tokens.items()
    }


def length_sorted_chunks(tokens: Tokens, size: int) -> Iterator[tuple[torch.Tensor, Tokens]]:
    """Chunks of at most ``size`` prompts of a token batch in order of length, each without the
    padding columns none of its rows uses, with the rows they hold: a batch of prompts of mixed
    length runs on about its real token count instead of ``rows x longest``."""
    lengths = _used_lengths(tokens)
    order = torch.argsort(lengths, stable=True)
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        yield rows, _rows_trimmed(tokens, rows, int(lengths[rows].max()))


def concat_views(views: Sequence[Tokens]) -> tuple[Tokens, list[int]]:
    """Stack token batches of different lengths into one (right-padded) and their row counts."""
    length = max(t["input_ids"].shape[1] for t in views)
    fill = {"input_ids": 0, "attention_mask": 0, "node_ids": -1}
    out: Tokens = {}
    for key, value in fill.items():
        out[key] = torch.cat(
            [
                torch.nn.functional.pad(t[key], (0, length - t[key].shape[1]), value=value)
                for t in views
            ]
        )
    out["pool_index"] = torch.cat([t["pool_index"] for t in views])
    return out, [t["input_ids"].shape[0] for t in views]


class Prefetcher:
    """Builds batches ``start..stop-1`` in a background thread, ``depth`` ahead of the loop.

    Iterating yields ``(index, batch, seconds the loop waited for it)``; an error in the thread
    is raised in the loop.
    """

    def __init__(self, source: Any, start: int, stop: int, depth: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._range = (start, stop)
        self._thread = threading.Thread(target=self._work, args=(source,), daemon=True)
        self._thread.start()

    def _work(self, source: Any) -> None:
        for index in range(*self._range):
            if self._stop.is_set():
                return
            try:
                item: Any = (index, source(index))
            except BaseException as err:  # handed to the consuming thread
                item = err
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def __iter__(self) -> Iterator[tuple[int, TrainBatch, float]]:
        for _ in range(*self._range):
            started = time.perf_counter()
            item = self._queue.get()
            waited = time.perf_counter() - started
            if isinstance(item, BaseException):
                raise item
            yield item[0], item[1], waited

    def close(self) -> None:
        """Stop the thread and drop what it prepared."""
        self._stop.set()
        self._thread.join(timeout=5)
