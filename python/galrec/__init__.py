"""galrec: GAL-Rec, graph-aware contrastive fine-tuning of language models for recommendation.

The Rust extension ``galrec._core`` stores the user-item graph, samples multi-hop
neighbourhoods and assembles token batches; the Python side trains and evaluates.
"""

from galrec._core import BipartiteGraph, GraphFileError, __version__, build_info

__all__ = ["BipartiteGraph", "GraphFileError", "__version__", "build_info"]
