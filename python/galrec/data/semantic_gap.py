"""The semantic-gap dataset: galrec's generated default, where text and collaboration disagree.

Users belong to communities. Items come in twin groups whose titles share every word but a tiny
variation, and each twin of a group is consumed (almost) only by its own community; ordinary
items with skewed popularity are shared by everyone. A text-only model cannot tell twins apart;
the interaction graph can. The ground truth (user communities, item communities, twin groups)
is kept in the prepared dataset for diagnostics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from galrec.data.preparation import PrepareOptions, json_ready, prepare
from galrec.data.prepared import GroundTruth, PreparedDataset
from galrec.data.raw import InteractionBuilder, ItemRecord
from galrec.data.splits import SplitOptions
from galrec.data.text import TextOptions

ADJECTIVES = (
    "Classic", "Premium", "Compact", "Deluxe", "Portable", "Vintage", "Modern", "Essential",
    "Rugged", "Slim", "Smart", "Eco", "Heavy-Duty", "Lightweight", "Professional", "Cozy",
)  # fmt: skip
MATERIALS = (
    "Steel", "Bamboo", "Ceramic", "Cotton", "Leather", "Glass", "Oak", "Silicone", "Copper",
    "Aluminum", "Wool", "Linen", "Marble", "Canvas",
)  # fmt: skip
PRODUCTS = (
    "Water Bottle", "Notebook", "Desk Lamp", "Backpack", "Coffee Mug", "Phone Stand",
    "Cutting Board", "Yoga Mat", "Headphones", "Wall Clock", "Throw Blanket", "Pen Set",
    "Plant Pot", "Speaker", "Travel Pillow", "Chef Knife", "Tea Kettle", "Photo Frame",
    "Candle Holder", "Wallet", "Lunch Box", "Desk Organizer",
)  # fmt: skip
USES = ("for Home", "for Office", "for Travel", "for Kids", "for Outdoors", "for Everyday Use")
VARIATIONS = ("", "v2", "Plus", "II", "Black", "White", "2-Pack", "Large", "Mini")
"""Twin variations are drawn at random, independently of the community, so no word of a
title tells which community consumes it."""


@dataclass(frozen=True)
class SemanticGapConfig:
    """Size and shape of the generated world; the defaults train on 2 CPU cores in minutes."""

    num_communities: int = 4
    num_users: int = 400
    num_twin_groups: int = 60
    twins_per_group: int = 2
    num_ordinary_items: int = 100
    min_interactions: int = 15
    max_interactions: int = 30
    twin_share: float = 0.6
    """Share of a user's interactions with the twins of their own community."""
    noise: float = 0.05
    """Share with twins of other communities."""
    popularity_exponent: float = 1.0
    """Zipf exponent of item popularity inside each pool of items."""
    start_time: int = 1_600_000_000
    time_span_days: int = 365
    seed: int = 0
    split: SplitOptions = field(default_factory=SplitOptions)
    name: str = "semantic-gap"

    def __post_init__(self) -> None:
        if isinstance(self.split, dict):  # from a YAML/JSON config
            object.__setattr__(self, "split", SplitOptions(**self.split))
        problems = []
        if self.num_communities < 2:
            problems.append("num_communities must be at least 2")
        if not 2 <= self.twins_per_group <= self.num_communities:
            problems.append("twins_per_group must be between 2 and num_communities")
        if self.num_users < self.num_communities:
            problems.append("num_users must be at least num_communities")
        if self.num_twin_groups < 1 or self.num_ordinary_items < 0:
            problems.append("num_twin_groups must be >= 1 and num_ordinary_items >= 0")
        if not 3 <= self.min_interactions <= self.max_interactions:
            problems.append("need 3 <= min_interactions <= max_interactions")
        total_items = self.num_twin_groups * self.twins_per_group + self.num_ordinary_items
        if self.max_interactions > total_items:
            problems.append(f"max_interactions exceeds the {total_items} items")
        if not (self.twin_share >= 0 and self.noise >= 0 and self.twin_share + self.noise <= 1):
            problems.append("twin_share and noise must be >= 0 with a sum <= 1")
        if self.num_twin_groups > len(ADJECTIVES) * len(MATERIALS) * len(PRODUCTS) // 2:
            problems.append("too many twin groups for the title vocabulary")
        if problems:
            raise ValueError("invalid SemanticGapConfig: " + "; ".join(problems))


