"""The job wheel_smoke.py runs inside the smoke venv: use the installed galrec as a user would.

It must run with ``python -I`` from a directory outside the source tree, so ``import galrec``
can only find the installed wheel; it checks that, then the version and build info, that the
heavy dependencies are absent (the light install is real) and that a missing extra is
explained, and then samples a small graph and assembles prompts from the samples.
Prints one line per check; any failure raises.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import sys
from pathlib import Path
from typing import Any

import galrec
import numpy as np
from galrec import _core
from galrec._optional import MissingOptionalDependency, require


def check_installed_copy(expected_version: str) -> None:
    """galrec comes from this environment's site-packages and is the release build we expect."""
    location = Path(galrec.__file__).resolve()
    if not location.is_relative_to(Path(sys.prefix).resolve()):
        raise AssertionError(f"galrec imported from {location}, outside the venv {sys.prefix}")
    if galrec.__version__ != expected_version:
        raise AssertionError(f"galrec.__version__ {galrec.__version__} != wheel {expected_version}")
    info = _core.build_info()
    if info["version"] != expected_version or info["profile"] != "release":
        raise AssertionError(f"build_info {info} is not the release build of {expected_version}")
    machine = platform.machine().lower()
    arch_names = {"amd64": "x86_64", "arm64": "aarch64"}
    if info["target_arch"] != arch_names.get(machine, machine):
        raise AssertionError(f"build_info target_arch {info['target_arch']} on a {machine} host")
    if not info["target"].startswith(info["target_arch"]):
        raise AssertionError(f"target triple {info['target']} disagrees with {info['target_arch']}")
    print(f"installed: {location.parent} {info}")


def check_light_install() -> None:
    """Heavy deps are absent here, and a missing extra names the extra that provides it."""
    for heavy in ("torch", "transformers", "peft", "matplotlib"):
        if importlib.util.find_spec(heavy) is not None:
            raise AssertionError(f"{heavy} is importable: the smoke venv is not a light install")
    try:
        require("matplotlib", "plotting")
    except MissingOptionalDependency as err:
        if "pip install 'galrec[plots]'" not in str(err):
            raise AssertionError(f"unhelpful missing-extra message: {err}") from err
        print(f"missing extra explained: {err}")
    else:
        raise AssertionError("require('matplotlib') succeeded without matplotlib installed")


# A tiny shop: 4 users, 5 items; user 3 bought nothing but item 4, which nobody else bought.
EDGES = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 3), (2, 0), (2, 3), (3, 4)]
ITEM_TITLES = [
    "Green Tea",
    "Glass Beaker",
    "Measuring Cups",
    "Noise Cancelling Headphones",
    "Atlas",
]
# What Hugging Face's Whitespace pre-tokenizer splits on: word runs and punctuation runs.
PRE_TOKEN = re.compile(r"\w+|[^\w\s]+")
# Template slots ({node}, {title}, ...): filled with other segments, so not part of the text.
SLOT = re.compile(r"\{\w+\}")


def write_word_level_tokenizer(path: Path, texts: list[str]) -> dict[str, int]:
    """A Hugging Face tokenizer.json (WordLevel over the pre-tokens of ``texts``), written by
    hand: the smoke venv has no ``tokenizers`` package, the Rust extension must read it alone."""
    vocab = {"[PAD]": 0, "[UNK]": 1}
    for text in texts:
        for token in PRE_TOKEN.findall(SLOT.sub(" ", text)):
            vocab.setdefault(token, len(vocab))
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": vocab[t],
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for t in ("[PAD]", "[UNK]")
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    }
    path.write_text(json.dumps(spec), encoding="utf-8")
    return vocab


def sample_graph(workdir: Path) -> tuple[galrec.BipartiteGraph, list[tuple[Any, Any]]]:
    """Build, save, memory-map and sample the tiny graph; check what the sampler returns."""
    users = np.array([u for u, _ in EDGES], dtype=np.int64)
    items = np.array([i for _, i in EDGES], dtype=np.int64)
    built = galrec.BipartiteGraph.from_edges(users, items)
    built.save(workdir / "shop.galrec")
    graph = galrec.BipartiteGraph.open(workdir / "shop.galrec", verify=True)
    if (graph.num_users, graph.num_items, graph.num_edges) != (4, 5, len(EDGES)):
        raise AssertionError(f"reopened graph has the wrong shape: {graph!r}")
    seeds = np.arange(4)
    hops = graph.sample(seeds, side="user", fanouts=(2, 3), seed=11)
    again = graph.sample(seeds, side="user", fanouts=(2, 3), seed=11)
    if len(hops) != 2 or any(
        not (np.array_equal(o1, o2) and np.array_equal(n1, n2))
        for (o1, n1), (o2, n2) in zip(hops, again, strict=True)
    ):
        raise AssertionError("sampling is not deterministic in its seed")
    (offsets1, items1), (offsets2, users2) = hops
    for row, user in enumerate(seeds):
        picked = items1[offsets1[row] : offsets1[row + 1]]
        own = set(graph.user_neighbors(int(user)).tolist())
        if len(picked) != min(2, len(own)) or not set(picked.tolist()) <= own:
            raise AssertionError(f"user {user}: hop 1 {picked} is not 2 of its items {own}")
    if len(offsets2) != len(items1) + 1 or int(offsets2[-1]) != len(users2):
        raise AssertionError("hop 2 offsets do not index hop 1's items")
    print(f"sampled: {graph!r}; hop sizes {[len(nodes) for _, nodes in hops]}")
    return graph, hops


