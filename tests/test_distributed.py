"""All-reduce of the statistics and loader fits across two torch.distributed processes (gloo, CPU)."""

import os
import socket

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from skicr.metrics import GroupedViewStatistics, accumulate

from _synthetic import assert_same_fit


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


@pytest.mark.slow  # two processes that import torch and join a gloo group
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_process_all_reduce_equals_single_process(tmp_path):
    rng = np.random.default_rng(0)
    views = 10.0 + rng.normal(size=(41, 3, 5)) + rng.normal(size=(41, 1, 5))
    mp.spawn(_worker, args=(2, _free_port(), views, str(tmp_path)), nprocs=2, join=True)
    single = accumulate(views)
    for rank in range(2):
        # the moments assert_same_statistics compares, saved by each rank
        np.testing.assert_allclose(np.load(tmp_path / f"cov_s_{rank}.npy"), single.covariance_means(), rtol=1e-10)
        np.testing.assert_allclose(np.load(tmp_path / f"cov_xi_{rank}.npy"), single.covariance_residual(), rtol=1e-10)
        np.testing.assert_allclose(np.load(tmp_path / f"fourth_{rank}.npy"), single.centred_mean_moments()[1], rtol=1e-10)


def test_all_reduce_without_process_group_is_a_clear_error():
    with pytest.raises(RuntimeError, match="not initialised"):
        GroupedViewStatistics(n_features=2).all_reduce()


# ------------------------------------------------------------------ loader fits
N_LOADER_IMAGES = 41  # not divisible by 2: the DistributedSampler pads rank 1 with a duplicate
LOADER_FITTED = ["covariance_s_", "covariance_xi_", "eigenvalues_", "icr_", "mean_"]


def _loader_images():
    import torch

    return torch.rand(N_LOADER_IMAGES, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def _loader_extractor(random_state=0):
    from skicr.extraction import FeatureExtractor
    from skicr.extraction._testing import TinyEDMNet

    return FeatureExtractor(TinyEDMNet(seed=0), layer="mid", sigma=0.3, n_views=3,
                            random_state=random_state, batch_size=4)


def _loader_worker(rank, world_size, port, out_dir):
    import pickle

    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    from skicr.extraction import fit_from_loader

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        dataset = TensorDataset(_loader_images(), torch.arange(N_LOADER_IMAGES))
        sampler = DistributedSampler(dataset, shuffle=True, seed=5)  # rank and size from the group
        loader = DataLoader(dataset, batch_size=6, sampler=sampler)
        decomposer = fit_from_loader(_loader_extractor(), loader, checkpoint=os.path.join(out_dir, "ckpt.pt"))
        with open(os.path.join(out_dir, f"decomposer_{rank}.pkl"), "wb") as handle:
            pickle.dump(decomposer, handle)
        # an unseeded extractor: rank 0's seed is broadcast, so the ranks draw the same views
        fit_from_loader(_loader_extractor(random_state=None), loader,
                        checkpoint=os.path.join(out_dir, "unseeded.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes that import torch and join a gloo group
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_process_loader_fit_equals_single_process(tmp_path):
    import pickle

    import torch

    from skicr import InvariantResidualDecomposer

    mp.spawn(_loader_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = _loader_images()
        expected = InvariantResidualDecomposer().fit(_loader_extractor().fit(images).transform_views(images))
    finally:
        torch.set_num_threads(threads)
    for rank in range(2):
        with open(tmp_path / f"decomposer_{rank}.pkl", "rb") as handle:
            fitted = pickle.load(handle)
        assert fitted.n_images_seen_ == N_LOADER_IMAGES  # the padding duplicate was dropped
        assert_same_fit(fitted, expected, rtol=1e-10, names=LOADER_FITTED)
        # each rank checkpoints its own shard
        shard = torch.load(tmp_path / f"ckpt.rank{rank}.pt", weights_only=True)
        assert shard["complete"] and shard["statistics"]["n_images"] == (21 if rank == 0 else 20)
    seeds = {torch.load(tmp_path / f"unseeded.rank{rank}.pt", weights_only=True)["base_seed"] for rank in range(2)}
    assert len(seeds) == 1
