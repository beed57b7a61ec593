"""galrec: GAL-Rec, graph-aware contrastive fine-tuning of language models for recommendation.

The Rust extension ``galrec._core`` stores the user-item graph, samples multi-hop
neighbourhoods and assembles token batches; the Python side trains and evaluates.

The Python API (galrec.api): ``galrec.prepare`` a dataset, ``galrec.train`` a config and
``galrec.load`` any finished run as a :class:`~galrec.api.Recommender` (recommend, score,
embeddings, evaluate). torch is imported only when one of them is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from galrec._core import BipartiteGraph, GraphFileError, __version__, build_info

if TYPE_CHECKING:
    from galrec.api import Recommender, load, prepare, train

__all__ = [
    "BipartiteGraph",
    "GraphFileError",
    "Recommender",
    "__version__",
    "build_info",
    "load",
    "prepare",
    "train",
]

_API = ("Recommender", "load", "prepare", "train")


def __getattr__(name: str) -> Any:
    """The API's names, imported on first use (``import galrec`` stays light for the CLI)."""
    if name in _API:
        from galrec import api

        return getattr(api, name)
    raise AttributeError(f"module 'galrec' has no attribute {name!r}")
