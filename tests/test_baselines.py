"""Baselines: popularity, MF-BPR and LightGCN learn real structure, scored by the evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from galrec.baselines import (
    BPRConfig,
    EmbeddingScorer,
    LightGCNConfig,
    PopularityScorer,
    fit_lightgcn,
    fit_mf,
    train_lightgcn,
)
from galrec.baselines.bpr import NegativeSampler
from galrec.baselines.lightgcn import normalized_adjacency
from galrec.evaluation.evaluate import evaluate
from synthetic_graph import community_graph, single_thread

FAST = {"epochs": 40, "lr": 1e-2, "batch_size": 256, "eval_every": 5, "patience": 3}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def graph():
    return community_graph()


@pytest.fixture(scope="module")
def popularity_ndcg(graph) -> float:
    scorer = PopularityScorer.fit(graph.train.items, graph.num_items)
    return evaluate(scorer, graph).metrics["ndcg@10"]


def test_popularity_ranks_by_training_count() -> None:
    scorer = PopularityScorer.fit(np.array([2, 2, 0, 3, 3, 3]), 5)
    scores = scorer.score_users(torch.tensor([0, 1]))
    assert scores.shape == (2, 5)
    order = torch.argsort(scores[0], descending=True).tolist()
    assert order == [3, 2, 0, 1, 4]  # ties (items 1 and 4, both 0) broken by the lower id
    assert torch.equal(scores[0], scores[1])


def test_mf_beats_popularity(graph, popularity_ndcg: float) -> None:
    fit = fit_mf(
        graph.train.users,
        graph.train.items,
        graph.num_users,
        graph.num_items,
        BPRConfig(**FAST),
        valid=(graph.valid.users, graph.valid.items),
    )
    ndcg = evaluate(fit.scorer(), graph).metrics["ndcg@10"]
    assert ndcg > popularity_ndcg + 0.1, (ndcg, popularity_ndcg)
    assert fit.history[0]["loss"] > fit.history[-1]["loss"]
    assert any("valid_ndcg@10" in record for record in fit.history)
    assert 1 <= fit.best_epoch <= len(fit.history)


def test_lightgcn_beats_popularity_and_exposes_embeddings(graph, popularity_ndcg: float) -> None:
    config = LightGCNConfig(**FAST, dim=16)
    fit = fit_lightgcn(
        graph.train.users,
        graph.train.items,
        graph.num_users,
        graph.num_items,
        config,
        valid=(graph.valid.users, graph.valid.items),
    )
    ndcg = evaluate(fit.scorer(), graph).metrics["ndcg@10"]
    assert ndcg > popularity_ndcg + 0.1, (ndcg, popularity_ndcg)
    # The clean entry point for GAL-Rec's collaborative features: same seed, same tables.
    user_emb, item_emb = train_lightgcn(
        graph.train.users,
        graph.train.items,
        graph.num_users,
        graph.num_items,
        config,
        valid=(graph.valid.users, graph.valid.items),
    )
    assert user_emb.shape == (graph.num_users, 16) and item_emb.shape == (graph.num_items, 16)
    assert user_emb.dtype == np.float32
    np.testing.assert_allclose(user_emb, fit.user_emb.numpy(), rtol=1e-5, atol=1e-6)


def test_lightgcn_epochs_hold_a_bounded_number_of_propagations(graph, monkeypatch) -> None:
    """Past ``batch_size * max_propagations`` edges the batch grows, so an epoch is O(edges);
    below it, training is exactly the fixed-batch training (same tables)."""
    from galrec.baselines.lightgcn import LightGCN, epoch_batch_size, epoch_learning_rate

    assert epoch_batch_size(97_401, LightGCNConfig(batch_size=4096)) == 4096  # ml-100k: as before
    assert epoch_batch_size(10**6, LightGCNConfig(batch_size=4096)) == 31_250
    assert epoch_batch_size(10**6, LightGCNConfig(batch_size=4096, max_propagations=0)) == 4096
    # Adam's rate follows the square root of the batch's growth, and only past the bound.
    scaled = LightGCNConfig(batch_size=4096, lr=0.01, scale_lr=True)
    assert epoch_learning_rate(97_401, scaled) == 0.01
    assert epoch_learning_rate(10**6, scaled) == pytest.approx(0.01 * (31_250 / 4096) ** 0.5)
    assert (
        epoch_learning_rate(10**6, LightGCNConfig(batch_size=4096, lr=0.01)) == 0.01
    )  # default: off

    edges = len(graph.train.users)
    forwards = []
    original = LightGCN.forward
    monkeypatch.setattr(LightGCN, "forward", lambda self: forwards.append(1) or original(self))

    def fit(**options):
        forwards.clear()
        config = LightGCNConfig(dim=8, epochs=2, lr=1e-2, eval_every=100, **options)
        result = fit_lightgcn(
            graph.train.users, graph.train.items, graph.num_users, graph.num_items, config
        )
        return result, len(forwards)

    bounded, count = fit(batch_size=8, max_propagations=4)
    assert count == 2 * 4 + 1  # two epochs of four batches, then the final tables
    unbounded, count = fit(batch_size=8, max_propagations=0)
    assert count == 2 * -(-edges // 8) + 1
    assert not torch.equal(bounded.user_emb, unbounded.user_emb)
    below_bound, _ = fit(batch_size=edges // 3, max_propagations=4)  # 3 batches: bound unused
    fixed, _ = fit(batch_size=edges // 3, max_propagations=0)
    assert torch.equal(below_bound.user_emb, fixed.user_emb)


def test_normalized_adjacency_is_symmetric_and_normalised() -> None:
    users = np.array([0, 0, 1, 1, 1])
    items = np.array([0, 1, 1, 1, 2])  # (1, 1) twice: merged
    adjacency = normalized_adjacency(users, items, 2, 3).to_dense()
    assert torch.allclose(adjacency, adjacency.T)
    # Edge (user 0, item 0): user degree 2, item degree 1.
    assert adjacency[0, 2].item() == pytest.approx(1 / np.sqrt(2 * 1))
    # Edge (user 1, item 1): user degree 2 after merging, item degree 2.
    assert adjacency[1, 3].item() == pytest.approx(0.5)
    assert adjacency[:2, :2].abs().sum() == 0 and adjacency[2:, 2:].abs().sum() == 0


@pytest.mark.parametrize("dim", [16, 64, 83])  # 83: every column tile width of the kernel
def test_rust_propagation_is_the_sequential_csr_product(graph, dim: int) -> None:
    """LightGCN's CPU products run on galrec's parallel kernel: per row, one fused multiply-add
    per stored entry in order (checked in float64, where these products are exact to float32
    rounding), at any thread count, and equal to torch's CSR product to rounding."""
    from galrec.baselines.lightgcn import Propagation

    adjacency = normalized_adjacency(
        graph.train.users, graph.train.items, graph.num_users, graph.num_items
    )
    x = torch.randn(adjacency.shape[0], dim, generator=torch.Generator().manual_seed(0))
    propagate = Propagation(adjacency)
    assert propagate.kernel.shape == tuple(adjacency.shape)
    assert propagate.kernel.nnz == adjacency.values().numel()
    one = propagate(x)
    torch.set_num_threads(2)
    try:
        assert torch.equal(propagate(x), one)
    finally:
        torch.set_num_threads(1)
    crow, col = adjacency.crow_indices(), adjacency.col_indices()
    values = adjacency.values()
    expected = torch.zeros_like(x)
    for row in range(adjacency.shape[0]):
        acc = torch.zeros(dim, dtype=torch.float64)
        for k in range(int(crow[row]), int(crow[row + 1])):
            # fma: the exact product (a float32 times a float32 fits in float64) plus the
            # running sum, rounded once to float32
            acc = (values[k].double() * x[col[k]].double() + acc).float().double()
        expected[row] = acc.float()
    assert torch.equal(one, expected)
    torch.testing.assert_close(one, adjacency @ x, rtol=1e-5, atol=1e-6)


