"""The Python API: prepare a dataset, train a model, load any finished run and serve it.

``galrec.prepare`` wraps ``galrec data prepare``, ``galrec.train`` wraps ``galrec train`` and
``galrec.load`` opens any finished run (a ``galrec train`` run directory, a baseline or language
model run of ``galrec compare`` with its ``run.json``, or a folder of ``galrec export --format
hf``) as a :class:`Recommender`. The ``recommend`` and ``export`` commands are thin layers over
it. Users and items are named by their raw ids (as in the data); see :meth:`Recommender.users`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from galrec.config import Config
    from galrec.data import ItemColumns, PreparedDataset, PrepareOptions, TableColumns
    from galrec.data.formats import TableData
    from galrec.evaluation.evaluate import EvalResult, Scorer
    from galrec.training.run import Run
    from galrec.training.trainer import TrainResult

__all__ = [
    "Embeddings",
    "Recommendations",
    "Recommender",
    "load",
    "prepare",
    "train",
]

#: The split whose inputs serving uses: histories hold the training and validation items, and
#: both are masked out of recommendations (what the test split is scored with).
SERVE_SPLIT = "test"


def prepare(
    source_format: str | TableData,
    inputs: str | Path | TableData | Sequence[str | Path | TableData] | None = None,
    output: str | Path | None = None,
    *,
    options: PrepareOptions | None = None,
    table_columns: TableColumns | None = None,
    item_columns: ItemColumns | None = None,
    delimiter: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
) -> PreparedDataset:
    """Read files in ``source_format`` (recbole, movielens, amazon, yelp, table), filter and split
    them as ``galrec data prepare`` does, and save the result in ``output`` when given.

    ``options`` (:class:`galrec.data.PrepareOptions`) holds the rating threshold, k-core, split
    and text options; ``table_columns`` / ``item_columns`` map the columns of ``table`` inputs.
    The ``table`` format also reads tables in memory, a pandas DataFrame or a pyarrow Table,
    column by column as it reads files (no file is written): ``prepare("table", [df, items_df])``
    or, for interactions alone, ``prepare(df, output=...)``.
    """
    from galrec.data import load_source
    from galrec.data import prepare as prepare_raw
    from galrec.data.formats import is_table_data

    if not isinstance(source_format, str):
        if not is_table_data(source_format) or inputs is not None:
            raise TypeError(
                "prepare(source_format, inputs, output): the first argument is a format name, "
                "or a DataFrame / pyarrow Table alone (prepare(df, output=...)); an item table "
                "goes with prepare('table', [df, items], output)"
            )
        source_format, inputs = "table", source_format
    if inputs is None:
        raise TypeError(f"prepare({source_format!r}, ...) needs inputs: files or tables")
    if isinstance(inputs, str | Path) or is_table_data(inputs):
        inputs = [inputs]
    raw = load_source(
        source_format,
        list(inputs),
        table_columns=table_columns,
        item_columns=item_columns,
        delimiter=delimiter,
    )
    if name is not None or output is not None:
        from galrec.data.preparation import dataset_name

        raw.name = dataset_name(name, Path(output or "."))
    dataset = prepare_raw(raw, options)
    if output is not None:
        dataset.save(output, overwrite=overwrite)
    return dataset


def train(
    config: str | Path | Config = "gal_rec",
    overrides: Sequence[str] = (),
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train like ``galrec train``: ``config`` is a bundled name (``gal_rec``, ``text_lm``,
    ``no_l3`` ...), a YAML path or a :class:`galrec.config.Config`; ``overrides`` are dotted
    ``key=value`` strings. Returns the :class:`galrec.training.trainer.TrainResult`; load the run
    with ``galrec.load(result.out_dir)``."""
    from galrec.config import Config, load_config
    from galrec.training.trainer import Trainer

    if isinstance(config, Config):
        cfg = _overridden(config, overrides) if overrides else config
    else:
        cfg = load_config(_config_file(config), overrides)
    return Trainer(cfg, out_dir or cfg.out_dir, resume=resume, overwrite=overwrite).fit()


def _overridden(cfg: Config, overrides: Sequence[str]) -> Config:
    from galrec.config import config_from_dict
    from galrec.experiments.lm_models import with_overrides

    return config_from_dict(with_overrides(cfg.to_dict(), overrides))


def _config_file(name_or_path: str | Path) -> Path:
    import click

    from galrec.config import config_path

    try:
        return config_path(str(name_or_path))
    except click.BadParameter as err:
        raise ValueError(err.message) from None


