"""``galrec train`` and ``galrec quickstart`` (``recommend`` and ``export``: galrec.cli.serve).

torch and transformers are imported inside the commands, so ``galrec --help`` stays fast.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from galrec.cli.common import threads_option

#: The quick start trains the packaged configs as they are (their defaults are the CPU budget's);
#: only the steps, validation and threads come from its options.
QUICKSTART_MODELS = ("text_lm", "id_lm", "gal_rec")


@click.command("train")
@click.option(
    "--config",
    "config",
    default="gal_rec",
    show_default=True,
    help="YAML file or bundled config name.",
)
@click.option(
    "-o", "--out", "out_dir", default=None, help="Run directory (default: the config's out_dir)."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in the run directory from its newest complete checkpoint.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the run in the run directory (its galrec files are deleted first).",
)
@click.option(
    "--allow-config-change",
    is_flag=True,
    help="With --resume: continue although the config changed; recorded in config_changes.jsonl.",
)
@click.argument("overrides", nargs=-1)
def train_command(
    config: str,
    out_dir: str | None,
    resume: bool,
    overwrite: bool,
    allow_config_change: bool,
    overrides: tuple[str, ...],
) -> None:
    """Train GAL-Rec (or a baseline/ablation) from a YAML config with key=value overrides.

    The resolved config, checkpoints (last/, best/), metrics.jsonl and result.json go to the
    run directory. Under torchrun every process trains one DDP rank. A directory that holds
    another run is refused (exit code 2) unless --resume or --overwrite; --resume refuses a
    config that differs in a key that can change the result unless --allow-config-change.

    \b
    Examples:
      galrec train --config gal_rec train.steps=300 prompts.fanouts=[5,3]
      galrec train --config no_l3 --out runs/no_l3 model.backbone=tiny-bert
      galrec train --config gal_rec --resume
      torchrun --nproc-per-node 2 -m galrec train --config gal_rec
    """
    from galrec.config import config_path, load_config
    from galrec.training.trainer import Trainer

    cfg = load_config(config_path(config), overrides)
    trainer = Trainer(
        cfg, out_dir or cfg.out_dir, resume=resume, overwrite=overwrite,
        allow_config_change=allow_config_change,
    )  # fmt: skip
    for note in trainer.notes:
        click.echo(note)
    result = trainer.fit()
    click.echo(f"run directory: {result.out_dir}")
    click.echo(f"best validation step {result.best_step}; test metrics:")
    for key, value in sorted(result.test.items()):
        click.echo(f"  {key:12s} {value:.4f}")


@click.command("quickstart")
@click.option(
    "-o",
    "--out",
    "out_dir",
    default="runs/quickstart",
    show_default=True,
    help="Where the three runs go.",
)
@click.option(
    "--backbone",
    default="minilm",
    show_default=True,
    help="minilm (pip-installed), smollm2, tiny-bert, or a HF name/path.",
)
@click.option("--steps", default=100, show_default=True, help="Training steps per model.")
@threads_option
def quickstart_command(out_dir: str, backbone: str, steps: int, threads: int | None) -> None:
    """Offline demo: generate the semantic-gap dataset, train the text-only LM, the ID-token LM
    and GAL-Rec on it, and print Recall@10 / NDCG@10 and how well each tells twins apart. A
    rerun replaces the runs of the previous one.

    Twins are items with near-identical titles bought by different user communities: only a
    model that learned collaborative semantics separates them (twin accuracy well above chance).

    \b
    Example:
      galrec quickstart
      galrec quickstart --backbone tiny-bert --steps 100
    """
    from galrec.config import config_path, load_config
    from galrec.training.trainer import Trainer

    started = time.perf_counter()
    rows = []
    trainer = None
    for name in QUICKSTART_MODELS:
        overrides = [
            f"model.backbone={backbone}",
            f"train.steps={steps}",
            f"train.eval_every={steps}",
            f"train.checkpoint_every={steps}",
            f"train.threads={threads or 0}",
        ]
        cfg = load_config(config_path(name), overrides)
        click.echo(
            f"== {name}: {Path(str(config_path(name))).read_text().splitlines()[0].lstrip('# ')}"
        )
        trainer = Trainer(cfg, Path(out_dir) / name, overwrite=True)
        for note in trainer.notes:
            click.echo(note)
        result = trainer.fit()
        rows.append((name, result.test))
    click.echo("")
    references = reference_rows(trainer.run) if trainer is not None else []
    click.echo(format_table(references + rows))
    click.echo(f"\nfinished in {time.perf_counter() - started:.0f} s; runs in {out_dir}/")
    click.echo(f"next: galrec recommend {out_dir}/gal_rec --user 0 -k 10")


def reference_rows(run: Any) -> list[tuple[str, dict[str, float]]]:
    """Popularity and the run's own CF model (LightGCN with the baseline's settings, the
    ``lightgcn`` row of ``galrec compare`` at this seed) on the test split: where the language
    models stand against what needs no language model."""
    import numpy as np

    from galrec.baselines import EmbeddingScorer, PopularityScorer
    from galrec.evaluation.evaluate import evaluate

    data = run.dataset
    scorers: list[tuple[str, Any]] = [
        ("popularity", PopularityScorer.fit(data.train.items, data.num_items))
    ]
    cf_file = run.out_dir / "cf_vectors.npy"
    if run.cfg.model.cf_features == "lightgcn" and cf_file.is_file():
        cf = np.load(cf_file)
        users, items = cf[: data.num_users], cf[data.num_users :]
        scorers.append(("lightgcn", EmbeddingScorer(users, items)))
    rows = []
    for name, scorer in scorers:
        metrics = evaluate(scorer, data, split="test", ks=(10,)).metrics
        metrics.update(run.twin_metrics(scorer))
        rows.append((name, metrics))
    return rows


def format_table(rows: list[tuple[str, dict[str, float]]]) -> str:
    """The quick start's result table (test split, full ranking)."""
    lines = [
        "test split, full ranking over all items",
        f"{'model':10s} {'Recall@10':>10s} {'NDCG@10':>10s} {'twin acc':>10s} {'chance':>8s}",
    ]
    nan = float("nan")
    for name, m in rows:
        lines.append(
            f"{name:10s} {m.get('recall@10', nan):10.4f} {m.get('ndcg@10', nan):10.4f} "
            f"{m.get('twin_acc', nan):10.3f} {m.get('twin_chance', nan):8.2f}"
        )
    return "\n".join(lines)


COMMANDS = (train_command, quickstart_command)
