"""``galrec.prepare`` on tables in memory: a pandas DataFrame or a pyarrow Table gives exactly
the dataset the same rows give from a CSV file, and fails with the file path's errors."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import galrec
import numpy as np
import pyarrow as pa
import pytest
from galrec.data import (
    DataFormatError,
    ItemColumns,
    PreparedDataset,
    PrepareOptions,
    TableColumns,
    TextOptions,
)

pd = pytest.importorskip("pandas")

#: The columns under names no alias finds, so each test says which column is which.
COLUMNS = TableColumns(user="who", item="what", timestamp="when", rating="stars")
OPTIONS = PrepareOptions(
    min_rating=2, user_core=3, item_core=3, text=TextOptions(fields=("title", "categories"))
)
START = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def interactions(seed: int = 0) -> list[dict[str, object]]:
    """40 users with 6-10 rated items out of 25, at distinct times, in shuffled order."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(40):
        for item in rng.choice(25, size=rng.integers(6, 11), replace=False):
            rows.append(
                {
                    "who": f"user-{user:02d}",
                    "what": f"item-{item:02d}",
                    "when": int(START.timestamp()) + int(rng.integers(0, 10**7)),
                    "stars": int(rng.integers(1, 6)),
                }
            )
    return [rows[i] for i in rng.permutation(len(rows))]


def item_rows() -> list[dict[str, object]]:
    return [
        {"what": f"item-{i:02d}", "title": f"Title {i}", "genres": "Action|Comedy" if i % 2 else ""}
        for i in range(25)
    ]


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def assert_same(got: PreparedDataset, expected: PreparedDataset) -> None:
    """The same splits, id maps, texts and recorded choices."""
    for split in ("train", "valid", "test"):
        for name in ("users", "items", "timestamps"):
            np.testing.assert_array_equal(
                getattr(getattr(got, split), name), getattr(getattr(expected, split), name)
            )
    assert got.user_ids == expected.user_ids and got.item_ids == expected.item_ids
    assert got.item_texts == expected.item_texts
    for key in ("options", "has_timestamps", "split_order", "columns", "report"):
        assert got.info[key] == expected.info[key], key


def test_a_dataframe_and_an_arrow_table_prepare_like_the_csv(tmp_path) -> None:
    rows = interactions()
    items = ItemColumns(title="title", categories="genres", category_sep="|")
    from_file = galrec.prepare(
        "table",
        [write_csv(tmp_path / "inter.csv", rows), write_csv(tmp_path / "items.csv", item_rows())],
        options=OPTIONS,
        table_columns=COLUMNS,
        item_columns=items,
    )
    assert from_file.info["report"]["after_rating_filter"] < len(rows)  # ratings were read
    assert "Title 1. Action, Comedy" in from_file.item_texts
    frame, item_frame = pd.DataFrame(rows), pd.DataFrame(item_rows())
    tables = {
        "DataFrame": (frame, item_frame),
        "pyarrow Table": (pa.Table.from_pylist(rows), pa.Table.from_pylist(item_rows())),
    }
    for kind, (table, item_table) in tables.items():
        got = galrec.prepare(
            "table",
            [table, item_table],
            options=OPTIONS,
            table_columns=COLUMNS,
            item_columns=items,
        )
        assert_same(got, from_file)
        assert got.info["sources"] == [], kind  # nothing was written to be read back
    with pytest.raises(TypeError, match=r"prepare\(df, output=...\)"):
        galrec.prepare(frame, tmp_path / "mine")
    alone = galrec.prepare(frame, output=tmp_path / "mine", options=OPTIONS, table_columns=COLUMNS)
    saved = PreparedDataset.load(tmp_path / "mine")
    assert saved.name == alone.name == "mine" and saved.user_ids == from_file.user_ids


def test_times_read_as_from_a_file(tmp_path) -> None:
    """Ints, floats, datetime64 (naive = UTC, or zoned) and ISO strings: the file's seconds."""
    rows = interactions(seed=1)
    seconds = pd.Series([row["when"] for row in rows])
    iso = [(START + timedelta(seconds=int(s) - START.timestamp())).isoformat() for s in seconds]
    from_file = galrec.prepare(
        "table",
        write_csv(
            tmp_path / "inter.csv", [{**row, "when": t} for row, t in zip(rows, iso, strict=True)]
        ),
        options=OPTIONS,
        table_columns=COLUMNS,
    )
    frame = pd.DataFrame(rows)
    utc = pd.to_datetime(seconds, unit="s")
    times = {
        "int": seconds,
        "float": seconds.astype(float) + 0.25,  # fractions are floored, as a file's are
        "datetime64": utc,
        "datetime64 zoned": utc.dt.tz_localize("UTC").dt.tz_convert("Asia/Kolkata"),
        "ISO string": pd.Series(iso),
    }
    for kind, column in times.items():
        got = galrec.prepare(frame.assign(when=column), options=OPTIONS, table_columns=COLUMNS)
        assert_same(got, from_file)
        assert got.info["has_timestamps"], kind


