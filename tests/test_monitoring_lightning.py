"""ICRMonitorCallback with a real Lightning Trainer on a tiny denoiser (CPU, a few steps)."""

import numpy as np
import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

from skicr.models import EDMPrecond, SmallUNet  # noqa: E402
from skicr.models import edm_loss  # noqa: E402
from skicr.monitoring import ICRMonitor  # noqa: E402
from skicr.monitoring._lightning import ICRMonitorCallback  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyDenoiser(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = SmallUNet(channels=(4, 8), mid_channels=8)
        self.denoiser = EDMPrecond(self.net)

    def training_step(self, batch, batch_idx):
        (images,) = batch
        return edm_loss(self.denoiser, images * 2 - 1)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class RecordingLogger(pl.loggers.Logger):
    """Keeps every logged metric (what a TensorBoard/W&B logger would receive)."""

    def __init__(self):
        super().__init__()
        self.metrics = []

    @property
    def name(self):
        return "recording"

    @property
    def version(self):
        return 0

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def _fit(callback, max_steps):
    images = torch.from_numpy(
        np.random.default_rng(0).random((32, 1, 8, 8)).astype(np.float32))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images), batch_size=8)
    logger = RecordingLogger()
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=logger,
                         callbacks=[callback], enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False,
                         log_every_n_steps=1)
    trainer.fit(TinyDenoiser(), loader)
    return trainer, logger, images.numpy()


def _monitor():
    images = np.random.default_rng(1).random((8, 1, 8, 8)).astype(np.float32)
    return ICRMonitor(images, sigma=0.2, n_views=2, random_state=0)


def test_history_is_recorded_and_logged():
    monitor = _monitor()
    callback = ICRMonitorCallback(monitor, every_n_steps=2, model="net")
    trainer, logger, _ = _fit(callback, max_steps=6)
    assert trainer.global_step == 6
    history = monitor.history_
    assert list(history["step"]) == [2, 4, 6]
    assert np.all(np.isfinite(history["icr"]))
    # every evaluation reached the Trainer's logger (Lightning may repeat a value at a later flush)
    logged = sorted({round(m["icr/icr"], 9) for _, m in logger.metrics if "icr/icr" in m})
    np.testing.assert_allclose(logged, sorted(history["icr"]), rtol=1e-6)
    assert float(trainer.callback_metrics["icr/trace_xi"]) == pytest.approx(
        history["trace_xi"].iloc[-1], rel=1e-6)
    assert callback.stopped_at_ is None


class StopsAtStep4(ICRMonitor):
    """A monitor whose signal fires at step 4 (the detectors are tested on their own)."""

    def __call__(self, step, model):
        super().__call__(step, model)
        return step >= 4


def test_the_signal_stops_the_trainer():
    images = np.random.default_rng(1).random((8, 1, 8, 8)).astype(np.float32)
    monitor = StopsAtStep4(images, sigma=0.2, n_views=2, random_state=0)
    callback = ICRMonitorCallback(monitor, every_n_steps=2, model=lambda module: module.net)
    trainer, _, _ = _fit(callback, max_steps=20)
    assert callback.stopped_at_ == 4
    assert trainer.global_step == 4
    assert list(monitor.history_["step"]) == [2, 4]
    # without stop_training the same signal is only recorded
    monitor = StopsAtStep4(images, sigma=0.2, n_views=2, random_state=0)
    callback = ICRMonitorCallback(monitor, every_n_steps=2, model="net", stop_training=False)
    trainer, _, _ = _fit(callback, max_steps=6)
    assert trainer.global_step == 6 and callback.stopped_at_ is None


def test_bad_arguments_are_named():
    monitor = _monitor()
    with pytest.raises(TypeError, match="ICRMonitor"):
        ICRMonitorCallback(object())
    with pytest.raises(ValueError, match="every_n_steps"):
        ICRMonitorCallback(monitor, every_n_steps=0)
    with pytest.raises(TypeError, match="model"):
        ICRMonitorCallback(monitor, model=3)
    callback = ICRMonitorCallback(monitor, every_n_steps=1, model="ema")
    with pytest.raises(AttributeError, match="ema"):
        _fit(callback, max_steps=1)
