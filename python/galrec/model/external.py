"""External ID embeddings ``E_v = P([t_v ; c_v]) + r_v`` (docs/method.md).

``t_v`` is the frozen backbone's mean-pooled title representation (users: the mean over their
training items), ``c_v`` a collaborative feature (LightGCN on the training graph, or a ``.npy``
the user supplies), ``P`` a trainable projector to the backbone's hidden size and ``r_v`` a
trainable per-ID residual that starts at zero. The embeddings replace the token embeddings at
ID-token positions (``node_ids >= 0``) through ``inputs_embeds``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from galrec.config import ModelConfig
from galrec.model.backbone import mean_pool


@torch.no_grad()
def text_features(
    model: nn.Module,
    tokenizer_json: Path,
    texts: Sequence[str],
    batch_size: int = 64,
    max_length: int = 48,
) -> np.ndarray:
    """Mean-pooled last hidden states of the frozen ``model`` over ``texts``: float32 [N, H]."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length)
    pad_id = tok.token_to_id("[PAD]") or tok.token_to_id("<pad>") or 0
    tok.enable_padding(pad_id=pad_id)
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tok.encode_batch(list(texts[start : start + batch_size]))
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out.append(mean_pool(hidden, mask).float())
    model.train(was_training)
    return torch.cat(out).numpy()


def _cached_npy(
    cache_dir: Path, key: hashlib._Hash, compute: Callable[[], np.ndarray]
) -> np.ndarray:
    """``compute()``, kept in ``cache_dir`` under the digest of ``key`` (written atomically)."""
    path = Path(cache_dir) / f"{key.hexdigest()[:32]}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, value, allow_pickle=False)
    tmp.replace(path)
    return value


def cached_text_features(
    model: nn.Module,
    backbone_name: str,
    tokenizer_json: Path,
    texts: Sequence[str],
    cache_dir: Path,
) -> np.ndarray:
    """:func:`text_features`, computed once per (backbone, titles) and kept in ``cache_dir``."""
    key = hashlib.sha256(b"text\0" + backbone_name.encode())
    key.update(Path(tokenizer_json).read_bytes())
    for text in texts:
        key.update(text.encode() + b"\0")
    return _cached_npy(cache_dir, key, lambda: text_features(model, tokenizer_json, texts))


def user_mean_features(
    item_features: np.ndarray, users: np.ndarray, items: np.ndarray, num_users: int
) -> np.ndarray:
    """Per user, the mean feature of the items they interacted with (zeros for none)."""
    sums = np.zeros((num_users, item_features.shape[1]), dtype=np.float64)
    np.add.at(sums, users, item_features[items])
    counts = np.bincount(users, minlength=num_users).astype(np.float64)
    return (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)


def load_cf_features(path: str | Path, num_nodes: int) -> np.ndarray:
    """A user-supplied CF matrix [num_users + num_items, d] (users first), checked for shape."""
    feats = np.load(path, allow_pickle=False)
    if feats.ndim != 2 or feats.shape[0] != num_nodes:
        raise ValueError(
            f"{path}: CF features must have shape [num_users + num_items = {num_nodes}, d], "
            f"got {feats.shape}"
        )
    return feats.astype(np.float32)


def node_features(blocks: Sequence[np.ndarray]) -> torch.Tensor:
    """Row-normalise each feature block and concatenate them: ``[t_v ; c_v]``."""
    parts = [F.normalize(torch.as_tensor(b, dtype=torch.float32), dim=-1) for b in blocks]
    return torch.cat(parts, dim=-1)


class ExternalEmbeddings(nn.Module):
    """``E_v = P(features_v) + r_v`` for global node ids (users first, then items)."""

    features: torch.Tensor

    def __init__(
        self,
        features: torch.Tensor,
        num_users: int,
        hidden_size: int,
        projector: str,
        residual: bool,
    ) -> None:
        super().__init__()
        self.num_users = num_users
        self.register_buffer("features", features, persistent=False)
        in_dim = features.shape[1]
        if projector == "mlp":
            self.projector: nn.Module = nn.Sequential(
                nn.Linear(in_dim, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size)
            )
        else:
            self.projector = nn.Linear(in_dim, hidden_size)
        self.residual = nn.Embedding(features.shape[0], hidden_size) if residual else None
        if self.residual is not None:
            nn.init.zeros_(self.residual.weight)

    def forward(self, node_ids: torch.Tensor) -> torch.Tensor:
        """Embeddings [..., hidden] of global node ids (any shape, all >= 0)."""
        out = self.projector(self.features[node_ids])
        if self.residual is not None:
            out = out + self.residual(node_ids)
        return out

    def item_matrix(self) -> torch.Tensor:
        """``E_i`` of every item, [num_items, hidden] (the L0 scorer's item side)."""
        ids = torch.arange(self.num_users, self.features.shape[0], device=self.features.device)
        return self(ids)

    def inject(self, token_embeds: torch.Tensor, node_ids: torch.Tensor) -> torch.Tensor:
        """Replace ``token_embeds`` [B, L, H] at positions with ``node_ids >= 0`` by ``E_v``."""
        mask = node_ids >= 0
        if not bool(mask.any()):
            return token_embeds
        out = token_embeds.clone()
        out[mask] = self(node_ids[mask]).to(out.dtype)
        return out


def collaborative_features(
    cfg: ModelConfig, dataset: Any, seed: int, cache_dir: Path
) -> np.ndarray | None:
    """``c_v`` for every node (users first): LightGCN on the training edges, a ``.npy``, or None.

    LightGCN is deterministic for a seed on CPU, so its result is cached per (edges, settings).
    The vectors are returned as trained (not normalised): GAL-Rec's CF score path uses them.
    """
    num_nodes = dataset.num_users + dataset.num_items
    if cfg.cf_features == "none":
        return None
    if cfg.cf_features != "lightgcn":
        return load_cf_features(cfg.cf_features, num_nodes)
    from galrec.baselines.lightgcn import LightGCNConfig, train_lightgcn

    train, valid = dataset.train, dataset.valid
    arrays = [
        np.asarray(a, dtype=np.int64) for a in (train.users, train.items, valid.users, valid.items)
    ]
    from galrec.config import default_config

    # The LightGCN baseline's own settings (configs/lightgcn.yaml), so that with the baseline's
    # dimension and epochs ``c_v`` is exactly the LightGCN row of a comparison at the same seed.
    settings = {**default_config("lightgcn"), "dim": cfg.cf_dim, "epochs": cfg.cf_epochs}
    lgcn = LightGCNConfig.from_dict({**settings, "seed": seed, "device": "cpu"})
    key = hashlib.sha256(f"lightgcn\0{num_nodes}\0{lgcn}".encode())
    for array in arrays:
        key.update(array.tobytes())

    def fit() -> np.ndarray:
        users, items = train_lightgcn(
            arrays[0],
            arrays[1],
            dataset.num_users,
            dataset.num_items,
            lgcn,
            valid=(arrays[2], arrays[3]),
        )
        return np.concatenate([users, items]).astype(np.float32)

    return _cached_npy(cache_dir, key, fit)
