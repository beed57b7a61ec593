"""Evaluation's encoding of prompts of mixed length in length-sorted chunks
(galrec.training.pipeline.length_sorted_chunks, Run.encode): each chunk padded to its own longest
prompt, the results back in the callers' order, equal to one forward per prompt."""

from __future__ import annotations

import numpy as np
import torch
from galrec.training.pipeline import length_sorted_chunks
from train_helpers import tiny_config


def test_length_sorted_chunks_cover_every_row_once_without_unused_columns() -> None:
    mask = torch.tensor([[1] * 7 + [0] * 3, [1] * 10, [1] * 2 + [0] * 8, [1] * 5 + [0] * 5])
    tokens = {
        "input_ids": torch.arange(40).reshape(4, 10),
        "attention_mask": mask,
        "node_ids": torch.full((4, 10), -1),
        "pool_index": mask.sum(1) - 1,
    }
    chunks = list(length_sorted_chunks(tokens, 3))
    assert [rows.tolist() for rows, _ in chunks] == [[2, 3, 0], [1]]
    assert [part["input_ids"].shape for _, part in chunks] == [(3, 7), (1, 10)]
    rows, part = chunks[0]
    assert torch.equal(part["input_ids"], tokens["input_ids"][rows, :7])
    assert torch.equal(part["pool_index"], torch.tensor([1, 4, 6]))


def test_length_sorted_encoding_equals_one_prompt_at_a_time(tmp_path) -> None:
    from galrec.training.run import build_run

    # Histories of 6 to 14 training items against a 12-item prompt list: lengths differ.
    cfg = tiny_config(
        tmp_path / "run", "gal_rec", "model.sasrec_epochs=1", "model.cf_epochs=2",
        "prompts.fanouts=[12, 2]", "prompts.max_length=128",
    )  # fmt: skip
    run = build_run(cfg, tmp_path / "run")
    users = np.arange(run.dataset.num_users)[::-1].copy()  # any order comes back in that order
    h, z = run.encode("user", users, hop=1, chunk=16, split="test")
    lengths = run.views.tokens("user", users, hop=1, split="test")["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) > 1  # prompts of mixed length, so sorting matters
    for index in range(0, len(users), 17):
        h_one, z_one = run.encode("user", users[index : index + 1], hop=1, chunk=1, split="test")
        torch.testing.assert_close(h[index : index + 1], h_one, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(z[index : index + 1], z_one, atol=1e-5, rtol=1e-5)
