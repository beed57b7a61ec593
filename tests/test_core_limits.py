"""Limits of the Rust core (issue 15): requests too large for memory are exceptions, never an
abort of the process; hops back to the seeds' side never hold the seed, even in graphs built
without deduplication; graph files with nonzero reserved header bytes are refused.

The memory cases run in a child process under an address-space cap (RLIMIT_AS), so the
ceiling the core refuses against is known, and a regression (an abort) fails the test instead
of killing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from galrec import BipartiteGraph, GraphFileError

pytest.importorskip("resource")  # RLIMIT_AS: POSIX only


def run_capped(code: str, cap_bytes: int = 3 << 30) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a child Python capped at `cap_bytes` of address space; the child prints
    the exception it got as `<type>: <message>`."""
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    child = "\n".join(
        [
            "import resource",
            f"resource.setrlimit(resource.RLIMIT_AS, ({cap_bytes}, {cap_bytes}))",
            "import numpy as np",
            "from galrec import BipartiteGraph",
            "try:",
            body,
            "except Exception as e:",
            "    print(f'{type(e).__name__}: {e}')",
            "else:",
            "    print('no exception')",
        ]
    )
    env = {"OPENBLAS_NUM_THREADS": "1", "RAYON_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def assert_raised(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 0, f"child died ({result.returncode}): {result.stderr[-2000:]}"
    assert result.stdout.startswith(expected), result.stdout


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # The largest user id implies the user count: 2**31 + 1 users, about 26 GB of arrays.
        (
            "BipartiteGraph.from_edges(np.array([2**31]), np.array([0]))",
            "ValueError: users: 2147483649 nodes (one more than the largest id, 2147483648) need",
        ),
        (
            "BipartiteGraph.from_edges([0], [0], num_users=4294967295)",
            "ValueError: num_users: 4294967295 nodes need",
        ),
        # 30 seeds on a complete 30 x 30 graph: hop 5 would hold 30 * 30**3 * 29**2 nodes.
        (
            """
            users, items = np.divmod(np.arange(900), 30)
            g = BipartiteGraph.from_edges(users, items)
            g.sample(np.arange(30), fanouts=[-1] * 5)
            """,
            "ValueError: fanouts: hop 5: up to 681210000 sampled nodes need",
        ),
    ],
    ids=["large-user-id", "large-num-users", "large-sample"],
)
def test_requests_beyond_memory_are_value_errors(code, expected):
    result = run_capped(code)
    assert_raised(result, expected)
    assert "address-space limit" in result.stdout


def test_failed_allocations_are_memory_errors():
    """Each side's arrays (840 MB) are under the 1 GiB cap, both together are not: whichever
    allocation crosses it fails."""
    result = run_capped(
        "BipartiteGraph.from_edges([0], [0], num_users=70_000_000, num_items=70_000_000)",
        cap_bytes=1 << 30,
    )
    assert_raised(result, "MemoryError: ")
    assert "could not allocate" in result.stdout


@pytest.fixture
def duplicated_graph():
    """100 users and 12 items, every user with 6 items; each user's first item twice."""
    rng = np.random.default_rng(15)
    users, items = [], []
    for u in range(100):
        chosen = rng.choice(12, 6, replace=False)
        users += [u] * 7
        items += [*chosen, chosen[0]]
    weights = rng.uniform(0.5, 2.0, len(users))
    return BipartiteGraph.from_edges(
        np.array(users), np.array(items), weights=weights, dedupe=False
    )


@pytest.mark.parametrize("strategy", ["uniform", "weighted"])
@pytest.mark.parametrize("fanouts", [(3, 4), (3, -1), (6, 30)])
def test_hop_two_never_holds_the_seed_without_dedupe(duplicated_graph, fanouts, strategy):
    """Every copy of the seed is dropped; serial and threaded runs still agree."""
    seeds = np.arange(100)
    for epoch in range(3):
        options = dict(fanouts=fanouts, strategy=strategy, seed=1, epoch=epoch)
        hops = duplicated_graph.sample(seeds, num_threads=1, **options)
        (offsets1, _), (offsets2, nodes2) = hops
        for s in seeds:
            lo, hi = offsets2[offsets1[s]], offsets2[offsets1[s + 1]]
            assert s not in nodes2[lo:hi], f"seed {s} in its own hop 2 (epoch {epoch})"
        threaded = duplicated_graph.sample(seeds, num_threads=2, **options)
        for (a_off, a_nodes), (b_off, b_nodes) in zip(hops, threaded, strict=True):
            assert np.array_equal(a_off, b_off) and np.array_equal(a_nodes, b_nodes)


