"""Issue 15: every malformed input is one ``DataFormatError`` naming the file and the line (one
CLI line, exit status 2), never a traceback, a hang or silently wrong data; and a backbone name
never runs remote code.

Each case calls the Python API and ``galrec data prepare`` on the same files: the CLI must print
exactly the API's error on one line.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from galrec.cli import main
from galrec.config import ModelConfig
from galrec.data.errors import DataFormatError
from galrec.data.formats import TableColumns, load_source
from galrec.data.formats._delimited import TIME_LIMIT
from galrec.model.backbone import load_backbone

DEEP = "[" * 100_000 + "]" * 100_000
"""JSON nested far deeper than Python's recursive parsers go."""


def review(user: str, item: str, time: object = 1000) -> str:
    """One Amazon 2014/2018 review line."""
    return json.dumps({"reviewerID": user, "asin": item, "overall": 5, "unixReviewTime": time})


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_bytes("".join(f"{line}\n" for line in lines).encode())
    return path


def table_csv(path: Path, last: str) -> Path:
    """A CSV of 12 good interactions (lines 2-13) with ``last`` as line 14."""
    rows = [f"u{n % 3},i{n},{1000 + n}" for n in range(12)]
    return write_lines(path, ["user_id,item_id,ts", *rows, last])


def refused(
    tmp_path: Path, source_format: str, inputs: list[Path], time_col: str | None = None
) -> DataFormatError:
    """The API's error for ``inputs``, after checking the CLI prints it as its only line."""
    with pytest.raises(DataFormatError) as caught:
        load_source(source_format, inputs, table_columns=TableColumns(timestamp=time_col))
    args = ["data", "prepare", source_format, *map(str, inputs), "-o", str(tmp_path / "out")]
    args += ["--k-core", "0", *(["--time-col", time_col] if time_col else [])]
    result = CliRunner().invoke(main, args)
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert result.exit_code == 2
    assert result.output == f"Error: {' '.join(str(caught.value).split())}\n"
    assert not (tmp_path / "out").exists()
    return caught.value


