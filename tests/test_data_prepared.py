"""PreparedDataset: save/load round trip, manifest checks, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from galrec.data.errors import DataError, ManifestError
from galrec.data.prepared import PreparedDataset
from galrec.data.semantic_gap import SemanticGapConfig, generate_semantic_gap

SMALL = SemanticGapConfig(num_users=40, num_twin_groups=8, num_ordinary_items=20)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[PreparedDataset, Path]:
    dataset = generate_semantic_gap(SMALL)
    return dataset, dataset.save(tmp_path / "prepared")


def test_round_trip_keeps_everything(saved: tuple[PreparedDataset, Path]) -> None:
    dataset, directory = saved
    loaded = PreparedDataset.load(directory)
    assert loaded.counts() == dataset.counts()
    for split in ("train", "valid", "test"):
        for column in ("users", "items", "timestamps"):
            original = getattr(getattr(dataset, split), column)
            again = getattr(getattr(loaded, split), column)
            assert again.dtype == np.int64 and np.array_equal(original, again)
    assert loaded.item_texts == dataset.item_texts
    assert loaded.user_ids == dataset.user_ids and loaded.item_ids == dataset.item_ids
    assert loaded.ground_truth is not None and dataset.ground_truth is not None
    assert np.array_equal(loaded.ground_truth.twin_groups, dataset.ground_truth.twin_groups)
    assert loaded.info["generator"]["num_users"] == 40
    assert loaded.directory == directory


def test_manifest_lists_every_file_with_checksum(saved: tuple[PreparedDataset, Path]) -> None:
    _, directory = saved
    manifest = json.loads((directory / "manifest.json").read_text())
    on_disk = {path.name for path in directory.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
    assert manifest["counts"]["test"] == 40


def test_changed_file_is_refused(saved: tuple[PreparedDataset, Path]) -> None:
    _, directory = saved
    items = directory / "items.jsonl"
    text = items.read_text()
    items.write_text(text.replace("a", "b", 1))  # same size, different content
    with pytest.raises(ManifestError, match=r"items\.jsonl does not match its checksum"):
        PreparedDataset.load(directory)


def test_missing_or_resized_file_is_refused(saved: tuple[PreparedDataset, Path]) -> None:
    _, directory = saved
    (directory / "users.jsonl").write_text("")
    with pytest.raises(ManifestError, match=r"users\.jsonl has 0 bytes"):
        PreparedDataset.load(directory, verify=False)
    (directory / "users.jsonl").unlink()
    with pytest.raises(ManifestError, match=r"users\.jsonl is listed in the manifest but missing"):
        PreparedDataset.load(directory)


def test_counts_that_disagree_are_refused(saved: tuple[PreparedDataset, Path]) -> None:
    _, directory = saved
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["counts"]["train"] += 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="differ from manifest"):
        PreparedDataset.load(directory)


def test_not_a_prepared_directory(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a prepared galrec dataset"):
        PreparedDataset.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="not valid JSON"):
        PreparedDataset.load(tmp_path)


def test_existing_directory_needs_overwrite(saved: tuple[PreparedDataset, Path]) -> None:
    dataset, directory = saved
    with pytest.raises(DataError, match="already exists"):
        dataset.save(directory)
    dataset.name = "renamed"
    dataset.save(directory, overwrite=True)
    assert PreparedDataset.load(directory).name == "renamed"
    assert sorted(path.name for path in directory.parent.iterdir()) == ["prepared"]


def test_failed_save_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = generate_semantic_gap(SMALL)

    def broken(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("galrec.data.prepared._write_jsonl", broken)
    with pytest.raises(OSError, match="disk full"):
        dataset.save(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_out_of_range_ids_are_rejected() -> None:
    dataset = generate_semantic_gap(SMALL)
    dataset.test.items[0] = dataset.num_items
    with pytest.raises(DataError, match="test items ids outside"):
        dataset.validate()
