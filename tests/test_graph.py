"""BipartiteGraph construction, accessors, bad input, and the graph file (round trips and
fuzzed corruption)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from galrec import BipartiteGraph, GraphFileError


def reference_neighbors(users, items, timestamps=None):
    """Per user and per item, the neighbours in (timestamp, input position) order, keeping the
    first of repeated pairs: the documented order, computed the plain way."""
    order = sorted(range(len(users)), key=lambda e: (timestamps[e] if timestamps else 0, e))
    by_user: dict[int, list[int]] = {}
    by_item: dict[int, list[int]] = {}
    seen = set()
    for e in order:
        pair = (int(users[e]), int(items[e]))
        if pair in seen:
            continue
        seen.add(pair)
        by_user.setdefault(pair[0], []).append(pair[1])
        by_item.setdefault(pair[1], []).append(pair[0])
    return by_user, by_item


def assert_matches_reference(g: BipartiteGraph, users, items, timestamps=None) -> None:
    by_user, by_item = reference_neighbors(users, items, timestamps)
    for u in range(g.num_users):
        assert g.user_neighbors(u).tolist() == by_user.get(u, [])
    for i in range(g.num_items):
        assert g.item_neighbors(i).tolist() == by_item.get(i, [])
    assert g.user_degrees().tolist() == [len(by_user.get(u, [])) for u in range(g.num_users)]
    assert g.item_degrees().tolist() == [len(by_item.get(i, [])) for i in range(g.num_items)]
    assert g.num_edges == sum(len(v) for v in by_user.values())


@pytest.fixture
def random_edges():
    rng = np.random.default_rng(5)
    users = rng.integers(0, 30, 400)
    items = rng.integers(0, 20, 400)
    return users, items


def test_matches_reference_on_random_graph(random_edges):
    users, items = random_edges
    g = BipartiteGraph.from_edges(users, items)
    assert (g.num_users, g.num_items) == (30, 20)
    assert_matches_reference(g, users.tolist(), items.tolist())
    for u, i in zip(users[:50], items[:50], strict=True):
        assert g.has_edge(int(u), int(i))
    missing = {(u, i) for u in range(30) for i in range(20)} - set(
        zip(users.tolist(), items.tolist(), strict=True)
    )
    for u, i in list(missing)[:50]:
        assert not g.has_edge(u, i)


@pytest.mark.parametrize("threads", [1, 2])
def test_timestamps_order_neighbours(random_edges, threads):
    users, items = random_edges
    ts = np.random.default_rng(1).integers(0, 50, users.size)  # many ties: input order breaks them
    g = BipartiteGraph.from_edges(users, items, timestamps=ts, num_threads=threads)
    assert g.has_timestamps
    assert_matches_reference(g, users.tolist(), items.tolist(), ts.tolist())
    gf = BipartiteGraph.from_edges(users, items, timestamps=ts.astype(np.float64) * 0.5)
    for u in range(g.num_users):
        assert gf.user_neighbors(u).tolist() == g.user_neighbors(u).tolist()


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
)
def test_any_integer_dtype_and_layout(random_edges, dtype):
    users, items = random_edges
    want = BipartiteGraph.from_edges(users, items)
    got = BipartiteGraph.from_edges(users.astype(dtype), items.astype(dtype))
    strided_users = np.repeat(users.astype(dtype), 2)[::2]  # non-contiguous view
    strided = BipartiteGraph.from_edges(strided_users, items.astype(dtype))
    for g in (got, strided):
        assert g.num_edges == want.num_edges
        for u in range(want.num_users):
            assert g.user_neighbors(u).tolist() == want.user_neighbors(u).tolist()


def test_lists_and_explicit_counts():
    g = BipartiteGraph.from_edges([0, 1], [1, 1], num_users=5, num_items=4)
    assert (g.num_users, g.num_items, g.num_edges) == (5, 4, 2)
    assert g.user_degrees().tolist() == [1, 1, 0, 0, 0]
    assert g.item_neighbors(3).size == 0
    assert g.user_degrees().dtype == np.int64
    assert g.user_neighbors(0).dtype == np.uint32


def test_dedupe_can_be_turned_off():
    users, items = np.array([0, 0, 0]), np.array([1, 1, 2])
    assert BipartiteGraph.from_edges(users, items).num_edges == 2
    kept = BipartiteGraph.from_edges(users, items, dedupe=False)
    assert kept.num_edges == 3
    assert kept.user_neighbors(0).tolist() == [1, 1, 2]


def test_empty_graph_needs_counts():
    empty = np.array([], dtype=np.int64)
    g = BipartiteGraph.from_edges(empty, empty, num_users=3, num_items=2)
    assert g.num_edges == 0
    assert [a.size for _, a in g.sample([0, 1], fanouts=(5, 5))] == [0, 0]
    with pytest.raises(ValueError, match="num_users: cannot be inferred"):
        BipartiteGraph.from_edges(empty, empty)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"users": [0, 1], "items": [0]}, ValueError, "items: has length 1 but users has length 2"),
        ({"users": [0, -3], "items": [0, 0]}, ValueError, "users: negative id -3 at index 1"),
        (
            {"users": [0, 1], "items": [0, 7], "num_items": 5},
            ValueError,
            "items: id 7 at index 1 is not below num_items=5",
        ),
        ({"users": [2**33], "items": [0]}, ValueError, "users: id 8589934592 does not fit"),
        ({"users": np.array([0.0, 1.0]), "items": [0, 1]}, TypeError, "users: expected an integer"),
        ({"users": np.array([True]), "items": [0]}, TypeError, "users: expected an integer"),
        ({"users": np.zeros((2, 2), int), "items": [0]}, ValueError, "one-dimensional"),
        (
            {"users": [0, 1], "items": [0, 1], "timestamps": np.array([1.0, np.nan])},
            ValueError,
            "timestamps: NaN at index 1",
        ),
        (
            {"users": [0, 1], "items": [0, 1], "timestamps": np.array([1])},
            ValueError,
            "timestamps: has length 1",
        ),
        (
            {"users": [0, 1], "items": [0, 1], "timestamps": np.array([True, False])},
            TypeError,
            "timestamps: expected an int64 or float64",
        ),
        (
            {"users": [0, 1], "items": [0, 1], "weights": np.array([1.0, 0.0])},
            ValueError,
            "weights: 0 at index 1 is not a positive finite number",
        ),
        (
            {"users": [0, 1], "items": [0, 1], "weights": np.array([1.0, np.inf])},
            ValueError,
            "weights: inf at index 1",
        ),
        ({"users": [0], "items": [0], "num_users": 2**40}, ValueError, "num_users: 1099511627776"),
        ({"users": [0], "items": [0], "num_threads": 0}, ValueError, "num_threads: must be"),
    ],
)
def test_bad_input_names_the_problem(kwargs, error, message):
    kwargs = dict(kwargs)
    users, items = kwargs.pop("users"), kwargs.pop("items")
    with pytest.raises(error, match=message.replace("(", r"\(")):
        BipartiteGraph.from_edges(users, items, **kwargs)


def test_accessor_bounds():
    g = BipartiteGraph.from_edges([0, 1], [0, 1])
    with pytest.raises(ValueError, match=r"user: user id 2 is out of range \(num_users=2\)"):
        g.user_neighbors(2)
    with pytest.raises(ValueError, match="item: negative id -1"):
        g.item_neighbors(-1)
    with pytest.raises(ValueError, match="item id 9"):
        g.has_edge(0, 9)


# ---- the graph file -------------------------------------------------------------------------


@pytest.fixture
def attributed_graph():
    rng = np.random.default_rng(11)
    users = rng.integers(0, 40, 600)
    items = rng.integers(0, 25, 600)
    ts = rng.random(600)
    weights = rng.random(600).astype(np.float32) + 0.1
    return BipartiteGraph.from_edges(users, items, timestamps=ts, weights=weights)


def assert_same_graph(a: BipartiteGraph, b: BipartiteGraph) -> None:
    assert (a.num_users, a.num_items, a.num_edges) == (b.num_users, b.num_items, b.num_edges)
    assert (a.has_timestamps, a.has_weights) == (b.has_timestamps, b.has_weights)
    np.testing.assert_array_equal(a.user_degrees(), b.user_degrees())
    np.testing.assert_array_equal(a.item_degrees(), b.item_degrees())
    for u in range(a.num_users):
        np.testing.assert_array_equal(a.user_neighbors(u), b.user_neighbors(u))
    for i in range(a.num_items):
        np.testing.assert_array_equal(a.item_neighbors(i), b.item_neighbors(i))
    seeds = np.arange(a.num_users)
    for strategy in ["uniform", "recent", "weighted"]:
        if strategy == "recent" and not a.has_timestamps:
            continue
        if strategy == "weighted" and not a.has_weights:
            continue
        hops_a = a.sample(seeds, strategy=strategy, seed=3)
        hops_b = b.sample(seeds, strategy=strategy, seed=3)
        for (oa, na), (ob, nb) in zip(hops_a, hops_b, strict=True):
            np.testing.assert_array_equal(oa, ob)
            np.testing.assert_array_equal(na, nb)


def test_save_open_round_trip(tmp_path, attributed_graph):
    path = tmp_path / "g.galrec"
    attributed_graph.save(path)
    opened = BipartiteGraph.open(path, verify=True)
    assert opened.is_mapped and not attributed_graph.is_mapped
    assert_same_graph(attributed_graph, opened)
    plain = BipartiteGraph.from_edges([0, 2, 1], [1, 0, 0])
    plain.save(str(tmp_path / "plain.galrec"))
    assert_same_graph(plain, BipartiteGraph.open(str(tmp_path / "plain.galrec")))
    empty = BipartiteGraph.from_edges([], [], num_users=3, num_items=1)
    empty.save(tmp_path / "empty.galrec")
    assert_same_graph(empty, BipartiteGraph.open(tmp_path / "empty.galrec", verify=True))


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, attributed_graph):
    path = tmp_path / "g.galrec"
    first = BipartiteGraph.from_edges([0, 1], [0, 1])
    first.save(path)
    old = BipartiteGraph.open(path)
    attributed_graph.save(path)  # replaces the file while `old` still maps the previous one
    assert old.num_edges == 2 and old.user_neighbors(1).tolist() == [1]
    assert_same_graph(attributed_graph, BipartiteGraph.open(path))
    old.save(path)  # a mapped graph can be saved over its own file
    assert BipartiteGraph.open(path, verify=True).num_edges == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.galrec"]


def test_save_errors_name_the_path(tmp_path, attributed_graph):
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        attributed_graph.save(tmp_path / "no-such-dir" / "g.galrec")
    with pytest.raises(FileNotFoundError, match=r"missing\.galrec"):
        BipartiteGraph.open(tmp_path / "missing.galrec")
    with pytest.raises(OSError, match=str(tmp_path)):
        BipartiteGraph.open(tmp_path)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_header_problems_are_named(tmp_path, attributed_graph):
    good = tmp_path / "g.galrec"
    attributed_graph.save(good)
    data = bytearray(good.read_bytes())
    with pytest.raises(GraphFileError, match="not a galrec graph file"):
        BipartiteGraph.open(_write(tmp_path / "magic", b"PK\x03\x04" + bytes(data[4:])))
    version = bytearray(data)
    version[8:12] = (2).to_bytes(4, "little")
    with pytest.raises(GraphFileError, match="unsupported graph file version 2"):
        BipartiteGraph.open(_write(tmp_path / "version", bytes(version)))
    with pytest.raises(GraphFileError, match="truncated: 100 bytes"):
        BipartiteGraph.open(_write(tmp_path / "short", bytes(data[:100])))
    with pytest.raises(GraphFileError, match="beyond the end of the file"):
        BipartiteGraph.open(_write(tmp_path / "cut", bytes(data[:-3])))
    with pytest.raises(GraphFileError, match="corrupted header"):
        counts = bytearray(data)
        counts[16] ^= 1
        BipartiteGraph.open(_write(tmp_path / "counts", bytes(counts)))


def test_fuzzed_files_fail_cleanly(tmp_path, attributed_graph):
    """Truncations and random byte flips: with ``verify=True`` every one is an error; without
    it, a flip that survives the structural checks still yields a graph that samples in range
    (never a crash, never an out-of-bounds read)."""
    good = tmp_path / "g.galrec"
    attributed_graph.save(good)
    data = good.read_bytes()
    rng = random.Random(2024)
    bad = tmp_path / "bad.galrec"
    for cut in sorted({0, 1, 191, 192, 193, *rng.sample(range(len(data)), 40)}):
        with pytest.raises(GraphFileError):
            BipartiteGraph.open(_write(bad, data[:cut]))
    survived = 0
    for _ in range(300):
        flipped = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 8])):
            flipped[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        if bytes(flipped) == data:
            continue
        _write(bad, bytes(flipped))
        with pytest.raises(GraphFileError):
            BipartiteGraph.open(bad, verify=True)
        try:
            g = BipartiteGraph.open(bad)
        except GraphFileError:
            continue
        survived += 1
        for strategy in ["uniform", "recent", "weighted"]:
            for side, count, other in [
                ("user", g.num_users, g.num_items),
                ("item", g.num_items, g.num_users),
            ]:
                hops = g.sample(np.arange(count), side=side, fanouts=(3, -1, 2), strategy=strategy)
                bounds = [other, count, other]
                for (offsets, nodes), bound in zip(hops, bounds, strict=True):
                    assert offsets[-1] == nodes.size
                    assert nodes.size == 0 or int(nodes.max()) < bound
    assert survived > 0  # flips inside timestamps/weights/neighbour ids pass the cheap checks


def test_open_does_not_read_the_data_sections(tmp_path, attributed_graph):
    """A flipped weight is only found by ``verify`` (open is O(header + ids), not O(file))."""
    path = tmp_path / "g.galrec"
    attributed_graph.save(path)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x40  # inside the last section: item weights
    path.write_bytes(bytes(data))
    BipartiteGraph.open(path)
    with pytest.raises(GraphFileError, match="checksum"):
        BipartiteGraph.open(path, verify=True)


def test_open_accepts_pathlike(tmp_path):
    g = BipartiteGraph.from_edges([0], [0])
    g.save(os.fspath(tmp_path / "a.galrec"))
    assert BipartiteGraph.open(tmp_path / "a.galrec").num_edges == 1
