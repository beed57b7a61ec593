"""The GAL-Rec model: LoRA backbone + external ID embeddings + representation and L0 heads."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from galrec.config import LossConfig
from galrec.model.backbone import Backbone
from galrec.model.external import ExternalEmbeddings
from galrec.model.heads import ItemScorer, RepresentationHead
from galrec.model.prior import ScorePrior

NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""CPU flags (as Linux's /proc/cpuinfo names them) of instructions that compute in bf16."""


@functools.lru_cache(maxsize=4)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags from ``cpuinfo`` (Linux); empty where it cannot be read. Read
    once per process (autocast asks at every forward)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_supports_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU runs bf16 matmuls natively: AVX512-BF16 or AMX in its ``flags`` (read
    from /proc/cpuinfo when None), and a torch build with oneDNN's bf16 kernels.

    oneDNN's own check also says yes on plain AVX512 (AVX512BW), where it emulates bf16:
    measured on such a Xeon, bf16 GEMMs at 31 GFLOP/s against 110-138 in fp32, and a MiniLM
    training step 2.0-2.5x slower. So ``auto`` keeps fp32 wherever the flags are missing, on CPUs
    whose flags cannot be read (macOS, Windows) too.
    """
    flags = cpu_flags() if flags is None else flags
    if not flags & NATIVE_BF16_FLAGS:
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(torch.backends.mkldnn.is_available() and check is not None and check())
    except RuntimeError:  # a build without oneDNN's CPU kernels
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CUDA and on CPUs with native bf16, else ``fp32``."""
    if precision != "auto":
        return precision
    if device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16()):
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str = "auto") -> torch.autocast:
    """bf16 autocast for the model's forward passes when ``precision`` resolves to bf16.

    Losses, the softmax over items, queue keys and the optimizer state stay fp32: callers
    cast the outputs with ``.float()`` before they use them.
    """
    enabled = resolve_precision(precision, device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


class GalRecModel(nn.Module):
    """Maps token batches (with ID positions) to pooled states h and representations z."""

    lm_scale: torch.Tensor

    def __init__(
        self,
        backbone: Backbone,
        external: ExternalEmbeddings,
        head_dim: int,
        id_tokens: bool,
        prior: ScorePrior | None = None,
        lm_score: bool = True,
        lm_fusion: str = "residual",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.external = external
        self.head = RepresentationHead(backbone.hidden_size, head_dim)
        self.scorer = ItemScorer(backbone.hidden_size)
        self.id_tokens = id_tokens
        self.prior = prior
        self.lm_score = lm_score
        self.lm_fusion = lm_fusion
        # The weight of the LM's term next to the prior (``model.lm_fusion``): 1 for a
        # residual; for ``calibrated`` fitted on validation users
        # (galrec.model.prior.fit_term_scale) and saved with the trainable weights.
        self.register_buffer("lm_scale", torch.ones(()))
        if prior is not None:  # the LM's term starts at zero: step 0 ranks like the prior
            nn.init.zeros_(self.scorer.proj.weight)

    @property
    def calibrates_lm_term(self) -> bool:
        """Whether the LM's term trains on its own and joins the prior at a calibrated weight."""
        return self.prior is not None and self.lm_score and self.lm_fusion == "calibrated"

    @property
    def lm_term_is_zero(self) -> bool:
        """Whether the LM's term adds exactly nothing to a score next to the prior: switched
        off, weighted 0, or ``W`` still all zero (a run that kept step 0). Scoring then needs
        no prompt encoded: the prior's scores are the model's, bit for bit."""
        if self.prior is None:
            return False
        weight = self.scorer.proj.weight
        return not self.lm_score or float(self.lm_scale) == 0.0 or not bool(weight.any())

    @property
    def trains_with_prior(self) -> bool:
        """Whether L0's training scores include the prior (a residual LM term) or not."""
        return self.prior is not None and not self.calibrates_lm_term

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        node_ids: torch.Tensor,
        pool_index: torch.Tensor,
        score_rows: int = 0,
        prior_states: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(h, z, scores)``: pooled states [B, H], unit representations [B, head_dim] and
        the L0 scores [score_rows, num_items] of the first ``score_rows`` prompts (users, whose
        ``prior_states`` the score prior needs).

        Everything trainable is used inside this call, as DistributedDataParallel requires.
        """
        id_positions = node_ids >= 0
        embeds = self.backbone.token_embeddings(input_ids.masked_fill(id_positions, 0))
        if self.id_tokens:
            embeds = self.external.inject(embeds, node_ids)
        else:  # a text-only model: ID tokens are invisible (masked out of attention and pooling)
            attention_mask = attention_mask.masked_fill(id_positions, 0)
        h = self.backbone(embeds, attention_mask, pool_index)
        scores = self.item_scores(h[:score_rows], prior_states) if score_rows > 0 else None
        return h, self.head(h), scores

    def item_scores(
        self, h_users: torch.Tensor, prior_states: torch.Tensor | None = None
    ) -> torch.Tensor:
        """L0 scores of pooled user states against every item, [B, num_items], in fp32.

        ``<W h_u, E_i>``, plus the prior's ``exp(a) <p_u, q_i>`` when the model has one (then
        ``prior_states`` must give the users' ``p_u``, from ``prior.user_states``). With
        ``lm_fusion=calibrated`` the LM's term trains alone (training mode: no prior) and is
        weighted by ``lm_scale`` next to the prior otherwise.
        """
        with torch.autocast(h_users.device.type, enabled=False):
            scores = self.scorer(h_users.float(), self.external.item_matrix().float())
            if self.prior is None or (self.training and not self.trains_with_prior):
                return scores
            if prior_states is None:
                raise ValueError("the score prior needs the users' prior states")
            return self.lm_scale * scores + self.prior(prior_states)

    def freeze_unused(self, loss: LossConfig) -> None:
        """Freeze the parts no enabled term trains (DDP needs a gradient for every trainable)."""
        if loss.l1 <= 0 and loss.l2 <= 0 and loss.l3 <= 0:
            self.head.requires_grad_(False)
        if loss.l0 <= 0 or not self.lm_score:
            self.scorer.requires_grad_(False)
        if loss.l0 <= 0:
            if self.prior is not None:
                self.prior.log_scale.requires_grad_(False)
            if not self.id_tokens:
                self.external.requires_grad_(False)

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        """Load tensors saved from :meth:`trainable_state` (names must all exist)."""
        params = {**dict(self.named_parameters()), "lm_scale": self.lm_scale}
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise KeyError(f"checkpoint holds tensors this model lacks: {unknown[:5]}")
        with torch.no_grad():
            for name, tensor in state.items():
                params[name].copy_(tensor)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every trainable tensor by name (adapters, projector, residual, heads), and the LM
        term's calibrated weight when it has one."""
        state = {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}
        if self.calibrates_lm_term:
            state["lm_scale"] = self.lm_scale.detach()
        return state