def test_csr_product_in_column_order_is_the_sequential_product() -> None:
    """Blocks of 2,048 rows reading 25,000 of 40,000 source rows (more than a core's cache
    holds) are summed column by column; each row is still one fused multiply-add per entry in
    stored order (float64 reference, as above), at any thread count."""
    from galrec._core import CsrMatrix

    rng = np.random.default_rng(0)
    rows, cols, per_row, dim = 4_200, 40_000, 20, 64
    columns = np.sort(rng.integers(0, cols, (rows, per_row)), axis=1)  # sorted, may repeat
    values = rng.uniform(0.1, 1.0, (rows, per_row)).astype(np.float32)
    dense = rng.standard_normal((cols, dim)).astype(np.float32)
    indptr = np.arange(rows + 1, dtype=np.int64) * per_row
    matrix = CsrMatrix(rows, cols, indptr, columns.ravel(), values.ravel())
    product = matrix.matmul(dense, num_threads=1)
    np.testing.assert_array_equal(matrix.matmul(dense, num_threads=2), product)
    expected = np.zeros((rows, dim), np.float32)
    for k in range(per_row):
        step = values[:, k, None].astype(np.float64) * dense[columns[:, k]].astype(np.float64)
        expected = (step + expected).astype(np.float32)
    np.testing.assert_array_equal(product, expected)


