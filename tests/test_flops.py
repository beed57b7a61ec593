"""galrec.training.flops: the step's matmul FLOPs, by hand on a 1-layer shape and against torch's
own FlopCounterMode on a tiny model and on a whole GAL-Rec training step.

Tolerance against FlopCounterMode: 0.1% (the counts agree exactly once the one known difference
of convention is taken out: FlopCounterMode's sdpa backward formula adds a recomputation of the
attention scores, a fifth product as large as each of the other four, which galrec.training.flops
leaves out as hardware rather than model FLOPs).
"""

from __future__ import annotations

import pytest
import torch
from galrec.training.flops import (
    Contrast,
    EncoderShape,
    ModelShape,
    SASRecShape,
    View,
    count_flops,
    encoder_flops,
    model_shape,
    sasrec_flops,
    step_views,
)
from torch.utils.flop_counter import FlopCounterMode
from train_helpers import tiny_batch, tiny_config, tiny_model

TOLERANCE = 1e-3

# 1 layer, hidden 4, MLP 8, LoRA rank 2 on Q and V; a batch of 2 prompts of 3 tokens (6 tokens).
ONE_LAYER = EncoderShape(hidden=4, layers=1, intermediate=8, lora_rank=2, lora=frozenset("qv"))


def test_one_layer_by_hand() -> None:
    # forward: frozen Q, K, V, O 2*6*4*4 = 192 each, up and down 2*6*4*8 = 384 each -> 1536;
    # LoRA on Q and V: 2*6*4*2 + 2*6*2*4 = 192 each -> 384; Q K^T and P V 2*6*4*3 = 144 each.
    # backward with gradients into the input: frozen input gradients 1536 (no weight gradients),
    # LoRA 2 x 384, attention 2 x 288.
    count = encoder_flops(ONE_LAYER, rows=2, length=3, backward=True, input_grad=True)
    assert count.parts["encoder.frozen"] == [1536, 1536]
    assert count.parts["encoder.lora"] == [384, 768]
    assert count.parts["encoder.attention"] == [288, 576]
    assert (count.forward, count.backward) == (2208, 2880)
    # No gradient into the input (no ID token injected): Q, K, V compute no input gradient
    # (frozen: O 192 + up 384 + down 384 = 960); LoRA on Q and V still needs its weight
    # gradients and the gradient into A's output: 192 + 96 each; K needs no gradient, so Q K^T
    # differentiates Q only (144) and P V both operands (288).
    count = encoder_flops(ONE_LAYER, rows=2, length=3, backward=True, input_grad=False)
    assert count.parts["encoder.frozen"][1] == 960
    assert count.parts["encoder.lora"][1] == 576
    assert count.parts["encoder.attention"][1] == 432
    # Momentum keys: forward only.
    count = encoder_flops(ONE_LAYER, rows=2, length=3, backward=False, input_grad=True)
    assert (count.forward, count.backward) == (2208, 0)


def test_one_layer_model_by_hand() -> None:
    shape = ModelShape(ONE_LAYER, feature_dim=6, head_dim=3, num_items=5, prior_dim=2)
    view = View(rows=2, length=3, id_tokens=2, score_rows=2, prior=True)
    count = count_flops(shape, [view], [Contrast(rows=2, candidates=7)])
    # P on 2 ID tokens 2*2*6*4 = 96 (+ its weight gradient); head 2*2*4*4 + 2*2*4*3 = 112
    # (x2 backward); L0: E of 5 items 2*5*6*4 = 240 (weight gradient 240), W h 2*2*4*4 = 64
    # (x2), scores 2*2*4*5 = 80 (x2); prior scores 2*2*2*5 = 40, forward only; InfoNCE logits
    # 2*2*3*7 = 84 and the query's gradient.
    assert count.parts["id_projector"] == [96, 96]
    assert count.parts["head"] == [112, 224]
    assert count.parts["l0_scores"] == [384, 528]
    assert count.parts["prior"] == [40, 0]
    assert count.parts["contrastive"] == [84, 84]
    assert (count.forward, count.backward) == (2208 + 96 + 112 + 384 + 40 + 84, 3812)
    # SASRec: per block 2*T*d*(3d + d + 2 ffn) + 2 * 2*T*L*d, T = users * max_len
    sasrec = SASRecShape(blocks=2, dim=4, ffn=8, max_len=3)
    assert sasrec_flops(sasrec, 2) == 2 * (2 * 6 * 4 * (12 + 4 + 16) + 2 * 2 * 6 * 3 * 4)


