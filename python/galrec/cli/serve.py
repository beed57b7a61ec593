"""``galrec recommend`` and ``galrec export``: thin layers over :mod:`galrec.api`, so they serve
every finished run the API loads (``galrec train`` runs, every model of ``galrec compare``,
exported folders).

torch and the models are imported inside the commands, so ``galrec --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from galrec.cli.common import UserError


def _load(run_dir: str) -> Any:
    """``galrec.load(run_dir)``; its errors (ValueError, OSError, galrec.data's) end as one line
    through the command group (galrec.cli.common)."""
    from galrec.api import load

    return load(run_dir)


def _ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@click.command("recommend")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--user", "user", default=None, help="One user's raw id (as in the data) or index.")
@click.option("--users", "users", default=None, help="Comma-separated raw user ids or indices.")
@click.option(
    "--history",
    default=None,
    help="Comma-separated raw item ids, oldest first: recommend for a user not in the data.",
)
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--include-seen", is_flag=True, help="Do not leave the user's known items out.")
@click.option("--json", "as_json", is_flag=True, help="Print items, scores and titles as JSON.")
def recommend_command(
    run_dir: str,
    user: str | None,
    users: str | None,
    history: str | None,
    k: int,
    include_seen: bool,
    as_json: bool,
) -> None:
    """Top-K items from a finished run, with titles: for known users (their training and
    validation items left out) or for a new user's --history.

    \b
    Examples:
      galrec recommend runs/quickstart/gal_rec --user 0 -k 10
      galrec recommend runs/compare/ml-100k/runs/lightgcn/seed0 --users 1,2,3 --json
      galrec recommend runs/gal_rec --history 50,172,133
    """
    chosen = [option for option in (user, users, history) if option is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --user, --users, --history")
    model = _load(run_dir)
    try:
        if history is not None:
            lists = model.recommend_history(_ids(history), k, exclude_seen=not include_seen)
        else:
            lists = model.recommend(_ids(user or users or ""), k, exclude_seen=not include_seen)
    except NotImplementedError as error:
        raise UserError(str(error)) from None
    if as_json:
        click.echo(json.dumps(lists.to_json(), indent=2))
        return
    for row, record in enumerate(lists.to_json()):
        if record["user"] is None:
            click.echo(f"top {k} for the history:")
        else:
            index = model.users(record["user"])[0]
            click.echo(f"top {k} for user {record['user']} (index {index}):")
        for rank, entry in enumerate(record["items"], start=1):
            click.echo(f"{rank:3d}. {entry['item']}  {entry['title']}  ({entry['score']:.4f})")
        if row + 1 < len(lists.items):
            click.echo("")


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out", "out_dir", default=None, help="Output directory (default: RUN/export, RUN/export/hf)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["npy", "hf"]),
    default="npy",
    show_default=True,
    help="npy: embeddings and id maps; hf: a self-contained folder galrec.load opens anywhere "
    "(peft adapter, safetensors, dataset, tokenizer, config).",
)
def export_command(run_dir: str, out_dir: str | None, fmt: str) -> None:
    """Write a finished run's embeddings (.npy) or the whole model as a portable folder (hf).

    npy: users.npy / items.npy are the scoring space (score = users @ items.T, plus a language
    model's score prior), user_ids.json / item_ids.json the raw ids by row; a language model
    adds user_z.npy / item_z.npy, the unit representations z of users' hop-1 and items' hop-0
    prompts. hf: see galrec.export; load it with galrec.load(folder).

    \b
    Examples:
      galrec export runs/quickstart/gal_rec --out embeddings/
      galrec export runs/quickstart/gal_rec --format hf --out gal_rec_model/
    """
    from galrec.export import export_arrays, export_hf

    model = _load(run_dir)
    export = Path(run_dir) / "export"
    try:
        if fmt == "hf":
            folder = export_hf(model, Path(out_dir) if out_dir else export / "hf")
            click.echo(f"{folder}  (galrec.load({str(folder)!r}))")
            return
        target = Path(out_dir) if out_dir else export
        shapes = export_arrays(model, target)
    except NotImplementedError as error:
        raise UserError(str(error)) from None
    for name, shape in shapes.items():
        click.echo(f"{target / name}.npy  {shape}")


COMMANDS = (recommend_command, export_command)
