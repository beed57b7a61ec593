#!/usr/bin/env python3
"""Which part of GAL-Rec's score prior decides the semantic-gap twins, against LightGCN alone.

On the generated semantic-gap data GAL-Rec keeps its step 0 (the calibrated prior) and trails
LightGCN on twin accuracy by a few decisions (docs/results.md). This diagnostic scores every
held-out item that has twins, on the validation and test splits, with each subset of the
prior's parts at their calibrated scales, and prints twin accuracy as ``galrec diagnose``
counts it (the held-out twin above each sibling, ties half). Then, over all runs given, it
counts the decisions where LightGCN alone (the prior's ``cf`` part: the LightGCN baseline of
the run's seed) and the full prior disagree, with an exact two-sided McNemar test.

    python scripts/twin_decisions_by_prior_part.py \\
        runs/compare/semantic-gap/runs/gal_rec/seed0 runs/compare/semantic-gap/runs/gal_rec/seed1

Each run must have a score prior with a ``cf`` part, on data with twin ground truth. Only the
prior is scored: the script says when a run's language-model term is not zero (then the run
ranks by more than its prior). CPU, a few seconds per run after the backbone loads.
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import numpy as np
import torch
from galrec.evaluation.diagnose import sibling_outcomes, twin_group_index
from galrec.training.run import Run, open_run

SPLITS = ("valid", "test")


def prior_outcomes(run: Run, split: str) -> dict[str, np.ndarray]:
    """Twin decisions of every subset of the run's prior parts (named ``sasrec+cf`` and so
    on, scaled as calibrated) on ``split``'s held-out items that have twins."""
    prior = run.model.prior
    truth = getattr(run.dataset, "ground_truth", None)
    if prior is None or truth is None or len(truth.twin_groups) == 0:
        raise SystemExit(f"{run.out_dir}: needs a score prior and data with twin ground truth")
    groups = np.asarray(truth.twin_groups)
    group_of = twin_group_index(groups, run.dataset.num_items)
    held_out = getattr(run.dataset, split)
    users, items = np.asarray(held_out.users), np.asarray(held_out.items)
    keep = group_of[items] >= 0
    users, items = users[keep], items[keep]
    names = run.cfg.model.score_prior.split("+")
    scales = prior.log_scale.exp().tolist()
    with torch.no_grad():
        raw = prior.part_scores(prior.user_states(torch.from_numpy(users), split))
    items_t = torch.from_numpy(items)
    siblings = torch.from_numpy(groups[group_of[items]])
    outcomes = {}
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(range(len(names)), size):
            scores = sum(scales[k] * raw[k] for k in subset)
            label = "+".join(names[k] for k in subset)
            outcomes[label] = sibling_outcomes(scores, items_t, siblings).numpy()
    return outcomes


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar test: the binomial tail of the discordant decisions."""
    n, k = only_first + only_second, min(only_first, only_second)
    return min(1.0, 2 * sum(math.comb(n, j) for j in range(k + 1)) / 2**n) if n else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished GAL-Rec run directories")
    args = parser.parse_args()
    torch.set_num_threads(1)
    disagreements = {split: [0, 0] for split in SPLITS}
    for run_dir in args.runs:
        run = open_run(run_dir)
        assert run.model.prior is not None  # prior_outcomes refuses a run without one
        scales = ", ".join(
            f"{name} {scale:.3g}"
            for name, scale in zip(
                run.cfg.model.score_prior.split("+"),
                run.model.prior.log_scale.exp().tolist(),
                strict=True,
            )
        )
        print(f"{run_dir}: calibrated scales {scales}")
        if not run.model.lm_term_is_zero:
            print("  (its language-model term is not zero: the run ranks by more than this)")
        full = run.cfg.model.score_prior
        for split in SPLITS:
            outcomes = prior_outcomes(run, split)
            if "cf" not in outcomes:
                raise SystemExit(f"{run_dir}: the prior has no cf part to compare with")
            count = len(outcomes[full])
            cells = "  ".join(f"{label} {o.mean():.3f}" for label, o in outcomes.items())
            print(f"  {split} ({count} decisions): {cells}")
            cf, prior = outcomes["cf"], outcomes[full]
            disagreements[split][0] += int(((cf == 1) & (prior == 0)).sum())
            disagreements[split][1] += int(((cf == 0) & (prior == 1)).sum())
    for split, (cf_only, prior_only) in disagreements.items():
        print(
            f"{split}: LightGCN right where the prior is wrong {cf_only}, the reverse "
            f"{prior_only}; exact McNemar p = {mcnemar_p(cf_only, prior_only):.3f}"
        )


if __name__ == "__main__":
    main()
