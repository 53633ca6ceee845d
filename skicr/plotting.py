"""Plots of skicr results (matplotlib is imported only when a plot is drawn)."""

import numpy as np

from ._utils.plotting import pyplot as _pyplot

__all__ = ["plot_icr_surface", "plot_noise_scan"]


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

    Examples
    --------
    >>> from skicr.plotting import plot_noise_scan
    >>> results = {"sigma": [0.01, 0.1, 1.0], "mean_icr": [0.45, 0.42, 0.70],
    ...            "std_icr": [0.01, 0.01, 0.01], "mean_probe_accuracy": [0.85, 0.90, 0.60]}
    >>> ax = plot_noise_scan(results, best_index=1, title="a scan")
    >>> ax.get_xscale(), ax.get_title()
    ('log', 'a scan')
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


def _surface_grid(cv_results, key):
    """Layers (first-seen order), sorted sigmas and the layers x sigmas values of ``key``."""
    for needed in ("layer", "sigma", key):
        if needed not in cv_results:
            raise ValueError(
                f"cv_results has no {needed!r} column: give the cv_results_ of a "
                "NoiseLevelSelector fitted with layers=[...]."
            )
    layer = [str(name) for name in np.asarray(cv_results["layer"], dtype=object)]
    sigma = np.asarray(cv_results["sigma"], dtype=float)
    value = np.asarray(cv_results[key], dtype=float)
    if not (len(layer) == sigma.size == value.size) or sigma.size == 0:
        raise ValueError(
            f"cv_results needs 'layer', 'sigma' and {key!r} of one non-zero length; got "
            f"{len(layer)}, {sigma.size} and {value.size}."
        )
    layers = list(dict.fromkeys(layer))
    sigmas = np.unique(sigma)
    grid = np.full((len(layers), sigmas.size), np.nan)
    rows = {name: i for i, name in enumerate(layers)}
    cells = np.zeros_like(grid, dtype=int)
    for name, s, v in zip(layer, sigma, value):
        i, j = rows[name], int(np.searchsorted(sigmas, s))
        grid[i, j] = v
        cells[i, j] += 1
    if np.any(cells > 1):
        raise ValueError("cv_results has several rows for one (layer, sigma) cell.")
    return layers, sigmas, grid


def _log_edges(sigmas):
    """Cell edges of a log-sigma axis: geometric midpoints, half a step beyond the ends."""
    if sigmas.size == 1:
        return np.array([sigmas[0] / np.sqrt(2.0), sigmas[0] * np.sqrt(2.0)])
    logs = np.log(sigmas)
    mids = (logs[1:] + logs[:-1]) / 2
    first = logs[0] - (mids[0] - logs[0])
    last = logs[-1] + (logs[-1] - mids[-1])
    return np.exp(np.concatenate([[first], mids, [last]]))


