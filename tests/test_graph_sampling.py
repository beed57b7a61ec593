"""Multi-hop sampling: exact agreement with a plain Python reference where the result is
determined (fanout -1, "recent"), properties everywhere (hypothesis), uniformity (chi-square),
determinism across threads and batches, and concurrent use from Python threads."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from galrec import BipartiteGraph
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

# ---- a plain Python reference ---------------------------------------------------------------


class Reference:
    """Neighbour lists in stored order ((timestamp, input position), first of duplicates)."""

    def __init__(self, users, items, timestamps=None):
        order = sorted(range(len(users)), key=lambda e: (timestamps[e] if timestamps else 0, e))
        self.adj: dict[str, dict[int, list[int]]] = {"user": {}, "item": {}}
        seen = set()
        for e in order:
            u, i = int(users[e]), int(items[e])
            if (u, i) not in seen:
                seen.add((u, i))
                self.adj["user"].setdefault(u, []).append(i)
                self.adj["item"].setdefault(i, []).append(u)

    def allowed(self, side, node, root, back_to_seed, excluded):
        """The neighbours a parent may reach: no excluded edge, not the root on hops that
        return to the seeds' side."""
        out = []
        for v in self.adj[side].get(node, []):
            edge = (node, v) if side == "user" else (v, node)
            if edge in excluded or (back_to_seed and v == root):
                continue
            out.append(v)
        return out

    def sample(self, seeds, side, fanouts, pick, excluded=frozenset()):
        """Hop by hop like the Rust sampler; ``pick(candidates, k)`` chooses the children."""
        hops = []
        parents = [(int(s), int(s)) for s in seeds]  # (node, root)
        for h, k in enumerate(fanouts):
            parent_side = side if h % 2 == 0 else ("item" if side == "user" else "user")
            offsets, nodes, children = [0], [], []
            for node, root in parents:
                cand = self.allowed(parent_side, node, root, h % 2 == 1, excluded)
                chosen = cand if k == -1 or len(cand) <= k else pick(cand, k)
                nodes += chosen
                children += [(c, root) for c in chosen]
                offsets.append(len(nodes))
            hops.append((offsets, nodes))
            parents = children
        return hops


def as_lists(hops):
    return [(o.tolist(), n.tolist()) for o, n in hops]


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 25, 300)
    items = rng.integers(0, 15, 300)
    ts = rng.integers(0, 1000, 300)
    weights = rng.random(300) + 0.05
    graph = BipartiteGraph.from_edges(users, items, timestamps=ts, weights=weights)
    return graph, Reference(users.tolist(), items.tolist(), ts.tolist())


@pytest.mark.parametrize("side", ["user", "item"])
def test_fanout_all_matches_reference(small, side):
    graph, ref = small
    seeds = np.arange(graph.num_users if side == "user" else graph.num_items)
    got = graph.sample(seeds, side=side, fanouts=(-1, -1, -1))
    assert as_lists(got) == ref.sample(seeds, side, (-1, -1, -1), pick=None)


@pytest.mark.parametrize("side", ["user", "item"])
def test_recent_matches_reference(small, side):
    graph, ref = small
    seeds = np.arange(graph.num_users if side == "user" else graph.num_items)
    got = graph.sample(seeds, side=side, fanouts=(4, 3, 2), strategy="recent")
    assert as_lists(got) == ref.sample(seeds, side, (4, 3, 2), pick=lambda c, k: c[-k:])


def test_exclude_matches_reference(small):
    graph, ref = small
    seeds = np.arange(graph.num_users)
    excl_users = np.array([u for u in range(graph.num_users) for _ in range(2)])
    excl_items = np.array(
        [
            int(graph.user_neighbors(u)[j]) if graph.user_degrees()[u] > j else 0
            for u in range(graph.num_users)
            for j in range(2)
        ]
    )
    excluded = frozenset(zip(excl_users.tolist(), excl_items.tolist(), strict=True))
    for strategy, fanouts, pick in [
        ("uniform", (-1, -1, -1), None),
        ("recent", (3, 2, 2), lambda c, k: c[-k:]),
    ]:
        got = graph.sample(
            seeds, fanouts=fanouts, strategy=strategy, exclude=(excl_users, excl_items)
        )
        assert as_lists(got) == ref.sample(seeds, "user", fanouts, pick, excluded)


