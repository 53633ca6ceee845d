"""All-reduce of the statistics across two torch.distributed processes (gloo, CPU)."""

import os
import socket

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from skicr.metrics import GroupedViewStatistics, accumulate


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank, world_size, port, views, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        shard = views[rank::world_size]  # as DistributedSampler would split
        stats = GroupedViewStatistics(n_features=views.shape[2]).update(shard)
        stats.all_reduce()
        np.save(os.path.join(out_dir, f"cov_s_{rank}.npy"), stats.covariance_means())
        np.save(os.path.join(out_dir, f"cov_xi_{rank}.npy"), stats.covariance_residual())
        np.save(os.path.join(out_dir, f"fourth_{rank}.npy"), np.array(stats.centred_mean_moments()[1]))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_process_all_reduce_equals_single_process(tmp_path):
    rng = np.random.default_rng(0)
    views = 10.0 + rng.normal(size=(41, 3, 5)) + rng.normal(size=(41, 1, 5))
    mp.spawn(_worker, args=(2, _free_port(), views, str(tmp_path)), nprocs=2, join=True)
    single = accumulate(views)
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"cov_s_{rank}.npy"), single.covariance_means(), rtol=1e-10)
        np.testing.assert_allclose(np.load(tmp_path / f"cov_xi_{rank}.npy"), single.covariance_residual(), rtol=1e-10)
        np.testing.assert_allclose(np.load(tmp_path / f"fourth_{rank}.npy"), single.centred_mean_moments()[1], rtol=1e-10)


def test_all_reduce_without_process_group_is_a_clear_error():
    with pytest.raises(RuntimeError, match="not initialised"):
        GroupedViewStatistics(n_features=2).all_reduce()
