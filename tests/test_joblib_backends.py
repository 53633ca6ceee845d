"""Searches (sigma, layer x sigma) run their grid through joblib: a dask cluster gives the same result."""

import numpy as np
import pytest
from joblib import parallel_config

from skicr import FeatureExtractor, NoiseLevelSelector
from skicr.extraction._testing import tiny_unet2d

distributed = pytest.importorskip("distributed", reason="needs the dask extra (dask[distributed])")



def _selector(layers=None):
    extractor = FeatureExtractor(tiny_unet2d(seed=1), n_views=3, batch_size=8)
    return NoiseLevelSelector(
        extractor, sigmas=[0.05, 0.3, 1.5], layers=layers, cv=3, refit=False,
        random_state=0, n_jobs=-1,
    )


def test_dask_backend_gives_the_default_backend_result():
    images = np.random.default_rng(0).random((24, 3, 16, 16), dtype=np.float32)
    layers = ["down_blocks.0", "mid_block"]
    references = [_selector().fit(images), _selector(layers).fit(images)]

    # worker processes, as on a real cluster: the extractor and its network travel by pickle
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as task_stream, parallel_config(backend="dask"):
            on_dask = [_selector().fit(images), _selector(layers).fit(images)]
        workers = {task["worker"] for task in task_stream.data}

    assert len(task_stream.data) >= 6  # one task per sigma and search at least ran on the cluster
    assert workers and all(worker.startswith("tcp://") for worker in workers)
    for dask_search, reference in zip(on_dask, references):
        assert dask_search.best_sigma_ == reference.best_sigma_
        for key in ("mean_icr", "split0_icr", "split1_icr", "split2_icr"):
            np.testing.assert_allclose(
                dask_search.cv_results_[key], reference.cv_results_[key], rtol=1e-10
            )
    # the joint (layer, sigma) search too
    assert on_dask[1].best_layer_ == references[1].best_layer_
    assert list(on_dask[1].cv_results_["layer"]) == list(references[1].cv_results_["layer"])
