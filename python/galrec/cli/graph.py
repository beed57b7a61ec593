"""``galrec graph``: build a power-law graph, save and reopen it, print sampled
neighbourhoods and the sampler's throughput (``galrec graph demo``). The edges come from
:mod:`galrec.graph.generator`; the graph itself lives in Rust
(:class:`galrec.BipartiteGraph`).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import TYPE_CHECKING

import click
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from galrec import BipartiteGraph

__all__ = ["graph"]


def _parse_fanouts(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        fanouts = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    return fanouts


def _subtree(
    hops: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]], row: int
) -> list[npt.NDArray[np.uint32]]:
    """The nodes each hop holds below seed ``row``: children of consecutive parents are
    consecutive, so every hop's share is one slice."""
    low, high = row, row + 1
    shares = []
    for offsets, nodes in hops:
        low, high = int(offsets[low]), int(offsets[high])
        shares.append(nodes[low:high])
    return shares


def _print_throughput(g: BipartiteGraph, fanouts: tuple[int, ...], seed: int) -> None:
    """Sampling throughput of 20 batches of 1024 seeds: a ``sample`` call per batch on one
    thread, and ``sample_batches`` on one thread and on every core. The modes take their
    rounds in turn (medians of five) so that drift on a shared machine hits them alike."""
    batches = list(np.random.default_rng(seed).integers(0, g.num_users, (20, 1024)))
    epochs = list(range(len(batches)))
    cores = os.cpu_count() or 1
    modes = [("sample, a call per batch", 1)] + [
        ("sample_batches", threads) for threads in sorted({1, cores})
    ]

    def run(mode: str, threads: int) -> float:
        started = time.perf_counter()
        if mode == "sample_batches":
            results = g.sample_batches(
                batches, fanouts=fanouts, epoch=epochs, seed=seed, num_threads=threads
            )
        else:
            results = [
                g.sample(b, fanouts=fanouts, epoch=e, seed=seed, num_threads=threads)
                for e, b in enumerate(batches)
            ]
        sampled = sum(nodes.size for hops in results for _, nodes in hops)
        return sampled / (time.perf_counter() - started) / 1e6

    for mode in modes:  # warm-up: page in the graph, start the thread pools
        run(*mode)
    rates: dict[tuple[str, int], list[float]] = {mode: [] for mode in modes}
    for _ in range(5):
        for mode in modes:
            rates[mode].append(run(*mode))
    click.echo(
        f"throughput, {len(batches)} batches of 1024 seeds, fanouts {fanouts}, "
        "median of 5 rounds taken in turn:"
    )
    click.echo(f"{'mode':<26} {'threads':>7} {'M sampled edges/s':>18}")
    for (name, threads), values in rates.items():
        click.echo(f"{name:<26} {threads:>7} {statistics.median(values):>18.1f}")


@click.group("graph")
def graph() -> None:
    """Build, inspect and sample bipartite interaction graphs."""


@graph.command("demo")
@click.option("--users", "num_users", default=20_000, show_default=True, help="Number of users.")
@click.option("--items", "num_items", default=10_000, show_default=True, help="Number of items.")
@click.option("--edges", "num_edges", default=1_000_000, show_default=True, help="Distinct edges.")
@click.option("--zipf", "zipf_exponent", default=1.0, show_default=True, help="Item Zipf exponent.")
@click.option(
    "--fanouts", default="10,10", show_default=True, callback=_parse_fanouts, help="Per hop."
)
@click.option("--seeds", "num_seeds", default=5, show_default=True, help="Seed users to show.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
def demo(
    num_users: int,
    num_items: int,
    num_edges: int,
    zipf_exponent: float,
    fanouts: tuple[int, ...],
    num_seeds: int,
    seed: int,
) -> None:
    """Build a power-law graph, save and reopen it, and print sampled neighbourhoods."""
    import tempfile
    from pathlib import Path

    from galrec import BipartiteGraph
    from galrec.graph.generator import generate_power_law

    users, items = generate_power_law(
        num_users, num_items, num_edges, zipf_exponent=zipf_exponent, seed=seed
    )
    started = time.perf_counter()
    built = BipartiteGraph.from_edges(users, items, num_users=num_users, num_items=num_items)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.galrec"
        built.save(path)
        started = time.perf_counter()
        g = BipartiteGraph.open(path)
        open_s = time.perf_counter() - started
        click.echo(f"{g!r}")
        click.echo(
            f"CSR build (both directions): {build_s * 1e3:.1f} ms; open: {open_s * 1e3:.2f} ms"
        )

        shown = np.arange(min(num_seeds, num_users))
        hops = g.sample(shown, fanouts=fanouts, seed=seed)
        header = f"{'user':>6} {'degree':>6}  " + "  ".join(
            f"hop {h + 1} ({'items' if h % 2 == 0 else 'users'})" for h in range(len(hops))
        )
        click.echo(header)
        degrees = g.user_degrees()
        for row, user in enumerate(shown):
            cells = []
            for nodes in _subtree(hops, row):
                more = " ..." if nodes.size > 6 else ""
                cells.append(f"{nodes.size:>3}: " + " ".join(map(str, nodes[:6])) + more)
            click.echo(f"{user:>6} {degrees[user]:>6}  " + "  ".join(cells))

        _print_throughput(g, fanouts, seed)
