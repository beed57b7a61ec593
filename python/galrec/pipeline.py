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
from galrec.objective import BatchIds, ViewPlan

Tokens = dict[str, torch.Tensor]
TOKEN_KEYS = ("input_ids", "attention_mask", "node_ids", "pool_index")
_EVAL_EPOCH = 2**31 - 1  # the sampling stream of evaluation prompts, apart from training's


class ViewBuilder:
    """Hop-0/1/2 prompts of users and items as token batches (METHOD.md section 2)."""

    def __init__(
        self,
        dataset: Any,
        graph: Any,
        tokenizer_json: Path,
        prompts: PromptConfig,
        seed: int,
    ) -> None:
        from galrec.prompts import PromptAssembler, build_text_store, load_tokenizer

        self.graph = graph
        self.cfg = prompts
        self.seed = seed
        tokenizer = load_tokenizer(tokenizer_json)
        store = build_text_store(
            tokenizer,
            dataset.item_texts,
            num_users=int(dataset.num_users),
            user_texts=getattr(dataset, "user_texts", None),
        )
        self.assembler = PromptAssembler(
            tokenizer, store, max_length=prompts.max_length, padding_side="right"
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

    def tokens(
        self, side: str, nodes: np.ndarray, hop: int, device: torch.device | str = "cpu"
    ) -> Tokens:
        """Evaluation prompts of ``nodes`` (a fixed sampling stream, no edge excluded)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        hops = self.sample(side, nodes, _EVAL_EPOCH, None) if hop > 0 else []
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
        self.rank = rank
        data = run.dataset
        self.num_users = int(data.num_users)
        users = np.asarray(data.train.users, dtype=np.int64)
        items = np.asarray(data.train.items, dtype=np.int64)
        order = np.argsort(users, kind="stable")
        self.items_of = items[order]
        counts = np.bincount(users, minlength=self.num_users)
        self.indptr = np.concatenate([[0], np.cumsum(counts)])
        self.eligible = np.flatnonzero(counts >= 2)
        if len(self.eligible) == 0:
            raise ValueError("no user has two training interactions; nothing to train on")

    def __call__(self, index: int) -> TrainBatch:
        rng = np.random.default_rng([self.seed, index, self.rank])
        users = rng.choice(
            self.eligible, self.batch_size, replace=len(self.eligible) < self.batch_size
        )
        starts, counts = self.indptr[users], self.indptr[users + 1] - self.indptr[users]
        targets = self.items_of[starts + (rng.random(len(users)) * counts).astype(np.int64)]
        exclude = (users, targets)
        views: dict[str, Tokens] = {}
        for side, seeds in (("user", users), ("item", targets)):
            wanted = sorted(int(v[4:]) for v in self.plan.all if v.startswith(side))
            if not wanted:
                continue
            hops = (
                self.views.sample(side, seeds, 2 * index + (side == "item"), exclude)
                if max(wanted)
                else []
            )
            for hop in wanted:
                views[f"{side}{hop}"] = self.views.assemble(side, hop, seeds, hops)
        ids = BatchIds(
            torch.from_numpy(users),
            torch.from_numpy(targets),
            torch.from_numpy(targets + self.num_users),
        )
        n_prompts = sum(t["input_ids"].shape[0] for t in views.values())
        n_tokens = int(sum(int(t["attention_mask"].sum()) for t in views.values()))
        return TrainBatch(views, ids, n_prompts, n_tokens)


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
