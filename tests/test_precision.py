"""bf16 autocast against fp32 (``train.precision``): a trained model ranks the same items either
way, within a stated tolerance, and ``auto`` picks bf16 only where the hardware has it."""

from __future__ import annotations

import dataclasses

import torch
from galrec.model.gal_rec import autocast, cpu_flags, cpu_supports_bf16, resolve_precision
from galrec.training.run import LMScorer, Run
from galrec.training.trainer import Trainer
from train_helpers import tiny_config


def _at_precision(run: Run, precision: str) -> Run:
    train = dataclasses.replace(run.cfg.train, precision=precision)
    return dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, train=train))


def test_bf16_and_fp32_give_the_same_top10_of_a_trained_model(tmp_path):
    # No prior, so every score is the language model's own term <W h_u, E_i>, which is what
    # autocast changes (h_u comes from the backbone's forward; E_i and the ranking stay fp32).
    cfg = tiny_config(tmp_path, "gal_rec", "model.score_prior=none", "train.steps=30")
    trainer = Trainer(cfg)
    trainer.fit()
    users = torch.arange(trainer.run.dataset.num_users)
    scores = {
        precision: LMScorer(_at_precision(trainer.run, precision)).score_users(users)
        for precision in ("fp32", "bf16")
    }
    assert scores["fp32"].dtype == scores["bf16"].dtype == torch.float32
    assert not torch.equal(scores["fp32"], scores["bf16"])  # bf16 did run
    top = {p: s.topk(10, dim=1).indices for p, s in scores.items()}
    shared = [
        len(set(a.tolist()) & set(b.tolist())) / 10
        for a, b in zip(top["fp32"], top["bf16"], strict=True)
    ]
    # Tolerance: on average at least 9 of the 10 items agree (bf16 keeps 8 bits of precision,
    # so near-ties at the 10th place may swap), and every user keeps at least 7 (measured on
    # this model: 0.999 on average, 9 at the least).
    assert sum(shared) / len(shared) >= 0.9
    assert min(shared) >= 0.7
    spread = scores["fp32"].std()
    assert (scores["fp32"] - scores["bf16"]).abs().max() <= 0.02 * spread  # measured: 0.002


def test_auto_precision_follows_the_hardware():
    cpu = torch.device("cpu")
    expected = "bf16" if cpu_supports_bf16() else "fp32"
    assert resolve_precision("auto", cpu) == expected
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with autocast(cpu, "bf16"):
        out = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        out = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4))
    assert out.dtype == torch.float32


def test_auto_keeps_fp32_where_bf16_would_be_emulated(tmp_path):
    # oneDNN calls bf16 "supported" on plain AVX512, where it is emulated at a quarter of the
    # fp32 rate: only the native instructions' flags may turn bf16 on.
    assert not cpu_supports_bf16(frozenset({"avx2", "avx512f", "avx512bw", "avx512vl"}))
    assert not cpu_supports_bf16(frozenset())
    # With the flags, the answer is the torch build's (oneDNN's bf16 kernels).
    onednn = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert cpu_supports_bf16(frozenset({"avx512f", "avx512_bf16"})) == onednn
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "sse", "avx512f", "amx_bf16", "amx_tile"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()
