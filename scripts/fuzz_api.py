"""Property fuzzing of the extension's Python API, each target in a memory-capped child process.

The targets are the calls that take user arrays and sizes: ``BipartiteGraph.from_edges``,
``sample``/``sample_batches`` and ``PromptAssembler`` (templates) with ``assemble``. Hypothesis
draws adversarial arguments (ids at the u32/i64 edges, negative counts, NaN times, fanouts of -1
everywhere, offsets that disagree with nodes, unbalanced template braces). Every call must either
return a result that keeps the documented contract, checked here, or raise one of the exceptions
the API documents (``ValueError``, ``TypeError``, ``IndexError``, ``MemoryError``), with a
message. Each target runs in a child whose address space is capped, so an abort
(``memory allocation of N bytes failed``), a segfault or a hang fails the run instead of taking
the caller down.

    python scripts/fuzz_api.py --seconds 600               # every target for 10 minutes each
    python scripts/fuzz_api.py --target sample --examples 100000 --seed 7
    python scripts/fuzz_api.py --examples 400 --seed 0     # CI's slice (tests/test_fuzz_api.py)

Each child prints one JSON line: target, examples run, results per outcome, seconds. A failing
example is printed by hypothesis (shrunk) with the seed to replay it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
from galrec.graph.prompts import PromptTemplates
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

#: What the API may raise for bad input; anything else (or a dead process) is a finding.
DOCUMENTED_ERRORS = (ValueError, TypeError, IndexError, MemoryError)
TARGETS = ("from_edges", "sample", "assemble")
#: Examples per hypothesis run; a target repeats runs with derived seeds until its budget ends.
EXAMPLES_PER_RUN = 500
#: A target: the strategy of one call's arguments and the body that makes and checks the call.
Fuzzer = tuple[st.SearchStrategy[dict], Callable[[dict], None]]

# Integers where id and size arithmetic changes width or sign.
_EDGE_INTS = [0, 1, 2, 255, 256, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1]
_ANY_INT = st.one_of(
    st.integers(0, 40), st.sampled_from(_EDGE_INTS), st.sampled_from([-1, -(2**31), -(2**63)])
)
_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float64"]


class Faults:
    """Which arguments of one call get an adversarial value: none (half of the calls), one
    (most of the rest) or every one (an eighth). Calls mostly get past validation, so their
    results are checked, and each refusal path is reached by itself."""

    def __init__(self, draw: st.DrawFn, names: list[str]) -> None:
        mode = draw(st.integers(0, 7))
        self.draw = draw
        self.everywhere = mode == 7
        self.faulty = {draw(st.sampled_from(names))} if 4 <= mode < 7 else set()
        self.names = names

    def pick(self, name: str, valid: st.SearchStrategy, adversarial: st.SearchStrategy):
        assert name in self.names, name
        if self.everywhere:
            return self.draw(st.one_of(valid, adversarial))
        return self.draw(adversarial if name in self.faulty else valid)


def id_lists(size: int, high: int = 40, dtypes: list[str] = _DTYPES):
    """(in-range ids as int64, ids at the edges of every width in any dtype), ``size`` each."""
    clean = st.lists(st.integers(0, high), min_size=size, max_size=size).map(
        lambda v: np.array(v, dtype=np.int64)
    )
    dirty = st.tuples(
        st.lists(_ANY_INT, min_size=size, max_size=size), st.sampled_from(dtypes)
    ).map(lambda pair: _array(*pair))
    return clean, dirty


def float_lists(valid: st.SearchStrategy, size: int):
    """(``size`` values of ``valid``, ``size`` values that may be NaN or infinite or anything)."""
    anything = st.one_of(valid, st.floats(allow_nan=True, allow_infinity=True))
    return (
        st.lists(valid, min_size=size, max_size=size).map(np.array),
        st.lists(anything, min_size=size, max_size=size).map(np.array),
    )


def _array(values: list[int], dtype: str) -> np.ndarray:
    """``values`` as ``dtype`` when every one fits, else as int64 (or object past int64)."""
    try:
        return np.array(values, dtype=dtype)
    except (OverflowError, ValueError):
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            return np.array(values, dtype=object)


class Outcomes:
    """Counts results by kind; documented errors by exception type."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def run(self, call: Callable[[], object], check: Callable[[object], None]) -> None:
        try:
            result = call()
        except DOCUMENTED_ERRORS as error:
            assert str(error), f"{type(error).__name__} without a message"
            self.counts[type(error).__name__] += 1
            return
        check(result)
        self.counts["ok"] += 1


# ---- from_edges ------------------------------------------------------------------------------


_EDGE_ARGUMENTS = ["users", "items", "length", "num_users", "num_items", "timestamps",
                   "weights"]  # fmt: skip


