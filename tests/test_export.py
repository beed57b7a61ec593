"""``galrec export --format hf``: a self-contained folder that ``galrec.load`` serves after the
run is gone, whose adapter plain peft loads on the base model."""

from __future__ import annotations

import json
import shutil

import galrec
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from galrec.cli import main
from train_helpers import tiny_config

TINY_STEPS = ("train.steps=4", "train.eval_every=4", "model.sasrec_epochs=3")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(the run's recommendations, scores and LoRA tensors, the folder moved elsewhere), the run
    itself deleted before the folder is loaded."""
    root = tmp_path_factory.mktemp("export")
    run = root / "run"
    galrec.train(tiny_config(run, "gal_rec", *TINY_STEPS), out_dir=run)
    model = galrec.load(run)
    history = ["item-00003", "item-00010", "item-00042"]
    expected = {
        "recommend": model.recommend([0, 1, 2, 3], k=10),
        "history": model.recommend_history(history, k=10),
        "score": model.score([5], list(range(20))),
        "lora": {k: v.clone() for k, v in model.run.model.trainable_state().items() if "lora" in k},
    }
    result = CliRunner().invoke(main, ["export", str(run), "--format", "hf"])
    assert result.exit_code == 0, result.output
    moved = root / "elsewhere" / "gal_rec"
    shutil.copytree(run / "export" / "hf", moved)
    shutil.rmtree(run)
    return expected, history, moved


def test_the_folder_serves_the_runs_recommendations(exported) -> None:
    expected, history, folder = exported
    model = galrec.load(folder)
    got = model.recommend([0, 1, 2, 3], k=10)
    assert got.item_ids == expected["recommend"].item_ids
    np.testing.assert_allclose(got.scores, expected["recommend"].scores, rtol=1e-5, atol=1e-6)
    assert model.recommend_history(history, k=10).item_ids == expected["history"].item_ids
    np.testing.assert_allclose(model.score([5], list(range(20))), expected["score"], rtol=1e-5)
    assert model.evaluate("test", ks=(10,)).metrics["ndcg@10"] > 0


def test_the_folder_names_no_path_of_this_machine(exported) -> None:
    _, _, folder = exported
    meta = json.loads((folder / "galrec_export.json").read_text())
    assert meta["format"] == "galrec-hf" and meta["model"] == "gal_rec"
    adapter = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "tiny-bert"
    config = (folder / "config.yaml").read_text()
    assert "dataset: dataset" in config and str(folder.parent.parent) not in config
    for name in ("model.safetensors", "external.safetensors", "prior.safetensors",
                 "tokenizer.json", "templates.json", "user_ids.json", "item_ids.json"):  # fmt: skip
        assert (folder / name).is_file(), name
    ids = json.loads((folder / "item_ids.json").read_text())
    assert ids == list(galrec.load(folder).dataset.item_ids) and "item-00003" in ids


def test_the_adapter_loads_with_plain_peft(exported) -> None:
    from galrec.config import config_from_dict
    from galrec.model.backbone import load_backbone
    from peft import PeftModel

    expected, _, folder = exported
    import yaml

    cfg = config_from_dict(yaml.safe_load((folder / "config.yaml").read_text()))
    base = load_backbone(cfg.model, [], folder, seed=cfg.train.seed).model
    peft_model = PeftModel.from_pretrained(base, str(folder / "adapter"))
    loaded = {k: v for k, v in peft_model.state_dict().items() if "lora" in k}
    assert len(loaded) == len(expected["lora"]) > 0
    for name, tensor in expected["lora"].items():
        key = name.removeprefix("backbone.model.")
        torch.testing.assert_close(loaded[key], tensor)


def test_export_refuses_a_folder_in_use(exported, tmp_path) -> None:
    _, _, folder = exported
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = CliRunner().invoke(
        main, ["export", str(folder), "--format", "hf", "--out", str(target)]
    )
    assert result.exit_code == 2 and "is not empty" in result.output
    assert (target / "keep.txt").read_text() == "mine"
