"""The evaluate / compare / diagnose commands end to end on a small generated dataset."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner
from galrec.cli import main
from galrec.data.semantic_gap import SemanticGapConfig, generate_semantic_gap
from synthetic_graph import single_thread

TINY_MF = "epochs: 10\nlr: 0.01\nbatch_size: 512\ndim: 16\neval_every: 5\n"


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    dataset = generate_semantic_gap(SemanticGapConfig(num_users=120, num_twin_groups=20, seed=3))
    dataset.save(root / "data")
    (root / "mf.yaml").write_text(TINY_MF)
    runner = CliRunner()
    with single_thread():
        result = runner.invoke(main, compare_args(root))
    assert result.exit_code == 0, result.output
    return root, result.output


def compare_args(root) -> list[str]:
    """The compare command of the module's runs: popularity and MF, two seeds."""
    return [
        "compare",
        "--dataset", str(root / "data"),
        "--models", "popularity,mf",
        "--seeds", "0,1",
        "--config", f"mf={root / 'mf.yaml'}",
        "--out", str(root / "out"),
        "--k", "5,10",
    ]  # fmt: skip


def test_compare_writes_table_report_and_plots(compared) -> None:
    root, output = compared
    assert "| model | Recall@5 | NDCG@5" in output and "| mf |" in output
    assert "Wilcoxon" in output
    report = (root / "out" / "results.md").read_text()
    assert "galrec compare --dataset" in report and "seeds" in report.lower()
    assert (root / "out" / "ndcg_at_10.png").stat().st_size > 0
    assert (root / "out" / "training_curves.png").stat().st_size > 0
    summary = json.loads((root / "out" / "results.json").read_text())["summary"]
    assert summary["mf"]["ndcg@10"]["mean"] > summary["popularity"]["ndcg@10"]["mean"]


def test_evaluate_reproduces_the_compare_numbers(compared) -> None:
    root, _ = compared
    run = root / "out" / "runs" / "mf" / "seed0"
    result = CliRunner().invoke(
        main, ["evaluate", str(run), "--k", "5,10", "--out", str(root / "e")]
    )
    assert result.exit_code == 0, result.output
    assert "full ranking" in result.output
    fresh = json.loads((root / "e" / "metrics.json").read_text())["metrics"]
    saved = json.loads((run / "eval_test" / "metrics.json").read_text())["metrics"]
    assert fresh == pytest.approx(saved)
    sampled = CliRunner().invoke(main, ["evaluate", str(run), "--sampled", "20"])
    assert sampled.exit_code == 0 and "SAMPLED" in sampled.output
    assert "recall (sampled)" in sampled.output


def test_diagnose_reports_twin_separation(compared) -> None:
    root, _ = compared
    result = CliRunner().invoke(
        main, ["diagnose", str(root / "out" / "runs" / "mf" / "seed0"), "--json"]
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert numbers["num_groups"] == 20 and 0 <= numbers["wrong_twin_rate"] <= 1
    assert numbers["twin_cosine"] is not None


def test_bad_arguments_are_one_line_errors(compared, tmp_path) -> None:
    root, _ = compared
    runner = CliRunner()
    bad = runner.invoke(main, ["compare", "--dataset", str(root / "data"), "--models", "nope"])
    assert bad.exit_code == 2 and "unknown model 'nope'" in bad.output
    bad = runner.invoke(main, ["compare", "--dataset", str(root / "data"), "--seeds", "a"])
    assert bad.exit_code == 2 and "--seeds" in bad.output
    bad = runner.invoke(main, ["evaluate", str(tmp_path)])
    assert bad.exit_code == 2 and "run.json" in bad.output
    bad = runner.invoke(main, ["evaluate", str(root / "out" / "runs" / "mf" / "seed0"), "--k", "x"])
    assert bad.exit_code == 2 and "--k" in bad.output


def test_candidates_that_cannot_be_read_are_one_line_errors(compared, tmp_path) -> None:
    """A FIFO would block np.load forever; a pickled or damaged file raised a traceback."""
    root, _ = compared
    run = str(root / "out" / "runs" / "mf" / "seed0")
    fifo, damaged = tmp_path / "fifo.npy", tmp_path / "damaged.npy"
    os.mkfifo(fifo)
    damaged.write_bytes(b"not an array")
    for path, reason in ((fifo, "not a regular file"), (damaged, "cannot read candidates")):
        bad = CliRunner().invoke(main, ["evaluate", run, "--candidates", str(path)])
        assert bad.exit_code == 2 and f"{path}" in bad.output and reason in bad.output
        assert bad.exception is None or isinstance(bad.exception, SystemExit)


def test_compare_resumes_unless_fresh(compared) -> None:
    root, _ = compared
    args = [*compare_args(root), "--no-plots"]
    runner = CliRunner()
    with single_thread():
        again = runner.invoke(main, args)
        fresh = runner.invoke(main, [*args, "--fresh", "--models", "popularity"])
    assert again.exit_code == 0, again.output
    assert again.output.count("reusing ") == 4 and "training " not in again.output
    assert fresh.exit_code == 0, fresh.output
    assert "reusing " not in fresh.output and fresh.output.count("training popularity") == 2
