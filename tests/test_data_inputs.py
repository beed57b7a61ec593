"""Issue 14: inputs people have, and no silent surprises.

Time columns found by name (and the row order stated when there is none), ISO-8601 dates,
files without a header, category lists, MovieLens-style header names, and dataset names that
keep two datasets' compare reports apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from galrec.cli import main
from galrec.data.errors import DataFormatError
from galrec.data.formats import _delimited
from galrec.data.formats.table import ItemColumns, TableColumns, load_table
from galrec.data.prepared import PreparedDataset

T0 = 1_614_834_367
"""2021-03-04T05:06:07Z in seconds since 1970."""


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def shuffled_log(path: Path, time_header: str = "timestamp", sep: str = ",") -> Path:
    """Four users with three items each, written latest first: row order is reverse time."""
    rows = [
        sep.join((f"u{user}", f"i{(user + step) % 5}", str(1000 + step)))
        for user in range(4)
        for step in (2, 1, 0)
    ]
    header = sep.join(("user_id", "item_id", time_header))
    return write(path, "\n".join([header, *rows]) + "\n")


def prepare(*args: str) -> tuple[int, str]:
    return run("data", "prepare", "table", *args, "--k-core", "0")


def test_a_column_named_timestamp_is_the_time_and_the_cli_says_so(tmp_path: Path) -> None:
    code, output = prepare(str(shuffled_log(tmp_path / "log.csv")), "-o", str(tmp_path / "out"))
    assert code == 0, output
    assert "columns: user = user_id, item = item_id, timestamp = timestamp" in output
    assert "row order" not in output
    dataset = PreparedDataset.load(tmp_path / "out")
    assert dataset.info["has_timestamps"] and dataset.info["split_order"] == "time"
    assert dataset.test.timestamps.tolist() == [1002] * 4  # the latest, written first


@pytest.mark.parametrize("header", ["Time", "TS", "date_time", "unix_time", "DATE"])
def test_time_names_are_matched_ignoring_case_and_underscores(tmp_path: Path, header: str) -> None:
    raw = load_table(shuffled_log(tmp_path / "log.csv", header))
    assert raw.has_timestamps and raw.columns["timestamp"] == header


def test_time_col_none_splits_in_row_order_and_says_so(tmp_path: Path) -> None:
    log = str(shuffled_log(tmp_path / "log.csv"))
    code, output = prepare(log, "-o", str(tmp_path / "out"), "--time-col", "none")
    assert code == 0, output
    assert "no time column: the loo split and --duplicates follow the row order" in output
    dataset = PreparedDataset.load(tmp_path / "out")
    assert not dataset.info["has_timestamps"] and dataset.info["split_order"] == "row order"
    assert "timestamp" not in dataset.info["columns"]
    code, output = run("data", "info", str(tmp_path / "out"), "--sample", "2")
    assert code == 0 and "(row order: no time column)" in output, output


def test_temporal_split_without_time_is_refused_in_one_line(tmp_path: Path) -> None:
    log = str(shuffled_log(tmp_path / "log.csv"))
    code, output = prepare(
        log, "-o", str(tmp_path / "out"), "--time-col", "none", "--split", "temporal"
    )
    assert code == 2 and output.count("\n") == 1
    assert "the temporal split needs timestamps and the data has none" in output
    assert not (tmp_path / "out").exists()


def test_a_column_taken_as_time_by_name_says_how_to_ignore_it(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user_id,item_id,date\nu,i,2021-03-04\nu,j,soon\n")
    with pytest.raises(DataFormatError, match="pass --time-col none to ignore it") as caught:
        load_table(path)
    assert (caught.value.line, caught.value.field) == (3, "date")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2021-03-04", T0 - 5 * 3600 - 6 * 60 - 7),
        ("2021-03-04T05:06:07", T0),
        ("2021-03-04 05:06:07+02:00", T0 - 2 * 3600),
        ("2021-03-04T05:06:07Z", T0),
        ("2021-03-04T05:06:07.999", T0),
    ],
)
def test_iso_dates_are_seconds_since_1970_utc(tmp_path: Path, value: str, seconds: int) -> None:
    path = write(tmp_path / "log.csv", f"user_id,item_id,timestamp\nu,i,{value}\n")
    assert load_table(path).timestamps.tolist() == [seconds]


def test_dates_with_and_without_zones_and_numbers_mix(tmp_path: Path) -> None:
    rows = ["u,a,2021-03-04T05:06:07Z", "u,b,2021-03-04T05:06:07", "u,c,1000"]
    path = write(tmp_path / "log.csv", "\n".join(["user_id,item_id,time", *rows]) + "\n")
    assert load_table(path).timestamps.tolist() == [T0, T0, 1000]


def test_clean_dates_take_the_vectorised_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [f"u{n % 7},i{n % 11},2021-03-{1 + n % 28:02d}T05:06:07Z" for n in range(20_000)]
    path = write(tmp_path / "log.csv", "\n".join(["user_id,item_id,time", *rows]) + "\n")

    def slow(_text: str) -> float:
        raise AssertionError("the per-value rule ran on a clean column")

    monkeypatch.setattr(_delimited, "time_value", slow)
    assert load_table(path).timestamps[0] == T0 - 3 * 86400


def test_a_malformed_date_names_file_line_and_value(tmp_path: Path) -> None:
    rows = ["u,a,2021-03-04", "u,b,2021-03-05", "u,c,2021-02-30"]
    path = write(tmp_path / "log.csv", "\n".join(["user_id,item_id,date", *rows]) + "\n")
    with pytest.raises(DataFormatError) as caught:
        load_table(path)
    error = caught.value
    assert (error.path, error.line, error.field) == (path, 4, "date")
    assert "'2021-02-30'" in str(error) and "ISO-8601" in str(error)
    code, output = prepare(str(path), "-o", str(tmp_path / "out"))
    assert code == 2 and output == f"Error: {error}\n"


def test_parquet_timestamps_dates_and_iso_strings(tmp_path: Path) -> None:
    columns = {
        "zoned": pa.array([T0 * 1000]).cast(pa.timestamp("ms", tz="Europe/Paris")),
        "naive": pa.array([T0 * 10**6]).cast(pa.timestamp("us")),
        "day": pa.array([T0 // 86400], pa.int32()).cast(pa.date32()),
        "text": pa.array(["2021-03-04T07:06:07+02:00"]),
    }
    pq.write_table(pa.table({"user": ["u"], "item": ["i"], **columns}), tmp_path / "t.parquet")
    for name, seconds in [("zoned", T0), ("naive", T0), ("day", T0 - 18367), ("text", T0)]:
        raw = load_table(tmp_path / "t.parquet", TableColumns(timestamp=name))
        assert raw.timestamps.tolist() == [seconds], name


def test_parquet_malformed_date_string_names_the_row(tmp_path: Path) -> None:
    table = pa.table({"user": ["u", "v"], "item": ["i", "j"], "ts": ["2021-03-04", "nope"]})
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(DataFormatError, match=r"row 2, field 'ts': not a number: 'nope'"):
        load_table(tmp_path / "t.parquet")


def test_a_u_data_file_without_header_reads_by_position(tmp_path: Path) -> None:
    rows = [
        f"{user}\t{(user * 3 + n) % 7}\t{1 + n % 5}\t{900 - n}"
        for user in range(5)
        for n in range(3)
    ]
    path = write(tmp_path / "ml" / "u.data", "\n".join(rows) + "\n")
    code, output = prepare(str(path), "-o", str(tmp_path / "out"), "--no-header")
    assert code == 0, output
    assert "user = user, item = item, timestamp = timestamp, rating = rating" in output
    dataset = PreparedDataset.load(tmp_path / "out")
    assert dataset.num_users == 5 and dataset.info["split_order"] == "time"
    assert dataset.test.timestamps.tolist() == [900] * 5  # the first row of each user


def test_a_tab_delimiter_can_be_spelled_tab(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user_id\titem_id\nu\ti\n")
    code, output = prepare(str(path), "-o", str(tmp_path / "out"), "--delimiter", "tab")
    assert code == 0, output
    assert PreparedDataset.load(tmp_path / "out").item_ids == ["i"]


def test_columns_name_the_fields_of_a_file_without_header(tmp_path: Path) -> None:
    path = write(tmp_path / "plays.csv", "i1,u1,5\ni2,u1,7\n")
    raw = load_table(path, TableColumns(header=False, names=("item", "user", "time")))
    assert raw.user_ids == ["u1"] and raw.item_ids == ["i1", "i2"]
    assert raw.timestamps.tolist() == [5, 7]
    code, output = prepare(str(path), "-o", str(tmp_path / "out"), "--columns", "item,user")
    assert code == 2 and "2 column names given, the line has 3 fields" in output


def test_a_wide_file_without_header_needs_its_columns_named(tmp_path: Path) -> None:
    path = write(tmp_path / "wide.tsv", "1\t2\t3\t4\t5\n")
    with pytest.raises(DataFormatError, match=r"wide.tsv, line 1: 5 fields per line; name"):
        load_table(path, TableColumns(header=False))


def test_parquet_refuses_no_header(tmp_path: Path) -> None:
    pq.write_table(pa.table({"user": ["u"], "item": ["i"]}), tmp_path / "t.parquet")
    with pytest.raises(DataFormatError, match="Parquet names its columns"):
        load_table(tmp_path / "t.parquet", TableColumns(header=False))


def test_category_lists_split_on_the_separator(tmp_path: Path) -> None:
    log = write(tmp_path / "log.csv", "user_id,item_id\nu,m1\nu,m2\nv,m1\n")
    movies = write(tmp_path / "movies.csv", "item_id,title,genres\nm1,Heat,Action|Crime\n")
    columns = ItemColumns(categories="genres", category_sep="|")
    raw = load_table(log, items=movies, item_columns=columns)
    assert raw.items["m1"].categories == ["Action", "Crime"]
    whole = load_table(log, items=movies, item_columns=ItemColumns(categories="genres"))
    assert whole.items["m1"].categories == ["Action|Crime"]
    code, output = prepare(
        str(log), str(movies), "-o", str(tmp_path / "out"), "--categories-col", "genres",
        "--category-sep", "|", "--text-fields", "title,categories",
    )  # fmt: skip
    assert code == 0, output
    dataset = PreparedDataset.load(tmp_path / "out")
    assert dataset.item_texts[dataset.item_index("m1")] == "Heat. Action, Crime"


def test_movielens_ratings_csv_reads_without_column_options(tmp_path: Path) -> None:
    rows = [
        f"{user},{movie},{1 + (user + movie) % 5}.0,{1000 + movie}"
        for user in range(1, 5)
        for movie in range(1, 6)
    ]
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n" + "\n".join(rows))
    code, output = prepare(str(path), "-o", str(tmp_path / "out"), "--min-rating", "4")
    assert code == 0, output
    assert "user = userId, item = movieId, timestamp = timestamp, rating = rating" in output
    raw = load_table(path)
    assert raw.ratings is not None and raw.user_ids[:2] == ["1", "2"]


def test_a_missing_user_column_lists_what_the_file_has(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "who,movieId\nu,i\n")
    with pytest.raises(DataFormatError) as caught:
        load_table(path)
    assert (
        str(caught.value) == f"{path}, line 1: no user column: found who, movieId; pass --user-col"
    )


def test_two_user_columns_are_ambiguous_not_guessed(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user_id,userId,item_id\nu,v,i\n")
    with pytest.raises(DataFormatError, match="ambiguous user column: user_id, userId all fit"):
        load_table(path)
    assert load_table(path, TableColumns(user="userId")).user_ids == ["v"]


def test_the_name_defaults_to_the_output_directory_and_can_be_given(tmp_path: Path) -> None:
    log = str(shuffled_log(tmp_path / "a" / "interactions.csv"))
    assert prepare(log, "-o", str(tmp_path / "books"))[0] == 0
    assert json.loads((tmp_path / "books" / "manifest.json").read_text())["name"] == "books"
    assert prepare(log, "-o", str(tmp_path / "x"), "--name", "books-2024")[0] == 0
    assert PreparedDataset.load(tmp_path / "x").name == "books-2024"
    code, output = prepare(log, "-o", str(tmp_path / "y"), "--name", "a/b")
    assert code == 2 and "--name must be one path component" in output


def test_compare_refuses_a_report_directory_of_another_dataset(tmp_path: Path) -> None:
    first = shuffled_log(tmp_path / "one" / "interactions.csv")
    second = write(tmp_path / "two" / "interactions.csv", first.read_text().replace("u1", "u9"))
    for source, output in [(first, "p1"), (second, "p2")]:
        assert prepare(str(source), "-o", str(tmp_path / output), "--name", "same")[0] == 0
    out = tmp_path / "report"

    def compare(dataset: str) -> tuple[int, str]:
        args = ["--models", "popularity", "--seeds", "0", "--out", str(out), "--no-plots"]
        return run("compare", "--dataset", str(tmp_path / dataset), *args, "--device", "cpu")

    assert compare("p1")[0] == 0
    code, output = compare("p2")
    assert code == 2 and output.count("\n") == 1
    assert "holds results of another dataset" in output
