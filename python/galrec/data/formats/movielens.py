"""MovieLens as GroupLens ships it: ml-100k (``u.data``/``u.item``), ml-1m and ml-10m
(``ratings.dat``/``movies.dat`` with ``::``), ml-20m/25m/32m (``ratings.csv``/``movies.csv``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from galrec.data.errors import DataFormatError
from galrec.data.formats._delimited import Dialect, Kind, read_delimited
from galrec.data.formats._io import ProgressFn, iter_lines
from galrec.data.formats._records import collect_item_records
from galrec.data.raw import InteractionBuilder, ItemRecord, RawDataset

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
RATING_FIELDS = {
    "user_id": Kind.ID,
    "item_id": Kind.ID,
    "rating": Kind.NUMBER,
    "timestamp": Kind.TIME,
}
NO_GENRES = "(no genres listed)"


def load_movielens(path: Path, progress: ProgressFn | None = None) -> RawDataset:
    """Load any MovieLens release from its directory (or a file inside it)."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        directory = directory.parent
    # exists(), not is_file(): a FIFO or directory in the place of a file is refused when read
    if (directory / "u.data").exists():
        return _load_100k(directory, progress)
    if (directory / "ratings.dat").exists():
        return _load_dat(directory, progress)
    if (directory / "ratings.csv").exists():
        return _load_csv(directory, progress)
    raise DataFormatError(
        path, None, None, "not a MovieLens directory: no u.data, ratings.dat or ratings.csv"
    )


def _ratings(path: Path, dialect: Dialect, progress: ProgressFn | None) -> InteractionBuilder:
    builder = InteractionBuilder()
    for block in read_delimited(path, dialect, RATING_FIELDS, progress):
        builder.add(block["user_id"], block["item_id"], block["timestamp"], block["rating"])
    return builder


def _load_100k(directory: Path, progress: ProgressFn | None) -> RawDataset:
    ratings = directory / "u.data"
    dialect = Dialect(tuple(RATING_FIELDS), delimiter="\t", quoted=False, skip_lines=0)
    builder = _ratings(ratings, dialect, progress)
    movies = directory / "u.item"
    items: dict[str, ItemRecord] = {}
    sources = [ratings]
    if movies.exists():
        sources.append(movies)
        columns = ("item_id", "title", "release", "video_release", "url", *ML100K_GENRES)
        item_dialect = Dialect(
            columns, delimiter="|", quoted=False, skip_lines=0, encoding="latin-1"
        )
        fields = {"item_id": Kind.ID, "title": Kind.TEXT, **dict.fromkeys(ML100K_GENRES, Kind.TEXT)}
        wanted = builder.items.id_set()
        for block in read_delimited(movies, item_dialect, fields, progress):
            ids = block["item_id"].to_pylist()
            titles = block["title"].to_pylist()
            flags = {genre: block[genre].to_pylist() for genre in ML100K_GENRES}
            for row, raw_id in enumerate(ids):
                if raw_id in wanted and raw_id not in items:
                    genres = [genre for genre in ML100K_GENRES if flags[genre][row] == "1"]
                    items[raw_id] = ItemRecord(title=titles[row].strip() or None, categories=genres)
    return builder.build(directory.name, sources, items)


def _load_dat(directory: Path, progress: ProgressFn | None) -> RawDataset:
    ratings = directory / "ratings.dat"
    # "::" separated; splitting on ":" is exact because rating lines hold only numbers.
    columns = ("user_id", "_1", "item_id", "_2", "rating", "_3", "timestamp")
    builder = _ratings(
        ratings, Dialect(columns, delimiter=":", quoted=False, skip_lines=0), progress
    )
    movies = directory / "movies.dat"
    items: dict[str, ItemRecord] = {}
    sources = [ratings]
    if movies.exists():
        sources.append(movies)
        items = collect_item_records(
            _dat_movie_rows(movies),
            "item_id",
            {"title": "title", "categories": "genres"},
            builder.items.id_set(),
            _split_genres,
        )
    return builder.build(directory.name, sources, items)


def _dat_movie_rows(path: Path) -> Iterator[dict[str, list[str]]]:
    """``movies.dat`` rows (``id::title::genres``) as one block; ml-1m is Latin-1, later UTF-8."""
    try:
        lines = list(iter_lines(path, "utf-8"))
    except DataFormatError:
        lines = list(iter_lines(path, "latin-1"))
    block: dict[str, list[str]] = {"item_id": [], "title": [], "genres": []}
    for number, text in lines:
        if not text:
            continue
        fields = text.split("::")
        if len(fields) != 3:
            raise DataFormatError(
                path, number, None, f"expected 3 '::' fields, found {len(fields)}"
            )
        if not fields[0]:
            raise DataFormatError(path, number, "item_id", "empty id")
        for name, value in zip(block, fields, strict=True):
            block[name].append(value)
    yield block


def _split_genres(genres: str) -> list[str]:
    return [] if genres == NO_GENRES else [genre for genre in genres.split("|") if genre]


def _load_csv(directory: Path, progress: ProgressFn | None) -> RawDataset:
    ratings = directory / "ratings.csv"
    columns = ("user_id", "item_id", "rating", "timestamp")
    builder = _ratings(ratings, Dialect(columns, delimiter=",", quoted=True), progress)
    movies = directory / "movies.csv"
    items: dict[str, ItemRecord] = {}
    sources = [ratings]
    if movies.exists():
        sources.append(movies)
        dialect = Dialect(("item_id", "title", "genres"), delimiter=",", quoted=True)
        blocks = read_delimited(
            movies, dialect, {"item_id": Kind.ID, "title": Kind.TEXT, "genres": Kind.TEXT}, progress
        )
        items = collect_item_records(
            blocks,
            "item_id",
            {"title": "title", "categories": "genres"},
            builder.items.id_set(),
            _split_genres,
        )
    return builder.build(directory.name, sources, items)
