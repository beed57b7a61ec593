"""How well a model separates semantic-gap twins: items with near-identical titles that different
user communities consume.

A model that only reads text sees twins as one item; a model that learned collaborative semantics
keeps them apart. With the generator's ground truth (each user's community, each item's owning
community, the twin groups) we measure:

- ``twin_cosine``: mean cosine similarity of the representations of twins (lower = better
  separated), next to ``random_cosine`` over random pairs of twin items from different groups;
- ``wrong_twin_rate@K``: the share of users whose top-K (training items masked) contains a
  "wrong twin", a twin owned by another community whose sibling is owned by the user's own;
- ``right_twin_rate@K``: the same for twins owned by the user's own community;
- ``twin_accuracy``: for each held-out interaction with a twin, how often the model scores the
  held-out twin above each of its siblings (0.5 is chance, ties count half).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from galrec.evaluation.evaluate import Scorer, SplitDataset, resolve_device, split_sets, top_k


@dataclass(frozen=True)
class TwinDiagnosis:
    k: int
    num_users: int
    num_groups: int
    wrong_twin_rate: float
    right_twin_rate: float
    twin_accuracy: float
    num_twin_targets: int
    twin_cosine: float | None = None
    random_cosine: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lines = [
            f"twin groups: {self.num_groups}; users: {self.num_users}",
            f"wrong_twin_rate@{self.k}: {self.wrong_twin_rate:.4f}  "
            "(share of users whose top-K holds another community's twin; lower is better)",
            f"right_twin_rate@{self.k}: {self.right_twin_rate:.4f}  "
            "(share whose top-K holds their own community's twin)",
            f"twin_accuracy: {self.twin_accuracy:.4f} over {self.num_twin_targets} held-out twins "
            "(held-out twin scored above its siblings; 0.5 = chance)",
        ]
        if self.twin_cosine is not None:
            lines.append(
                f"twin cosine: {self.twin_cosine:.4f} vs random twin pairs "
                f"{self.random_cosine:.4f} "
                "(lower twin cosine = better separated)"
            )
        else:
            lines.append("twin cosine: n/a (the model exposes no item representations)")
        return "\n".join(lines)


def twin_cosines(
    item_emb: torch.Tensor, twin_groups: np.ndarray, seed: int = 0
) -> tuple[float, float]:
    """(mean cosine within twin groups, mean cosine of random twins from different groups)."""
    z = F.normalize(item_emb.detach().float().cpu(), dim=1)
    groups = torch.as_tensor(twin_groups, dtype=torch.int64)
    members = z[groups]  # [G, P, D]
    similarity = members @ members.transpose(1, 2)  # [G, P, P]
    size = groups.shape[1]
    off_diagonal = ~torch.eye(size, dtype=torch.bool)
    within = float(similarity[:, off_diagonal].mean())
    rng = np.random.default_rng(seed)
    flat = groups.flatten().numpy()
    group_of = np.repeat(np.arange(len(groups)), size)
    a, b = rng.integers(len(flat), size=(2, 20 * len(flat)))
    keep = group_of[a] != group_of[b]
    left, right = z[flat[a[keep]]], z[flat[b[keep]]]
    return within, float((left * right).sum(1).mean())


def twin_group_index(twin_groups: np.ndarray, num_items: int) -> np.ndarray:
    """Each item's row in ``twin_groups`` ([groups, twins] item ids), -1 for items without a
    twin."""
    group_of = np.full(num_items, -1, dtype=np.int64)
    for index, members in enumerate(twin_groups):
        group_of[members] = index
    return group_of


def sibling_outcomes(
    scores: torch.Tensor, items: torch.Tensor, siblings: torch.Tensor
) -> torch.Tensor:
    """One twin decision per (held-out item, sibling) pair: 1 where row ``r`` scores
    ``items[r]`` above the sibling, 0.5 on a tie, 0 below. ``scores`` [n, num_items];
    ``siblings`` [n, twins] is each item's twin group, the item itself included (skipped)."""
    own = scores.gather(1, items[:, None])
    other = scores.gather(1, siblings)
    outcome = (own > other).float() + 0.5 * (own == other).float()
    return outcome[siblings != items[:, None]]


def diagnose_twins(
    scorer: Scorer,
    data: SplitDataset,
    user_communities: np.ndarray,
    item_communities: np.ndarray,
    twin_groups: np.ndarray,
    *,
    k: int = 10,
    split: str = "test",
    item_embeddings: torch.Tensor | None = None,
    device: str | torch.device | None = None,
) -> TwinDiagnosis:
    """Twin separation of ``scorer`` on ``data`` given the generator's ground truth."""
    twin_groups = np.asarray(twin_groups, dtype=np.int64)
    if twin_groups.ndim != 2 or len(twin_groups) == 0:
        raise ValueError("twin_groups must be a non-empty [groups, twins_per_group] array")
    truth, exclude = split_sets(data, split)
    dev = resolve_device(device)
    users = truth.users_with_items()
    top = top_k(scorer, users, exclude, k, device=dev)[0]

    # For each community c: items that are twins of a c-owned item but owned elsewhere.
    num_communities = int(max(user_communities.max(), item_communities.max())) + 1
    wrong = np.zeros((num_communities, data.num_items + 1), dtype=bool)  # last column: padding
    right = np.zeros_like(wrong)
    for group in twin_groups:
        owners = item_communities[group]
        for owner in np.unique(owners[owners >= 0]):
            right[owner, group[owners == owner]] = True
            wrong[owner, group[owners != owner]] = True
    community = user_communities[users]
    padded = np.where(top >= 0, top, data.num_items)
    wrong_rate = float(wrong[community[:, None], padded].any(1).mean())
    right_rate = float(right[community[:, None], padded].any(1).mean())

    # Held-out twins against their siblings.
    group_of = twin_group_index(twin_groups, data.num_items)
    held_out = getattr(data, split)
    has_twin = group_of[np.asarray(held_out.items)] >= 0
    target_users = np.asarray(held_out.users)[has_twin]
    target_items = np.asarray(held_out.items)[has_twin]
    wins = []
    with torch.no_grad():
        for start in range(0, len(target_users), 1024):
            u = torch.as_tensor(target_users[start : start + 1024], device=dev)
            items = torch.as_tensor(target_items[start : start + 1024], device=dev)
            siblings = torch.as_tensor(twin_groups[group_of[items.cpu().numpy()]], device=dev)
            scores = scorer.score_users(u).to(dev, torch.float32)
            wins.append(sibling_outcomes(scores, items, siblings).cpu())
    accuracy = float(torch.cat(wins).mean()) if wins else float("nan")

    within = random = None
    if item_embeddings is not None:
        within, random = twin_cosines(item_embeddings, twin_groups)
    return TwinDiagnosis(
        k=k,
        num_users=len(users),
        num_groups=len(twin_groups),
        wrong_twin_rate=wrong_rate,
        right_twin_rate=right_rate,
        twin_accuracy=accuracy,
        num_twin_targets=len(target_users),
        twin_cosine=within,
        random_cosine=random,
    )
