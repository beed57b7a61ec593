"""Matmul FLOPs of a GAL-Rec training step, counted from the model's shapes and the real sizes
of each view's token batch: the numerator of the model FLOPs utilisation (MFU) that
``benches/bench_train.py`` reports.

Convention (model FLOPs, what the step must compute, not what the kernels happen to do):

- Only matrix products count, 2 FLOPs per multiply-add: linear layers (frozen base weights,
  LoRA's ``A`` and ``B``), the attention products ``Q K^T`` and ``P V``, the heads, the external
  ID projector, L0's scores against every item, the score prior's scores and its SASRec
  encoder, and the InfoNCE logits. Norms, softmax, activations, embedding look-ups, pooling,
  the loss and the optimizer are not counted (they are a few percent at most).
- Every view's attention counts over its whole padded length: ``2 * rows * L^2 * width`` for
  each of the two products, ``L`` the length of the batch tensor as it runs (the longest prompt
  of that view, not ``prompts.max_length``), and the full square for causal models too.
- Forward: every product once. Online views (with gradients) also count a backward pass in
  which a product costs its forward FLOPs once per operand that needs a gradient:
  a frozen base weight needs no weight gradient, so its backward is only the input gradient
  (1x forward: frozen linears cost 2 + 2 = 4 FLOPs per weight and token, not the usual 6);
  a trainable weight (LoRA, heads, projector, scorer) needs both (2x forward: 6 per weight and
  token); an attention product needs the gradient of each operand (2x forward). An input
  gradient is counted only where the input depends on something trainable: gradients reach the
  prompt embeddings when ID tokens were injected (the external embeddings train), so layer 0's
  Q/K/V count an input gradient only then, and the item features, the prior and the queue never
  get one. Gradients into a view's representation head count only when its ``z`` enters the
  loss (an InfoNCE anchor), into the L0 scorer only for the rows L0 scores.
- Momentum (key) views run forward only (``torch.no_grad``), so they count forward FLOPs only.
- Recomputation is not counted: neither gradient checkpointing nor the fused attention
  backward kernels' recomputed scores (``torch.utils.flop_counter`` counts those as a fifth
  product in its sdpa backward formula).

The frozen base weights are the bulk of MiniLM's count. The split into parts
(:attr:`FlopCount.parts`) shows where the rest goes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

#: The projections of a transformer layer, in the order they run.
PROJECTIONS = ("q", "k", "v", "o", "gate", "up", "down")

# Module names -> role, by the last component of the name (``dense`` is resolved by its parent).
_ROLE_NAMES = {
    "query": "q", "q_proj": "q", "q_lin": "q",
    "key": "k", "k_proj": "k", "k_lin": "k",
    "value": "v", "v_proj": "v", "v_lin": "v",
    "o_proj": "o", "out_lin": "o",
    "gate_proj": "gate",
    "up_proj": "up", "lin1": "up",
    "down_proj": "down", "lin2": "down",
}  # fmt: skip
_LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


@dataclass(frozen=True)
class EncoderShape:
    """A stack of transformer layers: its widths and which projections carry LoRA.

    ``attention`` is the width of the attention products (heads x head dim, the output width of
    Q); ``kv`` the output width of K and V (smaller under grouped-query attention, whose K and V
    are repeated across the query heads before the products). ``gated``: a gated MLP (gate and
    up projections both read the layer's state, as Llama's do)."""

    hidden: int
    layers: int
    intermediate: int
    attention: int = 0
    kv: int = 0
    gated: bool = False
    lora_rank: int = 0
    lora: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.attention:
            object.__setattr__(self, "attention", self.hidden)
        if not self.kv:
            object.__setattr__(self, "kv", self.attention)
        unknown = set(self.lora) - set(PROJECTIONS)
        if unknown:
            raise ValueError(f"unknown LoRA projections {sorted(unknown)}; known: {PROJECTIONS}")

    def projections(self) -> list[tuple[str, int, int]]:
        """``(role, in, out)`` of each projection of one layer, in the order they run."""
        h, i = self.hidden, self.intermediate
        mlp = [("gate", h, i)] if self.gated else []
        return [
            ("q", h, self.attention), ("k", h, self.kv), ("v", h, self.kv),
            ("o", self.attention, h), *mlp, ("up", h, i), ("down", i, h),
        ]  # fmt: skip


@dataclass(frozen=True)
class SASRecShape:
    """A SASRec encoder of the score prior: it reads ``max_len`` items per user."""

    blocks: int
    dim: int
    ffn: int
    max_len: int


@dataclass(frozen=True)
class ModelShape:
    """What the count needs to know about a :class:`galrec.model.gal_rec.GalRecModel`."""

    encoder: EncoderShape
    feature_dim: int
    """Input width of the external ID projector ``P`` ([t_v ; c_v])."""
    head_dim: int
    num_items: int
    projector: str = "linear"
    id_tokens: bool = True
    prior_dim: int = 0
    """Sum of the score prior's parts' widths (0: no prior)."""
    prior_encoders: tuple[SASRecShape, ...] = ()


@dataclass(frozen=True)
class View:
    """One encoder pass over a token batch of a step.

    ``rows`` x ``length``: the batch tensor as it runs (``length`` its padded length);
    ``id_tokens``: positions holding an ID token (``node_ids >= 0``), each projected by ``P``.
    ``grad``: an online view (with a backward pass) rather than a momentum key view.
    ``z_grad``: its representation ``z`` enters the loss (an InfoNCE anchor).
    ``score_rows``: its first rows are scored against every item (L0); ``prior``: those scores
    add the score prior's (its SASRec encoders read each scored user's history).
    """

    rows: int
    length: int
    id_tokens: int = 0
    grad: bool = True
    z_grad: bool = True
    score_rows: int = 0
    prior: bool = False

    @property
    def backward(self) -> bool:
        """Whether anything of this view is differentiated."""
        return self.grad and (self.z_grad or self.score_rows > 0)


@dataclass(frozen=True)
class Contrast:
    """InfoNCE logits ``query [rows, d] @ candidates [candidates, d]^T`` (keys and queue carry no
    gradient: the backward pass is the query's gradient alone)."""

    rows: int
    candidates: int


@dataclass
class FlopCount:
    """Forward and backward matmul FLOPs by part (``encoder.frozen``, ``encoder.lora``,
    ``encoder.attention``, ``id_projector``, ``head``, ``l0_scores``, ``prior``,
    ``contrastive``)."""

    parts: dict[str, list[float]] = field(default_factory=dict)

    def add(self, part: str, forward: float, backward: float = 0.0) -> None:
        entry = self.parts.setdefault(part, [0.0, 0.0])
        entry[0] += forward
        entry[1] += backward

    def merge(self, other: FlopCount) -> None:
        for part, (forward, backward) in other.parts.items():
            self.add(part, forward, backward)

    @property
    def forward(self) -> float:
        return sum(f for f, _ in self.parts.values())

    @property
    def backward(self) -> float:
        return sum(b for _, b in self.parts.values())

    @property
    def total(self) -> float:
        return self.forward + self.backward


def _mm(m: int, k: int, n: int) -> float:
    """FLOPs of an [m, k] x [k, n] product."""
    return 2.0 * m * k * n


def encoder_flops(
    shape: EncoderShape, rows: int, length: int, backward: bool, input_grad: bool
) -> FlopCount:
    """The transformer stack on a [rows, length] batch (see the module's convention).

    ``input_grad``: gradients flow into the first layer's input (the prompt embeddings depend on
    trainable weights); without it layer 0's Q/K/V compute no input gradient.
    """
    out = FlopCount()
    tokens = rows * length
    r = shape.lora_rank
    x_grad = input_grad  # does the current layer's input require a gradient?
    for _ in range(shape.layers):
        requires: dict[str, bool] = {}
        for role, d_in, d_out in shape.projections():
            if role in ("q", "k", "v"):
                reads_grad = x_grad
            elif role == "o":
                reads_grad = requires["q"] or requires["k"] or requires["v"]
            elif role in ("gate", "up"):
                reads_grad = requires["residual1"]
            else:  # down reads up (and gate)
                reads_grad = requires["up"] or requires.get("gate", False)
            adapted = role in shape.lora and r > 0
            base = _mm(tokens, d_in, d_out)
            out.add("encoder.frozen", base, base if backward and reads_grad else 0.0)
            if adapted:
                lora = _mm(tokens, d_in, r) + _mm(tokens, r, d_out)
                # Weight gradients of A and B, the gradient into A's output, and into x if needed.
                grads = lora + _mm(tokens, r, d_out) + (_mm(tokens, d_in, r) if reads_grad else 0)
                out.add("encoder.lora", lora, grads if backward else 0.0)
            requires[role] = reads_grad or adapted
            if role == "o":
                # the block's output: LayerNorm(x + O(attention)) or x + O(...)
                requires["residual1"] = x_grad or requires["o"]
        scores = _mm(rows * length, shape.attention, length)  # Q K^T over all heads
        values = _mm(rows * length, length, shape.attention)  # P V
        q_or_k = requires["q"] or requires["k"]
        grads = scores * (requires["q"] + requires["k"]) + values * (q_or_k + requires["v"])
        out.add("encoder.attention", scores + values, grads if backward else 0.0)
        x_grad = requires["residual1"] or requires["down"]
    return out


def sasrec_flops(shape: SASRecShape, users: int) -> float:
    """Forward FLOPs of a SASRec encoder over ``users`` histories of ``max_len`` items."""
    tokens, d, length = users * shape.max_len, shape.dim, shape.max_len
    linear = _mm(tokens, d, 3 * d) + _mm(tokens, d, d) + 2 * _mm(tokens, d, shape.ffn)
    attention = 2 * _mm(tokens, d, length)
    return shape.blocks * (linear + attention)


def view_flops(shape: ModelShape, view: View) -> FlopCount:
    """One pass of the model over ``view`` (module convention)."""
    h = shape.encoder.hidden
    backward = view.backward
    injected = shape.id_tokens and view.id_tokens > 0
    out = encoder_flops(shape.encoder, view.rows, view.length, backward, input_grad=injected)
    if injected:  # P on the ID tokens: weight gradients only (the features are a buffer)
        n = view.id_tokens
        first = _mm(n, shape.feature_dim, h)
        second = _mm(n, h, h) if shape.projector == "mlp" else 0.0
        out.add("id_projector", first + second, (first + 2 * second) if backward else 0.0)
    # Representation head h -> h -> head_dim on every row; backward only where z is in the loss.
    head = _mm(view.rows, h, h) + _mm(view.rows, h, shape.head_dim)
    out.add("head", head, 2 * head if backward and view.z_grad else 0.0)
    if view.score_rows > 0:
        s, n_items = view.score_rows, shape.num_items
        items = _mm(n_items, shape.feature_dim, h)  # E_i = P(features_i) + r_i, every item
        items_second = _mm(n_items, h, h) if shape.projector == "mlp" else 0.0
        proj, scores = _mm(s, h, h), _mm(s, h, n_items)
        forward = items + items_second + proj + scores
        grad = items + 2 * items_second + 2 * proj + 2 * scores if view.grad else 0.0
        out.add("l0_scores", forward, grad)
        if view.prior and shape.prior_dim:
            prior = _mm(s, shape.prior_dim, n_items)
            prior += sum(sasrec_flops(encoder, s) for encoder in shape.prior_encoders)
            out.add("prior", prior)
    return out


def count_flops(
    shape: ModelShape, views: Iterable[View], contrasts: Iterable[Contrast] = ()
) -> FlopCount:
    """Matmul FLOPs of one step (or pass) made of ``views`` and InfoNCE ``contrasts``."""
    out = FlopCount()
    for view in views:
        out.merge(view_flops(shape, view))
    for contrast in contrasts:
        logits = _mm(contrast.rows, shape.head_dim, contrast.candidates)
        out.add("contrastive", logits, logits)
    return out


# ------------------------------------------------------------------ shapes of real models
def _role(name: str) -> str | None:
    last = name.rsplit(".", 1)[-1]
    if last in _ROLE_NAMES:
        return _ROLE_NAMES[last]
    if name.endswith("attention.output.dense"):
        return "o"
    if name.endswith("intermediate.dense"):
        return "up"
    if name.endswith("output.dense"):
        return "down"
    return None


def encoder_shape(model: nn.Module) -> EncoderShape:
    """The :class:`EncoderShape` of a (LoRA-adapted) Hugging Face encoder or decoder.

    Reads every linear layer inside the layer stack, with its LoRA rank where peft adapted it;
    raises ValueError for a linear layer whose role it does not know (fused QKV, say), so that a
    count never silently leaves one out.
    """
    from peft.tuners.lora import LoraLayer

    layers: dict[int, dict[str, tuple[int, int]]] = {}
    ranks: dict[str, int] = {}
    inside_lora: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside_lora):
            continue  # base_layer, lora_A, lora_B of an adapted layer
        if isinstance(module, LoraLayer):
            inside_lora.append(name)
            base: Any = module.get_base_layer()
            rank = int(next(iter(module.r.values()))) if module.r else 0
        elif isinstance(module, nn.Linear):
            base, rank = module, 0
        else:
            continue
        layer = _LAYER.search(name + ".")
        if layer is None:
            raise ValueError(f"linear layer {name!r} lies outside the layer stack; not counted")
        role = _role(name)
        if role is None or not isinstance(base, nn.Linear):
            raise ValueError(f"cannot count the FLOPs of {name!r} ({type(base).__name__})")
        layers.setdefault(int(layer.group(1)), {})[role] = (base.in_features, base.out_features)
        if rank:
            ranks[role] = rank
    if not layers:
        raise ValueError("no transformer layers found")
    first = layers[min(layers)]
    if any(roles != first for roles in layers.values()):
        raise ValueError("layers of different shapes are not supported")
    if len(set(ranks.values())) > 1:
        raise ValueError(f"LoRA ranks differ between projections: {ranks}")
    missing = {"q", "k", "v", "o", "up", "down"} - set(first)
    if missing:
        raise ValueError(f"layer without projections {sorted(missing)}")
    return EncoderShape(
        hidden=first["q"][0],
        layers=len(layers),
        intermediate=first["up"][1],
        attention=first["q"][1],
        kv=first["k"][1],
        gated="gate" in first,
        lora_rank=next(iter(ranks.values()), 0),
        lora=frozenset(ranks),
    )


