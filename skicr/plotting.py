"""Plots of skicr results (matplotlib is imported only when a plot is drawn)."""

import numpy as np

__all__ = ["plot_noise_scan"]


def _pyplot():
    """Import matplotlib.pyplot, or explain how to get it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "skicr's plots need matplotlib, which is not installed: "
            "pip install 'skicr[plot]' (or pip install matplotlib)."
        ) from exc
    return plt


def plot_noise_scan(cv_results, best_index=None, ax=None, title=None):
    """ICR against sigma on a log axis, with the probe accuracy on a twin axis.

    Parameters
    ----------
    cv_results : dict or DataFrame
        ``NoiseLevelSelector.cv_results_`` or anything with the same columns:
        ``sigma``, ``mean_icr``, optional ``std_icr``, and optionally
        ``mean_probe_accuracy`` and ``std_probe_accuracy``.
    best_index : int, default=None
        Row of the chosen sigma, marked with a vertical line.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    title : str, default=None
        Axes title.

    Returns
    -------
    ax : matplotlib Axes
        The axes with the ICR curve (the accuracy, if any, is on its twin).
    """
    plt = _pyplot()
    sigma = np.asarray(cv_results["sigma"], dtype=float)
    icr = np.asarray(cv_results["mean_icr"], dtype=float)
    if sigma.shape != icr.shape or sigma.ndim != 1 or sigma.size == 0:
        raise ValueError(
            f"cv_results needs 1-D 'sigma' and 'mean_icr' of one length; got shapes "
            f"{sigma.shape} and {icr.shape}."
        )
    order = np.argsort(sigma)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0))

    icr_color, accuracy_color = "tab:blue", "tab:orange"
    std_icr = cv_results.get("std_icr") if hasattr(cv_results, "get") else None
    ax.errorbar(
        sigma[order],
        icr[order],
        yerr=None if std_icr is None else np.asarray(std_icr, dtype=float)[order],
        color=icr_color,
        marker="o",
        capsize=3,
        label="held-out ICR (lower is cleaner)",
    )
    ax.set_xscale("log")
    ax.set_xlabel("noise level sigma (data in [-1, 1])")
    ax.set_ylabel("ICR", color=icr_color)
    ax.tick_params(axis="y", labelcolor=icr_color)
    handles, labels = ax.get_legend_handles_labels()

    if "mean_probe_accuracy" in cv_results:
        accuracy = np.asarray(cv_results["mean_probe_accuracy"], dtype=float)
        std_accuracy = cv_results.get("std_probe_accuracy")
        twin = ax.twinx()
        twin.errorbar(
            sigma[order],
            accuracy[order],
            yerr=None if std_accuracy is None else np.asarray(std_accuracy, dtype=float)[order],
            color=accuracy_color,
            marker="s",
            capsize=3,
            linestyle="--",
            label="probe accuracy",
        )
        twin.set_ylabel("probe accuracy", color=accuracy_color)
        twin.tick_params(axis="y", labelcolor=accuracy_color)
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels

    if best_index is not None:
        best_sigma = sigma[int(best_index)]
        line = ax.axvline(best_sigma, color="black", linestyle=":", linewidth=1.2)
        handles.append(line)
        labels.append(f"chosen sigma = {best_sigma:.3g}")

    # below the axes: a curve can fill any corner of a scan
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=len(handles), fontsize="small", frameon=False)
    if title is not None:
        ax.set_title(title)
    return ax