def test_csr_matrix_errors_name_the_array_and_position() -> None:
    from galrec._core import CsrMatrix

    ptr, values = np.array([0, 1, 2]), np.ones(2, np.float32)
    with pytest.raises(ValueError, match=r"indices: entry 1 is column 3, outside 0\.\.3"):
        CsrMatrix(2, 3, ptr, np.array([0, 3]), values)
    with pytest.raises(ValueError, match="indptr: decreases at row 1"):
        CsrMatrix(3, 3, np.array([0, 2, 1, 2]), np.array([0, 1]), values)
    with pytest.raises(ValueError, match="dense: needs 3 x 4 values, got 8"):
        CsrMatrix(2, 3, ptr, np.array([0, 2]), values).matmul(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="num_threads"):
        CsrMatrix(2, 3, ptr, np.array([0, 2]), values).matmul(
            np.ones((3, 4), np.float32), num_threads=-1
        )


def test_csr_product_writes_into_or_adds_to_a_given_array() -> None:
    from galrec._core import CsrMatrix

    matrix = CsrMatrix(2, 3, np.array([0, 2, 3]), np.array([0, 2, 1]), np.ones(3, np.float32))
    dense = np.arange(6, dtype=np.float32).reshape(3, 2)  # rows [0, 1], [2, 3], [4, 5]
    out = np.full((2, 2), 7.0, np.float32)
    assert matrix.matmul(dense, out=out) is out
    np.testing.assert_array_equal(out, [[4.0, 6.0], [2.0, 3.0]])
    matrix.matmul(dense, out=out, accumulate=True)
    np.testing.assert_array_equal(out, [[8.0, 12.0], [4.0, 6.0]])
    with pytest.raises(ValueError, match="accumulate: needs an `out` array"):
        matrix.matmul(dense, accumulate=True)
    with pytest.raises(ValueError, match=r"out: needs shape \(2, 2\), got \[3, 2\]"):
        matrix.matmul(dense, out=np.zeros((3, 2), np.float32))
    square = CsrMatrix(3, 3, np.array([0, 1, 2, 3]), np.array([1, 2, 0]), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="must not overlap `dense`"):
        square.matmul(dense, out=dense)
    with pytest.raises(ValueError, match="out: must be C-contiguous"):
        matrix.matmul(dense, out=np.zeros((2, 4), np.float32)[:, ::2])


@pytest.mark.parametrize("layers", [1, 2, 3])  # 1 and 2: the in-place sums' edge cases
def test_lightgcn_trains_exactly_as_autograd_through_the_layers(graph, layers: int) -> None:
    """The fused layer mean (one autograd node, Horner-form backward, sums in place in reused
    tensors) gives the same tables, bit for bit, as torch autograd through the unrolled
    propagation it replaced."""
    from galrec.baselines.bpr import EmbeddingNet, fit_bpr
    from galrec.baselines.lightgcn import LightGCN, Propagation

    class SymmetricProduct(torch.autograd.Function):  # A @ x, backward A @ grad (A = A^T)
        @staticmethod
        def forward(ctx, propagate: Propagation, x: torch.Tensor) -> torch.Tensor:
            ctx.propagate = propagate
            return propagate(x)

        @staticmethod
        def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
            return None, ctx.propagate(grad)

    class UnrolledLightGCN(EmbeddingNet):
        def __init__(self, adjacency: torch.Tensor, config: LightGCNConfig) -> None:
            super().__init__(graph.num_users, graph.num_items, config.dim, config.seed)
            self.propagate, self.num_layers = Propagation(adjacency), config.num_layers

        def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.cat([self.user_ego, self.item_ego])
            total = x
            for _ in range(self.num_layers):
                x = SymmetricProduct.apply(self.propagate, x)
                total = total + x
            final = total / (self.num_layers + 1)
            return final[: graph.num_users], final[graph.num_users :]

    train = (graph.train.users, graph.train.items)
    adjacency = normalized_adjacency(*train, graph.num_users, graph.num_items)
    config = LightGCNConfig(
        dim=16, epochs=3, lr=1e-2, batch_size=256, eval_every=100, num_layers=layers
    )
    fused = fit_bpr(
        LightGCN(adjacency, graph.num_users, graph.num_items, 16, config.num_layers), *train, config
    )
    unrolled = fit_bpr(UnrolledLightGCN(adjacency, config), *train, config)
    assert torch.equal(fused.user_emb, unrolled.user_emb)
    assert torch.equal(fused.item_emb, unrolled.item_emb)


def test_negatives_are_never_training_items() -> None:
    users = torch.tensor([0, 0, 0, 1])
    items = torch.tensor([0, 1, 2, 3])
    sampler = NegativeSampler(users, items, num_items=5)
    generator = torch.Generator().manual_seed(0)
    batch = torch.zeros(2000, dtype=torch.int64)
    negatives = sampler.sample(batch, generator)
    assert set(negatives.tolist()) == {3, 4}


def test_training_is_deterministic_for_a_seed(graph) -> None:
    config = BPRConfig(**{**FAST, "epochs": 3})
    first = fit_mf(graph.train.users, graph.train.items, graph.num_users, graph.num_items, config)
    torch.manual_seed(12345)  # whatever ran before must not matter
    torch.rand(7)
    again = fit_mf(graph.train.users, graph.train.items, graph.num_users, graph.num_items, config)
    other = fit_mf(
        graph.train.users,
        graph.train.items,
        graph.num_users,
        graph.num_items,
        BPRConfig(**{**FAST, "epochs": 3, "seed": 1}),
    )
    assert torch.equal(first.user_emb, again.user_emb)
    assert not torch.equal(first.user_emb, other.user_emb)


def test_training_does_not_depend_on_the_thread_count(graph) -> None:
    """The kernel splits rows, gradients are summed in index order (gather_rows) and nothing
    else sums across threads on the way to the tables: one and two threads train the same
    bits, and two threads the same bits twice (torch's own row-gather backward did not)."""
    # batches of 2,048 x 64: large enough that torch parallelises its scatter-add
    config = LightGCNConfig(dim=64, epochs=4, lr=1e-2, batch_size=2048, eval_every=2)
    valid = (graph.valid.users, graph.valid.items)
    fits = []
    for threads in (1, 2, 2):
        torch.set_num_threads(threads)
        try:
            fits.append(
                fit_lightgcn(
                    graph.train.users,
                    graph.train.items,
                    graph.num_users,
                    graph.num_items,
                    config,
                    valid,
                )
            )
        finally:
            torch.set_num_threads(1)
    for fit in fits[1:]:
        assert torch.equal(fit.user_emb, fits[0].user_emb)
        assert torch.equal(fit.item_emb, fits[0].item_emb)
        assert fit.best_epoch == fits[0].best_epoch


def test_embedding_scorer_round_trip(tmp_path) -> None:
    scorer = EmbeddingScorer(np.eye(3, 2, dtype=np.float32), np.ones((4, 2), dtype=np.float32))
    scorer.save(tmp_path / "emb.safetensors")
    loaded = EmbeddingScorer.load(tmp_path / "emb.safetensors")
    users = torch.tensor([0, 2])
    assert torch.equal(loaded.score_users(users), scorer.score_users(users))
    assert loaded.score_users(users).shape == (2, 4)
    with pytest.raises(ValueError, match="embedding tables"):
        EmbeddingScorer(np.ones((3, 2)), np.ones((4, 5)))


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="allowed"):
        BPRConfig.from_dict({"dimension": 8})
    with pytest.raises(ValueError, match="epochs"):
        BPRConfig.from_dict({"epochs": 0})
    assert LightGCNConfig.from_dict({"num_layers": 2}).num_layers == 2
