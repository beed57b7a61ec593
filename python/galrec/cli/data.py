"""``galrec data``: prepare real datasets, generate the semantic-gap dataset, inspect either.

Heavy modules (pyarrow, scipy) are imported inside the commands so ``galrec --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from galrec.cli.common import AliasedOption, UserError

FORMAT_CHOICES = ("recbole", "movielens", "amazon", "yelp", "table")
TEXT_FIELD_CHOICES = ("title", "categories", "brand", "description")
PROGRESS_MIN_BYTES = 16 << 20
TAB_NAMES = {"\\t": "\t", "tab": "\t"}
"""Spellings of a tab ``--delimiter`` that survive a shell without $'\\t'."""


def _refuse_existing(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise UserError(f"{output}: already exists (use --overwrite to replace it)")


@contextmanager
def _progress(inputs: tuple[Path, ...], quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """Bytes read of the inputs (galrec.progress) when they are large enough to need it."""
    total = sum(
        file.stat().st_size
        for path in inputs
        for file in ([path] if path.is_file() else path.rglob("*") if path.is_dir() else [])
        if file.is_file()
    )
    if quiet or total < PROGRESS_MIN_BYTES:
        yield None
        return
    from galrec.progress import Progress

    bar = Progress(total, desc="reading", unit="B", unit_scale=True, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


@click.group(name="data")
def data() -> None:
    """Prepare datasets (real formats or the generated semantic-gap world) and inspect them.

    \b
    Examples:
      galrec data prepare recbole ../shared/data/ml-100k -o prepared/ml-100k --min-rating 4
      galrec data generate -o prepared/semantic-gap
      galrec data info prepared/ml-100k
    """


@data.command()
@click.argument("source_format", metavar="FORMAT", type=click.Choice(FORMAT_CHOICES))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    "output",
    cls=AliasedOption,
    aliases=("--output",),
    required=True,
    type=click.Path(path_type=Path),
    help="Directory to write the prepared dataset to.",
)
@click.option("--overwrite", is_flag=True, help="Replace the --out directory if it exists.")
@click.option(
    "--min-rating",
    type=float,
    default=None,
    help="Keep interactions rated at least this (implicit feedback). Default: keep all.",
)
@click.option(
    "--k-core",
    "k_core",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="k of the iterative k-core filter on both sides (0 or 1: off).",
)
@click.option("--user-core", type=click.IntRange(min=0), default=None, help="Override k for users.")
@click.option("--item-core", type=click.IntRange(min=0), default=None, help="Override k for items.")
@click.option(
    "--duplicates",
    type=click.Choice(["first", "last"]),
    default="first",
    show_default=True,
    help="Which repeated (user, item) interaction to keep.",
)
@click.option(
    "--split",
    "split_method",
    type=click.Choice(["loo", "temporal", "ratio"]),
    default="loo",
    show_default=True,
    help="loo: last item test, second-to-last valid; temporal: global time cut; "
    "ratio: per-user random shares.",
)
@click.option("--valid-ratio", type=float, default=0.1, show_default=True)
@click.option("--test-ratio", type=float, default=0.1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the ratio split.")
@click.option(
    "--text-fields",
    default="title",
    show_default=True,
    help=f"Comma-separated item text fields from: {', '.join(TEXT_FIELD_CHOICES)}.",
)
@click.option("--max-text-chars", type=int, default=256, show_default=True)
@click.option(
    "--name",
    default=None,
    help="Dataset name in the manifest; compare reports go to runs/compare/NAME "
    "(default: the name of the --out directory).",
)
@click.option(
    "--user-col",
    default=None,
    help="table: user column (default: found by name: user_id, userId, user, uid, ...).",
)
@click.option(
    "--item-col",
    default=None,
    help="table: item column (default: found by name: item_id, itemId, movieId, product_id, "
    "asin, ...).",
)
@click.option(
    "--time-col",
    default=None,
    help="table: time column, unix time or ISO-8601 dates (naive: UTC). Default: a column "
    "named timestamp, time, ts, datetime, date, unix_time, ...; 'none': split in row order.",
)
@click.option(
    "--rating-col",
    default=None,
    help="table: rating column (default: one named rating, score, stars, overall; 'none': none).",
)
@click.option(
    "--no-header",
    is_flag=True,
    help="table: the interaction file has no header line; its fields are user,item"
    "[,rating][,timestamp] by position (u.data), or as named by --columns.",
)
@click.option(
    "--columns",
    "column_names",
    default=None,
    help="table: comma-separated names of the fields of a file without a header "
    "(implies --no-header), e.g. user,item,rating,timestamp.",
)
@click.option("--item-id-col", default=None, help="table: item id column of the item file.")
@click.option("--title-col", default="title", show_default=True, help="table: title column.")
@click.option("--categories-col", default=None, help="table: categories column.")
@click.option(
    "--category-sep",
    default=None,
    help="table: separator of the categories in one value, e.g. '|' for Action|Comedy "
    "(default: one category); the item text joins them with ', '.",
)
@click.option("--brand-col", default=None, help="table: brand column.")
@click.option("--description-col", default=None, help="table: description column.")
@click.option(
    "--delimiter",
    default=None,
    help="table: field delimiter, '\\t' or 'tab' for a tab (default: tab for .tsv/.tab, comma "
    "for .csv, else a tab if the first line has one).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def prepare(
    source_format: str,
    inputs: tuple[Path, ...],
    output: Path,
    overwrite: bool,
    min_rating: float | None,
    k_core: int,
    user_core: int | None,
    item_core: int | None,
    duplicates: str,
    split_method: str,
    valid_ratio: float,
    test_ratio: float,
    seed: int,
    text_fields: str,
    max_text_chars: int,
    name: str | None,
    user_col: str | None,
    item_col: str | None,
    time_col: str | None,
    rating_col: str | None,
    no_header: bool,
    column_names: str | None,
    item_id_col: str | None,
    title_col: str,
    categories_col: str | None,
    category_sep: str | None,
    brand_col: str | None,
    description_col: str | None,
    delimiter: str | None,
    quiet: bool,
) -> None:
    """Read INPUTS in FORMAT, filter, split, and write a prepared dataset to the --out directory.

    \b
    FORMAT and its INPUTS:
      recbole    the directory or NAME.inter (NAME.item/.user beside it are used)
      movielens  a MovieLens directory (ml-100k, ml-1m/10m, ml-20m/25m/32m)
      amazon     reviews JSON lines [metadata JSON lines]  (2014/2018/2023; .gz ok)
      yelp       review.json or its directory [business.json]
      table      interactions CSV/TSV/Parquet [items table]  (see the --*-col options)

    \b
    Example:
      galrec data prepare amazon reviews_Books_5.json.gz meta_Books.json.gz -o books
    """
    from galrec.data.formats import ItemColumns, TableColumns, load_source
    from galrec.data.preparation import PrepareOptions, dataset_name, prepare
    from galrec.data.splits import SplitOptions
    from galrec.data.text import TextOptions

    _refuse_existing(output, overwrite)
    name = dataset_name(name, output)
    options = PrepareOptions(
        min_rating=min_rating,
        duplicates=duplicates,  # type: ignore[arg-type]
        user_core=k_core if user_core is None else user_core,
        item_core=k_core if item_core is None else item_core,
        split=SplitOptions(split_method, valid_ratio, test_ratio, seed),  # type: ignore[arg-type]
        text=TextOptions(
            fields=tuple(name.strip() for name in text_fields.split(",") if name.strip()),
            max_chars=max_text_chars,
        ),
    )
    with _progress(inputs, quiet) as progress:
        raw = load_source(
            source_format,
            inputs,
            table_columns=TableColumns(
                user=user_col,
                item=item_col,
                timestamp=time_col,
                rating=rating_col,
                header=not (no_header or column_names),
                names=_split_names(column_names),
            ),
            item_columns=ItemColumns(
                item=item_id_col,
                title=title_col,
                categories=categories_col,
                brand=brand_col,
                description=description_col,
                category_sep=category_sep,
            ),
            delimiter=TAB_NAMES.get(delimiter or "", delimiter),
            progress=progress,
        )
    raw.name = name
    dataset = prepare(raw, options)
    dataset.save(output, overwrite=overwrite)
    _echo_choices(dataset.info, split_method)
    _echo_saved(dataset, output)


def _split_names(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",")) if text else ()


def _echo_choices(info: dict[str, Any], split_method: str) -> None:
    """Say which columns a table was read from and, when it has no time, that the split
    follows the row order."""
    columns = info.get("columns")
    if columns:
        click.echo("columns: " + ", ".join(f"{role} = {name}" for role, name in columns.items()))
    if info["split_order"] == "row order":
        hint = "; --time-col names a time column" if columns else ""
        click.echo(
            f"no time column: the {split_method} split and --duplicates follow the row order of "
            f"the file{hint}"
        )


@data.command()
@click.option(
    "-o",
    "--out",
    "output",
    cls=AliasedOption,
    aliases=("--output",),
    required=True,
    type=click.Path(path_type=Path),
    help="Directory to write the generated dataset to.",
)
@click.option("--overwrite", is_flag=True, help="Replace the --out directory if it exists.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--users", type=int, default=400, show_default=True)
@click.option("--communities", type=int, default=4, show_default=True)
@click.option("--twin-groups", type=int, default=60, show_default=True)
@click.option("--twins-per-group", type=int, default=2, show_default=True)
@click.option("--ordinary-items", type=int, default=100, show_default=True)
@click.option("--min-interactions", type=int, default=15, show_default=True)
@click.option("--max-interactions", type=int, default=30, show_default=True)
@click.option(
    "--twin-share",
    type=float,
    default=0.6,
    show_default=True,
    help="Share of a user's interactions with their own community's twins.",
)
@click.option(
    "--noise",
    type=float,
    default=0.05,
    show_default=True,
    help="Share with other communities' twins.",
)
def generate(
    output: Path,
    overwrite: bool,
    seed: int,
    users: int,
    communities: int,
    twin_groups: int,
    twins_per_group: int,
    ordinary_items: int,
    min_interactions: int,
    max_interactions: int,
    twin_share: float,
    noise: float,
) -> None:
    """Generate the semantic-gap dataset (twins with near-identical titles, each consumed by
    its own user community) and write it, ground truth included, to the --out directory.

    \b
    Example:
      galrec data generate -o prepared/semantic-gap --seed 1
    """
    from galrec.data.semantic_gap import SemanticGapConfig, generate_semantic_gap

    _refuse_existing(output, overwrite)
    config = SemanticGapConfig(
        num_communities=communities,
        num_users=users,
        num_twin_groups=twin_groups,
        twins_per_group=twins_per_group,
        num_ordinary_items=ordinary_items,
        min_interactions=min_interactions,
        max_interactions=max_interactions,
        twin_share=twin_share,
        noise=noise,
        seed=seed,
    )
    dataset = generate_semantic_gap(config)
    dataset.save(output, overwrite=overwrite)
    _echo_saved(dataset, output)


def _echo_saved(dataset: Any, output: Path) -> None:
    counts = dataset.counts()
    click.echo(
        f"wrote {output}: {counts['users']:,} users, {counts['items']:,} items, "
        f"{counts['interactions']:,} interactions (train {counts['train']:,} / "
        f"valid {counts['valid']:,} / test {counts['test']:,})"
    )


@data.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Items sampled for the semantic-gap diagnostic.",
)
@click.option(
    "-k",
    "--k",
    "neighbours",
    cls=AliasedOption,
    aliases=("--neighbours",),
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Neighbours compared per item.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-verify", is_flag=True, help="Skip checksum verification of the files.")
@click.option(
    "--text-embeddings",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Item text embeddings (.npy, one row per item, e.g. the backbone's) instead of TF-IDF.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def info(
    directory: Path,
    sample: int,
    neighbours: int,
    seed: int,
    no_verify: bool,
    text_embeddings: Path | None,
    as_json: bool,
) -> None:
    """Print sizes, density, degree percentiles, text coverage, split sizes and the
    semantic gap (how often text neighbours differ from co-interaction neighbours).

    \b
    Example:
      galrec data info prepared/ml-100k
    """
    from galrec.data.diagnostics import gap_as_dict, semantic_gap, summarize
    from galrec.data.prepared import PreparedDataset

    dataset = PreparedDataset.load(directory, verify=not no_verify)
    embeddings = None if text_embeddings is None else _load_embeddings(text_embeddings, dataset)
    summary = summarize(dataset)
    gap = semantic_gap(dataset, sample=sample, k=neighbours, seed=seed, text_embeddings=embeddings)
    if as_json:
        click.echo(json.dumps({**summary, "semantic_gap": gap_as_dict(gap)}, indent=2))
        return
    for label, value in _info_lines(summary, gap, dataset.info):
        click.echo(f"{label:<16}{value}")


def _load_embeddings(path: Path, dataset: Any) -> Any:
    """A float matrix with one row per item of ``dataset``, or a one-line error."""
    import numpy as np

    from galrec.data.formats._io import require_file

    require_file(path)  # a FIFO would block np.load forever
    try:
        embeddings = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable .npy array: {error}") from None
    if embeddings.ndim != 2 or embeddings.shape[0] != dataset.num_items:
        raise UserError(
            f"{path}: expected shape ({dataset.num_items}, dim), found {embeddings.shape}"
        )
    if not np.issubdtype(embeddings.dtype, np.floating) or not np.isfinite(embeddings).all():
        raise UserError(f"{path}: embeddings must be finite floats")
    return embeddings


def _info_lines(summary: dict[str, Any], gap: Any, info: dict[str, Any]) -> list[tuple[str, str]]:
    def degrees(stats: dict[str, float]) -> str:
        return "  ".join(f"{name} {value:g}" for name, value in stats.items())

    splits = summary["splits"]
    report = summary["report"]
    order = " (row order: no time column)" if info.get("split_order") == "row order" else ""
    lines = [
        ("dataset", summary["name"]),
        ("users", f"{summary['users']:,}"),
        ("items", f"{summary['items']:,}"),
        ("interactions", f"{summary['interactions']:,}"),
        ("density", f"{summary['density']:.4%}"),
        ("user degree", degrees(summary["user_degree"])),
        ("item degree", degrees(summary["item_degree"])),
        (
            "splits",
            f"{summary['split_method']}: train {splits['train']:,} / valid {splits['valid']:,}"
            f" / test {splits['test']:,}{order}",
        ),
    ]
    if summary["items_with_text"] is not None:
        missing = summary["items"] - summary["items_with_text"]
        share = summary["items_with_text"] / max(summary["items"], 1)
        fallback = f"; {missing:,} use the fallback text" if missing else ""
        lines.append(
            (
                "item text",
                f"{summary['items_with_text']:,} of {summary['items']:,} ({share:.1%}){fallback}",
            )
        )
    if "read" in report:
        lines.append(
            (
                "read",
                f"{report['read']:,} interactions, {report['users_read']:,} users, "
                f"{report['items_read']:,} items",
            )
        )
        lines.append(
            (
                "kept",
                f"{report['after_rating_filter']:,} after the rating filter, "
                f"{report['after_deduplication']:,} after deduplication, "
                f"{report['after_k_core']:,} after the k-core",
            )
        )
    for source in info.get("sources", []):
        lines.append(("source", f"{source['path']} ({source['size']:,} bytes)"))
    lines.append(
        (
            "semantic gap",
            f"{gap.gap:.3f}: text and co-interaction top-{gap.k} neighbours share "
            f"{gap.overlap:.1%} on average over {gap.sampled} items "
            f"(chance {gap.chance_overlap:.1%})",
        )
    )
    if gap.twin_text_nearest is not None:
        lines.append(
            (
                "twins",
                f"nearest item is the twin for {gap.twin_text_nearest:.0%} of twins by "
                f"text, {gap.twin_graph_nearest:.0%} by co-interaction",
            )
        )
    return lines
