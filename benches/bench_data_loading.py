"""Reading interaction files: galrec's streaming pyarrow loaders against plain Python readers.

Run: .venv/bin/python -m pytest benches/bench_data_loading.py --benchmark-only
Each group compares galrec's loader with a straightforward line-by-line Python reader (csv or
json module, dict id encoding) on the same generated file; both must give the same arrays.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from galrec.data.formats.amazon import load_amazon
from galrec.data.formats.recbole import load_recbole

INTER_ROWS = 1_000_000
REVIEW_ROWS = 300_000


@pytest.fixture(scope="module")
def inter_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50_000, INTER_ROWS)
    items = rng.zipf(1.3, INTER_ROWS) % 20_000
    times = rng.integers(800_000_000, 900_000_000, INTER_ROWS)
    path = tmp_path_factory.mktemp("bench") / "bench.inter"
    lines = [
        f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in zip(users, items, users % 5 + 1, times, strict=True)
    ]
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    path.write_text(header + "\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def review_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("bench") / "reviews.json"
    with open(path, "w") as handle:
        for n in range(REVIEW_ROWS):
            row = {
                "reviewerID": f"A{rng.integers(0, 40_000)}",
                "asin": f"B{rng.zipf(1.3) % 10_000:06d}",
                "overall": float(n % 5 + 1),
                "unixReviewTime": 1_400_000_000 + n,
                "reviewText": "a short review text " * 5,
                "style": {"Format:": "Paperback"},
            }
            handle.write(json.dumps(row) + "\n")
    return path


def encoder() -> tuple[dict[str, int], Callable[[str], int]]:
    """A dict that gives each new id the next code."""
    codes: dict[str, int] = {}

    def code(raw_id: str) -> int:
        return codes.setdefault(raw_id, len(codes))

    return codes, code


def python_recbole(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The baseline: csv module, one dict lookup per id, float() per number."""
    (_, user_code), (_, item_code) = encoder(), encoder()
    user_codes, item_codes, times = [], [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        for user, item, _rating, time in reader:
            user_codes.append(user_code(user))
            item_codes.append(item_code(item))
            times.append(int(float(time)))
    return np.array(user_codes), np.array(item_codes), np.array(times)


def python_reviews(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The baseline: json.loads per line."""
    (_, user_code), (_, item_code) = encoder(), encoder()
    user_codes, item_codes, times = [], [], []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            user_codes.append(user_code(row["reviewerID"]))
            item_codes.append(item_code(row["asin"]))
            times.append(int(row["unixReviewTime"]))
    return np.array(user_codes), np.array(item_codes), np.array(times)


@pytest.mark.benchmark(group="recbole .inter, 1M rows")
def test_recbole_galrec(benchmark, inter_file: Path) -> None:
    raw = benchmark.pedantic(load_recbole, args=(inter_file,), rounds=3, iterations=1)
    users, items, times = python_recbole(inter_file)
    assert np.array_equal(raw.user_codes, users) and np.array_equal(raw.item_codes, items)
    assert np.array_equal(raw.timestamps, times)


@pytest.mark.benchmark(group="recbole .inter, 1M rows")
def test_recbole_python_csv(benchmark, inter_file: Path) -> None:
    users, _, _ = benchmark.pedantic(python_recbole, args=(inter_file,), rounds=3, iterations=1)
    assert len(users) == INTER_ROWS


@pytest.mark.benchmark(group="amazon reviews JSON lines, 300k rows")
def test_amazon_galrec(benchmark, review_file: Path) -> None:
    raw = benchmark.pedantic(load_amazon, args=(review_file,), rounds=3, iterations=1)
    users, items, times = python_reviews(review_file)
    assert np.array_equal(raw.user_codes, users) and np.array_equal(raw.item_codes, items)
    assert np.array_equal(raw.timestamps, times)


@pytest.mark.benchmark(group="amazon reviews JSON lines, 300k rows")
def test_amazon_python_json(benchmark, review_file: Path) -> None:
    users, _, _ = benchmark.pedantic(python_reviews, args=(review_file,), rounds=3, iterations=1)
    assert len(users) == REVIEW_ROWS
