"""``PreparedDataset``: contiguous ids, splits, texts and ground truth, saved to one directory.

A directory holds ``manifest.json`` (counts, options, source checksums and the checksum of every
other file), ``interactions.npz`` (the three splits), ``items.jsonl`` / ``users.jsonl`` (raw id
and text in contiguous-id order: the id maps), ``ground_truth.npz`` for generated data, and
``train_graph.bin`` (the training edges as a ``galrec._core.BipartiteGraph``). ``load`` re-checks
the manifest against the files and refuses a mismatch rather than rebuilding silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galrec.data.errors import DataError, ManifestError

if TYPE_CHECKING:
    from galrec._core import BipartiteGraph

FORMAT_NAME = "galrec-prepared"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INTERACTIONS = "interactions.npz"
ITEMS = "items.jsonl"
USERS = "users.jsonl"
GROUND_TRUTH = "ground_truth.npz"
GRAPH = "train_graph.bin"
SPLITS = ("train", "valid", "test")
COLUMNS = ("users", "items", "timestamps")


class UnknownIdError(DataError, KeyError):
    """A raw user or item id that the dataset does not contain."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class Interactions:
    """Parallel int64 arrays of one split: contiguous user ids, item ids and timestamps."""

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray

    def __post_init__(self) -> None:
        self.users = np.ascontiguousarray(self.users, dtype=np.int64)
        self.items = np.ascontiguousarray(self.items, dtype=np.int64)
        self.timestamps = np.ascontiguousarray(self.timestamps, dtype=np.int64)
        if not len(self.users) == len(self.items) == len(self.timestamps):
            raise ValueError("users, items and timestamps must have the same length")

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class GroundTruth:
    """What a generator knows: each user's community, each item's community (-1 for ordinary
    items) and the twin groups (one row per group, one contiguous item id per twin)."""

    user_communities: np.ndarray
    item_communities: np.ndarray
    twin_groups: np.ndarray


