"""Type stubs of the compiled extension ``galrec._core`` (Rust, PyO3)."""

from collections.abc import Sequence
from os import PathLike

import numpy as np
import numpy.typing as npt

__version__: str

def build_info() -> dict[str, str]:
    """Version, build profile ("release" or "debug"), target architecture and OS."""

class GraphFileError(ValueError):
    """A graph file is truncated, corrupted, or of an unsupported format version."""

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
        """
    @staticmethod
    def open(path: str | PathLike[str], *, verify: bool = False) -> BipartiteGraph:
        """Memory-map a file written by :meth:`save`, validating header, counts, offsets and
        neighbour ids (``verify=True`` also checks the data checksum, reading the whole file).
        Raises :class:`GraphFileError` for a truncated, corrupt or wrong-version file."""
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
        fanouts: Sequence[int] = (10, 10),
        strategy: str = "uniform",
        seed: int = 0,
        epoch: int = 0,
        exclude: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
        num_threads: int | None = None,
    ) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]]:
        """Multi-hop neighbour sampling: one ``(offsets, nodes)`` pair per hop.

        Hop 1 holds up to ``fanouts[0]`` neighbours of each seed (on the other side); hop
        ``h + 1`` samples from each node of hop ``h``; hops that return to the seeds' side
        never contain the seed itself. ``-1`` takes all neighbours. ``strategy`` is
        "uniform" (without replacement), "recent" (latest by timestamp) or "weighted"
        (by weight, without replacement; reads every weight of a parent, O(degree)).
        ``exclude=(users, items)`` edges are never
        traversed. Deterministic in (seed, epoch, node, fanouts, strategy): independent of
        thread count and batch composition. Within a parent, children keep stored order.
        ``num_threads=1`` runs on the calling thread (cheapest for one batch at a time; run
        several Python threads or processes for more throughput).
        """
