"""What ``galrec data info`` reports: sizes, degrees, text coverage, and the semantic gap.

The semantic gap compares, for a sample of items, the k nearest neighbours by text (TF-IDF
cosine, or given embeddings such as the backbone's) with the k nearest neighbours by
co-interaction (cosine over the training users who consumed them). ``gap = 1 - overlap``: near 0
text already predicts who consumes what together; near 1 it does not, and a text-only model
needs the graph.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from galrec.data.prepared import PreparedDataset

TOKEN = re.compile(r"\w+")
PERCENTILES = (0, 25, 50, 75, 90, 99, 100)
DENSE_ENTRIES = 1 << 24
"""Similarity entries computed per chunk of sampled items (bounds memory on large catalogues)."""


@dataclass(frozen=True)
class SemanticGap:
    """Neighbour agreement between text and co-interaction for ``sampled`` items."""

    sampled: int
    k: int
    overlap: float
    chance_overlap: float
    twin_text_nearest: float | None = None
    twin_graph_nearest: float | None = None

    @property
    def gap(self) -> float:
        return 1.0 - self.overlap


def tfidf(texts: list[str]) -> Any:
    """Row-normalised TF-IDF matrix (scipy CSR) of word tokens, smoothed idf."""
    from scipy import sparse

    vocabulary: dict[str, int] = {}
    rows, columns = [], []
    for row, text in enumerate(texts):
        for token in TOKEN.findall(text.lower()):
            rows.append(row)
            columns.append(vocabulary.setdefault(token, len(vocabulary)))
    counts = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, columns)), shape=(len(texts), max(len(vocabulary), 1))
    )
    counts.sum_duplicates()
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = np.log((1 + len(texts)) / (1 + document_frequency)) + 1
    return _normalise_rows(counts @ sparse.diags(idf))


def _normalise_rows(matrix: Any) -> Any:
    from scipy import sparse

    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.csr_matrix(sparse.diags(1.0 / norms) @ matrix)


def interaction_matrix(dataset: PreparedDataset) -> Any:
    """Item x user matrix of training interactions, rows L2-normalised."""
    from scipy import sparse

    matrix = sparse.csr_matrix(
        (np.ones(len(dataset.train)), (dataset.train.items, dataset.train.users)),
        shape=(dataset.num_items, dataset.num_users),
    )
    matrix.data[:] = 1.0
    return _normalise_rows(matrix)


def _top_k(similarity: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries per row, excluding each row's own item."""
    similarity[np.arange(len(rows)), rows] = -np.inf
    return np.argpartition(-similarity, k, axis=1)[:, :k]


def semantic_gap(
    dataset: PreparedDataset,
    *,
    sample: int = 500,
    k: int = 10,
    seed: int = 0,
    text_embeddings: np.ndarray | None = None,
) -> SemanticGap:
    """Mean overlap of text and co-interaction top-k neighbours over sampled training items."""
    graph = interaction_matrix(dataset)
    if text_embeddings is not None:
        embeddings = np.asarray(text_embeddings, dtype=np.float64)
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        text = embeddings / np.where(norms == 0, 1.0, norms)
    else:
        text = tfidf(dataset.item_texts)
    eligible = np.flatnonzero(np.diff(graph.indptr) > 0)
    k = min(k, dataset.num_items - 2)
    if len(eligible) == 0 or k < 1:
        return SemanticGap(0, max(k, 0), 0.0, 0.0)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(eligible, size=min(sample, len(eligible)), replace=False))
    chunk = max(1, DENSE_ENTRIES // dataset.num_items)
    overlaps: list[float] = []
    for start in range(0, len(chosen), chunk):
        rows = chosen[start : start + chunk]
        by_text = _top_k(_dense(text[rows] @ text.T), rows, k)
        by_graph = _top_k(_dense(graph[rows] @ graph.T), rows, k)
        overlaps.extend(
            len(np.intersect1d(a, b, assume_unique=True)) / k
            for a, b in zip(by_text, by_graph, strict=True)
        )
    twin_text = twin_graph = None
    truth = dataset.ground_truth
    if truth is not None and len(truth.twin_groups):
        twin_text = _twin_nearest(text, truth.twin_groups)
        twin_graph = _twin_nearest(graph, truth.twin_groups)
    return SemanticGap(
        sampled=len(chosen),
        k=k,
        overlap=float(np.mean(overlaps)),
        chance_overlap=k / (dataset.num_items - 1),
        twin_text_nearest=twin_text,
        twin_graph_nearest=twin_graph,
    )


def _dense(product: Any) -> np.ndarray:
    return product.toarray() if hasattr(product, "toarray") else np.asarray(product)


def _twin_nearest(features: Any, twin_groups: np.ndarray) -> float:
    """Share of twins whose single nearest other item is a twin of the same group."""
    members = twin_groups.ravel()
    nearest = _top_k(_dense(features[members] @ features.T), members, 1)[:, 0]
    group_of = np.full(features.shape[0], -1)
    group_of[members] = np.repeat(np.arange(len(twin_groups)), twin_groups.shape[1])
    return float(np.mean(group_of[nearest] == group_of[members]))


def summarize(dataset: PreparedDataset) -> dict[str, Any]:
    """Sizes, density, degree percentiles (all splits), text coverage and split sizes."""
    users = np.concatenate([dataset.train.users, dataset.valid.users, dataset.test.users])
    items = np.concatenate([dataset.train.items, dataset.valid.items, dataset.test.items])
    report = dataset.info.get("report", {})
    missing = report.get("items_without_text")
    return {
        "name": dataset.name,
        "users": dataset.num_users,
        "items": dataset.num_items,
        "interactions": dataset.num_interactions,
        "density": dataset.num_interactions / max(dataset.num_users * dataset.num_items, 1),
        "user_degree": _percentiles(np.bincount(users, minlength=dataset.num_users)),
        "item_degree": _percentiles(np.bincount(items, minlength=dataset.num_items)),
        "items_with_text": None if missing is None else dataset.num_items - missing,
        "splits": {split: len(getattr(dataset, split)) for split in ("train", "valid", "test")},
        "split_method": dataset.info.get("options", {}).get("split", {}).get("method"),
        "report": report,
    }


def _percentiles(degrees: np.ndarray) -> dict[str, float]:
    values = np.percentile(degrees, PERCENTILES) if len(degrees) else np.zeros(len(PERCENTILES))
    return {f"p{p}": float(v) for p, v in zip(PERCENTILES, values, strict=True)}


def gap_as_dict(gap: SemanticGap) -> dict[str, Any]:
    """JSON-ready semantic-gap result, ``gap`` included."""
    return {**asdict(gap), "gap": gap.gap}