# ---- properties -------------------------------------------------------------------------


@st.composite
def graphs_and_requests(draw):
    num_users = draw(st.integers(1, 8))
    num_items = draw(st.integers(1, 8))
    m = draw(st.integers(0, 40))
    users = draw(st.lists(st.integers(0, num_users - 1), min_size=m, max_size=m))
    items = draw(st.lists(st.integers(0, num_items - 1), min_size=m, max_size=m))
    side = draw(st.sampled_from(["user", "item"]))
    count = num_users if side == "user" else num_items
    seeds = draw(st.lists(st.integers(0, count - 1), max_size=6))
    fanouts = draw(st.lists(st.integers(-1, 4), min_size=1, max_size=4))
    strategy = draw(st.sampled_from(["uniform", "recent", "weighted"]))
    excluded = (
        draw(st.lists(st.sampled_from(list(zip(users, items, strict=True))), max_size=4))
        if m
        else []
    )
    weights = draw(st.lists(st.floats(0.01, 100), min_size=m, max_size=m))
    timestamps = draw(st.lists(st.integers(-5, 5), min_size=m, max_size=m))
    seed = draw(st.integers(0, 2**64 - 1))
    return (
        num_users,
        num_items,
        users,
        items,
        timestamps,
        weights,
        side,
        seeds,
        fanouts,
        strategy,
        excluded,
        seed,
    )


@settings(max_examples=300, deadline=None)
@given(graphs_and_requests())
def test_sampling_properties(case):
    (
        num_users,
        num_items,
        users,
        items,
        timestamps,
        weights,
        side,
        seeds,
        fanouts,
        strategy,
        excluded,
        seed,
    ) = case
    graph = BipartiteGraph.from_edges(
        np.array(users, dtype=np.int64),
        np.array(items, dtype=np.int64),
        num_users=num_users,
        num_items=num_items,
        timestamps=np.array(timestamps, dtype=np.int64),
        weights=np.array(weights),
    )
    ref = Reference(users, items, timestamps)
    exclude = (
        np.array([u for u, _ in excluded], dtype=np.int64),
        np.array([i for _, i in excluded], dtype=np.int64),
    )
    hops = graph.sample(
        np.array(seeds, dtype=np.int64),
        side=side,
        fanouts=fanouts,
        strategy=strategy,
        seed=seed,
        exclude=exclude,
    )
    assert len(hops) == len(fanouts)
    parents = [(s, s) for s in seeds]
    for h, ((offsets, nodes), k) in enumerate(zip(hops, fanouts, strict=True)):
        assert offsets.dtype == np.int64 and nodes.dtype == np.uint32
        assert len(offsets) == len(parents) + 1 and offsets[0] == 0 and offsets[-1] == len(nodes)
        parent_side = side if h % 2 == 0 else ("item" if side == "user" else "user")
        children = []
        for j, (node, root) in enumerate(parents):
            got = nodes[offsets[j] : offsets[j + 1]].tolist()
            allowed = ref.allowed(parent_side, node, root, h % 2 == 1, set(excluded))
            # true neighbours, never an excluded edge or the root on the way back
            assert set(got) <= set(allowed)
            assert len(set(got)) == len(got)  # no duplicates
            assert len(got) == (len(allowed) if k == -1 else min(k, len(allowed)))
            # children keep stored (chronological) order
            position = {v: p for p, v in enumerate(allowed)}
            assert [position[v] for v in got] == sorted(position[v] for v in got)
            children += [(c, root) for c in got]
        parents = children


# ---- uniformity -------------------------------------------------------------------------

P_MIN = 1e-3  # the uniform sampler passes at p > 0.001 with these fixed seeds


def subset_counts(graph, seeds, fanouts, *, epochs=1, hop=0, strategy="uniform"):
    counts: Counter[tuple[int, ...]] = Counter()
    for epoch in range(epochs):
        offsets, nodes = graph.sample(
            seeds, fanouts=fanouts, strategy=strategy, seed=7, epoch=epoch
        )[hop]
        for j in range(len(offsets) - 1):
            counts[tuple(nodes[offsets[j] : offsets[j + 1]].tolist())] += 1
    return counts


