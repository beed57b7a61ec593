"""Type stubs of the compiled extension ``galrec._core`` (Rust, PyO3)."""

from collections.abc import Sequence
from os import PathLike
from typing import final

import numpy as np
import numpy.typing as npt

__version__: str

def build_info() -> dict[str, str]:
    """Version, build profile ("release" or "debug"), target triple, architecture and OS."""

class GraphFileError(ValueError):
    """A graph file is truncated, corrupted, or of an unsupported format version."""

@final
class BipartiteGraph:
    """A user-item graph stored as CSR both ways (u32 ids, u64 offsets).

    Within a node, neighbours are in (timestamp, input position) order; without timestamps,
    input order. Immutable and thread-safe; heavy methods release the GIL.
    """

    @staticmethod
    def from_edges(
        users: npt.ArrayLike,
        items: npt.ArrayLike,
        *,
        num_users: int | None = None,
        num_items: int | None = None,
        timestamps: npt.ArrayLike | None = None,
        weights: npt.ArrayLike | None = None,
        dedupe: bool = True,
        num_threads: int | None = None,
    ) -> BipartiteGraph:
        """Build from parallel edge arrays of any integer dtype (counting sort, linear time).

        Counts default to the largest id plus one. ``dedupe`` keeps the earliest of repeated
        (user, item) pairs. Timestamps are integer or float (no NaN); weights must be
        positive and finite. ``num_threads``: pool size (default ``RAYON_NUM_THREADS`` or one
        per core; 1 runs on the calling thread); pools are re-created in forked children.

        Raises ``ValueError`` for inconsistent input, and for node counts (given, or implied by
        the largest id) whose arrays (12 bytes per node) exceed what this process can hold:
        physical memory, or the address-space or data limit (``ulimit -v`` / ``-d``) where
        lower. Raises ``MemoryError`` when an allocation under that ceiling still fails.
        """
    @staticmethod
    def open(path: str | PathLike[str], *, verify: bool = False) -> BipartiteGraph:
        """Memory-map a file written by :meth:`save`, validating header, counts, offsets and
        neighbour ids (``verify=True`` also checks the data checksum, reading the whole file).
        Raises :class:`GraphFileError` for a truncated, corrupt or wrong-version file, or one
        whose reserved header bytes (176..184) are not zero."""
    def save(self, path: str | PathLike[str]) -> None:
        """Write the graph atomically (temporary file, fsync, rename)."""
    @property
    def num_users(self) -> int: ...
    @property
    def num_items(self) -> int: ...
    @property
    def num_edges(self) -> int: ...
    @property
    def has_timestamps(self) -> bool: ...
    @property
    def has_weights(self) -> bool: ...
    @property
    def is_mapped(self) -> bool:
        """Whether the graph is memory-mapped from a file."""
    def user_degrees(self) -> npt.NDArray[np.int64]:
        """Items per user (a new array)."""
    def item_degrees(self) -> npt.NDArray[np.int64]:
        """Users per item (a new array)."""
    def user_neighbors(self, user: int) -> npt.NDArray[np.uint32]:
        """The items of ``user`` in stored order (a copy)."""
    def item_neighbors(self, item: int) -> npt.NDArray[np.uint32]:
        """The users of ``item`` in stored order (a copy)."""
    def has_edge(self, user: int, item: int) -> bool: ...
    def sample(
        self,
        seeds: npt.ArrayLike,
        *,
        side: str = "user",
        fanouts: Sequence[int] = ...,  # (10, 10)
        strategy: str = "uniform",
        seed: int = 0,
        epoch: int = 0,
        exclude: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
        num_threads: int | None = None,
    ) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]]:
        """Multi-hop neighbour sampling: one ``(offsets, nodes)`` pair per hop.

        Hop 1 holds up to ``fanouts[0]`` neighbours of each seed (on the other side); hop
        ``h + 1`` samples from each node of hop ``h``; hops that return to the seeds' side
        never contain the seed itself (in a graph built with ``dedupe=False`` that lists it
        several times, every copy is dropped, so such a parent may return fewer than its
        fanout). ``-1`` takes all neighbours. ``strategy`` is
        "uniform" (without replacement), "recent" (latest by timestamp) or "weighted"
        (by weight, without replacement; reads every weight of a parent, O(degree)).
        ``exclude=(users, items)`` edges are never
        traversed. Deterministic in (seed, epoch, node, fanouts, strategy): independent of
        thread count and batch composition. Within a parent, children keep stored order.
        ``num_threads=1`` runs on the calling thread (cheapest for one batch at a time; for
        more throughput, pass several batches to :meth:`sample_batches`).

        The arrays are writable and not copied. Large ones (64 KiB and up) sit on a
        ``SampleBuffer`` base that hands the memory back to the sampler when the array and
        every view of it are gone, so later batches write into warm pages.

        Raises ``ValueError`` for bad arguments, and (naming ``fanouts`` and the hop) for a
        hop whose output (8 bytes per sampled node) exceeds what this process can hold (see
        :meth:`from_edges`); ``MemoryError`` when an allocation under that ceiling fails.
        """
    def sample_batches(
        self,
        batches: Sequence[npt.ArrayLike],
        *,
        side: str = "user",
        fanouts: Sequence[int] = ...,  # (10, 10)
        strategy: str = "uniform",
        seed: int = 0,
        epoch: int | Sequence[int] | None = None,
        exclude: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
        num_threads: int | None = None,
    ) -> list[list[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]]]:
        """:meth:`sample` for several seed batches at once: one result per batch, each equal
        to ``sample(batch, epoch=...)`` with the same arguments.

        The batches are shared out over ``num_threads`` threads, one batch per task, which
        keeps every thread busy where the parallel phases inside one batch of ~1k seeds are too
        short to. ``epoch`` is one int for every batch (default 0) or one per batch. Errors name
        the batch (``batches[3] seeds: ...``) and are those of :meth:`sample`.
        """

