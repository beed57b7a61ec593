"""Baselines trained and scored like GAL-Rec: popularity, MF-BPR and LightGCN."""

from galrec.baselines.bpr import BaselineFit, BPRConfig, fit_bpr
from galrec.baselines.lightgcn import LightGCN, LightGCNConfig, fit_lightgcn, train_lightgcn
from galrec.baselines.mf import MatrixFactorization, fit_mf
from galrec.baselines.scorers import EmbeddingScorer, PopularityScorer

__all__ = [
    "BPRConfig",
    "BaselineFit",
    "EmbeddingScorer",
    "LightGCN",
    "LightGCNConfig",
    "MatrixFactorization",
    "PopularityScorer",
    "fit_bpr",
    "fit_lightgcn",
    "fit_mf",
    "train_lightgcn",
]