def _mix64(z: int) -> int:
    m = (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def header_checksum(header: bytes) -> int:
    """storage.rs `checksum(&[header])` for a header shorter than its 1 MiB blocks."""
    m = (1 << 64) - 1
    p1, p2 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F
    lanes = [p1, p2, p1 ^ m, p2 ^ m]
    whole = len(header) // 32 * 32
    for at in range(0, whole, 32):
        for k in range(4):
            word = int.from_bytes(header[at + 8 * k : at + 8 * k + 8], "little")
            lane = (lanes[k] + word * p2) & m
            lanes[k] = (((lane << 31) | (lane >> 33)) & m) * p1 & m
    tail = header[whole:].ljust(32, b"\0")
    h = len(header)
    for k in range(4):
        h = _mix64(h ^ _mix64(lanes[k]) ^ int.from_bytes(tail[8 * k : 8 * k + 8], "little"))
    return _mix64(_mix64(0x243F6A8885A308D3 ^ len(header)) ^ h)


def test_nonzero_reserved_header_bytes_are_rejected(tmp_path):
    g = BipartiteGraph.from_edges([0, 1], [1, 0])
    path = tmp_path / "g.galrec"
    g.save(path)
    data = bytearray(path.read_bytes())
    assert header_checksum(bytes(data[:184])) == int.from_bytes(data[184:192], "little")
    data[180] = 7
    data[184:192] = header_checksum(bytes(data[:184])).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(GraphFileError, match=r"reserved header bytes 176\.\.184 are not zero"):
        BipartiteGraph.open(path)


def test_counts_out_of_range_name_their_argument(tmp_path):
    """PyO3's own conversion raised "can't convert negative int to unsigned", naming nothing."""
    from galrec.graph.prompts import PromptAssembler, build_text_store, load_tokenizer
    from prompt_fixtures import TRICKY_TITLES, train_wordpiece

    edges = (np.array([0, 1]), np.array([0, 1]))
    graph = BipartiteGraph.from_edges(*edges)
    calls = {
        "num_users": lambda: BipartiteGraph.from_edges(*edges, num_users=-1),
        "num_items": lambda: BipartiteGraph.from_edges(*edges, num_items=2**64),
        "num_threads": lambda: graph.sample([0], num_threads=-1),
    }
    for argument, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{argument}: must be an integer in \[0, 2\*\*64\)"):
            call()
    tokenizer = load_tokenizer(train_wordpiece(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match=r"^num_users: "):
        build_text_store(tokenizer, TRICKY_TITLES, num_users=-1)
    store = build_text_store(tokenizer, TRICKY_TITLES, num_users=2)
    with pytest.raises(ValueError, match=r"^max_length: "):
        PromptAssembler(tokenizer, store, max_length=-1)
    with pytest.raises(ValueError, match=r"^hop: "):
        PromptAssembler(tokenizer, store).assemble([0], [], side="user", hop=-1)


@pytest.mark.parametrize("cap_mib", [600, 800])
def test_sampling_after_a_failed_allocation_works(cap_mib):
    """Ever larger seed batches under an address-space cap: each either samples or raises, and
    a small sample on the same thread works afterwards. Found by scripts/fuzz_api.py: a failed
    allocation of the per-thread parent table left it half built (a panic, index out of
    bounds, on the thread's next sample), and the copy of the seeds was an abort."""
    code = f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({cap_mib << 20}, {cap_mib << 20}))
        import numpy as np
        from galrec import BipartiteGraph
        graph = BipartiteGraph.from_edges(np.arange(50) % 5, np.arange(50) % 10)
        refused = 0
        for n in range(1 << 22, 1 << 26, 1 << 19):
            try:
                graph.sample(np.zeros(n, dtype=np.uint32), fanouts=[1], num_threads=1)
            except (MemoryError, ValueError):
                refused += 1
            hops = graph.sample(np.array([0, 1], dtype=np.uint32), fanouts=[1, 1], num_threads=1)
            assert hops[0][0].tolist() == [0, 1, 2]
        print("refused", refused)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert 0 < int(done.stdout.split()[-1]) < 120  # both outcomes were reached