# --- galrec.graph.prompts (rust/galrec-py/src/prompts.rs) ---

@final
class PromptTokenizer:
    """A Hugging Face tokenizer.json loaded in Rust; encodes segments without special tokens."""

    @staticmethod
    def from_file(path: str, *, pad_token_id: int | None = None) -> PromptTokenizer: ...
    @property
    def vocab_size(self) -> int:
        """One more than the largest vocabulary id (added tokens included): ID tokens start here."""
    @property
    def pad_token_id(self) -> int | None: ...
    @property
    def special_prefix(self) -> list[int]:
        """Special tokens the post-processor puts before a single sequence."""
    @property
    def special_suffix(self) -> list[int]:
        """Special tokens the post-processor puts after a single sequence."""
    @property
    def source(self) -> str: ...
    @property
    def fingerprint(self) -> int:
        """A hash of the tokenizer.json bytes, recorded in text stores."""
    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` alone: no special tokens, no truncation."""
    def decode(self, ids: list[int]) -> str: ...

@final
class TextStore:
    """Node texts with their title segments tokenised once."""

    @staticmethod
    def build(
        tokenizer: PromptTokenizer,
        item_texts: list[str],
        *,
        num_users: int,
        user_texts: list[str] | None = None,
        title_format: str = ' "{title}"',
    ) -> TextStore: ...
    @staticmethod
    def open(path: str, tokenizer: PromptTokenizer) -> TextStore: ...
    def save(self, path: str) -> None: ...
    @property
    def num_users(self) -> int: ...
    @property
    def num_items(self) -> int: ...
    @property
    def has_user_texts(self) -> bool: ...
    @property
    def title_format(self) -> str: ...
    def tokens(self, side: str, id: int) -> list[int] | None:
        """Title-segment ids of a node (None when its side has no texts)."""
    def segment_text(self, side: str, id: int) -> str | None:
        """The title-segment text of a node, as tokenised (None when its side has no texts)."""

@final
class PromptAssembler:
    """The Rust assembler behind ``galrec.graph.prompts.PromptAssembler``."""

    def __new__(
        cls,
        tokenizer: PromptTokenizer,
        store: TextStore,
        *,
        user_templates: tuple[str, str, str],
        item_templates: tuple[str, str, str],
        neighbor: str,
        separator: str,
        closing: str,
        max_length: int = 256,
        padding_side: str = "right",
        pad_to_max_length: bool = False,
        dedupe: bool = True,
        threads: int | None = None,
    ) -> PromptAssembler: ...
    @property
    def max_length(self) -> int: ...
    def assemble(
        self,
        side: str,
        hop: int,
        seeds: npt.NDArray[np.int64],
        offsets: list[npt.NDArray[np.int64]],
        nodes: list[npt.NDArray[np.uint32]],
    ) -> tuple[
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
    ]:
        """(input_ids, attention_mask, node_ids, pool_index) of the hop-``hop`` prompts.

        Raises ``ValueError`` when the three ``len(seeds) x length`` int64 arrays exceed what
        this process can hold (naming ``max_length`` when padding to it, else ``seeds``), and
        ``MemoryError`` when an allocation under that ceiling fails."""
    def render_segments(
        self,
        side: str,
        hop: int,
        seeds: npt.NDArray[np.int64],
        offsets: list[npt.NDArray[np.int64]],
        nodes: list[npt.NDArray[np.uint32]],
    ) -> list[list[str]]: ...

@final
class CsrMatrix:
    """A sparse float32 ``rows x cols`` matrix in CSR form, checked once when built (offsets
    non-decreasing from 0 to nnz, columns in range; errors name the array and position).

    ``matmul`` computes each output row as zero, then one fused multiply-add per stored entry
    in order, in parallel: the same bits at any thread count, and torch's CSR product's bits
    where MKL sums that way (at LightGCN's 64 columns on the machines measured; not at 8 or 16).
    Blocks of rows that gather from more source rows than a core's cache holds are summed in
    column order (from a column-sorted copy of the entries, kept when every row's columns are
    sorted), which visits each row's entries in the same order: the same bits, fewer cache
    misses. ``column_order=False`` keeps no such copy (about 6 bytes per entry less memory)
    and sums every block row by row.
    """

    def __new__(
        cls,
        rows: int,
        cols: int,
        indptr: npt.NDArray[np.int64],
        indices: npt.NDArray[np.int64],
        values: npt.NDArray[np.float32],
        *,
        column_order: bool = True,
    ) -> CsrMatrix: ...
    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""

    @property
    def nnz(self) -> int:
        """Number of stored entries."""

    def matmul(
        self,
        dense: npt.NDArray[np.float32],
        *,
        out: npt.NDArray[np.float32] | None = None,
        accumulate: bool = False,
        num_threads: int | None = None,
    ) -> npt.NDArray[np.float32]:
        """``self @ dense`` for a C-contiguous float32 ``[cols, dim]`` array: a new
        ``[rows, dim]`` array, or written into ``out`` (C-contiguous float32 ``[rows, dim]``,
        not overlapping ``dense``; returned), or added to ``out`` when ``accumulate`` (each
        row's product summed first, then added once). On ``num_threads`` threads (default: one
        per core, or ``RAYON_NUM_THREADS``), GIL released."""
