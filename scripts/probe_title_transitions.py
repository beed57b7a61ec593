#!/usr/bin/env python3
"""Probe: how much could a *trained* title model add to GAL-Rec's score prior?

GAL-Rec's trained term adds nothing measurable on top of its prior (docs/results.md). This probe
measures the scale of what training in the frozen language model's title space could add: it fits a
title-transition model on every training transition of a prepared dataset (a user's latest 5
titles, weighted 0.5^j as the prior's title part reads them, mapped by a trained 384 x 384
matrix that starts at the identity, against every item's title; full softmax, the items before
the cut left out) and joins it to the run's prior as a fourth part, all scales calibrated on
validation as the package calibrates its prior. Reported on the validation split only: the
prior's validation NDCG@10 with and without the trained part, in-sample (scales fitted on every
validation user, as the package does) and cross-half (scales fitted on one half of the users,
measured on the other, both ways).

    python scripts/probe_title_transitions.py --dataset runs/data/amazon-scientific \
        --run runs/compare/amazon-scientific/runs/frozen_lm/seed0

``--run`` is a finished language-model run with a SASRec + LightGCN + title prior
(``features.npy``, ``cf_vectors.npy``, ``prior.safetensors``). One torch thread, CPU.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from galrec.baselines.sequential import SequentialScorer
from galrec.data.prepared import PreparedDataset
from galrec.data.sequences import Histories, histories
from galrec.evaluation.evaluate import rank_users, split_sets
from galrec.model.prior import CFPart, HistoryPart, PriorPart, ScorePrior, SequentialPart, TextPart
from galrec.training.run import validation_pairs

RECENT, DECAY = 5, 0.5  # the prior's title part: model.text_prior_items, text_prior_decay


class TitleTransitions(torch.nn.Module):
    """``exp(t) * <p_u (I + D), q_i>``: the prior's title score with a trained map ``D`` (zero
    at the start) and temperature ``t``."""

    def __init__(self, titles: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("titles", titles)
        self.delta = torch.nn.Parameter(torch.zeros(titles.shape[1], titles.shape[1]))
        self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(10.0)))

    def user(self, states: torch.Tensor) -> torch.Tensor:
        return states + states @ self.delta

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.log_temperature.exp() * self.user(states) @ self.titles.T


class TrainedTitlePart(HistoryPart):
    """The trained transitions as a prior part: ``p_u`` the title part's state, mapped."""

    def __init__(self, model: TitleTransitions, text: TextPart, dataset: Any) -> None:
        super().__init__(model.titles, dataset)
        self.model = model
        self.text = text

    def history_states(
        self, history: Histories, users: np.ndarray, cut: np.ndarray | None
    ) -> torch.Tensor:
        with torch.no_grad():
            return self.model.user(self.text.history_states(history, users, cut))


def validation_ndcg(parts: list[PriorPart], dataset: Any) -> tuple[float, float]:
    """Validation NDCG@10 of the prior over ``parts``: scales fitted on every validation user
    (in-sample, the package's protocol) and cross-half (fitted on one half, measured on the
    other, both ways, averaged over users)."""
    users, items, seen = validation_pairs(dataset)
    prior = ScorePrior(parts)
    states = prior.user_states(torch.from_numpy(users), "valid")
    targets = torch.from_numpy(items)
    truth, exclude = split_sets(dataset, "valid")
    row_of = np.full(dataset.num_users, -1)
    row_of[users] = np.arange(len(users))

    class Scores:
        num_items = dataset.num_items

        def score_users(self, batch: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return prior(states[row_of[batch.numpy()]])

    def ndcg(rows: np.ndarray) -> float:
        result = rank_users(Scores(), truth, exclude, ks=(10,), split="valid", users=users[rows])
        return result.metrics["ndcg@10"]

    order = np.random.default_rng(0).permutation(len(users))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    crossed = 0.0
    for fit, measure in (halves, halves[::-1]):
        prior.calibrate(states[fit], targets[fit], seen[fit])
        crossed += ndcg(measure) * len(measure)
    prior.calibrate(states, targets, seen)
    return ndcg(np.arange(len(users))), crossed / len(users)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--report", default="1,3,6,10", help="epochs to join to the prior at")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    dataset = PreparedDataset.load(args.dataset)
    features = torch.from_numpy(np.load(args.run / "features.npy"))
    cf = torch.from_numpy(np.load(args.run / "cf_vectors.npy"))
    num_users = dataset.num_users
    raw_titles = features[num_users:, : features.shape[1] - cf.shape[1]]
    sasrec = SequentialScorer.load(args.run / "prior.safetensors").model
    text = TextPart(raw_titles, dataset, RECENT, DECAY)
    prior_parts: list[PriorPart] = [
        SequentialPart(sasrec, dataset),
        CFPart(cf[:num_users], cf[num_users:]),
        text,
    ]

    train = histories(dataset, "train")
    lengths = train.lengths()
    users = np.repeat(np.arange(num_users), np.maximum(lengths - 1, 0))
    cuts = np.concatenate([np.arange(1, n) for n in lengths if n > 1]).astype(np.int64)
    targets = torch.from_numpy(train.items[train.indptr[users] + cuts])
    states = text.history_states(train, users, cuts)
    consumed = torch.zeros(len(users), dataset.num_items, dtype=torch.bool)
    for row, (user, cut) in enumerate(zip(users, cuts, strict=True)):
        start = train.indptr[user]
        consumed[row, torch.from_numpy(train.items[start : start + cut])] = True

    in_sample, crossed = validation_ndcg(prior_parts, dataset)
    print(f"{len(users):,} training transitions; validation NDCG@10 (in-sample / cross-half)")
    print(f"prior (SASRec + LightGCN + frozen titles): {in_sample:.4f} / {crossed:.4f}")
    valid_users, valid_items, valid_seen = validation_pairs(dataset)
    valid_states = text.history_states(histories(dataset, "valid"), valid_users, None)
    model = TitleTransitions(text.item_vectors)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    report = {int(e) for e in args.report.split(",")}
    for epoch in range(1, args.epochs + 1):
        started, total = time.perf_counter(), 0.0
        for batch in torch.randperm(len(users)).split(512):
            logits = model(states[batch]).masked_fill(consumed[batch], float("-inf"))
            loss = F.cross_entropy(logits, targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        with torch.no_grad():  # items with identical titles tie: counted in the target's favour
            alone = model(valid_states).masked_fill(valid_seen, float("-inf"))
            rank = (alone > alone[torch.arange(len(valid_items)), valid_items][:, None]).sum(1)
            ndcg = float(torch.where(rank < 10, 1 / torch.log2(rank + 2.0), 0.0).mean())
        line = (
            f"epoch {epoch}: loss {total / len(users):.3f}, trained part alone {ndcg:.4f}"
            f" ({time.perf_counter() - started:.0f} s)"
        )
        if epoch in report:
            part = TrainedTitlePart(model, text, dataset)
            joined = validation_ndcg([*prior_parts, part], dataset)
            line += f"; prior + trained part {joined[0]:.4f} / {joined[1]:.4f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
