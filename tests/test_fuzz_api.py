"""CI's seeded slice of the API fuzzing (scripts/fuzz_api.py): each target in a memory-capped
child process, where an abort, a segfault, a hang, an undocumented exception or a broken result
fails the run. Longer runs: ``python scripts/fuzz_api.py --seconds N`` (docs/reliability.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_api.py"


@pytest.mark.parametrize("target", ["from_edges", "sample", "assemble"])
def test_seeded_fuzz_slice(target):
    command = [sys.executable, str(SCRIPT), "--target", target, "--examples", "400", "--seed", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["examples"] == 400
    # Both paths were taken: results checked against the contract, and refusals.
    assert report["outcomes"]["ok"] >= 100
    assert sum(n for kind, n in report["outcomes"].items() if kind != "ok") >= 50
