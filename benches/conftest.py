"""Shared benchmark plumbing: a throughput table printed after the run, so ratios against a
baseline measured in the same run are visible at a glance."""

from __future__ import annotations

import pytest

_THROUGHPUT = pytest.StashKey[dict[str, tuple[float, str]]]()


@pytest.fixture(scope="session")
def throughput(request: pytest.FixtureRequest) -> dict[str, tuple[float, str]]:
    """Record ``name -> (value, unit)``; printed in the terminal summary."""
    return request.config.stash.setdefault(_THROUGHPUT, {})


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    results = config.stash.get(_THROUGHPUT, {})
    if not results:
        return
    terminalreporter.section("throughput (this run)")
    for name, (value, unit) in results.items():
        terminalreporter.write_line(f"{name:<55} {value:>12.2f} {unit}")