def chi_square_p(counts, universe):
    observed = np.array([counts.get(s, 0) for s in universe])
    assert observed.sum() == sum(counts.values())  # nothing outside the universe
    return chisquare(observed).pvalue


def test_uniform_hop1_subsets_are_uniform():
    """12k users with the same 10 items, 3 drawn each: all 120 subsets equally likely."""
    users = np.repeat(np.arange(12_000), 10)
    items = np.tile(np.arange(10), 12_000)
    weights = np.tile(np.arange(1.0, 11.0), 12_000)
    graph = BipartiteGraph.from_edges(users, items, weights=weights)
    universe = list(itertools.combinations(range(10), 3))
    assert chi_square_p(subset_counts(graph, np.arange(12_000), (3,)), universe) > P_MIN
    # the same test rejects a non-uniform sampler (weights 1..10), so the bound has teeth
    weighted = subset_counts(graph, np.arange(12_000), (3,), strategy="weighted")
    assert chi_square_p(weighted, universe) < 1e-12


def test_uniform_hop2_without_the_seed_is_uniform():
    """Back at the seeds' side the seed is dropped, and the rest is still uniform: item 0's
    8 users minus the seed, 3 drawn, over 3500 epochs: 35 subsets equally likely."""
    graph = BipartiteGraph.from_edges(np.arange(8), np.zeros(8, dtype=np.int64))
    counts = subset_counts(graph, np.array([5]), (1, 3), epochs=3500, hop=1)
    universe = list(itertools.combinations([0, 1, 2, 3, 4, 6, 7], 3))
    assert chi_square_p(counts, universe) > P_MIN


@pytest.mark.parametrize("k", [40, 60])  # Floyd with a hash set; dense partial shuffle
def test_large_fanouts_have_uniform_inclusion(k):
    n, reps = 100, 1500
    users = np.repeat(np.arange(reps), n)
    items = np.tile(np.arange(n), reps)
    graph = BipartiteGraph.from_edges(users, items)
    offsets, nodes = graph.sample(np.arange(reps), fanouts=(k,), seed=1)[0]
    assert (np.diff(offsets) == k).all()
    inclusion = np.bincount(nodes, minlength=n)
    assert chisquare(inclusion).pvalue > P_MIN
    for j in range(reps):
        chosen = nodes[offsets[j] : offsets[j + 1]]
        assert np.unique(chosen).size == k


def test_weighted_prefers_heavy_edges():
    """Inclusion of a weight-9 edge beats that of weight-1 edges, and the sample is still
    without replacement."""
    reps = 4000
    users = np.repeat(np.arange(reps), 5)
    items = np.tile(np.arange(5), reps)
    weights = np.tile([9.0, 1.0, 1.0, 1.0, 1.0], reps)
    graph = BipartiteGraph.from_edges(users, items, weights=weights)
    _, nodes = graph.sample(np.arange(reps), fanouts=(1,), strategy="weighted")[0]
    share = np.bincount(nodes, minlength=5) / reps
    assert abs(share[0] - 9 / 13) < 0.03  # single draw: probability proportional to weight


# ---- determinism ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def medium():
    from galrec.graph.generator import generate_power_law

    users, items = generate_power_law(3000, 1500, 60_000, zipf_exponent=1.0, seed=4)
    return BipartiteGraph.from_edges(users, items)


def per_seed(hops, j):
    """The subtree of seed ``j``: children of consecutive parents are consecutive."""
    low, high, out = j, j + 1, []
    for offsets, nodes in hops:
        low, high = int(offsets[low]), int(offsets[high])
        out.append(nodes[low:high].tolist())
    return out


def test_independent_of_thread_count(medium):
    seeds = np.arange(medium.num_users)
    one = medium.sample(seeds, fanouts=(10, 10, 5), seed=9, num_threads=1)
    two = medium.sample(seeds, fanouts=(10, 10, 5), seed=9, num_threads=2)
    four = medium.sample(seeds, fanouts=(10, 10, 5), seed=9, num_threads=4)
    assert as_lists(one) == as_lists(two) == as_lists(four)


