"""Baselines trained and scored like GAL-Rec: popularity, MF-BPR, LightGCN, SASRec, GRU4Rec."""

from galrec.baselines.bpr import BaselineFit, BPRConfig, fit_bpr
from galrec.baselines.gru4rec import GRU4Rec, GRU4RecConfig
from galrec.baselines.lightgcn import LightGCN, LightGCNConfig, fit_lightgcn, train_lightgcn
from galrec.baselines.mf import MatrixFactorization, fit_mf
from galrec.baselines.sasrec import SASRec, SASRecConfig
from galrec.baselines.scorers import EmbeddingScorer, PopularityScorer
from galrec.baselines.sequential import (
    HistoryScorer,
    SequentialConfig,
    SequentialFit,
    SequentialModel,
    SequentialScorer,
    build_model,
    fit_sequential,
)

__all__ = [
    "BPRConfig",
    "BaselineFit",
    "EmbeddingScorer",
    "GRU4Rec",
    "GRU4RecConfig",
    "HistoryScorer",
    "LightGCN",
    "LightGCNConfig",
    "MatrixFactorization",
    "PopularityScorer",
    "SASRec",
    "SASRecConfig",
    "SequentialConfig",
    "SequentialFit",
    "SequentialModel",
    "SequentialScorer",
    "build_model",
    "fit_bpr",
    "fit_lightgcn",
    "fit_mf",
    "fit_sequential",
    "train_lightgcn",
]
