"""ID-embedding injection: E_v replaces ID positions; only projector and adapters learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from galrec.model.external import (
    ExternalEmbeddings,
    load_cf_features,
    node_features,
    user_mean_features,
)
from train_helpers import tiny_batch, tiny_model


@pytest.mark.parametrize("backbone", ["tiny-bert", "tiny-llama"])
def test_gradients_reach_projector_and_adapters_not_base(tmp_path, backbone):
    model = tiny_model(tmp_path, backbone)
    batch = tiny_batch()
    _, z, scores = model(**batch, score_rows=3)
    loss = z.pow(2).sum() + scores.logsumexp(-1).sum()
    loss.backward()
    named = dict(model.named_parameters())
    assert named["external.projector.weight"].grad is not None
    assert named["external.projector.weight"].grad.abs().sum() > 0
    lora_b = [p for n, p in named.items() if "lora_B" in n]
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    base = [p for n, p in named.items() if "lora_" not in n and n.startswith("backbone.")]
    assert base and all(not p.requires_grad and p.grad is None for p in base)
    # the residual gets gradient exactly at the rows of ID tokens in the batch and the items
    grad_rows = named["external.residual.weight"].grad.abs().sum(1) > 0
    used = set(batch["node_ids"][batch["node_ids"] >= 0].tolist()) | set(range(4, 12))
    assert set(torch.nonzero(grad_rows).flatten().tolist()) == used


def test_injection_replaces_id_positions_only(tmp_path):
    model = tiny_model(tmp_path)
    batch = tiny_batch()
    token = model.backbone.token_embeddings(batch["input_ids"].clamp(max=10))
    injected = model.external.inject(token, batch["node_ids"])
    mask = batch["node_ids"] >= 0
    assert torch.equal(injected[~mask], token[~mask])
    expected = model.external(batch["node_ids"][mask])
    assert torch.allclose(injected[mask], expected)
    # the token id written at an ID position is irrelevant: only the node id counts
    other = dict(batch, input_ids=batch["input_ids"].masked_fill(mask, 3))
    assert torch.allclose(model(**batch)[1], model(**other)[1])
    # a different node id at an ID position changes the representation
    moved = batch["node_ids"].clone()
    moved[:, 0] = (moved[:, 0] + 1) % 4
    model.external.residual.weight.data.normal_()
    assert not torch.allclose(model(**batch)[1], model(**dict(batch, node_ids=moved))[1])


def test_external_embedding_formula():
    feats = torch.randn(5, 3)
    ext = ExternalEmbeddings(feats, num_users=2, hidden_size=4, projector="linear", residual=True)
    assert torch.equal(ext.residual.weight, torch.zeros(5, 4))  # r_v starts at zero
    ext.residual.weight.data.fill_(0.5)
    ids = torch.tensor([0, 4])
    assert torch.allclose(ext(ids), ext.projector(feats[ids]) + 0.5)
    assert ext.item_matrix().shape == (3, 4)
    assert torch.allclose(ext.item_matrix()[2], ext(torch.tensor([4]))[0])


def test_user_features_are_mean_of_their_items():
    items = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    users = user_mean_features(items, np.array([0, 0, 2]), np.array([0, 1, 2]), num_users=3)
    assert np.allclose(users, [[0.5, 0.5], [0.0, 0.0], [1.0, 1.0]])


def test_node_features_normalise_each_block():
    out = node_features([np.array([[3.0, 4.0]]), np.array([[0.0, 2.0]])])
    assert torch.allclose(out, torch.tensor([[0.6, 0.8, 0.0, 1.0]]))


def test_cf_npy_shape_is_checked(tmp_path):
    path = tmp_path / "cf.npy"
    np.save(path, np.zeros((7, 4), dtype=np.float32))
    assert load_cf_features(path, 7).shape == (7, 4)
    with pytest.raises(ValueError, match="num_users \\+ num_items = 9"):
        load_cf_features(path, 9)
