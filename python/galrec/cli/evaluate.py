"""``galrec evaluate``, ``galrec compare`` and ``galrec diagnose``.

torch, numpy and the models are imported inside the commands, so ``galrec --help`` stays fast.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from galrec.cli.common import UserError, threads_option


def _load_dataset(path: str | Path) -> Any:
    from galrec.data.prepared import PreparedDataset

    return PreparedDataset.load(path)


def _ks(text: str) -> tuple[int, ...]:
    from galrec.evaluation.evaluate import parse_ks

    try:
        return parse_ks(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--k") from None


def _open(run: str, dataset: str | None) -> tuple[Any, Any, dict[str, Any]]:
    """(scorer, dataset, run metadata) of a run directory."""
    from galrec.experiments.registry import open_run
    from galrec.training.rundir import RUN_FILE

    try:
        scorer, meta = open_run(run)
    except KeyError as error:  # run.json without a model, or one galrec does not know
        raise UserError(f"{Path(run) / RUN_FILE}: {error.args[0]}") from None
    path = dataset or meta.get("dataset")
    if not path:
        raise UserError(f"{run}: the run records no dataset; pass --dataset DIR")
    return scorer, _load_dataset(path), meta


def _use_threads(threads: int | None) -> None:
    """Set torch's threads (``--threads``, else picked from the machine's load) and say so."""
    from galrec.training.threads import use_threads

    choice = use_threads(threads or 0)
    if choice is not None:
        click.echo(f"torch threads: {choice.reason}", err=True)


@click.command("evaluate")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--split", type=click.Choice(["valid", "test"]), default="test", show_default=True)
@click.option(
    "-k", "--k", "ks", default="5,10,20", show_default=True, help="Cut-offs, comma-separated."
)
@click.option(
    "--dataset",
    type=click.Path(exists=True, file_okay=False),
    help="Prepared dataset directory (default: the one the run was trained on).",
)
@click.option(
    "--sampled",
    "num_negatives",
    type=click.IntRange(min=1),
    default=None,
    help="Rank each held-out item against N random negatives instead of all items. "
    "The output is labelled SAMPLED.",
)
@click.option(
    "--candidates",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A .npy [evaluated users, C] of candidate item ids (LLaRA style; sampled).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the sampled negatives.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 or auto.")
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=None,
    help="Users per chunk (default: sized to ~1 GB of scores).",
)
@threads_option
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Where metrics.json and per_user.npz go (default: RUN/eval_<split>[_sampled]).",
)
def evaluate_command(
    run: str,
    split: str,
    ks: str,
    dataset: str | None,
    num_negatives: int | None,
    candidates: str | None,
    seed: int,
    device: str,
    chunk_size: int | None,
    threads: int | None,
    out: str | None,
) -> None:
    """Evaluate a trained run: full ranking over all items, training items masked.

    \b
    Example:
      galrec evaluate runs/compare/ml-100k/runs/lightgcn/seed0 --split test --k 5,10,20
    """

    from galrec.evaluation.evaluate import evaluate

    _use_threads(threads)
    cutoffs = _ks(ks)
    scorer, data, _ = _open(run, dataset)
    candidate_lists = None if candidates is None else _load_candidates(Path(candidates))
    result = evaluate(
        scorer,
        data,
        split=split,
        ks=cutoffs,
        chunk_size=chunk_size,
        device=device,
        num_negatives=num_negatives,
        candidates=candidate_lists,
        seed=seed,
    )
    target = (
        Path(out)
        if out
        else Path(run) / f"eval_{split}{'_sampled' if result.mode != 'full' else ''}"
    )
    result.save(target)
    click.echo(result.format())
    click.echo(f"({result.seconds:.2f}s; per-user results in {target})")


@click.command("compare")
@click.option(
    "--dataset",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Prepared dataset directory (galrec data prepare).",
)
@click.option(
    "--models",
    default="popularity,mf,lightgcn",
    show_default=True,
    help="Comma-separated model names.",
)
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds.")
@click.option("-k", "--k", "ks", default="5,10,20", show_default=True, help="Cut-offs.")
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Output directory (default: runs/compare/<dataset name>).",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="MODEL=FILE.yaml",
    help="A model's config file instead of the packaged configs/<model>.yaml.",
)
@click.option(
    "--lm-set",
    "lm_sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="A dotted config override (e.g. train.steps=200) for every language model "
    "(GAL-Rec, its ablations, text_lm, id_lm), so they share one budget.",
)
@click.option(
    "--sampled",
    "num_negatives",
    type=click.IntRange(min=1),
    default=None,
    help="Evaluate against N random negatives (labelled sampled) instead of all items.",
)
@click.option("--device", default="auto", show_default=True)
@threads_option
@click.option("--plots/--no-plots", default=True, show_default=True)
@click.option(
    "--fresh",
    is_flag=True,
    help="Train every run again, even one already finished in --out with the same settings "
    "(by default such runs are reused, so an interrupted compare resumes).",
)
def compare_command(
    dataset: str,
    models: str,
    seeds: str,
    ks: str,
    out: str | None,
    configs: tuple[str, ...],
    lm_sets: tuple[str, ...],
    num_negatives: int | None,
    device: str,
    threads: int | None,
    plots: bool,
    fresh: bool,
) -> None:
    """Train and evaluate models over seeds; write a Markdown table, JSON and plots.

    Runs already finished in the output directory with the same settings are reused, so a
    killed compare resumes, and seeds run by separate commands combine into one table.

    \b
    Example:
      galrec compare --dataset prepared/ml-100k --models popularity,mf,lightgcn --seeds 0,1,2
    """

    from galrec.config import default_config, load_yaml
    from galrec.experiments.compare import run_compare
    from galrec.experiments.registry import get_model
    from galrec.experiments.report import write_report

    names = [name.strip() for name in models.split(",") if name.strip()]
    try:
        seed_list = [int(seed) for seed in seeds.split(",") if seed.strip()]
        for name in names:
            get_model(name)
    except ValueError:
        raise click.BadParameter(
            f"expected integers like 0,1,2, got {seeds!r}", param_hint="--seeds"
        ) from None
    except KeyError as error:
        raise click.BadParameter(str(error.args[0]), param_hint="--models") from None
    overrides: dict[str, dict[str, Any]] = {}
    for entry in configs:
        name, sep, path = entry.partition("=")
        if not sep or not Path(path).is_file():
            raise click.BadParameter(
                f"expected MODEL=FILE.yaml with an existing file, got {entry!r}",
                param_hint="--config",
            )
        overrides[name] = load_yaml(Path(path).read_text(), path)
    if lm_sets:
        from galrec.experiments.lm_models import LANGUAGE_MODELS, with_overrides

        for name in names:
            if name in LANGUAGE_MODELS:
                base = overrides.get(name, default_config(name))
                try:
                    overrides[name] = with_overrides(base, lm_sets)
                except ValueError as error:
                    raise click.BadParameter(str(error), param_hint="--lm-set") from None
    _use_threads(threads)
    data = _load_dataset(dataset)
    name = getattr(data, "name", Path(dataset).name)
    out_dir = Path(out) if out else Path("runs") / "compare" / name
    comparison = run_compare(
        data,
        names,
        seed_list,
        out_dir,
        dataset_dir=Path(dataset).resolve(),
        dataset_name=name,
        ks=_ks(ks),
        configs=overrides,
        device=device,
        num_negatives=num_negatives,
        progress=True,
        reuse=not fresh,
        log=click.echo,
    )
    arguments = ["compare", "--dataset", dataset, "--models", ",".join(names), "--seeds", seeds]
    arguments += ["--k", ks, "--out", str(out_dir), "--device", device]
    arguments += [part for entry in configs for part in ("--config", entry)]
    arguments += [part for entry in lm_sets for part in ("--lm-set", entry)]
    arguments += ["--sampled", str(num_negatives)] if num_negatives else []
    arguments += ["--threads", str(threads)] if threads else []
    command = "galrec " + " ".join(shlex.quote(arg) for arg in arguments)
    report = write_report(comparison, out_dir, command=command, plots=plots)
    click.echo(comparison.table())
    test = comparison.significance()
    if test is not None:
        click.echo(test.sentence())
    click.echo(f"report: {report}")


@click.command("diagnose")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("-k", "--k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--split", type=click.Choice(["valid", "test"]), default="test", show_default=True)
@click.option(
    "--dataset",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Prepared semantic-gap dataset (default: the one the run was trained on).",
)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def diagnose_command(
    run: str, k: int, split: str, dataset: str | None, device: str, as_json: bool
) -> None:
    """Twin separation on the semantic-gap dataset: twin cosine and wrong-twin rate in top-K.

    \b
    Example:
      galrec diagnose runs/compare/semantic-gap/runs/lightgcn/seed0 --k 10
    """
    import json

    from galrec.evaluation.diagnose import diagnose_twins
    from galrec.evaluation.evaluate import EmbeddingModel, scorer_for_split

    scorer, data, _ = _open(run, dataset)
    scorer = scorer_for_split(scorer, data, split)
    truth = getattr(data, "ground_truth", None)
    if truth is None:
        raise UserError(
            "the dataset has no ground truth; diagnose needs the semantic-gap generator's "
            "(galrec data prepare --format semantic-gap)"
        )
    embeddings = scorer.item_embeddings() if isinstance(scorer, EmbeddingModel) else None
    diagnosis = diagnose_twins(
        scorer,
        data,
        truth.user_communities,
        truth.item_communities,
        truth.twin_groups,
        k=k,
        split=split,
        item_embeddings=embeddings,
        device=device,
    )
    click.echo(json.dumps(diagnosis.as_dict(), indent=2) if as_json else diagnosis.format())


COMMANDS = (evaluate_command, compare_command, diagnose_command)


def _load_candidates(path: Path) -> Any:
    """The ``--candidates`` array; a FIFO, a damaged or pickled file is a one-line error."""
    import numpy as np

    from galrec.data.formats._io import require_file

    require_file(path)  # a FIFO would block np.load forever
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UserError(f"{path}: cannot read candidates: {error}") from None
