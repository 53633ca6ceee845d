"""Figures of the monitoring module (matplotlib is imported only when drawing)."""

import numpy as np

from .._utils.plotting import pyplot as _pyplot

__all__ = ["plot_training_trajectory", "plot_retrieval_examples"]


def plot_training_trajectory(frame, turning_point=None, axes=None, title=None, start_step=None):
    """ICR and memorization ratio against step (top), tr(Sigma_s) and tr(Sigma_xi) (bottom).

    Parameters
    ----------
    frame : pandas.DataFrame
        :attr:`ICRMonitor.history_` or a ``track.csv`` read back: columns
        ``step``, ``icr``, ``trace_s``, ``trace_xi`` and optionally
        ``memorization_ratio``.
    turning_point : TurningPoint or None, default=None
        Draws the smoothed ICR and marks its minimum (solid line when the
        rise is significant, dotted otherwise).
    axes : sequence of two matplotlib Axes or None, default=None
        Where to draw; a new figure with two stacked panels when None.
    title : str or None, default=None
        Title of the top panel.
    start_step : int or None, default=None
        Shades the steps before it (a warm-up left out of the turning-point
        test).

    Returns
    -------
    axes : ndarray of two matplotlib Axes

    Examples
    --------
    >>> import pandas as pd
    >>> from skicr.monitoring import plot_training_trajectory
    >>> frame = pd.DataFrame({"step": [0, 100, 200, 300, 400],
    ...                       "icr": [0.9, 0.40, 0.38, 0.37, 0.375],
    ...                       "trace_s": [0.1, 0.2, 0.3, 0.35, 0.4],
    ...                       "trace_xi": [0.2, 0.3, 0.4, 0.45, 0.5]})
    >>> top, bottom = plot_training_trajectory(frame, start_step=100)

    The axis is scaled to the tested steps; the fresh network's ICR, far off
    it, is listed in the legend:

    >>> [text.get_text() for text in top.get_legend().get_texts()]
    ['ICR', 'warm-up (not tested)', 'off scale: 0.900 (step 0)']
    """
    plt = _pyplot()
    missing = {"step", "icr", "trace_s", "trace_xi"} - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks the columns {sorted(missing)}.")
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True)
    axes = np.asarray(axes).ravel()
    if axes.size != 2:
        raise ValueError(f"axes must hold 2 Axes; got {axes.size}.")
    steps = frame["step"].to_numpy()
    top, bottom = axes

    top.plot(steps, frame["icr"], "o-", color="tab:blue", ms=3, lw=1, label="ICR")
    if turning_point is not None:
        top.plot(turning_point.steps, turning_point.smoothed, "--", color="tab:blue", lw=1.5,
                 alpha=0.6, label=f"ICR, moving average ({turning_point.window})")
        if turning_point.step is not None:
            style = "-" if turning_point.found else ":"
            verdict = (f"confidence {turning_point.confidence:.2f}" if turning_point.found
                       else "not significant")
            top.axvline(turning_point.step, color="tab:blue", ls=style, lw=1,
                        label=f"ICR minimum, step {turning_point.step} ({verdict})")
    if start_step:
        top.axvspan(float(steps.min()), start_step, color="0.9", zorder=0,
                    label="warm-up (not tested)")
        # scale the axis to the tested part; the fresh network's ICR is often far off it
        tested = frame.loc[frame["step"] >= start_step, "icr"].to_numpy(dtype=float)
        if tested.size:
            lo, hi = float(tested.min()), float(tested.max())
            pad = 0.15 * (hi - lo) if hi > lo else 0.05 * abs(hi) + 1e-3
            top.set_ylim(lo - pad, hi + pad)
            off = [f"{value:.3f} (step {step})" for step, value
                   in zip(steps, frame["icr"].to_numpy(dtype=float))
                   if step < start_step and not lo - pad <= value <= hi + pad]
            if off:
                # a legend entry (no line), not free text that the legend could cover
                top.plot([], [], linestyle="none", label="off scale: " + ", ".join(off))
    top.set_ylabel("ICR (lower is cleaner)", color="tab:blue")
    handles, labels = top.get_legend_handles_labels()
    if "memorization_ratio" in frame and frame["memorization_ratio"].notna().any():
        twin = top.twinx()
        twin.plot(steps, frame["memorization_ratio"], "s-", color="tab:red", ms=3, lw=1,
                  label="memorization ratio")
        twin.set_ylabel("memorization ratio", color="tab:red")
        twin.set_ylim(-0.02, max(0.1, float(frame["memorization_ratio"].max()) * 1.1))
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    top.legend(handles, labels, fontsize="x-small", loc="best", framealpha=0.8)
    if title:
        top.set_title(title, fontsize="medium")

    bottom.plot(steps, frame["trace_s"], "o-", ms=3, lw=1, color="tab:green",
                label=r"tr($\Sigma_s$), invariant")
    bottom.plot(steps, frame["trace_xi"], "o-", ms=3, lw=1, color="tab:purple",
                label=r"tr($\Sigma_\xi$), residual")
    bottom.set_yscale("log")
    bottom.set_xlabel("training step")
    bottom.set_ylabel("covariance trace")
    bottom.legend(fontsize="small", loc="best")
    for ax in axes:
        ax.grid(alpha=0.3)
    return axes


