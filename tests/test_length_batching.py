"""Forward passes over prompts of mixed length (galrec.training.pipeline): the momentum keys of a
training step, where views of similar length share one no-grad forward (key_batches), and
evaluation's encoding in length-sorted chunks (length_sorted_chunks, Run.encode). Both must give
what one forward per prompt gives."""

from __future__ import annotations

import numpy as np
import torch
from galrec.training.pipeline import head_rows, key_batches, length_groups, length_sorted_chunks
from train_helpers import tiny_config


def _tokens(rows: int, length: int, pad_last: int = 0) -> dict[str, torch.Tensor]:
    mask = torch.ones(rows, length, dtype=torch.long)
    if pad_last:
        mask[-1, -pad_last:] = 0
    return {
        "input_ids": torch.arange(rows * length).reshape(rows, length) % 50 + 5,
        "attention_mask": mask,
        "node_ids": torch.full((rows, length), -1, dtype=torch.long),
        "pool_index": mask.sum(1) - 1,
    }


def test_length_groups_by_hand() -> None:
    views = {"u0": _tokens(4, 5), "i0": _tokens(4, 6), "u1": _tokens(4, 64), "i1": _tokens(4, 60)}
    # 5 and 6: padding both to 6 costs 48 tokens against 44 of their own (<= 1.25 x 44): merged.
    # 60 next to them: 12 x 60 = 720 against 1.25 x 284: apart. 64 next to 60: 512 <= 1.25 x 496.
    assert length_groups(views) == [["u0", "i0"], ["i1", "u1"]]
    # No slack: only views of one length share a forward.
    assert length_groups(views, slack=0.0) == [["u0"], ["i0"], ["i1"], ["u1"]]
    assert length_groups({**views, "x": _tokens(2, 64)}, slack=0.0)[-1] == ["u1", "x"]


def test_key_batches_stack_the_head_rows_of_each_view() -> None:
    views = {"a": _tokens(6, 8, pad_last=3), "b": _tokens(6, 7)}
    [(names, tokens, sizes)] = key_batches(views, ["a", "b"], rows=2)
    assert names == ["b", "a"] and sizes == [2, 2]
    assert tokens["input_ids"].shape == (4, 8)
    for offset, name in ((0, "b"), (2, "a")):
        head = head_rows(views[name], 2)
        width = head["input_ids"].shape[1]
        for key in ("input_ids", "attention_mask", "node_ids"):
            assert torch.equal(tokens[key][offset : offset + 2, :width], head[key])
        assert torch.equal(tokens["pool_index"][offset : offset + 2], head["pool_index"])
        assert not tokens["attention_mask"][offset : offset + 2, width:].any()


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


def _tiny_trainer(tmp_path, *overrides: str):  # type: ignore[no-untyped-def]
    from galrec.training.trainer import Trainer

    cfg = tiny_config(
        tmp_path / "run", "gal_rec", "model.sasrec_epochs=1", "model.cf_epochs=2",
        "train.eval_every=0", *overrides,
    )  # fmt: skip
    return Trainer(cfg)


def test_length_sorted_encoding_equals_one_prompt_at_a_time(tmp_path) -> None:
    # Histories of 6 to 14 training items against a 12-item prompt list: lengths differ.
    run = _tiny_trainer(tmp_path, "prompts.fanouts=[12, 2]", "prompts.max_length=128").run
    users = np.arange(run.dataset.num_users)[::-1].copy()  # any order comes back in that order
    h, z = run.encode("user", users, hop=1, chunk=16, split="test")
    lengths = run.views.tokens("user", users, hop=1, split="test")["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) > 1  # prompts of mixed length, so sorting matters
    for index in range(0, len(users), 17):
        h_one, z_one = run.encode("user", users[index : index + 1], hop=1, chunk=1, split="test")
        torch.testing.assert_close(h[index : index + 1], h_one, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(z[index : index + 1], z_one, atol=1e-5, rtol=1e-5)


def test_merged_key_pass_equals_one_forward_per_view(tmp_path) -> None:
    trainer = _tiny_trainer(tmp_path)
    cfg = trainer.cfg
    rows = cfg.loss.contrastive_batch
    for index in range(3):  # a few batches: different lengths, different groupings
        views = trainer.source(index).views
        batches = key_batches(views, trainer.plan.keys, rows)
        assert len(batches) < len(trainer.plan.keys)  # the short hop-0 views share a forward
        merged = trainer._momentum_keys(views, rows)
        assert list(merged) == list(trainer.plan.keys)
        for name in trainer.plan.keys:
            alone = trainer.momentum.forward(trainer.model, **head_rows(views[name], rows))[1]
            torch.testing.assert_close(merged[name], alone.float(), atol=1e-5, rtol=1e-5)