def test_independent_of_batch_composition(medium):
    rng = np.random.default_rng(0)
    batch = rng.integers(0, medium.num_users, 700)
    full = medium.sample(batch, fanouts=(10, 10), seed=2, epoch=3)
    shuffled_order = rng.permutation(batch.size)
    shuffled = medium.sample(batch[shuffled_order], fanouts=(10, 10), seed=2, epoch=3)
    for pos, j in enumerate(shuffled_order[:100]):
        alone = medium.sample(batch[j : j + 1], fanouts=(10, 10), seed=2, epoch=3)
        assert per_seed(full, j) == per_seed(alone, 0) == per_seed(shuffled, pos)


def test_seed_and_epoch_change_the_sample(medium):
    seeds = np.arange(200)
    base = as_lists(medium.sample(seeds, seed=1, epoch=0))
    assert base == as_lists(medium.sample(seeds, seed=1, epoch=0))
    assert base != as_lists(medium.sample(seeds, seed=2, epoch=0))
    assert base != as_lists(medium.sample(seeds, seed=1, epoch=1))


def test_concurrent_python_threads(medium):
    seeds = np.arange(medium.num_users)
    jobs = [(epoch, strategy) for epoch in range(12) for strategy in ["uniform"]]
    expected = {j: as_lists(medium.sample(seeds, epoch=j[0])) for j in jobs}

    def run(job):
        return job, as_lists(medium.sample(seeds, epoch=job[0], num_threads=1 + job[0] % 2))

    with ThreadPoolExecutor(max_workers=4) as pool:
        for job, got in pool.map(run, jobs * 2):
            assert got == expected[job]


# ---- bad requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"seeds": [0, 99]}, ValueError, r"seeds: user id 99 at index 1 is out of range"),
        ({"seeds": [-1]}, ValueError, "seeds: negative id -1 at index 0"),
        ({"seeds": np.array([0.5])}, TypeError, "seeds: expected an integer array"),
        ({"side": "both"}, ValueError, "side: must be 'user' or 'item'"),
        ({"strategy": "random"}, ValueError, "strategy: must be 'uniform', 'recent'"),
        ({"fanouts": ()}, ValueError, "fanouts: must name at least one hop"),
        ({"fanouts": (5, -2)}, ValueError, "fanouts: hop 2 fanout -2"),
        ({"exclude": ([0, 1], [0])}, ValueError, "exclude: users has 2 entries but items has 1"),
        ({"exclude": ([0], [50])}, ValueError, "exclude items: item id 50 at index 0"),
        ({"num_threads": 0}, ValueError, "num_threads: must be between 1"),
        ({"seed": -1}, ValueError, r"seed: must be an integer in \[0, 2\*\*64\), got -1"),
        ({"epoch": 2**64}, ValueError, "epoch: must be an integer in"),
    ],
)
def test_bad_requests_name_the_problem(small, kwargs, error, message):
    graph, _ = small
    kwargs = {"seeds": [0, 1], **kwargs}
    seeds = kwargs.pop("seeds")
    with pytest.raises(error, match=message):
        graph.sample(seeds, **kwargs)


def test_strategies_need_their_attributes():
    graph = BipartiteGraph.from_edges([0, 1], [1, 0])
    with pytest.raises(ValueError, match="'recent' needs a graph built with timestamps"):
        graph.sample([0], strategy="recent")
    with pytest.raises(ValueError, match="'weighted' needs a graph built with weights"):
        graph.sample([0], strategy="weighted")


def _sample_in_child(graph: BipartiteGraph, queue) -> None:
    hops = graph.sample(np.arange(graph.num_users), fanouts=(10, 10))
    rebuilt = BipartiteGraph.from_edges(np.arange(100_000) % 700, np.arange(100_000) % 300)
    queue.put((sum(nodes.size for _, nodes in hops), rebuilt.num_edges))


def test_works_in_forked_worker_processes(medium):
    """Worker processes forked after the parent used its thread pools (as DataLoader workers
    are) start their own pools instead of waiting on threads that do not exist there."""
    import multiprocessing

    medium.sample(np.arange(medium.num_users), num_threads=2)  # parent pools exist
    expected = sum(nodes.size for _, nodes in medium.sample(np.arange(medium.num_users)))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_sample_in_child, args=(medium, queue))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("sampling in a forked child hung")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == (expected, 2100)