def plot_retrieval_examples(images, labels, neighbors, queries, n_show=5, title=None):
    """Query images with their nearest neighbours by the invariant part and by the residual.

    Parameters
    ----------
    images : ndarray of shape (n_images, C, H, W)
        Images in [0, 1].
    labels : ndarray of shape (n_images,)
        Their classes (printed above each image).
    neighbors : dict
        From :func:`retrieval_accuracy` with ``return_neighbors=True``:
        ``"invariant"`` (n_images, k) and ``"residual"`` (n_images, n_views, k).
    queries : sequence of int
        Images to show as queries (one row each).
    n_show : int, default=5
        Neighbours per method (at most k).
    title : str or None, default=None
        Figure title.

    Returns
    -------
    figure : matplotlib Figure

    Examples
    --------
    >>> import numpy as np
    >>> from skicr.monitoring import plot_retrieval_examples, retrieval_accuracy
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(3), 10)
    >>> views = labels[:, None, None] + 0.3 * rng.normal(size=(30, 2, 4))
    >>> images = rng.random((30, 1, 8, 8))
    >>> scores, neighbors = retrieval_accuracy(views, labels, n_neighbors=3,
    ...                                        return_neighbors=True)
    >>> figure = plot_retrieval_examples(images, labels, neighbors, queries=[0, 10, 20],
    ...                                  n_show=3)
    >>> len(figure.axes) >= 3 * 7           # a query and 3 + 3 neighbours per row
    True
    """
    plt = _pyplot()
    images = np.asarray(images)
    labels = np.asarray(labels)
    by_s = neighbors["invariant"]
    by_xi = neighbors["residual"][:, 0, :]  # the first view's residual as the query
    n_show = min(n_show, by_s.shape[1])
    n_cols = 1 + 2 * n_show
    fig, axes = plt.subplots(len(queries), n_cols, figsize=(0.9 * n_cols + 0.6, 1.0 * len(queries) + 0.6),
                             squeeze=False)

    def show(ax, index, color):
        img = images[index]
        ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray_r",
                  vmin=0, vmax=1)
        ax.set_title(str(labels[index]), fontsize=8, color=color, pad=2)
        ax.set_xticks([])
        ax.set_yticks([])

    for row, query in enumerate(queries):
        show(axes[row, 0], query, "black")
        for j in range(n_show):
            for offset, found in ((1, by_s[query, j]), (1 + n_show, by_xi[query, j])):
                same = labels[found] == labels[query]
                show(axes[row, offset + j], found, "tab:green" if same else "tab:red")
    fig.tight_layout(rect=(0, 0, 1, 0.9 if title else 0.94))
    top = axes[0, 0].get_position().y1 + 0.035
    for column, text in ((0, "query"), (1, "nearest by s (invariant)"),
                         (1 + n_show, "nearest by xi (residual)")):
        fig.text(axes[0, column].get_position().x0, top, text, fontsize=9, ha="left")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig
