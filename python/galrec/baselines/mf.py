"""Matrix factorisation trained with BPR (Rendle et al., 2009): the classic ID-only baseline."""

from __future__ import annotations

import numpy as np

from galrec.baselines.bpr import BaselineFit, BPRConfig, EmbeddingNet, fit_bpr


class MatrixFactorization(EmbeddingNet):
    """Scores are dot products of free user and item embeddings."""


def fit_mf(
    train_users: np.ndarray,
    train_items: np.ndarray,
    num_users: int,
    num_items: int,
    config: BPRConfig | None = None,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = False,
) -> BaselineFit:
    """Train MF-BPR on the training edges; early-stops on ``valid`` (users, items) when given."""
    config = config or BPRConfig()
    model = MatrixFactorization(num_users, num_items, config.dim, config.seed)
    return fit_bpr(model, train_users, train_items, config, valid, progress)
