"""The GAL-Rec training loop: AdamW, warm-up + cosine, accumulation, clipping, momentum queue,
validation with early stopping, atomic checkpoints, exact resume and DDP.

Every batch is a pure function of (seed, batch index, rank), and the checkpoint holds the
weights, momentum shadow, queues, optimizer, scheduler and RNG state, so ``resume=True`` after a
kill (even one inside a checkpoint write) continues exactly where the uninterrupted run would
have been. Whether a run may use its directory (new, resumed, overwritten, changed config) is
decided when the Trainer is built, before anything is written there (galrec.training.rundir). Under
``torchrun`` each rank samples its own seeds, gradients are averaged by DistributedDataParallel,
momentum keys are gathered so every rank keeps the same queues, and only rank 0 logs and writes.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from galrec._optional import require
from galrec.config import Config
from galrec.evaluation.evaluate import resolve_device
from galrec.model.gal_rec import autocast
from galrec.model.momentum import MomentumEncoder
from galrec.model.objective import BatchIds, enqueue_keys, objective, plan_views
from galrec.model.queue import TypedQueues
from galrec.progress import Progress
from galrec.training.checkpoint import (
    checkpoint_state,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from galrec.training.pipeline import (
    BatchSource,
    Prefetcher,
    Tokens,
    TrainBatch,
    concat_views,
    head_rows,
)
from galrec.training.run import Run, build_run
from galrec.training.rundir import Claim, RunDirError, claim_run_dir, undone_on_error
from galrec.training.threads import use_threads


@dataclass
class DistInfo:
    """Rank and world size (1 process unless started by torchrun)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    """What a finished run reports (also written to ``result.json``)."""

    out_dir: Path
    steps: int
    best_step: int
    best_metric: float
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Owns the model, optimizer, queues and momentum encoder of one run."""

    def __init__(
        self,
        cfg: Config,
        out_dir: str | Path | None = None,
        cache_dir: Path | None = None,
        *,
        resume: bool = False,
        overwrite: bool = False,
        allow_config_change: bool = False,
    ) -> None:
        """``cache_dir``: where computed inputs are kept (default: beside the run directory).

        ``resume``, ``overwrite``, ``allow_config_change``: how to take over a run directory
        that holds a run (galrec.training.rundir.claim_run_dir; raises RunDirError when refused).
        With ``resume`` the checkpoint is loaded here; ``notes`` says what was found. A build that
        fails takes back what it wrote to the run directory
        (galrec.training.rundir.undone_on_error).
        """
        self.cfg = cfg
        self.out_dir = Path(out_dir or cfg.out_dir)
        self.device = resolve_device(cfg.train.device)
        self.dist = init_distributed(self.device)
        if self.device.type == "cuda" and self.dist.world_size > 1:
            self.device = torch.device("cuda", self.dist.rank % torch.cuda.device_count())
        if cfg.train.tensorboard and self.dist.is_main:
            require("tensorboard", "train.tensorboard=true")  # before the run directory is used
        claim = self._claim(resume, overwrite, allow_config_change)
        self.resumed = claim.checkpoint is not None
        self.notes = claim.notes
        self._use_threads(claim.checkpoint)
        with undone_on_error(self.out_dir) if self.dist.is_main else nullcontext():
            self._build(claim.checkpoint, cache_dir)

    def _use_threads(self, checkpoint: Path | None) -> None:
        """torch's threads: ``train.threads``, else those of the run being resumed (another
        count changes the floating-point sums, and a resume continues bit-identically), else
        picked from the machine's load (galrec.training.threads). A count not set is noted."""
        requested = self.cfg.train.threads
        if requested <= 0 and checkpoint is not None:
            requested = int(checkpoint_state(checkpoint).get("threads", 0))
            if requested > 0:
                use_threads(requested)
                self.notes.append(f"torch threads: {requested} (as the resumed run had)")
                return
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", self.dist.world_size))
        choice = use_threads(requested, processes)
        if choice is not None and requested <= 0 and self.dist.is_main:
            self.notes.append(f"torch threads: {choice.reason}")

    def _build(self, checkpoint: Path | None, cache_dir: Path | None) -> None:
        """Run, model, optimizer, queues and batch source; the ``checkpoint``'s state loaded."""
        cfg = self.cfg
        seed_everything(cfg.train.seed)
        self.plan = plan_views(cfg.loss)
        self.run: Run = build_run(cfg, self.out_dir, write=self.dist.is_main, cache_dir=cache_dir)
        self.model = self.run.model.to(self.device)
        self.model.freeze_unused(cfg.loss)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, cfg.train.warmup_steps, cfg.train.steps),
        )
        self.momentum = MomentumEncoder(self.model, cfg.loss.momentum)
        self.queues = (
            TypedQueues(cfg.loss.queue_size, cfg.model.head_dim).to(self.device)
            if cfg.loss.queue
            else None
        )
        self.online: torch.nn.Module = self.model
        if self.dist.world_size > 1:
            self.online = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.source = BatchSource(self.run, self.plan, rank=self.dist.rank)
        self._validation_users = self.run.validation_users()
        self.step = 0
        self.best_metric = -math.inf
        self.best_step = -1
        self.stale_validations = 0
        self.history: list[dict[str, Any]] = []
        if checkpoint is not None:
            self.load(checkpoint)

    def _claim(self, resume: bool, overwrite: bool, allow_config_change: bool) -> Claim:
        """Rank 0 checks and prepares the run directory; every rank gets its answer (or error)."""
        answer: list[Any] = [None, None]
        if self.dist.is_main:
            try:
                answer[0] = claim_run_dir(
                    self.out_dir, self.cfg.to_dict(), resume=resume, overwrite=overwrite,
                    allow_config_change=allow_config_change,
                )  # fmt: skip
            except RunDirError as err:
                answer[1] = str(err)
        if self.dist.world_size > 1:
            dist.broadcast_object_list(answer, src=0)
        if answer[1] is not None:
            raise RunDirError(answer[1])
        claim: Claim = answer[0]
        return claim

    # ------------------------------------------------------------------ one step
    def _micro_step(self, batch: TrainBatch, scale: float, sync: bool) -> dict[str, float]:
        views = {
            name: {k: v.to(self.device) for k, v in t.items()} for name, t in batch.views.items()
        }
        ids = batch.ids.to(self.device)
        score_rows = views["user1"]["input_ids"].shape[0] if self.cfg.loss.l0 > 0 else 0
        key_rows = self.cfg.loss.contrastive_batch or ids.users.shape[0]
        prior = self.model.prior
        prior_states = None
        if prior is not None and score_rows > 0 and self.model.trains_with_prior:
            prior_states = prior.user_states(ids.users, "train", ids.cut)
        with autocast(self.device, self.cfg.train.precision):
            online = self._encode_online(views, score_rows, prior_states)
            scores = online.pop("scores", None)
            keys = {
                v: self.momentum.forward(self.model, **head_rows(views[v], key_rows))[1].float()
                for v in self.plan.keys
            }
            loss, terms = objective(
                self.cfg.loss, self.plan, online, keys, ids, self.queues, scores
            )
        if sync or not isinstance(self.online, torch.nn.parallel.DistributedDataParallel):
            (loss * scale).backward()
        else:
            with self.online.no_sync():
                (loss * scale).backward()
        if self.queues is not None and keys:
            enqueue_keys(self.queues, *self._gathered(keys, ids))
        out = {name: float(value) for name, value in terms.items()}
        out["loss"] = float(loss.detach())
        return out

    def _encode_online(
        self, views: dict[str, Tokens], score_rows: int, prior_states: torch.Tensor | None
    ) -> dict[str, Any]:
        """(h, z) of every online view, plus "scores" (L0) of the user1 view.

        One process: one forward per view (no padding to the longest view). Under DDP: one
        forward over all views, because DDP expects one forward per backward.
        """
        out: dict[str, Any] = {}
        if isinstance(self.online, torch.nn.parallel.DistributedDataParallel):
            tokens, sizes = concat_views([views[v] for v in self.plan.online])
            h, z, scores = self.online(**tokens, score_rows=score_rows, prior_states=prior_states)
            for name, hv, zv in zip(self.plan.online, h.split(sizes), z.split(sizes), strict=True):
                out[name] = (hv.float(), zv.float())
        else:
            scores = None
            for name in self.plan.online:
                rows = score_rows if name == "user1" else 0
                h, z, view_scores = self.online(
                    **views[name], score_rows=rows, prior_states=prior_states
                )
                out[name] = (h.float(), z.float())
                scores = view_scores if view_scores is not None else scores
        if scores is not None:
            out["scores"] = scores.float()
        return out

    def train_step(self, next_batch: Callable[[], tuple[TrainBatch, float]]) -> dict[str, float]:
        """One optimizer step over ``grad_accum`` micro-batches from ``next_batch()``, which
        returns (batch, seconds waited for it). Returns the mean loss terms, the gradient norm,
        the prompts and tokens seen and the time spent waiting for data (``data_wait_s``)."""
        accum = self.cfg.train.grad_accum
        stats: dict[str, float] = {"prompts": 0, "tokens": 0, "data_wait_s": 0.0}
        self.model.train()
        for micro in range(accum):
            batch, waited = next_batch()
            stats["data_wait_s"] += waited
            terms = self._micro_step(batch, 1.0 / accum, sync=micro == accum - 1)
            for name, value in terms.items():
                stats[name] = stats.get(name, 0.0) + value / accum
            stats["prompts"] += batch.prompts
            stats["tokens"] += batch.tokens
        stats["grad_norm"] = float(
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.clip_norm)
        )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.momentum.update(self.model)
        self.step += 1
        return stats

    def _gathered(
        self, keys: dict[str, torch.Tensor], ids: BatchIds
    ) -> tuple[dict[str, torch.Tensor], BatchIds]:
        """All ranks' keys and ids (so every rank's queues stay identical)."""
        if self.dist.world_size == 1:
            return keys, ids

        def gather(t: torch.Tensor) -> torch.Tensor:
            parts = [torch.empty_like(t) for _ in range(self.dist.world_size)]
            dist.all_gather(parts, t.contiguous())
            return torch.cat(parts)

        rows = min(z.shape[0] for z in keys.values())  # the contrastive sub-batch
        gathered = {name: gather(z) for name, z in keys.items()}
        return gathered, BatchIds(*(gather(t[:rows]) for t in (ids.users, ids.targets, ids.items)))

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Train to ``train.steps`` (or early stop), validating and checkpointing on the way;
        a resumed trainer continues from its checkpoint's step."""
        cfg = self.cfg.train
        logger = MetricsLogger(
            self.out_dir, self.dist.is_main, self.step if self.resumed else None, cfg.tensorboard
        )
        accum = cfg.grad_accum
        prefetch = Prefetcher(self.source, self.step * accum, cfg.steps * accum)
        bar = Progress(
            cfg.steps, initial=self.step, desc=self.cfg.name, unit="step",
            enabled=cfg.progress and self.dist.is_main,
        )  # fmt: skip
        wait_total = compute_total = 0.0
        stop = self._patience_spent()  # a run resumed after its early stop stays stopped
        try:
            if not self.resumed and cfg.eval_every > 0 and self.model.prior is not None:
                # Step 0 ranks exactly like the score prior: validated too, so the kept
                # checkpoint is never worse on validation than the prior alone. (A run resumed
                # at step 0 continues from the best/ this validation wrote.)
                stop = self._validate(logger)
            batches = iter(prefetch)
            while self.step < cfg.steps and not stop:
                started = time.perf_counter()
                stats = self.train_step(lambda: next(batches)[1:])
                elapsed = time.perf_counter() - started
                wait = stats.pop("data_wait_s")
                wait_total += wait
                compute_total += elapsed
                world = self.dist.world_size
                record = {
                    "lr": float(self.scheduler.get_last_lr()[0]),
                    "prompts_per_s": stats.pop("prompts") * world / elapsed,
                    "tokens_per_s": stats.pop("tokens") * world / elapsed,
                    "data_wait_share": wait / elapsed,
                    "data_wait_share_total": wait_total / compute_total, **stats,
                }  # fmt: skip
                if self.queues is not None:
                    record["queue_fill_user"] = self.queues.user.filled / self.queues.user.size
                    record["queue_fill_item"] = self.queues.item.filled / self.queues.item.size
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    logger.log(self.step, "train", record)
                bar.update(loss=f"{stats['loss']:.3f}", wait=f"{wait_total / compute_total:.1%}")
                if cfg.eval_every > 0 and (
                    self.step % cfg.eval_every == 0 or self.step == cfg.steps
                ):
                    stop = self._validate(logger)
                if self.dist.is_main and (
                    self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or stop
                ):
                    self.save(self.out_dir / "last")
        finally:
            prefetch.close()
            bar.close()
        return self._finish(logger)

    def _validate(self, logger: MetricsLogger) -> bool:
        """Validate; keep the best checkpoint; True when early stopping says stop."""
        scorer = self.run.scorer()
        logged: dict[str, float] = {}
        if self.model.calibrates_lm_term:
            logged["lm_scale"] = self.run.calibrate_lm_term(scorer, self._validation_users)
        metrics = self.run.evaluate(
            split="valid", ks=(self.cfg.train.eval_k,), scorer=scorer, users=self._validation_users
        )
        key = f"ndcg@{self.cfg.train.eval_k}"
        self.history.append({"step": self.step, **{f"valid/{k}": v for k, v in metrics.items()}})
        logger.log(self.step, "valid", {**metrics, **logged})
        if metrics[key] > self.best_metric:
            self.best_metric, self.best_step, self.stale_validations = metrics[key], self.step, 0
            if self.dist.is_main:
                self.save(self.out_dir / "best")
            return False
        self.stale_validations += 1
        return self._patience_spent()

    def _patience_spent(self) -> bool:
        patience = self.cfg.train.patience
        return patience > 0 and self.stale_validations >= patience

    def _finish(self, logger: MetricsLogger) -> TrainResult:
        if (self.out_dir / "best").is_dir() and self.best_step != self.step:
            self.load(self.out_dir / "best", weights_only=True)
        ks = (5, 10, 20)
        scorer = self.run.scorer()
        valid = self.run.evaluate(split="valid", ks=ks, scorer=scorer)
        test = self.run.evaluate(split="test", ks=ks, scorer=scorer)
        test.update(self.run.twin_metrics(scorer))
        result = TrainResult(
            self.out_dir, self.step, self.best_step, self.best_metric, valid, test, self.history
        )
        if self.dist.is_main:
            logger.log(self.step, "test", test)
            summary = {
                "name": self.cfg.name, "steps": self.step, "best_step": self.best_step,
                "best_metric": self.best_metric, "valid": valid, "test": test,
            }  # fmt: skip
            (self.out_dir / "result.json").write_text(json.dumps(summary, indent=1))
        logger.close()
        return result

    # ------------------------------------------------------------------ checkpoints
    def save(self, directory: Path) -> None:
        """Everything needed to continue exactly: weights, momentum, queues, optimizer, RNG."""
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer)
        rng_tensors, rng_meta = rng_state()
        tensors = {
            "trainable": self.model.trainable_state(),
            "momentum": self.momentum.state_dict(),
            "optimizer": opt_tensors,
            "rng": rng_tensors,
        }
        if self.queues is not None:
            tensors["queues"] = self.queues.state_dict()
        state = {
            "step": self.step, "scheduler": self.scheduler.state_dict(), "optimizer": opt_meta,
            "rng": rng_meta, "best_metric": self.best_metric, "best_step": self.best_step,
            "stale_validations": self.stale_validations, "history": self.history,
            "config": self.cfg.to_dict(), "threads": torch.get_num_threads(),
        }  # fmt: skip
        save_checkpoint(directory, tensors, state, adapter=self.model.backbone.model)

    def load(self, directory: Path, weights_only: bool = False) -> None:
        """Restore a checkpoint (only the trainable weights with ``weights_only``)."""
        tensors, state = load_checkpoint(directory)
        self.model.load_trainable(tensors["trainable"])
        if weights_only:
            return
        self.momentum.load_state_dict(
            {k: v.to(self.device) for k, v in tensors["momentum"].items()}
        )
        if self.queues is not None:
            self.queues.load_state_dict(tensors["queues"])
        optimizer_from_tensors(self.optimizer, tensors["optimizer"], state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(tensors["rng"], state["rng"])
        self.step = int(state["step"])
        self.best_metric = float(state["best_metric"])
        self.best_step = int(state["best_step"])
        self.stale_validations = int(state["stale_validations"])
        self.history = list(state["history"])


class MetricsLogger:
    """Records to ``metrics.jsonl`` and, with ``train.tensorboard``, TensorBoard (rank 0 only).

    A record is ``{"step", "time", "elapsed_s", "<tag>/<name>": value ...}`` with the tag
    ``train`` (loss terms, lr, throughput, queue fill), ``valid`` or ``test``; TensorBoard gets
    the same ``<tag>/<name>`` scalars. ``time`` is UNIX seconds, ``elapsed_s`` the seconds since
    training started (counted on from the last kept record when resumed).
    """

    def __init__(
        self, out_dir: Path, enabled: bool, resumed_step: int | None, tensorboard: bool = False
    ) -> None:
        """``resumed_step``: keep the records up to this step (a resumed run), else start anew;
        the final test records are dropped even at that step, since the resumed run writes them
        again. ``tensorboard``: also write ``out_dir/tensorboard`` (needs the extra)."""
        self.file = None
        self.tb = None
        self.started = time.time()
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "metrics.jsonl"
        kept = []
        if resumed_step is not None and path.is_file():
            kept = [line for line in path.open() if _before(json.loads(line), resumed_step)]
        if kept:
            self.started -= float(json.loads(kept[-1]).get("elapsed_s", 0.0))
        staged = path.with_name(f"{path.name}.tmp")  # a kill here must not lose the records
        staged.write_text("".join(kept))
        staged.replace(path)
        self.file = open(path, "a")  # noqa: SIM115
        if tensorboard:
            self.tb = tensorboard_writer(out_dir / "tensorboard")

    def log(self, step: int, tag: str, values: dict[str, float]) -> None:
        """Write ``values`` of ``step`` under ``tag`` (train, valid, test)."""
        now = time.time()
        record: dict[str, Any] = {"step": step, "time": now, "elapsed_s": now - self.started}
        record.update({f"{tag}/{name}": value for name, value in values.items()})
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.tb is not None:
            for name, value in values.items():
                self.tb.add_scalar(f"{tag}/{name}", value, step, walltime=now)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def tensorboard_writer(directory: Path) -> Any:
    """A TensorBoard SummaryWriter on ``directory``; a one-line error naming the extra to
    install when tensorboard is missing."""
    require("tensorboard", "train.tensorboard=true")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(directory))


def _before(record: dict[str, Any], step: int) -> bool:
    """Whether a metrics record belongs to a run's progress up to ``step`` (not its test)."""
    if record["step"] == step:
        return not any(key.startswith("test/") for key in record)
    return bool(record["step"] < step)


def train(cfg: Config, out_dir: str | Path | None = None, resume: bool = False) -> TrainResult:
    """Train one configuration; the resolved config is saved in the run directory."""
    return Trainer(cfg, out_dir, resume=resume).fit()
