"""Datasets: real formats in, leak-free splits out, and the semantic-gap generator.

Load a source with :func:`load_source` (or a format's own loader), turn it into a
:class:`PreparedDataset` with :func:`prepare`, save it, and reload it without re-parsing::

    raw = load_source("recbole", ["../shared/data/ml-100k"])
    dataset = prepare(raw, PrepareOptions(min_rating=4))
    dataset.save("prepared/ml-100k")
    graph = PreparedDataset.load("prepared/ml-100k").train_graph()
"""

from galrec.data.errors import DataError, DataFormatError, EmptyDatasetError, ManifestError
from galrec.data.formats import FORMATS, ItemColumns, TableColumns, load_source
from galrec.data.preparation import Duplicates, PrepareOptions, deduplicate, k_core, prepare
from galrec.data.prepared import GroundTruth, Interactions, PreparedDataset, UnknownIdError
from galrec.data.raw import ItemRecord, RawDataset
from galrec.data.semantic_gap import SemanticGapConfig, generate_semantic_gap
from galrec.data.splits import SplitMethod, SplitOptions
from galrec.data.text import TextOptions

__all__ = [
    "FORMATS",
    "DataError",
    "DataFormatError",
    "Duplicates",
    "EmptyDatasetError",
    "GroundTruth",
    "Interactions",
    "ItemColumns",
    "ItemRecord",
    "ManifestError",
    "PrepareOptions",
    "PreparedDataset",
    "RawDataset",
    "SemanticGapConfig",
    "SplitMethod",
    "SplitOptions",
    "TableColumns",
    "TextOptions",
    "UnknownIdError",
    "deduplicate",
    "generate_semantic_gap",
    "k_core",
    "load_source",
    "prepare",
]
