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


def test_train_graph_holds_training_edges_only(saved: tuple[PreparedDataset, Path]) -> None:
    _, directory = saved
    dataset = PreparedDataset.load(directory)
    graph = dataset.train_graph()
    assert graph.is_mapped and graph.has_timestamps
    assert (graph.num_users, graph.num_items) == (dataset.num_users, dataset.num_items)
    assert graph.num_edges == len(dataset.train)
    for user, item in zip(dataset.train.users, dataset.train.items, strict=True):
        assert graph.has_edge(int(user), int(item))
    for held_out in (dataset.valid, dataset.test):
        assert len(held_out) > 0
        for user, item in zip(held_out.users, held_out.items, strict=True):
            assert not graph.has_edge(int(user), int(item))
    assert np.array_equal(
        graph.user_degrees(), np.bincount(dataset.train.users, minlength=dataset.num_users)
    )


def test_unsaved_train_graph_is_built_with_neighbours_in_time_order() -> None:
    dataset = generate_semantic_gap(SMALL)
    graph = dataset.train_graph()
    assert not graph.is_mapped and graph.num_edges == len(dataset.train)
    for user in range(dataset.num_users):
        mine = dataset.train.users == user
        order = np.argsort(dataset.train.timestamps[mine], kind="stable")
        assert graph.user_neighbors(user).tolist() == dataset.train.items[mine][order].tolist()


def test_graph_file_is_checked_against_the_manifest(saved: tuple[PreparedDataset, Path]) -> None:
    _, directory = saved
    graph_file = directory / "train_graph.bin"
    data = bytearray(graph_file.read_bytes())
    data[-1] ^= 0xFF
    graph_file.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"train_graph\.bin does not match its checksum"):
        PreparedDataset.load(directory)