@st.composite
def edge_arguments(draw: st.DrawFn) -> dict:
    faults = Faults(draw, _EDGE_ARGUMENTS)
    n = draw(st.integers(0, 30))
    users = faults.pick("users", *id_lists(n))
    items = faults.pick("items", *id_lists(n))
    items = items[: faults.pick("length", st.just(n), st.integers(0, n))]
    arguments = {"users": users, "items": items, "dedupe": draw(st.booleans()),
                 "num_threads": draw(st.sampled_from([None, 1, 2]))}  # fmt: skip
    for key in ("num_users", "num_items"):
        if draw(st.booleans()):
            arguments[key] = faults.pick(key, st.integers(41, 60), _ANY_INT)
    if draw(st.booleans()):
        arguments["timestamps"] = faults.pick("timestamps", *float_lists(st.integers(0, 10**9), n))
    if draw(st.booleans()):
        arguments["weights"] = faults.pick("weights", *float_lists(st.floats(0.01, 100.0), n))
    return arguments


def check_graph(graph, users: np.ndarray, items: np.ndarray, dedupe: bool) -> None:
    """Counts cover every id, degrees add up, every input edge is stored."""
    pairs = {(int(u), int(i)) for u, i in zip(users.tolist(), items.tolist(), strict=True)}
    assert graph.num_users > max((u for u, _ in pairs), default=-1)
    assert graph.num_items > max((i for _, i in pairs), default=-1)
    assert graph.num_edges == (len(pairs) if dedupe else len(users))
    assert int(graph.user_degrees().sum()) == int(graph.item_degrees().sum()) == graph.num_edges
    for u, i in pairs:
        assert graph.has_edge(u, i)


def fuzz_from_edges(outcomes: Outcomes) -> Fuzzer:
    from galrec import BipartiteGraph

    def target(arguments: dict) -> None:
        users, items = arguments.pop("users"), arguments.pop("items")
        outcomes.run(
            lambda: BipartiteGraph.from_edges(users, items, **arguments),
            lambda graph: check_graph(graph, users, items, arguments["dedupe"]),
        )

    return edge_arguments(), target


# ---- sample / sample_batches -----------------------------------------------------------------


def fixed_graphs():
    """Graphs to sample from: timed, weighted with duplicate pairs, complete (fanout -1
    explodes there), and one without edges."""
    from galrec import BipartiteGraph

    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 30, 200), rng.integers(0, 20, 200)
    complete = np.indices((30, 30)).reshape(2, -1)
    empty = np.zeros(0, np.int64)
    return [
        BipartiteGraph.from_edges(users, items, timestamps=rng.integers(0, 99, 200)),
        BipartiteGraph.from_edges(users, items, weights=rng.random(200) + 0.1, dedupe=False),
        BipartiteGraph.from_edges(complete[0], complete[1]),
        BipartiteGraph.from_edges(empty, empty, num_users=3, num_items=2),
    ]


_SAMPLE_ARGUMENTS = ["seeds", "side", "fanouts", "strategy", "seed", "exclude"]


@st.composite
def sample_arguments(draw: st.DrawFn, num_graphs: int) -> dict:
    faults = Faults(draw, _SAMPLE_ARGUMENTS)
    edge_fanouts = st.lists(st.sampled_from([-2, -1, 0, 2**31, 2**40]), max_size=6)
    excluded = draw(st.integers(0, 10))
    return {
        "graph": draw(st.integers(0, num_graphs - 1)),
        "seeds": faults.pick("seeds", *id_lists(draw(st.integers(0, 12)), high=19)),
        "side": faults.pick("side", st.sampled_from(["user", "item"]), st.sampled_from(["", "x"])),
        "fanouts": faults.pick(
            "fanouts", st.lists(st.integers(-1, 6), min_size=1, max_size=5), edge_fanouts
        ),
        "strategy": faults.pick(
            "strategy", st.sampled_from(["uniform", "recent", "weighted"]), st.just("random")
        ),
        "seed": faults.pick("seed", st.integers(0, 2**64 - 1), st.sampled_from([-1, 2**64])),
        "epoch": draw(st.integers(0, 2**32)),
        "exclude": faults.pick(
            "exclude",
            st.one_of(st.none(), st.tuples(id_lists(excluded, 30)[0], id_lists(excluded, 30)[0])),
            st.tuples(*id_lists(excluded, 30)[1:], *id_lists(excluded + 1, 30)[1:]),
        ),
        "batches": draw(st.integers(0, 3)),
    }


