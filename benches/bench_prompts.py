"""Prompt assembly: galrec (Rust, cached segments) vs Python f-strings + transformers.

Workload (issue 3): hop-2 user prompts, each with 10 item neighbours carrying titles of realistic
length and 10 two-hop user neighbours, about 170 tokens; batches of 64 padded to their longest
prompt, numpy out; 1 and 2 threads. The Python pipeline is what a training loop would do without
galrec: build each prompt with f-strings, then call the fast tokenizer (with the ID tokens added
as tokens, so that its ids can be compared with galrec's) on each batch.

Run:  .venv/bin/python -m pytest benches/bench_prompts.py --benchmark-only -s
(``GALREC_BENCH_PROMPTS`` sets the number of prompts, default 100000.) The summary printed at the
end gives prompts per second and the speed-up over the Python pipeline measured in the same run,
and every galrec batch is checked to hold exactly the Python pipeline's token ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from galrec.graph.prompts import PromptAssembler, PromptTemplates, build_text_store, load_tokenizer

NUM_PROMPTS = int(os.environ.get("GALREC_BENCH_PROMPTS", "100000"))
NUM_USERS = 20_000
NUM_ITEMS = 10_000
FANOUT = 10
BATCH = 64
MAX_LENGTH = 512  # above every prompt: nothing is truncated, as in the Python pipeline

_WORD_TEXT = (
    "organic green tea bags premium loose leaf blend stainless steel measuring cups set kitchen "
    "baking tools wireless bluetooth headphones noise cancelling microphone laboratory glass "
    "beaker borosilicate graduated digital thermometer waterproof probe cooking grill pack of "
    "replacement filters compatible with vacuum cleaner portable charger fast charging cable usb "
    "durable nylon braided heavy duty storage containers lids airtight food prep safety goggles "
    "anti fog clear lens protective eyewear scientific calculator graphing display rechargeable "
    "batteries aa high capacity lightweight travel bag water resistant backpack laptop sleeve "
    "ceramic coffee mug handmade large capacity microwave safe dishwasher non stick frying pan "
    "induction compatible cast iron skillet pre seasoned adjustable desk lamp led dimmable eye "
    "caring reading light soft cotton bath towels quick dry hotel quality bamboo cutting board"
)
WORDS = tuple(_WORD_TEXT.split())


def make_titles(n: int, rng: np.random.Generator) -> list[str]:
    """Product-like titles of 5 to 9 words (about 50 characters)."""
    titles = []
    for _ in range(n):
        words = rng.choice(WORDS, int(rng.integers(5, 10)))
        title = " ".join(words).capitalize()
        if rng.random() < 0.4:
            title += f", {int(rng.integers(2, 50))} Count"
        titles.append(title)
    return titles


@dataclass
class Workload:
    titles: list[str]
    seeds: npt.NDArray[np.int64]
    items: npt.NDArray[np.uint32]  # [N, 10] hop-1 items per seed
    users: npt.NDArray[np.uint32]  # [N * 10] one hop-2 user per hop-1 item


@pytest.fixture(scope="module")
def workload() -> Workload:
    rng = np.random.default_rng(0)
    seeds = rng.integers(0, NUM_USERS, NUM_PROMPTS)
    items = rng.integers(0, NUM_ITEMS, (NUM_PROMPTS, FANOUT)).astype(np.uint32)
    users = rng.integers(0, NUM_USERS, NUM_PROMPTS * FANOUT).astype(np.uint32)
    return Workload(make_titles(NUM_ITEMS, rng), seeds, items, users)


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM's tokenizer when its package is installed, else a trained byte-level BPE."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from prompt_fixtures import minilm_tokenizer_json, train_byte_level_bpe

    return minilm_tokenizer_json() or train_byte_level_bpe(
        tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    )


def batches(n: int) -> Iterator[slice]:
    for start in range(0, n, BATCH):
        yield slice(start, min(start + BATCH, n))


def python_pipeline(hf, w: Workload) -> list[tuple[np.ndarray, ...]]:  # type: ignore[no-untyped-def]
    """f-strings + the fast tokenizer per batch of 64, padded to the longest, numpy out."""
    vocab = hf.vocab_size
    out = []
    titles = w.titles
    for s in batches(len(w.seeds)):
        texts = []
        for k in range(s.start, s.stop):
            hop1 = ", ".join(f'<item_{i}> "{titles[i]}"' for i in w.items[k])
            hop2 = ", ".join(f"<user_{u}>" for u in w.users[k * FANOUT : (k + 1) * FANOUT])
            texts.append(
                f"<user_{w.seeds[k]}> has interacted with {hop1}; users with the same items: "
                f"{hop2}. In one word:"
            )
        enc = hf(texts, padding="longest", return_tensors="np")
        ids = enc["input_ids"]
        node_ids = np.where(ids >= vocab, ids - vocab, -1)
        out.append((ids, enc["attention_mask"], node_ids))
    return out


def galrec_batches(asm: PromptAssembler, w: Workload, step: int) -> list[tuple[np.ndarray, ...]]:
    """galrec's assembly of the same prompts, ``step`` seeds per call."""
    offsets1 = np.arange(0, len(w.seeds) * FANOUT + 1, FANOUT, dtype=np.int64)
    offsets2 = np.arange(len(w.seeds) * FANOUT + 1, dtype=np.int64)
    out = []
    for start in range(0, len(w.seeds), step):
        stop = min(start + step, len(w.seeds))
        hop1 = (offsets1[: stop - start + 1], w.items[start:stop].ravel())
        hop2 = (offsets2[: (stop - start) * FANOUT + 1], w.users[start * FANOUT : stop * FANOUT])
        b = asm.assemble(w.seeds[start:stop], [hop1, hop2], side="user", hop=2)
        out.append((b.input_ids, b.attention_mask, b.node_ids))
    return out


