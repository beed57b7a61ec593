"""``galrec data prepare / generate / info`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from galrec.cli import main
from galrec.data.prepared import PreparedDataset


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def write_table(path: Path, users: int = 30, items: int = 12) -> Path:
    rows = [f"u{u},i{(u * 7 + n) % items},{n}" for u in range(users) for n in range(6)]
    path.write_text("who,what,when\n" + "\n".join(rows) + "\n")
    return path


def test_prepare_table_then_info(tmp_path: Path) -> None:
    table = write_table(tmp_path / "log.csv")
    out = tmp_path / "prepared"
    code, output = run(
        "data", "prepare", "table", str(table), "-o", str(out),
        "--user-col", "who", "--item-col", "what", "--time-col", "when", "--k-core", "2",
    )  # fmt: skip
    assert code == 0, output
    assert "30 users, 12 items, 180 interactions (train 120 / valid 30 / test 30)" in output
    dataset = PreparedDataset.load(out)
    assert dataset.info["options"]["user_core"] == 2
    code, output = run("data", "info", str(out), "--sample", "5")
    assert code == 0, output
    assert "users           30" in output and "semantic gap" in output
    # no item file: every item falls back
    assert "item text       0 of 12 (0.0%); 12 use the fallback text" in output
    code, output = run("data", "info", str(out), "--json")
    report = json.loads(output)
    assert report["interactions"] == 180 and 0 <= report["semantic_gap"]["gap"] <= 1


def test_generate_and_info_show_twins(tmp_path: Path) -> None:
    out = tmp_path / "gap"
    code, output = run("data", "generate", "-o", str(out), "--users", "80", "--twin-groups", "10")
    assert code == 0, output
    code, output = run("data", "info", str(out))
    assert code == 0, output
    assert "twins" in output and "by co-interaction" in output


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id\nu,i\nv\n")
    out = tmp_path / "out"
    code, output = run("data", "prepare", "table", str(bad), "-o", str(out))
    assert code == 2
    assert output.strip() == f"Error: {bad}, line 3: expected 2 fields, found 1"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.csv"]


def test_empty_after_filtering_exits_non_zero(tmp_path: Path) -> None:
    table = write_table(tmp_path / "log.csv")
    code, output = run(
        "data", "prepare", "table", str(table), "-o", str(tmp_path / "o"),
        "--user-col", "who", "--item-col", "what", "--k-core", "100",
    )  # fmt: skip
    assert code == 2 and "no interactions left after filtering" in output
    assert len(output.strip().splitlines()) == 1


def test_unknown_format_and_bad_options(tmp_path: Path) -> None:
    code, output = run("data", "prepare", "parquet2", str(tmp_path), "-o", str(tmp_path / "o"))
    assert code == 2 and "Invalid value for 'FORMAT'" in output
    table = write_table(tmp_path / "log.csv")
    code, output = run(
        "data", "prepare", "table", str(table), "-o", str(tmp_path / "o"),
        "--user-col", "who", "--item-col", "what", "--text-fields", "colour",
    )  # fmt: skip
    assert code == 2 and "text fields must be" in output


def test_existing_output_is_refused_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "gap"
    assert run("data", "generate", "-o", str(out), "--users", "20", "--twin-groups", "4")[0] == 0
    code, output = run("data", "generate", "-o", str(out))
    assert code == 2 and "already exists" in output
    code, _ = run("data", "generate", "-o", str(out), "--overwrite", "--users", "24",
                  "--twin-groups", "4")  # fmt: skip
    assert code == 0 and PreparedDataset.load(out).num_users == 24


def test_info_on_a_tampered_directory_fails_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "gap"
    run("data", "generate", "-o", str(out), "--users", "20", "--twin-groups", "4")
    (out / "interactions.npz").write_bytes(b"junk")
    code, output = run("data", "info", str(out))
    assert code == 2 and "interactions.npz has 4 bytes" in output


def test_info_with_text_embeddings(tmp_path: Path) -> None:
    out = tmp_path / "gap"
    run("data", "generate", "-o", str(out), "--users", "40", "--twin-groups", "6")
    dataset = PreparedDataset.load(out)
    truth = dataset.ground_truth
    assert truth is not None
    # Embeddings that make every twin group one point: text neighbours are exactly the twins.
    embeddings = np.eye(dataset.num_items)
    for group in truth.twin_groups:
        embeddings[group] = embeddings[group[0]]
    np.save(tmp_path / "emb.npy", embeddings)
    code, output = run("data", "info", str(out), "--text-embeddings", str(tmp_path / "emb.npy"))
    assert code == 0, output
    assert "nearest item is the twin for 100% of twins by text" in output
    np.save(tmp_path / "short.npy", embeddings[:3])
    code, output = run("data", "info", str(out), "--text-embeddings", str(tmp_path / "short.npy"))
    assert code == 2 and "expected shape" in output
