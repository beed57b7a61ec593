"""A run: its dataset, training graph, model and prompt views, rebuilt the same way for training,
evaluation, ``galrec recommend`` and ``galrec export``.

A run directory holds ``config.yaml`` (the resolved config), ``dataset/`` (when the data was
generated), ``features.npy`` (the external embeddings' input ``[t_v ; c_v]``),
``cf_vectors.npy`` (the CF model's vectors ``c_v`` as trained), ``prior.safetensors`` (a SASRec
score prior), checkpoints
(``last/``, ``best/``), ``metrics.jsonl`` and ``result.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galrec.config import Config, DataConfig, config_from_dict
from galrec.data.sequences import without_latest
from galrec.model.backbone import Backbone, load_backbone
from galrec.model.external import (
    ExternalEmbeddings,
    cached_text_features,
    collaborative_features,
    node_features,
    user_mean_features,
)
from galrec.model.gal_rec import GalRecModel, autocast
from galrec.model.prior import (
    CFPart,
    PriorPart,
    ScorePrior,
    SequentialPart,
    TextPart,
    fit_sasrec_prior,
)
from galrec.progress import phase
from galrec.training.pipeline import ViewBuilder, length_sorted_chunks

#: The external embeddings' inputs ``features`` ([t_v ; c_v]) and ``cf_vectors`` (c_v as
#: trained) in safetensors: what an exported folder holds instead of the .npy files.
EXTERNAL_FILE = "external.safetensors"

_ENCODE_BLOCK_CHUNKS = 8
"""Chunks of prompts that Run.encode tokenises together and sorts by length."""


def load_dataset(cfg: DataConfig, out_dir: Path, write: bool) -> Any:
    """The run's PreparedDataset: loaded, or generated (and saved in ``out_dir/dataset``)."""
    from galrec.data.prepared import PreparedDataset

    saved = out_dir / "dataset"
    if saved.is_dir():
        return PreparedDataset.load(saved)
    if cfg.dataset == "semantic_gap":
        from galrec.data.semantic_gap import SemanticGapConfig, generate_semantic_gap

        try:
            gen_cfg = SemanticGapConfig(**cfg.generator)
        except TypeError as err:
            raise ValueError(f"data.generator: {err}") from err
        data = generate_semantic_gap(gen_cfg)
        if write:
            data.save(saved, overwrite=True)
        return data
    path = Path(cfg.dataset)
    if not path.is_dir():
        raise FileNotFoundError(
            f"data.dataset: {cfg.dataset!r} is neither 'semantic_gap' nor the directory "
            "of a prepared dataset"
        )
    return PreparedDataset.load(path)