def check_hops(graph, arguments: dict, seeds: np.ndarray, hops) -> None:
    """Offsets frame the nodes, fanouts hold, every child is a neighbour of its parent by an
    edge not excluded, and a hop that returns to the seeds' side never holds its root seed."""
    side, fanouts = arguments["side"], arguments["fanouts"]
    pairs = arguments["exclude"] or ([], [])
    excluded = {(int(u), int(i)) for u, i in zip(*pairs, strict=False)}
    assert len(hops) == len(fanouts)
    parents = [(int(s), int(s)) for s in seeds]  # (node, root)
    for h, ((offsets, nodes), fanout) in enumerate(zip(hops, fanouts, strict=True)):
        parent_side = side if h % 2 == 0 else ("item" if side == "user" else "user")
        assert offsets[0] == 0 and len(offsets) == len(parents) + 1
        assert np.all(np.diff(offsets) >= 0) and offsets[-1] == len(nodes)
        children = []
        for p, (node, root) in enumerate(parents):
            kids = nodes[offsets[p] : offsets[p + 1]].tolist()
            assert fanout == -1 or len(kids) <= fanout
            for kid in kids:
                edge = (node, kid) if parent_side == "user" else (kid, node)
                assert graph.has_edge(*edge) and edge not in excluded
                assert h % 2 == 0 or kid != root, f"hop {h + 1} holds its root seed {root}"
                children.append((kid, root))
        parents = children


def fuzz_sample(outcomes: Outcomes) -> Fuzzer:
    graphs = fixed_graphs()

    def target(arguments: dict) -> None:
        graph, seeds = graphs[arguments.pop("graph")], arguments.pop("seeds")
        batches = arguments.pop("batches")
        epoch = arguments.pop("epoch")
        if batches:
            outcomes.run(
                lambda: graph.sample_batches([seeds] * batches, epoch=epoch, **arguments),
                lambda results: [check_hops(graph, arguments, seeds, hops) for hops in results],
            )
        else:
            outcomes.run(
                lambda: graph.sample(seeds, epoch=epoch, **arguments),
                lambda hops: check_hops(graph, arguments, seeds, hops),
            )

    return sample_arguments(len(graphs)), target


# ---- PromptAssembler / assemble --------------------------------------------------------------

_TEMPLATE_PIECES = ["{node}", "{title}", "{neighbors}", "{neighbors2}", "{", "}", "{{", "}}",
                    "{other}", " has ", "é", "🎉", "", "\x00"]  # fmt: skip
_TEMPLATE_FIELDS = [f.name for f in fields(PromptTemplates)]


_ASSEMBLE_ARGUMENTS = ["templates", "max_length", "padding_side", "seeds", "offsets", "nodes",
                       "side", "hop"]  # fmt: skip


def custom_templates() -> st.SearchStrategy[PromptTemplates]:
    """The default templates with one replaced by random pieces (balanced braces or not)."""
    text = st.lists(st.sampled_from(_TEMPLATE_PIECES), max_size=5).map("".join)
    return st.tuples(st.sampled_from(_TEMPLATE_FIELDS), text).map(
        lambda field_text: replace(PromptTemplates(), **dict([field_text]))
    )


@st.composite
def corrupted(draw: st.DrawFn, array: np.ndarray) -> np.ndarray:
    """``array`` with one entry set to a value at the edge of some integer width."""
    if array.size == 0:
        return np.array([draw(_ANY_INT)], dtype=object).astype(np.int64, casting="unsafe")
    values = array.astype(np.int64).tolist()
    values[draw(st.integers(0, len(values) - 1))] = draw(_ANY_INT)
    return _array(values, str(array.dtype))


@st.composite
def assemble_arguments(draw: st.DrawFn, graph) -> dict:
    """A real sample of ``graph`` (the store's users and items), or one value corrupted."""
    faults = Faults(draw, _ASSEMBLE_ARGUMENTS)
    side = faults.pick("side", st.sampled_from(["user", "item"]), st.just("both"))
    seeds = faults.pick("seeds", *id_lists(draw(st.integers(0, 6)), high=4))
    hop_count = draw(st.integers(0, 2))
    try:
        hops = graph.sample(seeds, side=side, fanouts=[3] * hop_count, seed=draw(st.integers(0, 9)))
    except DOCUMENTED_ERRORS:
        hops = [(np.zeros(1, np.int64), np.zeros(0, np.uint32))] * hop_count
    return {
        "templates": faults.pick("templates", st.just(PromptTemplates()), custom_templates()),
        "max_length": faults.pick(
            "max_length", st.sampled_from([8, 16, 64, 256]), st.sampled_from([-1, 0, 1, 3, 2**40])
        ),
        "padding_side": faults.pick(
            "padding_side", st.sampled_from(["right", "left"]), st.just("middle")
        ),
        "pad_to_max_length": draw(st.booleans()),
        "seeds": seeds,
        "hops": [
            (
                faults.pick("offsets", st.just(offsets), corrupted(offsets)),
                faults.pick("nodes", st.just(nodes), corrupted(nodes)),
            )
            for offsets, nodes in hops
        ],
        "side": side,
        "hop": faults.pick("hop", st.integers(0, hop_count), st.sampled_from([-1, 3, 2**40])),
    }


