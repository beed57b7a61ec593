"""Messages and logs (issue 14, item 5): one-line user errors with exit status 2 and nothing
half-written left behind, the tensorboard extra, tagged and timed metrics records, progress
that suits a log file, setup phases with their durations, progress inside compare's
baselines, one spelling per flag, and no reference to a missing method document."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from galrec import progress
from galrec._optional import OPTIONAL_MODULES
from galrec.cli import main
from galrec.data.semantic_gap import SemanticGapConfig, generate_semantic_gap
from galrec.experiments.lm_models import _history
from galrec.training.trainer import Trainer
from train_helpers import TINY_OVERRIDES, tiny_config

ROOT = Path(__file__).parent.parent
TINY_MF = "epochs: 3\nlr: 0.01\nbatch_size: 512\ndim: 8\neval_every: 1\n"


def one_line_error(result: Result) -> str:
    """The error line of a command that failed on a user error (asserting it is one)."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    """A small prepared dataset and a copy whose interactions file is damaged."""
    root = tmp_path_factory.mktemp("data")
    dataset = generate_semantic_gap(SemanticGapConfig(num_users=60, num_twin_groups=8, seed=1))
    dataset.save(root / "good")
    dataset.save(root / "damaged")
    (root / "damaged" / "interactions.npz").write_bytes(b"junk")
    return root / "good", root / "damaged"


def train(out: Path, *overrides: str) -> Result:
    return CliRunner().invoke(main, ["train", "--out", str(out), *TINY_OVERRIDES, *overrides])


def test_a_damaged_dataset_is_one_line_in_every_command(datasets, tmp_path) -> None:
    """`data info` said it in one line; train and compare printed a traceback."""
    _, damaged = datasets
    commands = {
        "data info": ["data", "info", str(damaged)],
        "train": ["train", "--out", str(tmp_path / "run"), *TINY_OVERRIDES,
                  f"data.dataset={damaged}"],
        "compare": ["compare", "--dataset", str(damaged), "--models", "popularity",
                    "--seeds", "0", "--out", str(tmp_path / "cmp")],
    }  # fmt: skip
    for name, args in commands.items():
        line = one_line_error(CliRunner().invoke(main, args))
        assert "interactions.npz has 4 bytes" in line, name
    assert not (tmp_path / "run").exists() and not (tmp_path / "cmp").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("model.backbone=/no/such/model",), "model.backbone: '/no/such/model' is not"),
        (("data.dataset=/no/such/dataset",), "data.dataset: '/no/such/dataset'"),
        (("train.stepz=3",), "unknown key 'train.stepz'"),
        (("data.generator={users: 3}",), "data.generator"),
    ],
)
def test_train_fails_in_one_line_and_leaves_the_directory_as_it_was(
    tmp_path, overrides, message
) -> None:
    """An unknown backbone left config.yaml and dataset/ behind, so the next attempt was
    refused as "another run"."""
    new, old = tmp_path / "new", tmp_path / "old"
    old.mkdir()
    (old / "notes.txt").write_text("mine")
    assert message in one_line_error(train(new, *overrides))
    assert not new.exists()
    one_line_error(train(old, *overrides))
    assert [p.name for p in old.iterdir()] == ["notes.txt"]


def test_other_commands_report_user_errors_in_one_line(tmp_path) -> None:
    runner = CliRunner()
    line = one_line_error(runner.invoke(main, ["evaluate", str(tmp_path)]))
    assert "no run.json or config.yaml" in line
    demo = ["graph", "demo", "--users", "2", "--items", "2", "--edges", "10"]
    assert "exceeds the 4 possible" in one_line_error(runner.invoke(main, demo))
    generate = ["data", "generate", "-o", str(tmp_path), "--users", "20"]
    assert "already exists" in one_line_error(runner.invoke(main, generate))


def test_debug_variable_shows_the_traceback(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GALREC_DEBUG", "1")
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert isinstance(result.exception, FileNotFoundError)


def test_tensorboard_is_an_extra_and_its_absence_one_line(tmp_path, monkeypatch) -> None:
    # test_release checks that each extra named here is in pyproject.toml
    assert OPTIONAL_MODULES["tensorboard"] == ("tensorboard", "tensorboard")
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # importing it raises ImportError
    line = one_line_error(train(tmp_path / "run", "train.tensorboard=true"))
    assert "train.tensorboard=true needs" in line and "pip install 'galrec[tensorboard]'" in line
    assert not (tmp_path / "run").exists()


class FakeWriter:
    """Records what TensorBoard would be given."""

    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []

    def add_scalar(self, tag: str, value: float, step: int, walltime: float) -> None:
        self.scalars.append((tag, value, step))

    def close(self) -> None:
        pass


def test_records_are_tagged_timed_and_setup_phases_timed(tmp_path, monkeypatch, capsys) -> None:
    """Training records were an untagged ``loss`` beside ``valid/...``, without a time; the
    setup printed nothing for many seconds; the bar wrote every step into a log file."""
    writer = FakeWriter()
    monkeypatch.setattr("galrec.training.trainer.tensorboard_writer", lambda directory: writer)
    monkeypatch.setitem(sys.modules, "tensorboard", sys)  # any module: "installed"
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 3600.0)
    started = time.time()
    overrides = ("train.steps=3", "train.eval_every=3", "train.progress=true")
    Trainer(tiny_config(tmp_path, "gal_rec", *overrides, "train.tensorboard=true")).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [0, 1, 2, 3, 3, 3]  # prior, 3 steps, valid, test
    for record in records:
        assert started <= record["time"] <= time.time() and record["elapsed_s"] >= 0
        tags = {key.split("/")[0] for key in record if key not in ("step", "time", "elapsed_s")}
        assert len(tags) == 1 and tags <= {"train", "valid", "test"}, record
    assert {"train/loss", "train/l0", "train/lr", "train/tokens_per_s"} <= records[1].keys()
    assert "valid/ndcg@10" in records[0] and "test/ndcg@10" in records[-1]
    logged = {(key, record["step"]) for record in records for key in record}
    assert {(tag, step) for tag, _, step in writer.scalars} <= logged
    assert len(writer.scalars) == sum(len(r) - 3 for r in records)
    assert [entry["loss"] for entry in _history(tmp_path) if "loss" in entry] == [
        r["train/loss"] for r in records[1:4]
    ]
    err = capsys.readouterr().err
    assert "\r" not in err  # not a terminal: whole lines, no redrawn bar
    lines = err.splitlines()
    for phase in ("backbone tiny-bert", "text features of", "CF features lightgcn", "score prior"):
        assert any(line.startswith(f"setup: {phase}") and line.endswith(" s") for line in lines)
    assert [line for line in lines if line.startswith("gal_rec: step")] == [
        next(line for line in lines if line.startswith("gal_rec: step 3/3"))
    ]


def test_progress_in_a_log_file_writes_a_line_per_interval(monkeypatch, capsys) -> None:
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 3600.0)
    bar = progress.Progress(1000, desc="fit", unit="step")
    for _ in range(1000):
        bar.update(loss="1.0")
    bar.close()
    assert capsys.readouterr().err.splitlines()[0].startswith("fit: step 1000/1000, ")
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)
    bar = progress.Progress(3, desc="fit", unit="step", initial=1)
    bar.update(loss="2.0")
    bar.close()
    assert [line.split(",")[0] for line in capsys.readouterr().err.splitlines()] == [
        "fit: step 2/3",
        "fit: step 2/3",
    ]
    reading = progress.Progress(2_000_000, desc="reading", unit="B", unit_scale=True)
    reading.update(2_000_000)
    reading.close()
    assert capsys.readouterr().err.startswith("reading: B 2.00M/2.00M, ")
    progress.Progress(3, desc="off", unit="step", enabled=False).close()
    assert capsys.readouterr().err == ""


def test_compare_shows_progress_inside_a_baseline(datasets, tmp_path, monkeypatch) -> None:
    """compare passed progress only on a terminal: a log of it showed nothing for minutes."""
    good, _ = datasets
    monkeypatch.setattr(progress, "LINE_INTERVAL_S", 0.0)
    (tmp_path / "mf.yaml").write_text(TINY_MF)
    args = ["compare", "--dataset", str(good), "--models", "mf", "--seeds", "0", "--no-plots",
            "--config", f"mf={tmp_path / 'mf.yaml'}", "-o", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "MatrixFactorization: epoch 3/3, " in result.output


def help_of(*command: str) -> str:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_one_spelling_per_flag_and_old_spellings_still_work(datasets, tmp_path) -> None:
    """Outputs were --out here and -o/--output there; cut-offs --k, -k or -k/--neighbours."""
    for command in (("train",), ("quickstart",), ("evaluate",), ("compare",),
                    ("data", "prepare"), ("data", "generate")):  # fmt: skip
        text = help_of(*command)
        assert "-o, --out" in text and "--output" not in text, command
    for command in (("evaluate",), ("compare",), ("diagnose",), ("data", "info")):
        text = help_of(*command)
        assert "-k, --k" in text and "--neighbours" not in text, command
    good, _ = datasets
    runner = CliRunner()
    old = ["data", "generate", "--output", str(tmp_path / "g"), "--users", "40"]
    assert runner.invoke(main, old).exit_code == 0
    info = ["data", "info", str(good), "--neighbours", "3", "--sample", "5"]
    assert runner.invoke(main, info).exit_code == 0


def test_no_reference_to_a_method_document_that_is_not_there() -> None:
    missing = "METHOD" + ".md"
    assert (ROOT / "docs" / "method.md").is_file()
    places = [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    for folder in ("python", "docs", "tests", "benches", "scripts"):
        places += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".yaml")]
    cited = [str(p) for p in places if missing in p.read_text(errors="replace")]
    assert cited == []
