"""The real datasets in ../shared/data (skipped where that folder is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from galrec.cli import main
from galrec.data.formats.recbole import load_recbole
from galrec.data.prepared import PreparedDataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ML100K = SHARED_DATA / "ml-100k"
SCIENTIFIC = SHARED_DATA / "amazon-scientific"

needs_ml100k = pytest.mark.skipif(not ML100K.is_dir(), reason="../shared/data/ml-100k absent")
needs_scientific = pytest.mark.skipif(
    not SCIENTIFIC.is_dir(), reason="../shared/data/amazon-scientific absent"
)


@needs_ml100k
def test_ml100k_raw_counts() -> None:
    raw = load_recbole(ML100K)
    assert raw.num_interactions == 100_000
    assert len(raw.user_ids) == 943 and len(raw.item_ids) == 1682
    assert raw.ratings is not None and set(np.unique(raw.ratings)) == {1, 2, 3, 4, 5}
    assert len(raw.items) == 1682 and raw.user_texts is not None


@needs_scientific
def test_amazon_scientific_raw_counts() -> None:
    raw = load_recbole(SCIENTIFIC)
    assert raw.num_interactions == 59_384
    assert len(raw.user_ids) == 8442 and len(raw.item_ids) == 4385
    assert len(raw.items) == 4385


@needs_ml100k
def test_ml100k_prepare_and_info(tmp_path: Path) -> None:
    out = tmp_path / "ml"
    result = CliRunner().invoke(
        main, ["data", "prepare", "recbole", str(ML100K), "-o", str(out), "--k-core", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "943 users, 1,682 items, 100,000 interactions" in result.output
    dataset = PreparedDataset.load(out)
    assert len(dataset.test) == len(dataset.valid) == 943
    info = CliRunner().invoke(main, ["data", "info", str(out), "--sample", "100"])
    assert info.exit_code == 0, info.output
    assert "read            100,000 interactions, 943 users, 1,682 items" in info.output
    assert "interactions    100,000" in info.output and "1,682 of 1,682 (100.0%)\n" in info.output


@needs_scientific
def test_amazon_scientific_prepare_keeps_leave_one_out_per_user(tmp_path: Path) -> None:
    out = tmp_path / "sci"
    result = CliRunner().invoke(
        main, ["data", "prepare", "recbole", str(SCIENTIFIC), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    dataset = PreparedDataset.load(out)
    assert len(np.unique(dataset.test.users)) == len(dataset.test) == dataset.num_users
    last_train = np.zeros(dataset.num_users, dtype=np.int64)
    np.maximum.at(last_train, dataset.train.users, dataset.train.timestamps)
    assert (dataset.test.timestamps[np.argsort(dataset.test.users)] >= last_train).all()