def model_shape(model: Any) -> ModelShape:
    """The :class:`ModelShape` of a :class:`galrec.model.gal_rec.GalRecModel`."""
    external = model.external
    projector = external.projector
    mlp = not isinstance(projector, nn.Linear)
    first: nn.Linear = projector[0] if mlp else projector
    prior = model.prior
    prior_dim, encoders = 0, []
    if prior is not None:
        for part in prior.parts:
            prior_dim += int(part.dim)
            blocks = getattr(getattr(part, "model", None), "blocks", None)
            if blocks is not None:  # SASRec
                config = part.model.config
                encoders.append(
                    SASRecShape(len(blocks), int(config.dim), int(config.ffn_dim), config.max_len)
                )
    head_out: nn.Linear = model.head.mlp[-1]
    return ModelShape(
        encoder=encoder_shape(model.backbone.model),
        feature_dim=first.in_features,
        head_dim=head_out.out_features,
        num_items=int(external.features.shape[0]) - int(external.num_users),
        projector="mlp" if mlp else "linear",
        id_tokens=bool(model.id_tokens),
        prior_dim=prior_dim,
        prior_encoders=tuple(encoders),
    )


# ------------------------------------------------------------------ one training step
def _view(tokens: dict[str, Any], **kwargs: Any) -> View:
    rows, length = (int(n) for n in tokens["input_ids"].shape)
    ids = int((tokens["node_ids"] >= 0).sum())
    return View(rows, length, ids, **kwargs)


