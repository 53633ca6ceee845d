"""PyTorch Lightning callback: ICR every k steps, logged, and early stopping on the signal."""

from numbers import Integral

try:
    from lightning.pytorch import Callback
except ImportError as exc:  # pragma: no cover - only without the optional extra
    raise ImportError(
        "ICRMonitorCallback needs PyTorch Lightning: pip install 'skicr[lightning]'"
    ) from exc

__all__ = ["ICRMonitorCallback"]

# the columns sent to the logger (those present in the monitor's rows)
_LOGGED = ("icr", "mean_snr", "trace_s", "trace_xi", "invariant_share", "memorization_ratio",
           "nn_distance")


class ICRMonitorCallback(Callback):
    """Run an :class:`~skicr.monitoring.ICRMonitor` every ``every_n_steps`` training steps.

    After every ``every_n_steps``-th optimizer step the monitor measures the
    model (its EMA copy, if the LightningModule keeps one), the row is logged
    with ``pl_module.log_dict`` (so it reaches whatever logger the Trainer
    uses), and when the monitor's early-stopping rule fires,
    ``trainer.should_stop`` is set: Lightning ends the fit after the current
    step.

    Parameters
    ----------
    monitor : ICRMonitor
        The monitor; its ``early_stopping`` decides whether a call returns
        True. Its history (:attr:`ICRMonitor.history_`) is the record.
    every_n_steps : int, default=100
        Evaluate after optimizer steps ``every_n_steps, 2 * every_n_steps, ...``
        (``trainer.global_step``).
    model : str, callable or None, default=None
        What to measure: None the LightningModule itself; a string names an
        attribute of it (``"ema"``, ``"net"``...; dots allowed); a callable
        ``model(pl_module) -> torch.nn.Module``.
    stop_training : bool, default=True
        Stop the fit when the monitor's signal fires.
    log : bool, default=True
        Log the row's numbers through ``pl_module.log_dict``.
    log_prefix : str, default="icr/"
        Prefix of the logged names (``icr/icr``, ``icr/trace_s``...).

    Attributes
    ----------
    stopped_at_ : int or None
        ``trainer.global_step`` at which the callback stopped training.

    Examples
    --------
    >>> import lightning.pytorch as pl                                   # doctest: +SKIP
    >>> from skicr.monitoring import ICRMonitor, ICRMonitorCallback      # doctest: +SKIP
    >>> monitor = ICRMonitor(train_images[:256], early_stopping=True)    # doctest: +SKIP
    >>> trainer = pl.Trainer(max_steps=20000,
    ...                      callbacks=[ICRMonitorCallback(monitor, every_n_steps=500,
    ...                                                    model="ema")])  # doctest: +SKIP
    >>> trainer.fit(module, loader)                                      # doctest: +SKIP
    >>> monitor.history_, monitor.stopped_at_                            # doctest: +SKIP
    """

    def __init__(self, monitor, every_n_steps=100, *, model=None, stop_training=True, log=True,
                 log_prefix="icr/"):
        from ._monitor import ICRMonitor

        if not isinstance(monitor, ICRMonitor):
            raise TypeError(f"monitor must be an ICRMonitor; got {type(monitor).__name__}.")
        if not isinstance(every_n_steps, Integral) or isinstance(every_n_steps, bool) \
                or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be an int >= 1; got {every_n_steps!r}.")
        if model is not None and not isinstance(model, str) and not callable(model):
            raise TypeError(
                f"model must be None, an attribute name or a callable; got {type(model).__name__}."
            )
        if not isinstance(log_prefix, str):
            raise TypeError(f"log_prefix must be a str; got {type(log_prefix).__name__}.")
        self.monitor = monitor
        self.every_n_steps = int(every_n_steps)
        self.model = model
        self.stop_training = bool(stop_training)
        self.log = bool(log)
        self.log_prefix = log_prefix
        self.stopped_at_ = None
        self._last_step = None

    def _measured(self, pl_module):
        if self.model is None:
            return pl_module
        if callable(self.model):
            return self.model(pl_module)
        target = pl_module
        for part in self.model.split("."):
            if not hasattr(target, part):
                raise AttributeError(
                    f"{type(pl_module).__name__} has no attribute {self.model!r} to monitor."
                )
            target = getattr(target, part)
        return target

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        """Evaluate after every ``every_n_steps``-th optimizer step (Lightning hook).

        Parameters
        ----------
        trainer : lightning.pytorch.Trainer
            The trainer (its ``global_step``; ``should_stop`` is set here).
        pl_module : lightning.pytorch.LightningModule
            The module trained (logged through, and measured unless ``model``
            says otherwise).
        outputs : object
            The training step's output (not used).
        batch : object
            The batch (not used).
        batch_idx : int
            Index of the batch (not used).
        """
        step = int(trainer.global_step)
        # with gradient accumulation several batches share one global step: evaluate once
        if step == 0 or step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        stop = self.monitor(step, self._measured(pl_module))
        if self.log:
            row = self.monitor._rows[-1]
            pl_module.log_dict({self.log_prefix + key: float(row[key]) for key in _LOGGED
                                if key in row}, on_step=True, on_epoch=False)
        if stop and self.stop_training:
            self.stopped_at_ = step
            trainer.should_stop = True
