"""The power-law generator and the ``galrec graph demo`` command."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from galrec.cli import main
from galrec.graph.generator import generate_power_law


def test_generator_gives_distinct_edges_with_zipf_popularity():
    users, items = generate_power_law(20_000, 500, 40_000, zipf_exponent=1.0, seed=3)
    assert users.dtype == np.uint32 and items.dtype == np.uint32
    assert users.size == items.size == 40_000
    assert users.max() < 20_000 and items.max() < 500
    keys = users.astype(np.int64) * 500 + items
    assert np.unique(keys).size == keys.size
    degrees = np.sort(np.bincount(items, minlength=500))[::-1]
    # rank-1 over rank-10 popularity is about 10 for exponent 1 (Zipf), 1 for exponent 0
    assert 7 < degrees[0] / degrees[9] < 13
    _, flat_items = generate_power_law(20_000, 500, 40_000, zipf_exponent=0.0, seed=3)
    flat = np.bincount(flat_items, minlength=500)
    assert flat.max() - flat.min() <= 1
    again = generate_power_law(20_000, 500, 40_000, zipf_exponent=1.0, seed=3)
    np.testing.assert_array_equal(again[0], users)
    np.testing.assert_array_equal(again[1], items)


def test_generator_saturates_popular_items_and_fills_the_grid():
    users, items = generate_power_law(10, 4, 40, zipf_exponent=2.0, seed=0)
    assert sorted(zip(users.tolist(), items.tolist(), strict=True)) == [
        (u, i) for u in range(10) for i in range(4)
    ]
    users, items = generate_power_law(50, 20, 300, zipf_exponent=3.0, seed=1)
    assert np.bincount(items).max() <= 50


@pytest.mark.parametrize(
    ("args", "message"),
    [((2, 2, 5), "exceeds the 4 possible"), ((0, 2, 1), "must be positive")],
)
def test_generator_rejects_impossible_requests(args, message):
    with pytest.raises(ValueError, match=message):
        generate_power_law(*args)


def test_graph_demo_prints_a_sampling_table():
    result = CliRunner().invoke(
        main,
        [
            "graph",
            "demo",
            "--users",
            "300",
            "--items",
            "100",
            "--edges",
            "5000",
            "--fanouts",
            "3,2",
            "--seeds",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("BipartiteGraph(num_users=300, num_items=100, num_edges=5000")
    assert "hop 1 (items)" in result.output and "hop 2 (users)" in result.output
    assert lines[2].split()[:2] == ["user", "degree"]
    for user, row in enumerate(lines[3:7]):
        assert row.split()[0] == str(user)
    title = next(i for i, line in enumerate(lines) if line.startswith("throughput"))
    table = lines[title + 1 :]
    assert table[0].split()[-3:] == ["M", "sampled", "edges/s"]
    rows = [row.rsplit(None, 2) for row in table[1:]]
    assert [(mode, threads) for mode, threads, _ in rows][:2] == [
        ("sample, a call per batch", "1"),
        ("sample_batches", "1"),
    ]
    assert all(float(rate) > 0 for _, _, rate in rows)


def test_graph_demo_rejects_bad_fanouts():
    result = CliRunner().invoke(main, ["graph", "demo", "--fanouts", "3,x"])
    assert result.exit_code != 0
    assert "comma-separated integers" in result.output