def test_deeply_nested_review_line_is_named(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.json", [review("A", "B"), review("A", "C"), DEEP])
    error = refused(tmp_path, "amazon", [path])
    assert (error.path, error.line, error.message) == (path, 3, "JSON nested too deeply to parse")


def test_deeply_nested_metadata_and_yelp_lines_are_named(tmp_path: Path) -> None:
    reviews = write_lines(tmp_path / "r.json", [review("A", "B01")])
    meta = write_lines(tmp_path / "m.json", ['{"asin": "B02"}', f'{{"asin": "B01", "x": {DEEP}}}'])
    error = refused(tmp_path, "amazon", [reviews, meta])
    assert (error.path, error.line) == (meta, 2) and "nested too deeply" in error.message
    # pyarrow skips the deep field, the exact scan for the bad date must not crash on it
    good = {"user_id": "u", "business_id": "b", "stars": 4, "date": "2016-03-09 00:00:00"}
    yelp = write_lines(
        tmp_path / "review.json",
        [json.dumps(good), json.dumps(good)[:-1] + f', "x": {DEEP}}}',
         json.dumps({**good, "date": "yesterday"})],
    )  # fmt: skip
    error = refused(tmp_path, "yelp", [yelp])
    assert (error.path, error.line) == (yelp, 2) and "nested too deeply" in error.message


def parquet(path: Path, **columns: pa.Array | list[Any]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_id_column_of_lists_is_named(tmp_path: Path) -> None:
    path = parquet(tmp_path / "t.parquet", user_id=[["a"], ["b"]], item_id=["x", "y"])
    error = refused(tmp_path, "table", [path])
    assert (error.path, error.field) == (path, "user_id")
    assert error.message.startswith("column type list<element: string> cannot be read as ids")


@pytest.mark.parametrize(
    ("column", "values", "field", "message"),
    [
        ("item_id", ["x", ""], "item_id", "empty id"),
        ("item_id", ["x", "y\x00z"], "item_id", "NUL byte"),
        ("ts", pa.array([1, 2**62], pa.int64()), "ts", "time 4.611686018427388e+18 out of range"),
        ("ts", [1.0, float("nan")], "ts", "not a finite number: 'nan'"),
    ],
)
def test_parquet_values_follow_the_text_rules_and_name_the_row(
    tmp_path: Path, column: str, values: Any, field: str, message: str
) -> None:
    columns: dict[str, Any] = {"user_id": ["a", "b"], "item_id": ["x", "y"], "ts": [1, 2]}
    path = parquet(tmp_path / "t.parquet", **{**columns, column: values})
    error = refused(tmp_path, "table", [path], time_col="ts")
    assert (error.line, error.unit, error.field) == (2, "row", field)
    assert message in error.message


def test_parquet_sub_second_timestamps_are_floored(tmp_path: Path) -> None:
    times = pa.array([1_500_000_000_123_456_789, 1_500_000_001_000_000_000], pa.timestamp("ns"))
    path = parquet(tmp_path / "t.parquet", user_id=["a", "b"], item_id=["x", "y"], ts=times)
    raw = load_source("table", [path], table_columns=TableColumns(timestamp="ts"))
    assert raw.timestamps.tolist() == [1_500_000_000, 1_500_000_001]


def broken_gzip(path: Path, data: bytes, how: str) -> Path:
    packed = gzip.compress(data)
    # byte 2 is the compression method (8 = deflate); cutting keeps the header
    path.write_bytes(packed[:2] + b"\x07" + packed[3:] if how == "method" else packed[:60])
    return path


@pytest.mark.parametrize("how", ["truncated", "method"])
@pytest.mark.parametrize("source_format", ["table", "amazon", "recbole"])
def test_gzip_failures_name_file_and_line(tmp_path: Path, source_format: str, how: str) -> None:
    if source_format == "table":
        path, header = tmp_path / "t.csv.gz", "user_id,item_id"
        rows = [f"u{n},i{n}" for n in range(200)]
    elif source_format == "amazon":
        path, header = tmp_path / "r.json.gz", review("A", "B")
        rows = [review(f"u{n}", f"i{n}", 1000 + n) for n in range(200)]
    else:
        path, header = tmp_path / "t.inter", "user_id:token\titem_id:token"
        rows = [f"u{n}\ti{n}" for n in range(200)]
    data = "".join(f"{line}\n" for line in [header, *rows]).encode()
    error = refused(tmp_path, source_format, [broken_gzip(path, data, how)])
    assert error.path == path and error.message.startswith("cannot read: ")
    if how == "method":
        assert (error.line, error.message) == (1, "cannot read: Unknown compression method")
    else:
        assert isinstance(error.line, int)  # the line being read; buffering makes it approximate
        assert "ended before the end-of-stream marker" in error.message


@pytest.mark.parametrize("value", ["1e300", "-9.3e18", str(TIME_LIMIT), "-inf"])
def test_out_of_range_time_names_file_line_and_value(tmp_path: Path, value: str) -> None:
    path = table_csv(tmp_path / "t.csv", f"u0,i99,{value}")
    error = refused(tmp_path, "table", [path], time_col="ts")
    assert (error.path, error.line, error.field) == (path, 14, "ts")
    assert value in error.message
    if value != "-inf":
        assert f"time {value} out of range: |time| must be below 2**53" in error.message


def test_times_up_to_the_limit_are_kept_exactly(tmp_path: Path) -> None:
    largest = TIME_LIMIT - 1
    rows = ["user_id,item_id,ts", f"u,a,{largest}", f"u,b,-{largest}", "u,c,1.7e12"]
    path = write_lines(tmp_path / "t.csv", rows)
    raw = load_source("table", [path], table_columns=TableColumns(timestamp="ts"))
    assert raw.timestamps.tolist() == [largest, -largest, 1_700_000_000_000]
    assert raw.timestamps.dtype == np.int64


def test_out_of_range_time_in_every_format(tmp_path: Path) -> None:
    amazon = write_lines(tmp_path / "a.json", [review("A", "B"), review("A", "C", 1e300)])
    assert refused(tmp_path, "amazon", [amazon]).line == 2
    row_2023 = {"user_id": "A", "parent_asin": "B", "rating": 5, "timestamp": -9.3e18}
    amazon_2023 = write_lines(tmp_path / "b.json", [json.dumps(row_2023)])
    error = refused(tmp_path, "amazon", [amazon_2023])
    assert (error.line, error.field) == (1, "timestamp")
    movielens = tmp_path / "ml"
    movielens.mkdir()
    write_lines(movielens / "u.data", ["1\t10\t4\t881250949", "2\t10\t4\t1e300"])
    error = refused(tmp_path, "movielens", [movielens])
    assert (error.path, error.line, error.field) == (movielens / "u.data", 2, "timestamp")
    recbole = write_lines(
        tmp_path / "x.inter", ["user_id:token\titem_id:token\ttimestamp:float", "u\ti\t-9.3e18"]
    )
    error = refused(tmp_path, "recbole", [recbole])
    assert (error.line, error.field) == (2, "timestamp")


def test_unclosed_quote_names_the_line_it_opens_on(tmp_path: Path) -> None:
    rows = [f"u{n},i{n},t" for n in range(2, 62)]
    rows[7] = 'u9,"i9,t'  # line 9 of 61
    path = write_lines(tmp_path / "t.csv", ["user_id,item_id,title", *rows])
    error = refused(tmp_path, "table", [path])
    assert (error.path, error.line) == (path, 9)
    assert error.message.startswith("malformed CSV: unclosed quote")


def test_nul_byte_in_an_id_is_refused(tmp_path: Path) -> None:
    path = table_csv(tmp_path / "t.csv", "u\x00x,i1,5")
    error = refused(tmp_path, "table", [path])
    assert (error.path, error.line, error.field) == (path, 14, "user_id")
    assert error.message == "id holds a NUL byte at character 2: 'u\\x00x'"
    amazon = write_lines(tmp_path / "r.json", [review("A", "B"), review("A", "B\x00C")])
    error = refused(tmp_path, "amazon", [amazon])
    assert (error.line, error.field) == (2, "asin") and "NUL byte" in error.message


def finishes(call: Callable[[], Any], seconds: float = 60) -> Any:
    """``call()``'s result, failing (not hanging) if it blocks, as a read of a FIFO would."""
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_are_refused_before_they_are_opened(tmp_path: Path) -> None:
    reviews = write_lines(tmp_path / "r.json", [review("A", "B")])
    movielens = tmp_path / "ml"
    movielens.mkdir()
    fifos = [tmp_path / "t.csv", tmp_path / "m.json", tmp_path / "x.inter", movielens / "u.data"]
    for fifo in fifos:
        os.mkfifo(fifo)
    cases = [("table", [fifos[0]]), ("amazon", [reviews, fifos[1]]), ("recbole", [fifos[2]])]
    for source_format, inputs in [*cases, ("movielens", [movielens])]:
        error = finishes(lambda f=source_format, i=inputs: refused(tmp_path, f, i))
        assert error.path in fifos and error.line is None
        assert error.message.startswith("is not a regular file (a FIFO, socket or device)")
    out = tmp_path / "gap"
    generate = ["data", "generate", "-o", str(out), "--users", "20", "--twin-groups", "4"]
    assert CliRunner().invoke(main, generate).exit_code == 0
    result = finishes(
        lambda: CliRunner().invoke(
            main, ["data", "info", str(out), "--text-embeddings", str(fifos[0])]
        )
    )
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {fifos[0]}: is not a regular file")


def test_backbones_never_run_remote_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import galrec.model.backbone
    import transformers

    calls: list[dict[str, Any]] = []

    class Loaded:
        config = SimpleNamespace(model_type="bert")
        is_fast = True

        def save_pretrained(self, directory: Path) -> None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            (Path(directory) / "tokenizer.json").write_text("{}")

    def from_pretrained(*_args: Any, **kwargs: Any) -> Loaded:
        calls.append(kwargs)
        return Loaded()

    for auto in (transformers.AutoModel, transformers.AutoTokenizer):
        monkeypatch.setattr(auto, "from_pretrained", from_pretrained)
    monkeypatch.setattr(galrec.model.backbone, "_package_dir", lambda _module, _pip: tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda m, *a: object() if m == "gguf" else real_find_spec(m, *a),
    )
    (tmp_path / "model.gguf").write_bytes(b"")
    for name in ("minilm", "smollm2", "someone/model-with-custom-code"):
        load_backbone(ModelConfig(backbone=name), [], tmp_path / "work")
    assert len(calls) == 5  # minilm: model; smollm2: model, tokenizer; a Hub name: both
    assert all(kwargs["trust_remote_code"] is False for kwargs in calls)