def assemble_prompts(workdir: Path, graph: galrec.BipartiteGraph, hops: list[Any]) -> None:
    """Assemble hop-0/1/2 user prompts from the samples and check ids, masks and node ids."""
    from galrec.graph import prompts

    templates = prompts.PromptTemplates()
    texts = [
        *(prompts.DEFAULT_TITLE_FORMAT.format(title=title) for title in ITEM_TITLES),
        templates.user_hop2,
        templates.separator,
        templates.closing,
    ]
    vocab = write_word_level_tokenizer(workdir / "tokenizer.json", texts)
    tokenizer = prompts.load_tokenizer(workdir, pad_token_id=vocab["[PAD]"])
    expected = [vocab[t] for t in ('"', "Green", "Tea", '"')]
    encoded = tokenizer.encode(' "Green Tea"')
    if encoded != expected:
        raise AssertionError(f"tokenizer.encode gave {encoded}, expected {expected}")
    store = prompts.build_text_store(tokenizer, ITEM_TITLES, num_users=graph.num_users)
    assembler = prompts.PromptAssembler(tokenizer, store, templates, max_length=64)
    seeds = np.arange(graph.num_users)
    for hop in (0, 1, 2):
        batch = assembler.assemble(seeds, hops, side="user", hop=hop)
        texts_out = assembler.render_text(seeds, hops, side="user", hop=hop)
        check_batch(batch, texts_out, hops, hop, tokenizer.vocab_size, graph, vocab["[UNK]"])
    print(f"prompts: {texts_out[0]!r}")


def check_batch(
    batch: Any,
    texts: list[str],
    hops: list[Any],
    hop: int,
    vocab_size: int,
    graph: galrec.BipartiteGraph,
    unk_id: int,
) -> None:
    """One assembled batch agrees with the sample it came from, row by row."""
    rows, width = batch.input_ids.shape
    if rows != graph.num_users or batch.attention_mask.shape != (rows, width):
        raise AssertionError(f"hop {hop}: batch shape {batch.input_ids.shape}")
    (offsets1, items1), (offsets2, users2) = hops
    for row in range(rows):
        real = batch.attention_mask[row] == 1
        ids = batch.input_ids[row][real]
        node_ids = batch.node_ids[row][real]
        if (ids == unk_id).any():
            raise AssertionError(f"hop {hop} row {row}: unknown tokens in {ids}")
        at_nodes = node_ids >= 0
        if not np.array_equal(ids[at_nodes], vocab_size + node_ids[at_nodes]):
            raise AssertionError(f"hop {hop} row {row}: ID tokens do not match node ids")
        expected = {row}
        picked = items1[offsets1[row] : offsets1[row + 1]]
        if hop >= 1:
            expected |= {graph.num_users + int(i) for i in picked}
        if hop == 2:
            first, last = int(offsets1[row]), int(offsets1[row + 1])
            expected |= {int(u) for u in users2[offsets2[first] : offsets2[last]]}
        if set(node_ids[at_nodes].tolist()) != expected or node_ids[at_nodes][0] != row:
            raise AssertionError(f"hop {hop} row {row}: node ids {node_ids} != {expected}")
        titles = [ITEM_TITLES[int(i)] for i in picked] if hop >= 1 else []
        if not all(title in texts[row] for title in titles):
            raise AssertionError(f"hop {hop} row {row}: {texts[row]!r} lacks {titles}")
        if not 0 <= batch.pool_index[row] < real.sum():
            raise AssertionError(f"hop {hop} row {row}: pool index {batch.pool_index[row]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", required=True, help="the version the wheel's name carries")
    args = parser.parse_args()
    check_installed_copy(args.version)
    check_light_install()
    workdir = Path.cwd()
    graph, hops = sample_graph(workdir)
    assemble_prompts(workdir, graph, hops)
    print("smoke job ok")


if __name__ == "__main__":
    main()