# long (~80 lines): one figure drawn step by step (heat map, colour bar, ticks, the chosen
# and the probe's cells, legend); the two marking helpers are already inner functions
def plot_icr_surface(cv_results, best_index=None, value="icr", annotate=None, ax=None,
                     title=None):
    """Heat map of a joint (layer, sigma) search: layers x sigma on a log axis.

    The cell with the lowest mean ICR is outlined in red and, when the
    results hold a probe accuracy, the cell with the highest accuracy in
    dashed magenta, on either map, so the label-free choice and the probe
    optimum can be compared at a glance.

    Parameters
    ----------
    cv_results : dict or DataFrame
        ``NoiseLevelSelector.cv_results_`` of a search with ``layers``, or
        anything with the columns ``layer``, ``sigma``, ``mean_icr`` and
        optionally ``mean_probe_accuracy``; one row per (layer, sigma).
    best_index : int, default=None
        Row of the chosen cell, outlined (dotted white) when it is neither
        the ICR minimum nor the probe maximum (e.g. after
        ``scoring="probe"`` it coincides with the probe maximum).
    value : str, default="icr"
        What the colours show: the mean ICR (lower is cleaner, drawn
        bright), the mean probe accuracy (higher is better, drawn bright)
        or any other criterion with a ``mean_<value>`` column (those whose
        name starts with ``icr`` are lower-is-better, the others
        higher-is-better, e.g. ``"icr_insample"``, ``"invariant_dims"``;
        bright is better on every map).
    annotate : bool, default=None
        Write each cell's value in it. None: when there are at most 120
        cells.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    title : str, default=None
        Axes title.

    Returns
    -------
    ax : matplotlib Axes
        The axes with the heat map (its colour bar is on the same figure).

    Examples
    --------
    >>> from skicr.plotting import plot_icr_surface
    >>> results = {"layer": ["mid", "mid", "up.0", "up.0"], "sigma": [0.1, 1.0, 0.1, 1.0],
    ...            "mean_icr": [0.42, 0.70, 0.40, 0.66],
    ...            "mean_probe_accuracy": [0.90, 0.60, 0.85, 0.64]}
    >>> ax = plot_icr_surface(results)
    >>> [label.get_text() for label in ax.get_yticklabels()]
    ['mid', 'up.0']
    """
    plt = _pyplot()
    key = f"mean_{value}"
    if not isinstance(value, str) or key not in cv_results:
        raise ValueError(
            f"value must be the name of a column mean_<value> of cv_results; got {value!r}.")
    lower_is_better = value.startswith("icr")
    layers, sigmas, grid = _surface_grid(cv_results, key)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 + 0.75 * sigmas.size, 1.6 + 0.5 * len(layers)))

    # bright = good on both maps: low ICR, high accuracy
    cmap = "viridis_r" if lower_is_better else "viridis"
    mesh = ax.pcolormesh(_log_edges(sigmas), np.arange(len(layers) + 1), grid, cmap=cmap,
                         shading="flat")
    label = {"icr": "held-out ICR (lower is cleaner)", "probe_accuracy": "probe accuracy"}.get(
        value, f"{value} ({'lower' if lower_is_better else 'higher'} is better)")
    ax.figure.colorbar(mesh, ax=ax, label=label, pad=0.02)
    ax.set_xscale("log")
    ax.set_xticks(sigmas)
    ax.set_xticklabels([f"{s:.3g}" for s in sigmas], rotation=45, ha="right")
    ax.minorticks_off()
    ax.set_yticks(np.arange(len(layers)) + 0.5)
    ax.set_yticklabels(layers)
    ax.set_ylim(len(layers), 0)  # first layer on top, as listed
    ax.set_xlabel("noise level sigma (data in [-1, 1])")
    ax.set_ylabel("layer")

    if annotate is None:
        annotate = grid.size <= 120
    if annotate:
        finite = grid[np.isfinite(grid)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for i in range(len(layers)):
            for j, s in enumerate(sigmas):
                if np.isfinite(grid[i, j]):
                    # dark text on the bright half of either colour map
                    bright = (grid[i, j] < middle) == lower_is_better
                    ax.text(s, i + 0.5, f"{grid[i, j]:.3f}" if lower_is_better
                            else f"{grid[i, j]:.3g}", ha="center", va="center",
                            fontsize="x-small", color="black" if bright else "white")

    handles, labels = [], []
    edges = _log_edges(sigmas)

    def outline(i, j, inset, **style):
        # a cell outline (not a marker) keeps the cell's value readable; the
        # inset (a fraction of the cell) keeps coinciding outlines apart
        left, right = np.log(edges[j]), np.log(edges[j + 1])
        pad = inset * (right - left)
        x0, x1 = np.exp(left + pad), np.exp(right - pad)
        from matplotlib.patches import Rectangle

        patch = Rectangle((x0, i + inset), x1 - x0, 1 - 2 * inset, fill=False, zorder=3,
                          **style)
        ax.add_patch(patch)
        return patch

    def mark(row_key, arg, inset, text, **style):
        _, _, values = _surface_grid(cv_results, row_key)
        if not np.any(np.isfinite(values)):
            return None
        fill = np.inf if arg is np.argmin else -np.inf
        i, j = np.unravel_index(arg(np.where(np.isfinite(values), values, fill)), values.shape)
        handles.append(outline(i, j, inset, **style))
        labels.append(f"{text}: {layers[i]}, sigma = {sigmas[j]:.3g}")
        return int(i), int(j)

    icr_cell = mark("mean_icr", np.argmin, 0.04, "lowest ICR", edgecolor="red", linewidth=2.5)
    probe_cell = None
    if "mean_probe_accuracy" in cv_results:
        probe_cell = mark("mean_probe_accuracy", np.argmax, 0.14, "best probe accuracy",
                          edgecolor="magenta", linewidth=2.0, linestyle="--")
    if best_index is not None:
        row = int(best_index)
        i = layers.index(str(np.asarray(cv_results["layer"], dtype=object)[row]))
        j = int(np.searchsorted(sigmas, float(np.asarray(cv_results["sigma"])[row])))
        if (i, j) not in (icr_cell, probe_cell):
            handles.append(outline(i, j, 0.24, edgecolor="white", linewidth=2.0,
                                   linestyle=":"))
            labels.append(f"chosen: {layers[i]}, sigma = {sigmas[j]:.3g}")
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.28),
                  ncol=min(len(handles), 2), fontsize="small", frameon=False)
    if title is not None:
        ax.set_title(title)
    return ax
