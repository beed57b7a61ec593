"""Amazon (2014, 2018, 2023 layouts) and Yelp loaders on small files written by the tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from galrec.data.errors import DataFormatError
from galrec.data.formats import load_source
from galrec.data.formats.amazon import load_amazon
from galrec.data.formats.yelp import load_yelp


def jsonl(path: Path, rows: list[dict], compress: bool = False) -> Path:
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_amazon_2014_reviews_with_loose_json_metadata(tmp_path: Path) -> None:
    reviews = jsonl(
        tmp_path / "reviews_Toys_5.json.gz",
        [
            {"reviewerID": "A1", "asin": "B01", "overall": 5.0, "unixReviewTime": 100,
             "helpful": [0, 0], "reviewText": "fun"},
            {"reviewerID": "A2", "asin": "B01", "overall": 4, "unixReviewTime": 90},
            {"reviewerID": "A1", "asin": "B02", "overall": 2.0, "unixReviewTime": 120},
        ],
        compress=True,
    )  # fmt: skip
    meta = tmp_path / "meta_Toys.json"
    meta.write_text(
        "{'asin': 'B00', 'title': 'Unreviewed'}\n"
        "{'asin': 'B01', 'title': 'Toy &amp; Co', 'categories': [['Toys', 'Cars'], ['Toys']],"
        " 'brand': 'Acme', 'description': 'A <b>red</b> car.'}\n"
    )
    raw = load_amazon(reviews, meta)
    assert raw.name == "reviews_Toys_5"
    assert raw.num_interactions == 3 and raw.timestamps.tolist() == [100, 90, 120]
    assert raw.ratings is not None and raw.ratings.tolist() == [5.0, 4.0, 2.0]
    record = raw.items["B01"]
    assert record.title == "Toy & Co" and record.categories == ["Toys", "Cars"]
    assert record.brand == "Acme" and record.description == "A red car."
    assert set(raw.items) == {"B01"}  # B00 was never reviewed, B02 has no metadata


def test_amazon_2018_metadata_lists(tmp_path: Path) -> None:
    reviews = jsonl(
        tmp_path / "Scientific.json",
        [{"overall": 3.0, "verified": True, "reviewerID": "R", "asin": "X", "unixReviewTime": 5,
          "style": {"Size:": "L"}}],
    )  # fmt: skip
    meta = jsonl(
        tmp_path / "meta.json",
        [{"asin": "X", "title": "Beaker", "category": ["Lab", "Glass"],
          "description": ["Holds", "liquid"], "brand": "Pyrex"}],
    )  # fmt: skip
    raw = load_source("amazon", [reviews, meta])
    assert raw.items["X"].categories == ["Lab", "Glass"]
    assert raw.items["X"].description == "Holds liquid"


def test_amazon_2023_parent_asin_and_milliseconds(tmp_path: Path) -> None:
    reviews = jsonl(
        tmp_path / "All_Beauty.jsonl",
        [{"rating": 5.0, "title": "ok", "text": "t", "images": [], "asin": "C1",
          "parent_asin": "P1", "user_id": "U", "timestamp": 1588687728923,
          "helpful_vote": 0, "verified_purchase": True}],
    )  # fmt: skip
    meta = jsonl(
        tmp_path / "meta_All_Beauty.jsonl",
        [{"main_category": "All Beauty", "title": "Brush", "categories": [], "store": "Shop",
          "description": [], "parent_asin": "P1"}],
    )  # fmt: skip
    raw = load_amazon(reviews, meta)
    assert raw.item_ids == ["P1"] and raw.timestamps.tolist() == [1588687728]
    assert raw.items["P1"].brand == "Shop" and raw.items["P1"].categories == ["All Beauty"]
    assert load_amazon(reviews, use_parent_asin=False).item_ids == ["C1"]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ('{"reviewerID": "A", "asin": "B", "overall": 5}', "unixReviewTime", "missing value"),
        ('{"reviewerID": "A", "asin": "B", "overall": "5", "unixReviewTime": 1}', "overall",
         "expected a number"),
        ('{"reviewerID": "A", "asin": 7, "overall": 5, "unixReviewTime": 1}', "asin",
         "expected a string"),
        ('{"reviewerID": "A", "asin": "B", "overall": 5, "unixReviewTime": 1', None,
         "not valid JSON"),
    ],
)  # fmt: skip
def test_amazon_bad_review_line(tmp_path: Path, line: str, field: str | None, message: str) -> None:
    path = tmp_path / "r.json"
    good = '{"reviewerID": "A", "asin": "B", "overall": 5, "unixReviewTime": 1}'
    path.write_text(f"{good}\n\n{line}\n")
    with pytest.raises(DataFormatError) as caught:
        load_amazon(path)
    assert (caught.value.line, caught.value.field) == (3, field)
    assert message in caught.value.message


def test_amazon_unknown_layout(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "r.json", [{"who": "A"}])
    with pytest.raises(DataFormatError, match="not an Amazon review file"):
        load_amazon(path)


def test_yelp_directory(tmp_path: Path) -> None:
    jsonl(
        tmp_path / "yelp_academic_dataset_review.json",
        [
            {"review_id": "r1", "user_id": "u1", "business_id": "b1", "stars": 4.0,
             "date": "2016-03-09 00:00:00", "text": "good"},
            {"review_id": "r2", "user_id": "u2", "business_id": "b1", "stars": 1.0,
             "date": "2016-03-10 00:00:01"},
        ],
    )  # fmt: skip
    jsonl(
        tmp_path / "yelp_academic_dataset_business.json",
        [{"business_id": "b1", "name": "Joe's Diner", "categories": "Diners, Breakfast",
          "attributes": {"WiFi": "free"}}],
    )  # fmt: skip
    raw = load_yelp(tmp_path)
    assert raw.timestamps.tolist() == [1457481600, 1457568001]
    assert raw.items["b1"].title == "Joe's Diner"
    assert raw.items["b1"].categories == ["Diners", "Breakfast"]


def test_yelp_bad_date_names_line(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "review.json",
        [{"user_id": "u", "business_id": "b", "stars": 4, "date": "2016-03-09 00:00:00"},
         {"user_id": "u", "business_id": "c", "stars": 4, "date": "yesterday"}],
    )  # fmt: skip
    with pytest.raises(DataFormatError, match=r"line 2, field 'date': expected"):
        load_yelp(path)


def test_load_source_rejects_unknown_format_and_input_count(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="unknown format 'csv2'"):
        load_source("csv2", [tmp_path])
    with pytest.raises(DataFormatError, match="takes 1 to 1 inputs, got 2"):
        load_source("recbole", [tmp_path, tmp_path])


def test_non_utf8_json_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    good = b'{"reviewerID": "A", "asin": "B", "overall": 5, "unixReviewTime": 1}\n'
    path.write_bytes(
        good + b'{"reviewerID": "\xff", "asin": "B", "overall": 5, "unixReviewTime": 1}\n'
    )
    with pytest.raises(DataFormatError, match=r"r\.json, line 2: not valid utf-8: byte 0xff"):
        load_amazon(path)
