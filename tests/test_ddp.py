"""Two CPU processes with gloo: DDP keeps the ranks' weights, momentum and queues identical
while each rank samples its own seeds; only rank 0 writes the run directory."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from train_helpers import tiny_config

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, out_dir: str, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
    )  # fmt: skip
    import torch.distributed as dist
    from galrec.training.trainer import Trainer

    cfg = tiny_config(
        Path(out_dir) / "run", "gal_rec", "train.steps=3", "train.eval_every=0",
        "model.cf_features=none", "model.score_prior=none", "train.device=cpu",
    )  # fmt: skip
    trainer = Trainer(cfg)
    initial = {k: v.clone() for k, v in trainer.model.trainable_state().items()}
    first_users = trainer.source(0).ids.users
    trainer.fit()
    state = {f"w/{k}": v.contiguous() for k, v in trainer.model.trainable_state().items()}
    state.update({f"init/{k}": v.contiguous() for k, v in initial.items()})
    state.update({f"m/{k}": v.contiguous() for k, v in trainer.momentum.state_dict().items()})
    state["queue/user"] = trainer.queues.user.contents()[0].contiguous()
    state["queue/item_ids"] = trainer.queues.item.contents()[1].contiguous()
    state["first_users"] = first_users.contiguous()
    save_file(state, str(Path(out_dir) / f"rank{rank}.safetensors"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_stay_in_sync(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path), _free_port()), nprocs=WORLD, join=True)
    r0 = load_file(str(tmp_path / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert r0.keys() == r1.keys()
    # each rank sampled its own seeds ...
    assert not torch.equal(r0["first_users"], r1["first_users"])
    # ... yet weights, momentum shadow and queues are identical, and training moved the weights
    for key in r0:
        if key != "first_users":
            assert torch.allclose(r0[key], r1[key], atol=1e-6), key
    moved = [k for k in r0 if k.startswith("w/") and not torch.equal(r0[k], r0["init/" + k[2:]])]
    assert moved
    # queues hold both ranks' keys: 3 steps x 2 ranks x the contrastive rows x 2 user views
    assert r0["queue/user"].shape[0] == 3 * WORLD * 4 * 2
    # only rank 0 wrote the run directory (one checkpoint, one metrics file)
    run = tmp_path / "run"
    assert (run / "last" / "state.json").is_file() and (run / "metrics.jsonl").is_file()
