"""The report of a comparison: ``results.md`` (mean ± std over seeds, paired tests, times,
representation geometry), ``results.json`` and, with matplotlib, the plots
(:mod:`galrec.experiments.plots`).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import torch

from galrec.experiments.compare import Comparison


def machine_description(device: str) -> str:
    """CPU (and GPU) of this machine, for the report."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
        if names:
            cpu = f"{names[0]} ({len(names)} logical cores)"
    except OSError:
        pass
    text = f"CPU: {cpu}; torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f"; GPU: {torch.cuda.get_device_name(0)}"
    return text


def write_report(
    comparison: Comparison, out_dir: str | Path, *, command: str = "", plots: bool = True
) -> Path:
    """``results.md``, ``results.json`` and (with matplotlib) PNG plots in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(comparison.to_json(), indent=2) + "\n")
    stats = comparison.dataset_stats
    lines = [f"# {comparison.dataset}: {', '.join(comparison.models)}", ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    lines += [
        f"Dataset: {stats.get('users')} users, {stats.get('items')} items; "
        f"{stats.get('train')} training, {stats.get('valid')} validation and "
        f"{stats.get('test')} test interactions.",
        f"Protocol: test split, {comparison.runs[0].result.label}; training items and validation "
        f"items masked. Seeds {', '.join(map(str, comparison.seeds))}; mean ± std over seeds "
        f"(sample std); best mean per column in bold.",
        f"Machine: {machine_description(comparison.device)}; "
        f"evaluation device {comparison.device}.",
        "",
        comparison.table(),
        "",
    ]
    test = comparison.significance()
    if test is not None:
        lines += ["Significance: " + test.sentence(), ""]
    pairs = comparison.pairwise()
    if len(pairs) > 1:
        lines += [
            f"Paired tests of {pairs[0].model} against every other model on {pairs[0].metric} "
            f"over {pairs[0].num_users} users (per-user values averaged over seeds):",
            "",
            f"| vs | {pairs[0].model} | other | t-test p | Wilcoxon p |",
            "|---|---|---|---|---|",
            *(
                f"| {t.baseline} | {t.model_mean:.4f} | {t.baseline_mean:.4f} | "
                f"{t.t_pvalue:.3g} | {t.wilcoxon_pvalue:.3g} |"
                for t in pairs
            ),
            "",
        ]
    timing = [
        "| model | train s (mean) | eval s (mean) | alignment | uniformity |",
        "|---|---|---|---|---|",
    ]
    for model in comparison.models:
        runs = comparison.runs_of(model)
        geometry = [run.geometry for run in runs if run.geometry is not None]
        align = f"{np.mean([g.alignment for g in geometry]):.3f}" if geometry else "-"
        unif = f"{np.mean([g.uniformity for g in geometry]):.3f}" if geometry else "-"
        timing.append(
            f"| {model} | {np.mean([r.train_seconds for r in runs]):.1f} | "
            f"{np.mean([r.result.seconds for r in runs]):.2f} | {align} | {unif} |"
        )
    lines += [
        "Wall-clock times and representation geometry (alignment over test pairs and uniformity, "
        "Wang & Isola 2020; lower is better for both):",
        "",
        *timing,
        "",
    ]
    if plots:
        try:
            from galrec.experiments.plots import write_plots
        except ImportError:  # matplotlib is an optional extra
            lines.append("Plots skipped: install the `plots` extra (matplotlib).")
        else:
            written = write_plots(comparison, out_dir)
            lines += ["Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in written), ""]
    path = out_dir / "results.md"
    path.write_text("\n".join(lines))
    return path