RESULTS: dict[str, float] = {}
PYTHON_IDS: list[tuple[np.ndarray, ...]] = []


@pytest.mark.parametrize("threads", [1, 2])
def test_python_fstrings_transformers(
    benchmark, tokenizer_json: Path, workload: Workload, threads: int
) -> None:  # type: ignore[no-untyped-def]
    from transformers import PreTrainedTokenizerFast

    # The Rust side of `tokenizers` batches with its own pool; this switch is read per call.
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json))
    hf.add_tokens(
        [f"<user_{u}>" for u in range(NUM_USERS)] + [f"<item_{i}>" for i in range(NUM_ITEMS)]
    )
    if hf.pad_token is None:
        hf.pad_token = "<pad>"
    result = benchmark.pedantic(python_pipeline, args=(hf, workload), rounds=1, iterations=1)
    RESULTS[f"python/{threads}"] = benchmark.stats.stats.mean
    if not PYTHON_IDS:
        PYTHON_IDS.extend(result)


@pytest.fixture(scope="module")
def assemblers(tokenizer_json: Path, workload: Workload) -> dict[int, PromptAssembler]:
    tok = load_tokenizer(tokenizer_json)
    store = build_text_store(tok, workload.titles, num_users=NUM_USERS)
    templates = PromptTemplates()
    return {
        t: PromptAssembler(tok, store, templates, max_length=MAX_LENGTH, dedupe=False, threads=t)
        for t in (1, 2)
    }


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("step", [BATCH, NUM_PROMPTS], ids=["batch64", "one_call"])
def test_galrec(
    benchmark, assemblers: dict[int, PromptAssembler], workload: Workload, threads: int, step: int
) -> None:  # type: ignore[no-untyped-def]
    result = benchmark.pedantic(
        galrec_batches, args=(assemblers[threads], workload, step), rounds=3, iterations=1
    )
    RESULTS[f"galrec/{'batch64' if step == BATCH else 'one_call'}/{threads}"] = (
        benchmark.stats.stats.min
    )
    if step == BATCH and PYTHON_IDS:
        # Identical ids, masks and ID-token positions, batch by batch.
        assert len(result) == len(PYTHON_IDS)
        for mine, theirs in zip(result, PYTHON_IDS, strict=True):
            for a, b in zip(mine, theirs, strict=True):
                np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module", autouse=True)
def summary(workload: Workload) -> Iterator[None]:
    """After the module: prompts/s and speed-ups (visible with -s), ratios within this run."""
    yield
    n = len(workload.seeds)
    print(f"\n{n} hop-2 user prompts, batch {BATCH}")
    for key, seconds in RESULTS.items():
        line = f"{key:24s} {seconds:9.3f} s {n / seconds:12,.0f} prompts/s"
        base = RESULTS.get(f"python/{key.rsplit('/', 1)[1]}")
        if key.startswith("galrec") and base:
            line += f"   x{base / seconds:7.1f} vs python at the same threads"
        print(line)