def check_batch(batch, max_length: int, pad_to_max_length: bool) -> None:
    """Shapes agree, no prompt exceeds ``max_length``, the mask is 0/1, pool inside the mask."""
    rows, width = batch.input_ids.shape
    assert batch.attention_mask.shape == batch.node_ids.shape == (rows, width)
    assert batch.pool_index.shape == (rows,)
    assert width <= max_length and (not pad_to_max_length or rows == 0 or width == max_length)
    assert set(np.unique(batch.attention_mask).tolist()) <= {0, 1}
    for row, at in enumerate(batch.pool_index.tolist()):
        assert 0 <= at < width and batch.attention_mask[row, at] == 1


def fuzz_assemble(outcomes: Outcomes) -> Fuzzer:
    from galrec import BipartiteGraph
    from galrec.graph.prompts import PromptAssembler, build_text_store, load_tokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from prompt_fixtures import TRICKY_TITLES, train_wordpiece

    tokenizer = load_tokenizer(train_wordpiece(Path(tempfile.mkdtemp()) / "tokenizer.json"))
    store = build_text_store(tokenizer, TRICKY_TITLES, num_users=5)
    rng = np.random.default_rng(0)
    graph = BipartiteGraph.from_edges(
        rng.integers(0, 5, 40), rng.integers(0, len(TRICKY_TITLES), 40), num_users=5,
        num_items=len(TRICKY_TITLES),
    )  # fmt: skip

    def target(arguments: dict) -> None:
        max_length, pad = arguments["max_length"], arguments["pad_to_max_length"]

        def call():
            assembler = PromptAssembler(
                tokenizer, store, arguments["templates"],
                max_length=max_length, padding_side=arguments["padding_side"],
                pad_to_max_length=pad, threads=1,
            )  # fmt: skip
            return assembler.assemble(
                arguments["seeds"], arguments["hops"], side=arguments["side"], hop=arguments["hop"]
            )

        outcomes.run(call, lambda batch: check_batch(batch, max_length, pad))

    return assemble_arguments(graph), target


FUZZERS = {"from_edges": fuzz_from_edges, "sample": fuzz_sample, "assemble": fuzz_assemble}


def run_target(name: str, examples: int, seconds: float, base_seed: int) -> dict:
    """Hypothesis runs of ``EXAMPLES_PER_RUN`` with seeds ``base_seed, base_seed + 1, ...``
    until ``examples`` are done or ``seconds`` have passed (whichever comes first)."""
    outcomes = Outcomes()
    arguments, body = FUZZERS[name](outcomes)
    started = time.monotonic()
    run = 0
    while sum(outcomes.counts.values()) < examples and time.monotonic() - started < seconds:
        batch = min(EXAMPLES_PER_RUN, examples - sum(outcomes.counts.values()))
        test = settings(
            max_examples=batch, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )(seed(base_seed + run)(given(arguments)(body)))  # fmt: skip
        test()
        run += 1
    return {
        "target": name,
        "examples": sum(outcomes.counts.values()),
        "outcomes": dict(outcomes.counts),
        "seconds": round(time.monotonic() - started, 1),
        "seed": base_seed,
    }


def _cap_memory(gigabytes: float) -> Callable[[], None]:
    limit = int(gigabytes * 2**30)
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--examples", type=int, default=10**9, help="examples per target")
    parser.add_argument("--seconds", type=float, default=float("inf"), help="time per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-gb", type=float, default=4.0, help="address-space cap")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.examples == 10**9 and args.seconds == float("inf"):
        parser.error("give --examples, --seconds or both")
    if args.child:
        print(json.dumps(run_target(args.target, args.examples, args.seconds, args.seed)))
        return 0
    failed = []
    for name in TARGETS if args.target == "all" else (args.target,):
        command = [sys.executable, __file__, "--child", "--target", name, "--seed", str(args.seed),
                   "--examples", str(args.examples), "--seconds", str(args.seconds)]  # fmt: skip
        # A hang shows as a timeout: twice the budget plus start-up.
        timeout = None if args.seconds == float("inf") else 2 * args.seconds + 120
        try:
            done = subprocess.run(command, preexec_fn=_cap_memory(args.memory_gb), timeout=timeout)
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        if code != 0:
            print(f"{name}: child ended with {code} (abort, crash, hang or failed property)")
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