def one_line_error(table: object, columns: TableColumns = COLUMNS, **kwargs: object) -> str:
    with pytest.raises(DataFormatError) as caught:
        galrec.prepare(table, options=OPTIONS, table_columns=columns, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("arrow", [False, True], ids=["DataFrame", "pyarrow Table"])
def test_errors_name_the_column_and_the_row(arrow: bool) -> None:
    rows = interactions()
    kind = "pyarrow Table" if arrow else "DataFrame"

    def table(frame: object) -> object:
        return pa.Table.from_pandas(frame, preserve_index=False) if arrow else frame

    frame = pd.DataFrame(rows)
    message = one_line_error(table(frame.drop(columns="what")))
    assert message == f"{kind}, field 'what': missing column; the table has: who, when, stars"
    found = TableColumns(timestamp="when", rating="stars")
    message = one_line_error(table(frame), found)
    assert (
        message
        == f"{kind}: no user column: found who, what, when, stars; pass TableColumns(user=...)"
    )
    missing = frame.astype({"who": object})
    missing.loc[7, "who"] = None
    assert one_line_error(table(missing)) == f"{kind}, 0-based row 7, field 'who': missing value"
    nat = frame.assign(when=pd.to_datetime(frame["when"], unit="s"))
    nat.loc[3, "when"] = pd.NaT
    assert one_line_error(table(nat)) == f"{kind}, 0-based row 3, field 'when': missing value"
    bad = frame.assign(when=["2021-02-30"] * len(frame))
    assert one_line_error(table(bad)).startswith(
        f"{kind}, 0-based row 0, field 'when': not a number: '2021-02-30'"
    )
    empty = frame.assign(what=[""] * len(frame))
    assert one_line_error(table(empty)) == f"{kind}, 0-based row 0, field 'what': empty id"
    lists = frame.assign(stars=[[1]] * len(frame))
    assert one_line_error(table(lists)).startswith(f"{kind}, field 'stars': ")
    by_name = frame.rename(columns={"when": "time"}).assign(time="soon")
    assert "pass TableColumns(timestamp='none') to ignore it" in one_line_error(
        table(by_name), TableColumns(user="who", item="what", rating="stars")
    )
    items = pd.DataFrame(item_rows()).drop(columns="title")
    with pytest.raises(DataFormatError, match=f"item {kind}, field 'title': missing column"):
        galrec.prepare("table", [table(frame), table(items)], table_columns=COLUMNS)


def test_what_a_table_in_memory_cannot_be() -> None:
    frame = pd.DataFrame(interactions())
    twice = pd.concat([frame, frame["who"]], axis=1)
    assert one_line_error(twice) == "DataFrame: column names repeat: who"
    no_header = TableColumns(user="who", item="what", header=False)
    assert "header/names are for CSV/TSV files" in one_line_error(frame, no_header)
    with pytest.raises(DataFormatError, match="format 'recbole' reads files"):
        galrec.prepare("recbole", frame)
    with pytest.raises(TypeError, match="a format name"):
        galrec.prepare({"who": ["a"]})


def test_readme_dataframe_example_runs(tmp_path, monkeypatch, capsys) -> None:
    """The README's DataFrame block, on an ``events.parquet`` it can read."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = next(
        block.split("```", 1)[0]
        for block in section.split("```python\n")[1:]
        if "galrec.prepare(purchases" in block
    )
    rows = interactions()
    frame = pd.DataFrame(
        {
            "customer": [row["who"] for row in rows],
            "sku": [row["what"] for row in rows],
            "at": pd.to_datetime([row["when"] for row in rows], unit="s", utc=True),
            "kind": ["purchase" if i % 7 else "view" for i in range(len(rows))],
        }
    )
    frame.to_parquet(tmp_path / "events.parquet")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    data = PreparedDataset.load(tmp_path / "prepared" / "shop")
    assert data.info["columns"] == {"user": "customer", "item": "sku", "timestamp": "at"}
    assert capsys.readouterr().out.split() == [
        str(data.num_users),
        str(data.num_items),
        str(len(data.train)),
    ]