@dataclass
class Recommendations:
    """Top-k lists: row ``r`` belongs to ``users[r]`` (None for a history), best first.

    ``items`` are contiguous item indices (-1 where fewer than k items were left), ``item_ids``
    the raw ids, ``scores`` the model's scores and ``titles`` the items' texts.
    """

    users: list[str] | None
    items: np.ndarray
    scores: np.ndarray
    item_ids: list[list[str]]
    titles: list[list[str]]

    def to_json(self) -> list[dict[str, Any]]:
        """One record per row: ``{"user", "items": [{"item", "score", "title"}, ...]}``."""
        return [
            {
                "user": None if self.users is None else self.users[row],
                "items": [
                    {"item": item, "score": float(score), "title": title}
                    for item, score, title in zip(
                        self.item_ids[row], self.scores[row], self.titles[row], strict=False
                    )
                ],
            }
            for row in range(len(self.items))
        ]


@dataclass
class Embeddings:
    """User and item vectors in the model's scoring space with their raw id maps: row ``u`` of
    ``users`` is ``user_ids[u]``. ``users @ items.T`` is the score, except that a language
    model run's score prior (galrec.model.prior) is added on top of it."""

    users: np.ndarray
    items: np.ndarray
    user_ids: list[str]
    item_ids: list[str]


class Recommender:
    """A finished run: recommendations, scores, embeddings and evaluation in raw ids.

    Subclasses differ in how they read a history that is not in the data
    (:meth:`recommend_history`) and in what their embeddings are. ``scorer`` follows
    galrec.evaluation.evaluate's Scorer protocol; ``meta`` is what the run records (model name,
    dataset).
    """

    def __init__(
        self, scorer: Scorer, dataset: Any, meta: dict[str, Any], device: torch.device
    ) -> None:
        self.scorer = scorer
        self.dataset = dataset
        self.meta = meta
        self.device = device

    @property
    def name(self) -> str:
        """The model's name (``gal_rec``, ``lightgcn`` ...)."""
        return str(self.meta.get("model", "?"))

    # ------------------------------------------------------------------ ids
    def users(self, users: Sequence[str | int] | str | int) -> np.ndarray:
        """Contiguous indices of users given by raw id; an int or digit string that is no raw
        id is taken as an index (what ``galrec recommend --user`` accepts)."""
        return self._indices(users, self.dataset.user_index, int(self.dataset.num_users), "user")

    def items(self, items: Sequence[str | int] | str | int) -> np.ndarray:
        """Contiguous indices of items given by raw id (or index, as :meth:`users`)."""
        return self._indices(items, self.dataset.item_index, int(self.dataset.num_items), "item")

    @staticmethod
    def _indices(values: Any, lookup: Any, size: int, what: str) -> np.ndarray:
        from galrec.data import UnknownIdError

        if isinstance(values, str | int | np.integer):
            values = [values]
        out = []
        for value in values:
            try:
                out.append(lookup(str(value)))
            except KeyError:
                text = str(value)
                if not text.isdigit() or int(text) >= size:
                    raise UnknownIdError(
                        f"unknown {what} {value!r} (neither a raw id nor an index)"
                    ) from None
                out.append(int(text))
        return np.asarray(out, dtype=np.int64)

    def _lists(
        self, users: list[str] | None, items: np.ndarray, scores: np.ndarray
    ) -> Recommendations:
        item_ids = [[self.dataset.item_ids[i] for i in row if i >= 0] for row in items]
        titles = [[self.dataset.item_texts[i] for i in row if i >= 0] for row in items]
        return Recommendations(users, items, scores, item_ids, titles)

    # ------------------------------------------------------------------ serving
    def recommend(
        self, users: Sequence[str | int] | str | int, k: int = 10, exclude_seen: bool = True
    ) -> Recommendations:
        """Top-``k`` items for known users, from their training and validation history;
        ``exclude_seen`` leaves the items of that history out."""
        from galrec.evaluation.evaluate import scorer_for_split, split_sets, top_k

        index = self.users(users)
        exclude = split_sets(self.dataset, SERVE_SPLIT)[1] if exclude_seen else None
        scorer = scorer_for_split(self.scorer, self.dataset, SERVE_SPLIT)
        items, scores = top_k(scorer, index, exclude, k, device=self.device)
        return self._lists([self.dataset.user_ids[u] for u in index], items, scores)

    def score(
        self, users: Sequence[str | int] | str | int, items: Sequence[str | int] | str | int
    ) -> np.ndarray:
        """Scores ``[len(users), len(items)]`` (float32) of known users for the given items."""
        from galrec.evaluation.evaluate import scorer_for_split

        scorer = scorer_for_split(self.scorer, self.dataset, SERVE_SPLIT)
        user_index = torch.from_numpy(self.users(users)).to(self.device)
        item_index = torch.from_numpy(self.items(items)).to(self.device)
        with torch.no_grad():
            scores = scorer.score_users(user_index)[:, item_index]
        return scores.float().cpu().numpy()

    def recommend_history(
        self, items: Sequence[str | int], k: int = 10, exclude_seen: bool = True
    ) -> Recommendations:
        """Top-``k`` items for a user who is not in the data, from a history of item ids
        (oldest first); ``exclude_seen`` leaves the history's items out."""
        history = self.items(items)
        if len(history) == 0:
            raise ValueError("recommend_history needs at least one item")
        with torch.no_grad():
            scores = self._history_scores(history).float().cpu()
        if exclude_seen:
            scores[torch.from_numpy(history)] = -torch.inf
        from galrec.evaluation.evaluate import top_of_scores

        return self._lists(None, *top_of_scores(scores[None], k))

    def _history_scores(self, items: np.ndarray) -> torch.Tensor:
        """Scores [num_items] of a new user with history ``items`` (indices, oldest first)."""
        raise NotImplementedError(f"{self.name} cannot score a history that is not in the data")

    def embeddings(self) -> Embeddings:
        """Every user's and item's vector in the scoring space, with the raw id maps."""
        users, items = self._embedding_tables()
        return Embeddings(
            users.detach().float().cpu().numpy(),
            items.detach().float().cpu().numpy(),
            list(self.dataset.user_ids),
            list(self.dataset.item_ids),
        )

    def _embedding_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{self.name} has no user and item embeddings")

    def evaluate(self, split: str = "test", ks: Sequence[int] = (5, 10, 20)) -> EvalResult:
        """Full-ranking Recall/NDCG/HR/MRR@ks on ``split`` (as ``galrec evaluate``)."""
        from galrec.evaluation.evaluate import evaluate

        return evaluate(self.scorer, self.dataset, split=split, ks=ks, device=self.device)