def step_views(trainer: Any, batch: Any) -> tuple[list[View], list[Contrast]]:
    """The views and InfoNCE logits of one micro-step of ``trainer``
    (:class:`galrec.training.trainer.Trainer`, one process) on ``batch`` (a ``TrainBatch``), as
    ``Trainer._micro_step`` runs them; call it before the step (the queues' fill counts).

    Online views run in full; momentum keys on ``head_rows(view, contrastive rows)``.
    """
    from galrec.training.pipeline import head_rows

    loss = trainer.cfg.loss
    model = trainer.model
    top = "2" if loss.hop2 else "1"
    anchors = {"user" + top} if loss.l1 > 0 else set()
    anchors |= {"item" + top} if loss.l2 > 0 else set()
    anchors |= {"user1"} if loss.l3 > 0 else set()
    score_rows = int(batch.views["user1"]["input_ids"].shape[0]) if loss.l0 > 0 else 0
    prior = model.prior is not None and bool(getattr(model, "trains_with_prior", True))
    key_rows = loss.contrastive_batch or int(batch.ids.users.shape[0])
    views = [
        _view(
            batch.views[name],
            z_grad=name in anchors,
            score_rows=score_rows if name == "user1" else 0,
            prior=prior and name == "user1",
        )
        for name in trainer.plan.online
    ]
    keys = {name: head_rows(batch.views[name], key_rows) for name in trainer.plan.keys}
    views += [_view(tokens, grad=False) for tokens in keys.values()]

    def queued(kind: str) -> int:
        return 0 if trainer.queues is None else int(trainer.queues.of(kind).filled)

    pairs: list[tuple[str, str]] = []
    if loss.l1 > 0:
        pairs += [("user", v) for v in (("user0", "user1") if loss.hop2 else ("user0",))]
    if loss.l2 > 0:
        pairs += [("item", v) for v in (("item0", "item1") if loss.hop2 else ("item0",))]
    if loss.l3 > 0:
        pairs.append(("item", "item0"))
    contrasts = []
    for kind, key in pairs:
        rows = int(keys[key]["input_ids"].shape[0])
        contrasts.append(Contrast(rows, rows + queued(kind)))
    return views, contrasts


def step_flops(trainer: Any, batch: Any) -> FlopCount:
    """:func:`count_flops` of ``trainer``'s next micro-step on ``batch``."""
    views, contrasts = step_views(trainer, batch)
    return count_flops(model_shape(trainer.model), views, contrasts)


def padded_tokens(views: Sequence[View]) -> int:
    """Token positions the encoder runs over (rows x padded length, every view)."""
    return sum(v.rows * v.length for v in views)