@dataclass
class Run:
    """Everything built from a config, shared by training and the inference commands."""

    cfg: Config
    out_dir: Path
    dataset: Any
    graph: Any
    model: GalRecModel
    views: ViewBuilder
    tokenizer_json: Path

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def encode(
        self, side: str, nodes: np.ndarray, hop: int, chunk: int = 128, split: str = "valid"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, z) of nodes' hop-``hop`` prompts (training edges only), in eval mode.

        ``split``: the split these prompts score, which decides what a user's history may show
        (galrec.data.sequences: the validation item only when testing). Forward passes of
        ``chunk`` prompts of similar length (pipeline.length_sorted_chunks): users' histories
        differ in length, and padding each chunk to its longest prompt cost amazon-scientific's
        users 39% more tokens than they have.
        """
        was = self.model.training
        self.model.eval()
        h_all = torch.zeros(len(nodes), self.model.backbone.hidden_size, device=self.device)
        z_all = torch.zeros(len(nodes), self.cfg.model.head_dim, device=self.device)
        block = chunk * _ENCODE_BLOCK_CHUNKS  # prompts tokenised (and sorted) at once
        for start in range(0, len(nodes), block):
            tokens = self.views.tokens(
                side, nodes[start : start + block], hop=hop, device=self.device, split=split
            )
            for rows, part in length_sorted_chunks(tokens, chunk):
                with autocast(self.device, self.cfg.train.precision):
                    h, z, _ = self.model(**part)
                h_all[start + rows] = h.float()
                z_all[start + rows] = z.float()
        self.model.train(was)
        return h_all, z_all

    def user_states(self, users: np.ndarray, split: str = "valid") -> torch.Tensor:
        """Pooled states h of users' hop-1 prompts, [len(users), H] (the L0 user side)."""
        return self.encode("user", users, hop=1, split=split)[0]

    def representations(self, side: str, nodes: np.ndarray, hop: int = 0) -> torch.Tensor:
        """Unit representations z of nodes' hop-``hop`` prompts, [len(nodes), head_dim]."""
        return self.encode(side, nodes, hop)[1]

    def scorer(self) -> LMScorer:
        """A Scorer (galrec.evaluation.evaluate protocol) over all items, item side computed
        once."""
        return LMScorer(self)

    def evaluate(
        self,
        split: str,
        ks: Sequence[int],
        scorer: LMScorer | None = None,
        users: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Full-ranking Recall/NDCG/HR/MRR@ks on ``split`` (training items masked), over every
        user with a held-out item or only ``users``.

        Pass one ``scorer`` to several calls on unchanged weights to encode each user once.
        """
        from galrec.evaluation.evaluate import evaluate

        scorer = scorer or self.scorer()
        return evaluate(
            scorer, self.dataset, split=split, ks=ks, device=self.device, users=users
        ).metrics

    @torch.no_grad()
    def calibrate_lm_term(self, scorer: LMScorer, users: np.ndarray | None = None) -> float:
        """Fit the LM term's weight next to the prior (``model.lm_fusion=calibrated``) on the
        validation pairs of ``users`` (None: all), training items masked as evaluation masks
        them; sets ``model.lm_scale`` and returns it. ``scorer`` keeps the users' encodings
        for the evaluation that follows."""
        from galrec.model.prior import fit_term_scale

        model = self.model
        if model.prior is None:
            raise ValueError("only a model with a score prior calibrates its LM term")
        pairs_users, pairs_items, seen = validation_pairs(self.dataset, users)
        ids = torch.from_numpy(pairs_users).to(self.device)
        base = model.prior(model.prior.user_states(ids, "valid"))
        term = scorer.lm_scores(pairs_users.tolist())
        scale = fit_term_scale(
            base, term, torch.from_numpy(pairs_items).to(self.device), seen.to(self.device)
        )
        model.lm_scale.fill_(scale)
        return scale

    def validation_users(self) -> np.ndarray | None:
        """The fixed, seeded sample of ``train.eval_users`` validation users that training
        validates on (None: all of them, when there are no more than that)."""
        size = self.cfg.train.eval_users
        users = np.unique(np.asarray(self.dataset.valid.users, dtype=np.int64))
        if size <= 0 or len(users) <= size:
            return None
        rng = np.random.default_rng([self.cfg.train.seed, 0x5A11])
        return np.sort(rng.choice(users, size, replace=False))

    @torch.no_grad()
    def twin_metrics(self, scorer: Any = None) -> dict[str, float]:
        """How well the model tells twins apart (generated data with ground truth only).

        ``twin_acc``: over test interactions whose item has twins, the share where the held-out
        item outscores every one of its twins for that user; chance is 1 / twins per group.
        """
        truth = getattr(self.dataset, "ground_truth", None)
        if truth is None or len(truth.twin_groups) == 0:
            return {}
        from galrec.evaluation.diagnose import twin_group_index

        groups = np.asarray(truth.twin_groups)
        group_of = twin_group_index(groups, self.dataset.num_items)
        test_users = np.asarray(self.dataset.test.users)
        test_items = np.asarray(self.dataset.test.items)
        keep = group_of[test_items] >= 0
        users, items = test_users[keep], test_items[keep]
        if len(users) == 0:
            return {}
        from galrec.evaluation.evaluate import scorer_for_split

        scorer = scorer_for_split(scorer or self.scorer(), self.dataset, "test")
        scores = scorer.score_users(torch.as_tensor(users, device=self.device)).float().cpu()
        members = torch.as_tensor(groups[group_of[items]])  # [n, twins]
        twin_scores = scores.gather(1, members)
        target = scores[torch.arange(len(items)), torch.as_tensor(items)]
        others = twin_scores.masked_fill(members == torch.as_tensor(items)[:, None], -torch.inf)
        correct = (target > others.max(1).values).float()
        return {
            "twin_acc": float(correct.mean()),
            "twin_n": float(len(items)),
            "twin_chance": 1.0 / groups.shape[1],
        }


class LMScorer:
    """``score(u, i) = <W h_u, E_i>`` (plus the CF path's score when the model has one) from
    users' hop-1 prompts (galrec.evaluation.evaluate's Scorer), for the prompts of one split.

    A snapshot of the current weights: the item side is computed once, each user's prompt is
    encoded once and kept (so valid, test and twin metrics share the work where the prompts
    are the same; a sequential model's test prompts also show the validation item).
    """

    def __init__(self, run: Run, split: str = "valid", items: torch.Tensor | None = None) -> None:
        self.run = run
        self.split = split
        self.num_items = int(run.dataset.num_items)
        if items is None:
            with torch.no_grad():
                items = run.model.external.item_matrix().float()
        self.items = items
        self._user_vectors: dict[int, torch.Tensor] = {}

    def for_split(self, data: Any, split: str) -> LMScorer:
        """The scorer whose user prompts may show what scoring ``split`` allows (``data`` is
        the run's own dataset; galrec.evaluation.evaluate's SplitScorer protocol)."""
        if split == self.split or not self.run.views.sequential:
            return self
        return LMScorer(self.run, split, self.items)

    @torch.no_grad()
    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [len(users), num_items] for a 1-D tensor of user ids."""
        ids = users.cpu().tolist()
        prior = self.run.model.prior
        prior_scores = None
        if prior is not None:
            ids_t = torch.as_tensor(ids, device=self.items.device)
            prior_scores = prior(prior.user_states(ids_t, self.split))
            if self.run.model.lm_term_is_zero:  # no prompt to encode
                return prior_scores.to(users.device)
        scores = self.lm_scores(ids)
        if prior_scores is not None:
            scores = self.run.model.lm_scale * scores + prior_scores
        return scores.to(users.device)

    @torch.no_grad()
    def lm_scores(self, ids: list[int]) -> torch.Tensor:
        """The LM's own term ``<W h_u, E_i>`` [len(ids), num_items], unweighted (each user's
        prompt encoded once per scorer)."""
        missing = sorted({u for u in ids if u not in self._user_vectors})
        if missing:
            h = self.run.user_states(np.asarray(missing, dtype=np.int64), self.split)
            vectors = self.run.model.scorer.proj(h).float()
            self._user_vectors.update(zip(missing, vectors, strict=True))
        return torch.stack([self._user_vectors[u] for u in ids]) @ self.items.T


def build_model(
    cfg: Config, dataset: Any, work_dir: Path, write: bool, cache_dir: Path | None = None
) -> tuple[GalRecModel, Path]:
    """The model for ``cfg`` and the path of its tokenizer.json.

    ``work_dir/features.npy`` keeps ``[t_v ; c_v]``; when missing it is computed (text
    features through the frozen backbone, CF features from LightGCN or a ``.npy``) and, with
    ``write``, saved atomically.
    """
    features_file = work_dir / "features.npy"
    cf_file = work_dir / "cf_vectors.npy"
    exported = work_dir / EXTERNAL_FILE
    cache = cache_dir or default_cache_dir(work_dir)
    say = cfg.train.progress
    # What the features and the prior are fitted on: the training split, or with
    # model.prior_holdout all of it but each user's latest interactions (L0's targets).
    fit_data = without_latest(dataset, cfg.model.prior_holdout)
    with phase(f"backbone {cfg.model.backbone}", say):
        loaded = load_backbone(cfg.model, dataset.item_texts, work_dir, seed=cfg.train.seed)
    cf: np.ndarray | None = None
    if exported.is_file():  # a `galrec export --format hf` folder
        from safetensors.torch import load_file

        tensors = load_file(str(exported))
        feats = tensors["features"]
        cf = tensors["cf_vectors"].numpy() if "cf_vectors" in tensors else None
    elif features_file.is_file():
        feats = torch.from_numpy(np.load(features_file, allow_pickle=False))
        if cf_file.is_file():
            cf = np.load(cf_file, allow_pickle=False)
    else:
        with phase(f"text features of {dataset.num_items:,} items", say):
            item_text = cached_text_features(
                loaded.model, loaded.name, loaded.tokenizer_json, dataset.item_texts, cache
            )
        train = fit_data.train
        user_text = user_mean_features(
            item_text, np.asarray(train.users), np.asarray(train.items), dataset.num_users
        )
        blocks = [np.concatenate([user_text, item_text])]
        with phase(f"CF features {cfg.model.cf_features}", say and cfg.model.cf_features != "none"):
            cf = collaborative_features(cfg.model, fit_data, cfg.train.seed, cache)
        if cf is not None:
            blocks.append(cf)
        feats = node_features(blocks)
        if write:
            work_dir.mkdir(parents=True, exist_ok=True)
            if cf is not None:  # written before features.npy, which marks the set complete
                _save_atomic(cf_file, cf)
            _save_atomic(features_file, feats.numpy())
    torch.manual_seed(cfg.train.seed)  # trainable init must not depend on what came from caches
    backbone = Backbone(loaded, cfg.model)
    external = ExternalEmbeddings(
        feats, dataset.num_users, backbone.hidden_size, cfg.model.projector, cfg.model.id_residual
    )
    title_vectors = feats[
        dataset.num_users :, : feats.shape[1] - (0 if cf is None else cf.shape[1])
    ]
    with phase(f"score prior {cfg.model.score_prior}", say and cfg.model.score_prior != "none"):
        prior = build_prior(cfg, dataset, fit_data, work_dir, cf, title_vectors, write, cache)
    model = GalRecModel(
        backbone,
        external,
        cfg.model.head_dim,
        cfg.model.id_tokens,
        prior=prior,
        lm_score=cfg.model.lm_score,
        lm_fusion=cfg.model.lm_fusion,
    )
    return model, loaded.tokenizer_json


def default_cache_dir(work_dir: Path) -> Path:
    """Where computed inputs (text features, LightGCN, SASRec) are kept: shared by the runs
    beside ``work_dir``; their file names hold the digest of data, settings and seed."""
    return work_dir.parent / ".galrec-cache"


def validation_pairs(
    dataset: Any, users: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """The validation split's (user, item) pairs, of ``users`` only when given, and their
    training items as a mask [pairs, num_items]: what the prior's scales and the LM term's
    weight are calibrated on, masked as evaluation masks."""
    from galrec.evaluation.evaluate import split_sets

    pair_users = np.asarray(dataset.valid.users, dtype=np.int64)
    pair_items = np.asarray(dataset.valid.items, dtype=np.int64)
    if users is not None:
        keep = np.isin(pair_users, users)
        pair_users, pair_items = pair_users[keep], pair_items[keep]
    seen = split_sets(dataset, "valid")[1].mask(pair_users, int(dataset.num_items))
    return pair_users, pair_items, seen


def build_prior(
    cfg: Config,
    dataset: Any,
    fit_data: Any,
    work_dir: Path,
    cf: np.ndarray | None,
    title_vectors: torch.Tensor,
    write: bool,
    cache_dir: Path,
) -> ScorePrior | None:
    """The score prior ``model.score_prior`` names (parts joined by ``+``), its scales
    calibrated on the validation split (each user's validation item against all items, the
    training items masked as evaluation masks them; galrec.model.prior) and then fixed.
    SASRec is fitted on ``fit_data`` (``dataset`` less what ``model.prior_holdout`` holds
    out); every part reads the histories of ``dataset``."""

    if cfg.model.score_prior == "none":
        return None
    parts: list[PriorPart] = []
    for name in cfg.model.score_prior.split("+"):
        if name == "cf":
            if cf is None:
                raise ValueError("model.score_prior=cf needs collaborative features (cf_features)")
            vectors = torch.from_numpy(np.asarray(cf, dtype=np.float32))
            parts.append(CFPart(vectors[: dataset.num_users], vectors[dataset.num_users :]))
        elif name == "text":
            model_cfg = cfg.model
            parts.append(
                TextPart(
                    title_vectors, dataset, model_cfg.text_prior_items, model_cfg.text_prior_decay
                )
            )
        else:
            copy = work_dir / "prior.safetensors"
            model = fit_sasrec_prior(
                fit_data,
                cfg.train.seed,
                cfg.model.sasrec_epochs,
                cache_dir,
                copy if write or copy.is_file() else None,
            )
            parts.append(SequentialPart(model, dataset))
    prior = ScorePrior(parts)
    valid_users, items, seen = validation_pairs(dataset)
    states = prior.user_states(torch.from_numpy(valid_users), "valid")
    prior.calibrate(states, torch.from_numpy(items), seen)
    prior.log_scale.requires_grad_(False)
    return prior


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    tmp.replace(path)


def build_run(cfg: Config, out_dir: Path, write: bool = True, cache_dir: Path | None = None) -> Run:
    """Dataset, graph, model and views for ``cfg``; the resolved config is saved in ``out_dir``."""
    out_dir = Path(out_dir)
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(out_dir / "config.yaml")
    dataset = load_dataset(cfg.data, out_dir, write)
    graph = dataset.train_graph()
    model, tokenizer_json = build_model(cfg, dataset, out_dir, write, cache_dir)
    views = ViewBuilder(
        dataset,
        graph,
        tokenizer_json,
        cfg.prompts,
        seed=cfg.train.seed,
        sequential=cfg.train.target == "next",
    )
    return Run(cfg, out_dir, dataset, graph, model, views, tokenizer_json)


def open_run(run_dir: str | Path, checkpoint: str = "best") -> Run:
    """Rebuild a finished run from its directory and load its ``best`` (or ``last``) weights."""
    from galrec.training.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a galrec run directory (no config.yaml)")
    chosen = run_dir / checkpoint
    if not chosen.is_dir():
        chosen = run_dir / "last"
    if not chosen.is_dir():
        raise FileNotFoundError(f"{run_dir} has no checkpoint (best/ or last/)")
    tensors, _ = load_checkpoint(chosen)
    return load_run(run_dir, tensors["trainable"])


def load_run(run_dir: Path, trainable: dict[str, torch.Tensor]) -> Run:
    """The run of ``run_dir/config.yaml`` with the ``trainable`` tensors loaded, rebuilt
    without writing into ``run_dir`` (a run directory or an exported folder)."""
    import yaml

    cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    run = build_run(cfg, run_dir, write=False)
    run.model.load_trainable(trainable)
    return run


EXPORT_FILE = "galrec_export.json"
FORMAT = "galrec-hf"


def open_export(folder: Path) -> tuple[Run, dict[str, Any]]:
    """The run of an exported folder and its ``galrec_export.json``."""
    from safetensors.torch import load_file

    meta = json.loads((folder / EXPORT_FILE).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder}: not a {FORMAT} export (format {meta.get('format')!r})")
    run = load_run(folder, load_file(str(folder / "model.safetensors")))
    return run, {**meta, "dataset": str(folder / "dataset")}