class PopularityRecommender(Recommender):
    """The popularity baseline: the same ranking for every user and every history."""

    def _history_scores(self, items: np.ndarray) -> torch.Tensor:
        return self.scorer.score_users(torch.zeros(1, dtype=torch.long))[0]


class EmbeddingRecommender(Recommender):
    """MF and LightGCN: ``<user_emb[u], item_emb[i]>``.

    A new history is folded in, not trained: its user vector is the mean of its items'
    vectors (an approximation; the model never learned a vector for that user).
    """

    def _embedding_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        scorer: Any = self.scorer
        return scorer.user_embeddings(), scorer.item_embeddings()

    def _history_scores(self, items: np.ndarray) -> torch.Tensor:
        _, table = self._embedding_tables()
        table = table.cpu()
        return table @ table[torch.from_numpy(items)].mean(0)


class SequentialRecommender(Recommender):
    """SASRec and GRU4Rec: a new history is read as the model reads any (its latest items)."""

    def _model(self) -> Any:
        return self.scorer.model  # type: ignore[attr-defined]

    def _history_scores(self, items: np.ndarray) -> torch.Tensor:
        from galrec.baselines.sequential import recent_sequences
        from galrec.data.sequences import Histories

        model = self._model().cpu().eval()
        history = Histories(np.array([0, len(items)]), items)
        seqs = torch.from_numpy(
            recent_sequences(history, np.zeros(1, np.int64), model.config.max_len)
        )
        return model.logits(model.encode(seqs)[:, -1])[0]

    def _embedding_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Users: the model's state after reading each user's history; items: the output
        embeddings (score = state @ items.T)."""
        from galrec.evaluation.evaluate import scorer_for_split

        scorer: Any = scorer_for_split(self.scorer, self.dataset, SERVE_SPLIT)
        model = self._model().cpu().eval()
        users = torch.arange(int(self.dataset.num_users))
        with torch.no_grad():
            states = model.encode(scorer.sequences(users))[:, -1]
            return states, model.items.weight[1:]


class LanguageModelRecommender(Recommender):
    """A GAL-Rec run (or an LM baseline/ablation): ``prior(p_u) + <W h_u, E_i>``.

    A new history gets the prompt a user of a sequential run gets (its latest items, newest
    first; a run trained with random targets sampled them uniformly instead). The user's own
    ID token stands in as a borrowed slot (user 0's) whose external embedding is replaced by
    the history's fold-in, ``P([mean t_i ; mean c_i])`` without a residual: the mean of the
    items' normalised text and CF features, since the model has no features for a new user.
    The score prior's ``sasrec`` and ``text`` parts read the history as they read any; its
    ``cf`` part is folded in the same way (galrec.model.prior.CFPart.states_from_history). A dataset
    with user texts is refused: the prompt would show the borrowed slot's text.
    """

    def __init__(self, run: Run, scorer: Scorer, meta: dict[str, Any]) -> None:
        super().__init__(scorer, run.dataset, meta, run.device)
        self.run = run
        run.model.eval()

    def _embedding_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The L0 term's spaces: ``W h_u`` of the users' hop-1 prompts and ``E_i``."""
        run = self.run
        with torch.no_grad():
            h = run.user_states(np.arange(int(self.dataset.num_users)), SERVE_SPLIT)
            return run.model.scorer.proj(h), run.model.external.item_matrix()

    def representations(self) -> tuple[np.ndarray, np.ndarray]:
        """The unit representations z (users: hop-1 prompts, items: hop-0) that the
        contrastive terms align, [num_users, head_dim] and [num_items, head_dim]."""
        scorer: Any = self.scorer
        return scorer.user_embeddings().numpy(), scorer.item_embeddings().numpy()

    def _history_scores(self, items: np.ndarray) -> torch.Tensor:
        from torch.func import functional_call

        from galrec.data.sequences import Histories
        from galrec.model.gal_rec import autocast

        run, model = self.run, self.run.model
        history = Histories(np.array([0, len(items)]), items)
        scores = torch.zeros(int(self.dataset.num_items), device=self.device)
        if model.prior is not None:
            scores += model.prior(model.prior.states_from_history(history).to(self.device))[0]
        if model.lm_term_is_zero:
            return scores
        if any(getattr(self.dataset, "user_texts", None) or []):
            raise NotImplementedError(
                f"{self.name}: its prompts show user texts, which a new history has none of"
            )
        slot = np.zeros(1, dtype=np.int64)
        # epoch: the stream of hop 2's co-users, which a hop-1 prompt does not show
        hops = run.views.history_hops(slot, history, None, epoch=0)
        tokens = {
            k: v.to(self.device) for k, v in run.views.assemble("user", 1, slot, hops).items()
        }
        external = model.external
        features = external.features.clone()
        features[0] = self._fold_in(external.features[self.dataset.num_users + items])
        replaced = {"external.features": features}
        if external.residual is not None:
            residual = external.residual.weight.clone()
            residual[0] = 0
            replaced["external.residual.weight"] = residual
        with autocast(self.device, run.cfg.train.precision):
            h = functional_call(model, replaced, args=(), kwargs=tokens)[0].float()
        return (
            scores + model.lm_scale * (model.scorer.proj(h) @ external.item_matrix().float().T)[0]
        )

    def _fold_in(self, item_features: torch.Tensor) -> torch.Tensor:
        """A new user's feature row: each block (text ``t``, then CF ``c`` when the run has
        it) the normalised mean of the items' rows, as the blocks are stored normalised."""
        text = self.run.model.backbone.hidden_size
        blocks = [item_features[:, :text], item_features[:, text:]]
        means = [torch.nn.functional.normalize(b.mean(0), dim=0) for b in blocks if b.shape[1]]
        return torch.cat(means)


def load(
    run_dir: str | Path,
    *,
    dataset: str | Path | None = None,
    device: str | None = None,
) -> Recommender:
    """Open any finished run as a :class:`Recommender`.

    ``run_dir``: a ``galrec train`` run directory, a ``galrec compare`` run
    (``runs/<model>/seed<k>`` with ``run.json``: popularity, mf, lightgcn, sasrec, gru4rec or a
    language model) or a ``galrec export --format hf`` folder. ``dataset``: the prepared dataset
    when the run does not record one; ``device``: where baselines score (default: CUDA when
    there is one; a language model stays where its run was built).
    """
    from galrec.baselines import EmbeddingScorer, PopularityScorer, SequentialScorer
    from galrec.evaluation.evaluate import resolve_device
    from galrec.experiments.lm_models import RunScorer
    from galrec.experiments.registry import open_run
    from galrec.training.run import EXPORT_FILE, open_export

    run_dir = Path(run_dir)
    if (run_dir / EXPORT_FILE).is_file():
        run, meta = open_export(run_dir)
        return LanguageModelRecommender(run, RunScorer(run), meta)
    scorer, meta = open_run(run_dir)
    if isinstance(scorer, RunScorer):
        return LanguageModelRecommender(scorer.run, scorer, meta)
    path = dataset or meta.get("dataset")
    if not path:
        raise ValueError(f"{run_dir}: the run records no dataset; pass dataset=DIR")
    from galrec.data import PreparedDataset

    data = PreparedDataset.load(path)
    kinds: dict[type, type[Recommender]] = {
        EmbeddingScorer: EmbeddingRecommender,
        SequentialScorer: SequentialRecommender,
        PopularityScorer: PopularityRecommender,
    }
    kind = kinds.get(type(scorer), Recommender)
    return kind(scorer, data, meta, resolve_device(device))