def _recompute(counter: FlopCounterMode) -> int:
    """The scores recomputed inside FlopCounterMode's sdpa backward formula (one of its five
    equal products, for self-attention with equal query and value widths)."""
    counts = counter.get_flop_counts()["Global"]
    backward = sum(n for op, n in counts.items() if "scaled_dot_product" in str(op) and
                   "backward" in str(op))  # fmt: skip
    assert backward % 5 == 0
    return backward // 5


def _ids(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["node_ids"] >= 0).sum())


def test_tiny_model_forward_backward_matches_flop_counter(tmp_path) -> None:
    model = tiny_model(tmp_path)
    online, key = tiny_batch(batch=3, length=7), tiny_batch(batch=2, length=5)
    with FlopCounterMode(display=False) as counter:
        _, z, scores = model(**online, score_rows=2)
        assert scores is not None
        (z.sum() + scores.sum()).backward()
        with torch.no_grad():
            model(**key)
    shape = model_shape(model)
    assert shape.encoder == EncoderShape(
        hidden=32, layers=2, intermediate=64, lora_rank=4, lora=frozenset(
            {"q", "k", "v", "o", "up", "down"})
    )  # fmt: skip
    views = [
        View(3, 7, _ids(online), score_rows=2),
        View(2, 5, _ids(key), grad=False),
    ]
    expected = count_flops(shape, views).total
    measured = counter.get_total_flops() - _recompute(counter)
    assert measured == pytest.approx(expected, rel=TOLERANCE)
    # and without the representation's gradient (a view that only L0 differentiates)
    model.zero_grad()
    with FlopCounterMode(display=False) as counter:
        _, _, scores = model(**online, score_rows=3)
        assert scores is not None
        scores.sum().backward()
    expected = count_flops(shape, [View(3, 7, _ids(online), z_grad=False, score_rows=3)]).total
    measured = counter.get_total_flops() - _recompute(counter)
    assert measured == pytest.approx(expected, rel=TOLERANCE)


@pytest.mark.slow
def test_training_step_matches_flop_counter(tmp_path) -> None:
    """Every matmul of ``Trainer.train_step`` (default gal_rec: L0-L3, queues, the SASRec + CF +
    text prior) is counted: step_views reads the step as the trainer runs it."""
    from galrec.training.pipeline import TrainBatch
    from galrec.training.trainer import Trainer

    cfg = tiny_config(
        tmp_path / "run", "gal_rec", "model.sasrec_epochs=1", "model.cf_epochs=2",
        "train.eval_every=0",
    )  # fmt: skip
    trainer = Trainer(cfg)
    shape = model_shape(trainer.model)
    assert shape.prior_encoders and shape.prior_dim > 0
    for index in range(2):  # the second step contrasts against a non-empty queue
        batch = trainer.source(index)
        views, contrasts = step_views(trainer, batch)
        assert any(c.candidates > c.rows for c in contrasts) == (index > 0)

        def fetch(b: TrainBatch = batch) -> tuple[TrainBatch, float]:
            return b, 0.0

        with FlopCounterMode(display=False) as counter:
            trainer.train_step(fetch)
        expected = count_flops(shape, views, contrasts).total
        measured = counter.get_total_flops() - _recompute(counter)
        assert measured == pytest.approx(expected, rel=TOLERANCE)