@dataclass
class PreparedDataset:
    """A dataset ready for training and evaluation. ``info`` holds the manifest's provenance:
    options, source files, counts and the preparation report."""

    name: str
    num_users: int
    num_items: int
    train: Interactions
    valid: Interactions
    test: Interactions
    item_texts: list[str]
    user_ids: list[str]
    item_ids: list[str]
    user_texts: list[str] | None = None
    ground_truth: GroundTruth | None = None
    info: dict[str, Any] = field(default_factory=dict)
    directory: Path | None = None
    _user_index: dict[str, int] | None = field(default=None, init=False, repr=False)
    _item_index: dict[str, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check that every array and list agrees with ``num_users``/``num_items``."""
        if len(self.user_ids) != self.num_users or len(self.item_ids) != self.num_items:
            raise DataError(
                f"{self.name}: {len(self.user_ids)} user ids / {len(self.item_ids)} item ids "
                f"for {self.num_users} users / {self.num_items} items"
            )
        if len(self.item_texts) != self.num_items:
            raise DataError(f"{self.name}: {len(self.item_texts)} item texts for {self.num_items}")
        if self.user_texts is not None and len(self.user_texts) != self.num_users:
            raise DataError(f"{self.name}: {len(self.user_texts)} user texts for {self.num_users}")
        for split in SPLITS:
            part: Interactions = getattr(self, split)
            for side, bound in (("users", self.num_users), ("items", self.num_items)):
                ids = getattr(part, side)
                if len(ids) and (ids.min() < 0 or ids.max() >= bound):
                    raise DataError(f"{self.name}: {split} {side} ids outside 0..{bound - 1}")

    # --- id maps -----------------------------------------------------------------------------

    def user_index(self, raw_id: str) -> int:
        """The contiguous id of a raw user id."""
        if self._user_index is None:
            self._user_index = {raw: index for index, raw in enumerate(self.user_ids)}
        try:
            return self._user_index[raw_id]
        except KeyError:
            raise UnknownIdError(f"{self.name}: unknown user id {raw_id!r}") from None

    def item_index(self, raw_id: str) -> int:
        """The contiguous id of a raw item id."""
        if self._item_index is None:
            self._item_index = {raw: index for index, raw in enumerate(self.item_ids)}
        try:
            return self._item_index[raw_id]
        except KeyError:
            raise UnknownIdError(f"{self.name}: unknown item id {raw_id!r}") from None

    @property
    def num_interactions(self) -> int:
        return len(self.train) + len(self.valid) + len(self.test)

    # --- the training graph ------------------------------------------------------------------

    def train_graph(self) -> BipartiteGraph:
        """The training edges (never a validation or test edge) as a Rust bipartite graph, with
        their timestamps.

        Memory-mapped from the saved directory's graph file (checked against the manifest when
        the dataset was loaded) when there is one, else built in memory.
        """
        from galrec._core import BipartiteGraph

        if self.directory is not None:
            return BipartiteGraph.open(self.directory / GRAPH)
        return self._build_graph()

    def _build_graph(self) -> BipartiteGraph:
        from galrec._core import BipartiteGraph

        return BipartiteGraph.from_edges(
            self.train.users,
            self.train.items,
            num_users=self.num_users,
            num_items=self.num_items,
            timestamps=self.train.timestamps,
        )

    # --- persistence -------------------------------------------------------------------------

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the dataset to ``directory`` atomically: a temporary sibling is filled and then
        renamed, so a failure never leaves a half-written dataset behind."""
        target = Path(directory)
        if target.exists() and not overwrite:
            raise DataError(f"{target}: already exists (pass overwrite=True to replace it)")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp makes it private; a dataset directory is ordinary
        try:
            self._write_files(staging)
            _replace_directory(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.directory = target
        return target

    def _write_files(self, directory: Path) -> None:
        arrays = {}
        for split in SPLITS:
            part: Interactions = getattr(self, split)
            for column in COLUMNS:
                arrays[f"{split}_{column}"] = getattr(part, column)
        np.savez(directory / INTERACTIONS, **arrays)
        _write_jsonl(directory / ITEMS, self.item_ids, self.item_texts)
        _write_jsonl(directory / USERS, self.user_ids, self.user_texts)
        if self.ground_truth is not None:
            np.savez(
                directory / GROUND_TRUTH,
                user_communities=self.ground_truth.user_communities,
                item_communities=self.ground_truth.item_communities,
                twin_groups=self.ground_truth.twin_groups,
            )
        self._build_graph().save(directory / GRAPH)
        files = {
            path.name: _file_entry(path) for path in sorted(directory.iterdir()) if path.is_file()
        }
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "name": self.name,
            "counts": self.counts(),
            **{key: value for key, value in self.info.items() if key not in _RESERVED},
            "files": files,
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

    def counts(self) -> dict[str, int]:
        """Users, items and interactions per split: the manifest's ``counts``."""
        return {
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
        }

    @classmethod
    def load(cls, directory: str | Path, *, verify: bool = True) -> PreparedDataset:
        """Read a saved dataset without re-parsing its sources.

        Raises :class:`ManifestError` when a file is missing, has a different size or (with
        ``verify``) a different checksum than the manifest says, or the counts disagree.
        """
        root = Path(directory)
        manifest = read_manifest(root)
        files: dict[str, dict[str, Any]] = manifest["files"]
        for required in (INTERACTIONS, ITEMS, USERS, GRAPH):
            if required not in files:
                raise ManifestError(root, f"manifest lists no {required}")
        for name, entry in files.items():
            _check_file(root, name, entry, verify)
        with np.load(root / INTERACTIONS, allow_pickle=False) as arrays:
            splits = {
                split: Interactions(*(arrays[f"{split}_{column}"] for column in COLUMNS))
                for split in SPLITS
            }
        item_ids, item_texts = _read_jsonl(root / ITEMS)
        user_ids, user_texts = _read_jsonl(root / USERS)
        ground_truth = None
        if GROUND_TRUTH in files:
            with np.load(root / GROUND_TRUTH, allow_pickle=False) as arrays:
                ground_truth = GroundTruth(
                    arrays["user_communities"], arrays["item_communities"], arrays["twin_groups"]
                )
        counts = manifest["counts"]
        info = {key: value for key, value in manifest.items() if key not in _RESERVED}
        try:
            dataset = cls(
                name=manifest["name"],
                num_users=int(counts["users"]),
                num_items=int(counts["items"]),
                item_texts=[text or "" for text in item_texts],
                user_ids=user_ids,
                item_ids=item_ids,
                user_texts=(
                    [text or "" for text in user_texts]
                    if any(text is not None for text in user_texts)
                    else None
                ),
                ground_truth=ground_truth,
                info=info,
                directory=root,
                train=splits["train"],
                valid=splits["valid"],
                test=splits["test"],
            )
        except DataError as error:
            raise ManifestError(root, str(error)) from None
        if dataset.counts() != {key: counts.get(key) for key in dataset.counts()}:
            raise ManifestError(root, f"counts {dataset.counts()} differ from manifest {counts}")
        return dataset


_RESERVED = ("format", "version", "name", "counts", "files")


def read_manifest(directory: Path) -> dict[str, Any]:
    """The parsed manifest of a prepared directory, with its format and version checked."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ManifestError(directory, f"no {MANIFEST}: not a prepared galrec dataset")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(directory, f"{MANIFEST} is not valid JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ManifestError(directory, f"{MANIFEST} is not a {FORMAT_NAME} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise ManifestError(
            directory, f"format version {manifest.get('version')}, expected {FORMAT_VERSION}"
        )
    for key in ("name", "counts", "files"):
        if key not in manifest:
            raise ManifestError(directory, f"{MANIFEST} has no '{key}'")
    return manifest


def sha256_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _file_entry(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": sha256_of(path)}


def _check_file(root: Path, name: str, entry: dict[str, Any], verify: bool) -> None:
    path = root / name
    if not path.is_file():
        raise ManifestError(root, f"{name} is listed in the manifest but missing")
    if path.stat().st_size != entry.get("size"):
        raise ManifestError(
            root, f"{name} has {path.stat().st_size} bytes, the manifest says {entry.get('size')}"
        )
    if verify and sha256_of(path) != entry.get("sha256"):
        raise ManifestError(root, f"{name} does not match its checksum in the manifest")


def _write_jsonl(path: Path, ids: list[str], texts: list[str] | None) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for index, raw_id in enumerate(ids):
            row = {"id": raw_id, "text": texts[index] if texts is not None else None}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> tuple[list[str], list[str | None]]:
    ids: list[str] = []
    texts: list[str | None] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
                ids.append(str(row["id"]))
                texts.append(row["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ManifestError(path.parent, f"{path.name} line {number}: {error}") from None
    return ids, texts


def _replace_directory(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``, replacing an existing ``target`` only once it is ready."""
    if not target.exists():
        os.replace(staging, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.replace(target, retired / target.name)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)