def test_sample_batches_equals_sample_per_batch(medium):
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, medium.num_users, n) for n in (300, 1, 0, 257)]
    epochs = [3, 1, 4, 1]
    kwargs = {"fanouts": (5, 3), "seed": 4}
    for threads in (1, 2):
        each = medium.sample_batches(batches, epoch=epochs, num_threads=threads, **kwargs)
        shared = medium.sample_batches(batches, num_threads=threads, **kwargs)
        assert len(each) == len(shared) == 4
        for j, batch in enumerate(batches):
            alone = medium.sample(batch, epoch=epochs[j], **kwargs)
            assert as_lists(each[j]) == as_lists(alone)
            assert as_lists(shared[j]) == as_lists(medium.sample(batch, **kwargs))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"batches": [[0], [10**6]]}, ValueError, r"batches\[1\] seeds: user id 1000000"),
        ({"batches": [[0], [-1]]}, ValueError, r"batches\[1\]"),
        ({"batches": [[0], [1]], "epoch": [0]}, ValueError, "epoch: has 1 entries but there are 2"),
        (
            {"batches": [[0]], "epoch": -1},
            ValueError,
            r"epoch: must be an integer in \[0, 2\*\*64\)",
        ),
        ({"batches": [[0]], "epoch": "x"}, TypeError, "epoch: expected an int or a sequence"),
    ],
)
def test_sample_batches_errors_name_the_batch(medium, kwargs, error, message):
    batches = kwargs.pop("batches")
    with pytest.raises(error, match=message):
        medium.sample_batches(batches, **kwargs)


# ---- output buffers handed back for reuse ---------------------------------------------------


def test_reused_output_buffers_never_change_live_arrays_or_leak_old_values(medium):
    """Large results are numpy arrays over buffers that go back to the sampler once the last
    array over them dies: a live view keeps its values, and a reused buffer shows none of
    what was written into it before."""
    seeds = np.arange(2000) % medium.num_users
    for threads in (1, 2):
        first = medium.sample(seeds, fanouts=(10, 10), num_threads=threads)
        expected = as_lists(first)
        assert first[1][1].nbytes > 256 * 1024  # large enough to be recycled
        assert all(a.flags.writeable for pair in first for a in pair)
        for offsets, nodes in first:
            offsets[:] = -7
            nodes[:] = 7
        view = first[1][1][10:20]
        del first, offsets, nodes
        again = medium.sample_batches([seeds, seeds], fanouts=(10, 10), num_threads=threads)
        assert (view == 7).all()
        assert as_lists(again[0]) == as_lists(again[1]) == expected
        del view, again
        assert as_lists(medium.sample(seeds, fanouts=(10, 10), num_threads=threads)) == expected


def test_a_dead_results_buffer_is_reused_by_the_next_call(tmp_path):
    """In a fresh process (an empty shelf), the next batch writes into the memory of the
    previous batch's arrays once they are gone (kept for it, not freed to whatever allocates
    next), and not while they live."""
    script = tmp_path / "reuse.py"
    script.write_text(
        "import numpy as np\n"
        "from galrec import BipartiteGraph\n"
        "from galrec.graph.generator import generate_power_law\n"
        "g = BipartiteGraph.from_edges(*generate_power_law(3000, 1500, 60_000, seed=4))\n"
        "seeds = np.arange(2000)\n"
        "a = g.sample(seeds, num_threads=1)[1][1]\n"
        "b = g.sample(seeds, epoch=1, num_threads=1)[1][1]\n"
        "address = a.ctypes.data\n"
        "assert b.ctypes.data != address\n"
        "size = a.nbytes\n"
        "del a\n"
        # Freed memory would go to the next allocation of its size: this one.
        "filler = np.ones(size, dtype=np.uint8)\n"
        "c = g.sample(seeds, epoch=2, num_threads=1)[1][1]\n"
        "assert c.ctypes.data == address, (hex(c.ctypes.data), hex(address))\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