def _titles(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct base titles: adjective, material, product and use."""
    space = len(ADJECTIVES) * len(MATERIALS) * len(PRODUCTS)
    titles = []
    for code in rng.choice(space, size=count, replace=False):
        adjective, rest = divmod(int(code), len(MATERIALS) * len(PRODUCTS))
        material, product = divmod(rest, len(PRODUCTS))
        use = USES[rng.integers(len(USES))]
        titles.append(f"{ADJECTIVES[adjective]} {MATERIALS[material]} {PRODUCTS[product]} {use}")
    return titles


def _popularity(rng: np.random.Generator, size: int, exponent: float) -> np.ndarray:
    """Zipf-like probabilities over a pool, with the popular ranks placed at random."""
    weights = 1.0 / np.arange(1, size + 1) ** exponent
    weights = weights[rng.permutation(size)]
    return weights / weights.sum()


def generate_semantic_gap(config: SemanticGapConfig | None = None) -> PreparedDataset:
    """Generate the dataset deterministically from ``config.seed`` and prepare it."""
    config = config or SemanticGapConfig()
    rng = np.random.default_rng(config.seed)
    communities = config.num_communities
    groups, per_group = config.num_twin_groups, config.twins_per_group

    base_titles = _titles(rng, groups + config.num_ordinary_items)
    item_titles: list[str] = []
    item_community: list[int] = []
    twin_raw_groups: list[list[int]] = []
    for group in range(groups):
        offsets = np.sort(rng.choice(np.arange(1, communities), per_group - 1, replace=False))
        owners = [(group + int(offset)) % communities for offset in (0, *offsets)]
        variations = rng.choice(len(VARIATIONS), per_group, replace=False)
        members = []
        for owner, variation in zip(owners, variations, strict=True):
            members.append(len(item_titles))
            item_titles.append(f"{base_titles[group]} {VARIATIONS[variation]}".strip())
            item_community.append(owner)
        twin_raw_groups.append(members)
    ordinary = np.arange(len(item_titles), len(item_titles) + config.num_ordinary_items)
    item_titles.extend(base_titles[groups:])
    item_community.extend([-1] * config.num_ordinary_items)
    owner_of = np.asarray(item_community)

    # Item raw ids are shuffled so that nothing about an id reveals its group or community.
    raw_item_ids = [f"item-{index:05d}" for index in rng.permutation(len(item_titles))]
    user_community = rng.permutation(np.arange(config.num_users) % communities)

    pools = [np.flatnonzero(owner_of == community) for community in range(communities)]
    own_weights = [_popularity(rng, len(pool), config.popularity_exponent) for pool in pools]
    ordinary_weights = _popularity(rng, len(ordinary), config.popularity_exponent)
    span = config.time_span_days * 86_400

    users: list[str] = []
    items: list[str] = []
    times: list[np.ndarray] = []
    for user, community in enumerate(user_community):
        count = int(rng.integers(config.min_interactions, config.max_interactions + 1))
        kinds = rng.choice(
            3, size=count, p=[config.twin_share, config.noise, 1 - config.twin_share - config.noise]
        )
        own = min(int((kinds == 0).sum()), len(pools[community]))
        others = np.flatnonzero((owner_of >= 0) & (owner_of != community))
        noise = min(int((kinds == 1).sum()), len(others))
        rest = min(count - own - noise, len(ordinary))
        chosen = np.concatenate(
            [
                rng.choice(pools[community], own, replace=False, p=own_weights[community]),
                rng.choice(others, noise, replace=False),
                rng.choice(ordinary, rest, replace=False, p=ordinary_weights),
            ]
        ).astype(np.int64)
        rng.shuffle(chosen)
        start = config.start_time + int(rng.integers(0, span // 2))
        gaps = rng.exponential(span / 2 / len(chosen), size=len(chosen))
        times.append(start + np.cumsum(gaps).astype(np.int64))
        users.extend([f"user-{user:05d}"] * len(chosen))
        items.extend(raw_item_ids[item] for item in chosen)

    builder = InteractionBuilder()
    builder.add(users, items, np.concatenate(times), None)
    records = {
        raw_item_ids[item]: ItemRecord(title=title) for item, title in enumerate(item_titles)
    }
    options = PrepareOptions(user_core=0, item_core=0, split=config.split, text=TextOptions())
    dataset = prepare(builder.build(config.name, [], records), options)

    index_of_raw = {raw: index for index, raw in enumerate(dataset.item_ids)}
    generated_index = np.array([index_of_raw.get(raw, -1) for raw in raw_item_ids])
    item_communities = np.full(dataset.num_items, -1, dtype=np.int64)
    present = generated_index >= 0
    item_communities[generated_index[present]] = owner_of[present]
    twin_groups = np.array(
        [[generated_index[item] for item in members] for members in twin_raw_groups],
        dtype=np.int64,
    )
    twin_groups = twin_groups[(twin_groups >= 0).all(axis=1)]
    user_index = [int(raw.removeprefix("user-")) for raw in dataset.user_ids]
    dataset.ground_truth = GroundTruth(
        user_communities=user_community[user_index].astype(np.int64),
        item_communities=item_communities,
        twin_groups=twin_groups,
    )
    dataset.info["generator"] = json_ready(asdict(config))
    return dataset
