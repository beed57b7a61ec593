"""Loaders: each format on a small file written by the test, and every kind of bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from galrec.data.errors import DataFormatError
from galrec.data.formats.movielens import load_movielens
from galrec.data.formats.recbole import load_recbole
from galrec.data.formats.table import ItemColumns, TableColumns, load_table


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def recbole_dir(tmp_path: Path, inter: str) -> Path:
    write(tmp_path / "toy.inter", inter)
    write(
        tmp_path / "toy.item",
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
        'a\t"Quoted" Title\tAction Drama\nb\tSecond\tComedy\nz\tNever rated\tNone\n',
    )
    write(tmp_path / "toy.user", "user_id:token\tage:token\tgender:token\n1\t24\tM\n2\t31\tF\n")
    return tmp_path


RECBOLE_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\ta\t4\t100\n2\ta\t3\t90\n1\tb\t5\t101.7\n"
)


def test_recbole_reads_interactions_items_and_users(tmp_path: Path) -> None:
    raw = load_recbole(recbole_dir(tmp_path, RECBOLE_INTER))
    assert raw.name == "toy"
    assert [raw.user_ids[c] for c in raw.user_codes] == ["1", "2", "1"]
    assert [raw.item_ids[c] for c in raw.item_codes] == ["a", "a", "b"]
    assert raw.timestamps.tolist() == [100, 90, 101]
    assert raw.ratings is not None and raw.ratings.tolist() == [4.0, 3.0, 5.0]
    assert raw.items["a"].title == '"Quoted" Title'  # quotes are data in atomic files
    assert raw.items["a"].categories == ["Action Drama"]
    assert "z" not in raw.items  # never interacted with
    assert raw.user_texts == {"1": "age 24; gender M", "2": "age 31; gender F"}
    assert [path.name for path in raw.sources] == ["toy.inter", "toy.item", "toy.user"]


def test_recbole_without_timestamp_or_rating_uses_file_order(tmp_path: Path) -> None:
    path = write(tmp_path / "x.inter", "user_id:token\titem_id:token\nu\ti\nu\tj\nv\ti\n")
    raw = load_recbole(path)
    assert raw.ratings is None and not raw.has_timestamps
    assert raw.timestamps.tolist() == [0, 1, 2]


def test_recbole_streams_gzip_files(tmp_path: Path) -> None:
    (tmp_path / "g.inter").write_bytes(gzip.compress(RECBOLE_INTER.encode()))
    seen: list[int] = []
    raw = load_recbole(tmp_path / "g.inter", progress=seen.append)
    assert raw.num_interactions == 3
    assert sum(seen) == (tmp_path / "g.inter").stat().st_size


@pytest.mark.parametrize(
    ("body", "line", "field", "message"),
    [
        ("1\ta\t4\n", 2, None, "expected 4 fields, found 3"),
        ("1\ta\t4\t5\n\n2\tb\t3\tsoon\n", 4, "timestamp", "not a number: 'soon'"),
        ("1\ta\t4\t5\n\tb\t3\t7\n", 3, "user_id", "empty id"),
        ("1\ta\tnan\t5\n", 2, "rating", "not a finite number"),
    ],
)
def test_recbole_bad_lines_name_line_and_field(
    tmp_path: Path, body: str, line: int, field: str | None, message: str
) -> None:
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    path = write(tmp_path / "bad.inter", header + body)
    with pytest.raises(DataFormatError) as caught:
        load_recbole(path)
    error = caught.value
    assert (error.path, error.line, error.field) == (path, line, field)
    assert message in str(error) and str(path) in str(error)


def test_recbole_header_without_type_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.inter", "user_id\titem_id:token\n1\ta\n")
    with pytest.raises(DataFormatError, match="line 1, field 'user_id'"):
        load_recbole(path)


def test_recbole_missing_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.inter", "user:token\titem_id:token\n1\ta\n")
    with pytest.raises(DataFormatError, match="field 'user_id': missing column"):
        load_recbole(path)


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.inter"
    path.write_bytes(b"user_id:token\titem_id:token\nu\ti\nu\tcaf\xe9\n")
    with pytest.raises(DataFormatError, match=r"line 3: not valid utf-8: byte 0xe9"):
        load_recbole(path)


def test_missing_file_and_directory_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"expected one \.inter file"):
        load_recbole(tmp_path)
    with pytest.raises(DataFormatError, match="file not found"):
        load_recbole(tmp_path / "absent.inter")
    with pytest.raises(DataFormatError, match="is not a file"):
        load_table(tmp_path)


def test_movielens_100k(tmp_path: Path) -> None:
    write(tmp_path / "u.data", "1\t10\t4\t881250949\n2\t10\t2\t881250950\n1\t11\t5\t881250951\n")
    flags = "|".join(["0"] * 19)
    comedy = "|".join("1" if index == 5 else "0" for index in range(19))
    write(
        tmp_path / "u.item",
        f"10|Amélie (2001)|01-Jan-2001||http://x|{comedy}\n11|Heat (1995)|01-Jan-1995||x|{flags}\n",
        encoding="latin-1",
    )
    raw = load_movielens(tmp_path / "u.data")
    assert raw.num_interactions == 3 and len(raw.user_ids) == 2 and len(raw.item_ids) == 2
    assert raw.items["10"].title == "Amélie (2001)"
    assert raw.items["10"].categories == ["Comedy"]
    assert raw.items["11"].categories == []


def test_movielens_1m_dat_with_colons_in_titles(tmp_path: Path) -> None:
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(
        tmp_path / "movies.dat",
        "1193::Star Wars: Episode IV (1977)::Action|Sci-Fi\n661::Café (1996)::(no genres listed)\n",
        encoding="latin-1",
    )
    raw = load_movielens(tmp_path)
    assert raw.ratings is not None and raw.ratings.tolist() == [5.0, 3.0]
    assert raw.timestamps.tolist() == [978300760, 978302109]
    assert raw.items["1193"].title == "Star Wars: Episode IV (1977)"
    assert raw.items["1193"].categories == ["Action", "Sci-Fi"]
    assert raw.items["661"].title == "Café (1996)" and raw.items["661"].categories == []


def test_movielens_dat_bad_movie_line(tmp_path: Path) -> None:
    write(tmp_path / "ratings.dat", "1::2::5::978300760\n")
    write(tmp_path / "movies.dat", "2::Only title\n")
    with pytest.raises(DataFormatError, match=r"movies.dat, line 1: expected 3 '::' fields"):
        load_movielens(tmp_path)


def test_movielens_csv_with_quoted_titles(tmp_path: Path) -> None:
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n7,3,4.5,1000\n8,3,1.0,900\n")
    write(tmp_path / "movies.csv", 'movieId,title,genres\n3,"Good, the Bad (1966)",Western\n')
    raw = load_movielens(tmp_path)
    assert raw.items["3"].title == "Good, the Bad (1966)"
    assert raw.ratings is not None and raw.ratings.tolist() == [4.5, 1.0]


def test_not_a_movielens_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="not a MovieLens directory"):
        load_movielens(tmp_path)


def test_table_csv_with_column_mapping_and_item_file(tmp_path: Path) -> None:
    inter = write(tmp_path / "log.csv", "who,what,when,stars\nx,p1,5,3\ny,p2,6,4\nx,p2,7,5\n")
    items = write(tmp_path / "items.csv", 'sku,name,cat\np1,"Red, big",Tools\np2,Blue,Toys\n')
    raw = load_table(
        inter,
        TableColumns(user="who", item="what", timestamp="when", rating="stars"),
        items=items,
        item_columns=ItemColumns(item="sku", title="name", categories="cat"),
    )
    assert raw.name == "log"
    assert raw.timestamps.tolist() == [5, 6, 7]
    assert raw.items["p1"].title == "Red, big" and raw.items["p1"].categories == ["Tools"]


def test_table_csv_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffuser_id,item_id\nu,i\n".encode())
    assert load_table(path).user_ids == ["u"]


def test_table_tsv_gzip(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv.gz"
    path.write_bytes(gzip.compress(b"user_id\titem_id\nu\ti\nv\ti\n"))
    raw = load_table(path)
    assert raw.num_interactions == 2 and not raw.has_timestamps


def test_table_parquet_with_integer_ids_and_datetimes(tmp_path: Path) -> None:
    table = pa.table(
        {
            "u": pa.array([1, 2, 1], pa.int64()),
            "i": pa.array([10, 10, 11], pa.int32()),
            "t": pa.array([1_000, 2_000, 3_000], pa.timestamp("ms")),
        }
    )
    pq.write_table(table, tmp_path / "x.parquet")
    raw = load_table(tmp_path / "x.parquet", TableColumns(user="u", item="i", timestamp="t"))
    assert raw.user_ids == ["1", "2"] and raw.item_ids == ["10", "11"]
    assert raw.timestamps.tolist() == [1, 2, 3]


def test_table_parquet_null_id_names_the_row(tmp_path: Path) -> None:
    pq.write_table(pa.table({"user_id": ["a", None], "item_id": ["x", "y"]}), tmp_path / "n.pq")
    with pytest.raises(DataFormatError, match=r"row 2, field 'user_id': missing value"):
        load_table(tmp_path / "n.pq")


def test_table_missing_column_names_it(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "user,item_id\nu,i\n")
    with pytest.raises(DataFormatError, match="line 1, field 'user_id': missing column"):
        load_table(path, TableColumns(user="user_id"))


def test_table_quoted_newline_keeps_line_numbers_exact(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", 'user_id,item_id\nu,"two\nlines"\nv,j,extra\n')
    with pytest.raises(DataFormatError, match=r"t.csv, line 4: expected 2 fields, found 3"):
        load_table(path)


def test_codes_are_shared_across_blocks(tmp_path: Path) -> None:
    rows = "".join(f"u{n % 7}\ti{n % 5}\n" for n in range(50_000))
    path = write(tmp_path / "big.tsv", "user_id\titem_id\n" + rows)
    raw = load_table(path)
    assert len(raw.user_ids) == 7 and len(raw.item_ids) == 5
    expected = np.arange(50_000) % 7
    assert [raw.user_ids[c] for c in raw.user_codes[:7]] == [f"u{n}" for n in range(7)]
    assert np.array_equal(raw.user_codes, expected)
