"""Assemble docs/benchmarks.md, and its plots, from the latest benchmarks/results/*.md.

Run after any benchmark: ``python benchmarks/collect.py``. Each results file
is written by its benchmark script (machine, command, numbers). The plots
(``docs/_static/benchmarks_*.png``: speed-up and cost ratios against their
goals, memory against N, the primal/dual crossover) are drawn from the tables
of those same files, so page and plots always show the same run. A table that
no longer has the expected shape is an error naming the file, not a missing
plot.
"""

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOCS = HERE.parent / "docs"
STATIC = DOCS / "_static"

# (results file, section title, script). The results file's own top heading,
# if any, is replaced by the section title; its subsections move one level down.
SECTIONS = [
    ("core.md", "Numerical core", "benchmarks/bench_core.py"),
    ("fit.md", "Decomposer fit at the GEMM floor", "benchmarks/bench_fit.py"),
    ("dual.md", "Primal vs dual (Gram) ICR for high-dimensional features", "benchmarks/bench_dual.py"),
    ("dual_memory.md", "Dual form: peak memory of the Gram construction, before and after chunking",
     "benchmarks/bench_dual.py --memory-only"),
    ("wide.md", "Wide features end to end (dual form in the scan)", "benchmarks/bench_wide.py"),
    ("threads.md", "Thread defaults", "benchmarks/bench_threads.py"),
    ("extraction.md", "Feature extraction", "benchmarks/bench_extraction.py"),
    ("extraction_options.md", "Extraction: what else the CPU offers", "benchmarks/bench_extraction_options.py"),
    ("selector.md", "Noise-level selection", "benchmarks/bench_selector.py"),
    ("layer_sigma.md", "Joint layer x sigma selection", "benchmarks/layer_sigma_study.py"),
    ("streaming.md", "Streaming and multi-process fitting", "benchmarks/bench_streaming.py"),
    ("streaming_scan.md", "Streaming noise-level scan", "benchmarks/bench_streaming_scan.py"),
    ("monitoring.md", "Training monitor", "benchmarks/track_experiment.py"),
    ("gpu_check.md", "GPU check", "benchmarks/gpu_check.py"),
    ("gpu_check_cpu.md", "GPU check, CPU variant (run in CI)", "benchmarks/gpu_check.py --cpu"),
]
# what a section says while its results file is absent, where "run it" is not enough
MISSING = {
    "gpu_check.md": "GPU numbers not yet measured: no session with an accelerator has run "
                    "`python benchmarks/gpu_check.py` so far (it needs CUDA; about a minute on one GPU). "
                    "The CPU variant below runs the same code at smaller sizes.",
}

# Figures, placed right after the heading of a section: (results file, image, caption).
FIGURES = {
    "core.md": [("benchmarks_ratios.png",
                 "Measured ratios against their goals, from the tables on this page "
                 "(numerical core, feature extraction, noise-level selection). Top: speed-ups, "
                 "higher is better; bottom: cost relative to a reference, lower is better. "
                 "A bar in green meets its goal (the tick), one in red does not.")],
    "dual.md": [("benchmarks_primal_dual.png",
                 "Primal (d x d) against dual (Gram, n x n) ICR over the feature dimension d for "
                 "4096 rows (1024 images x 4 views): time (left) and peak memory (right), from the "
                 "table below. `icr_score(..., method='auto')` takes the dual form once d exceeds "
                 "the number of rows.")],
    "streaming.md": [("benchmarks_memory.png",
                      "Peak traced memory of a fit against the number of images N: streaming from "
                      "a DataLoader (flat in N) against the views held in memory (linear in N).")],
}


# ----------------------------------------------------------------------------- tables


def read_tables(path):
    """Markdown tables of one results file: a list of ``(heading, header, rows)``.

    ``heading`` is the nearest heading above the table (empty when none), the
    cells are stripped of surrounding ``**``.
    """
    tables, heading, lines = [], "", path.read_text().splitlines()
    position = 0
    while position < len(lines):
        line = lines[position].strip()
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|") and position + 1 < len(lines) and re.match(
            r"^\|[\s:|-]+\|$", lines[position + 1].strip()
        ):
            block = []
            while position < len(lines) and lines[position].strip().startswith("|"):
                block.append(lines[position].strip())
                position += 1
            split = [[cell.strip().strip("*").strip() for cell in row.strip("|").split("|")]
                     for row in block]
            tables.append((heading, split[0], split[2:]))
            continue
        position += 1
    return tables


def number(text):
    """The first number in a cell ("50x faster" -> 50.0, "0.12 s" -> 0.12)."""
    match = re.search(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)
    if match is None:
        raise ValueError(f"no number in table cell {text!r}")
    return float(match.group())


def find_table(filename, columns, heading=None):
    """The (first) table of a results file whose header starts with ``columns``."""
    path = RESULTS / filename
    for table_heading, header, rows in read_tables(path):
        if header[: len(columns)] == list(columns) and (heading is None or heading in table_heading):
            return header, rows
    raise ValueError(f"{path}: no table with columns {columns}"
                     + (f" under a heading containing {heading!r}" if heading else ""))


def find_tables(filename, columns):
    path = RESULTS / filename
    found = [(h, header, rows) for h, header, rows in read_tables(path)
             if header[: len(columns)] == list(columns)]
    if not found:
        raise ValueError(f"{path}: no table with columns {columns}")
    return found


# ----------------------------------------------------------------------------- plots


def ratio_rows():
    """(label, measured, goal, higher_is_better) from the core, extraction and selector tables."""
    speedups, costs = [], []
    columns = ["benchmark", "size", "skicr", "reference", "ratio", "goal"]
    for filename, label in [("core.md", "core"), ("fit.md", "fit")]:
        header, rows = find_table(filename, columns)
        for name, size, _ours, _reference, ratio, goal in rows:
            if "x" not in ratio or "flat" in ratio:
                continue  # the memory row is plotted with the streaming numbers
            if filename == "fit.md" and ("CPU time" not in name or "1 BLAS thread" not in size):
                continue  # one row per comparison: CPU time, one BLAS thread
            name = re.sub(r"\s*\([^()]*\)", "", name)  # "eigh(a, b, eigvals_only)" -> "eigh"
            name = name.replace(", CPU time", "")
            if goal.startswith(">="):
                speedups.append((f"{label}: {name}", number(ratio), number(goal)))
            elif goal.startswith("<="):
                costs.append((f"{label}: {name}", number(ratio), number(goal)))
    # two tables, in the script's order: skicr's SmallUNet, then the DDPM-CIFAR10 U-Net
    tables = find_tables("extraction.md", ["method", "images/forward", "rows/forward"])
    # issue 15's goals: 3x on the shipped denoiser, 4x on the DDPM-CIFAR10 U-Net
    for (model, goal), (_heading, header, rows) in zip([("SmallUNet", 3.0), ("DDPM-CIFAR10 U-Net", 4.0)],
                                                       tables):
        for row in rows:
            if row[0] == "FeatureExtractor" and row[2] == "16":  # same rows per pass as the loop
                speedups.append((f"extraction, {model} (CPU time)", number(row[-1]), goal))
    for label, heading in [("d = 96 (scan defaults)", "defaults"), ("d = 1536 (flattened)", "Flattened")]:
        header, rows = find_table("selector.md", ["run", "total (s)"], heading=heading)
        for row in rows:
            if row[0] == "cv=5":
                costs.append((f"selection: cv=5 / cv=1, {label}", number(row[-1]), 1.2))
    wide = RESULTS / "wide.md"
    found = re.search(r"Scan / reference \(extraction \+ dual ICR x folds\): \*\*([0-9.]+)x\*\*",
                      wide.read_text())
    if found is None:  # as find_table: a results file without its number is an error naming it
        raise ValueError(f"{wide}: no 'Scan / reference ... **<ratio>x**' line")
    costs.append(("wide: flatten scan / dual ICR x folds, d = 8192", float(found.group(1)), 3.0))
    header, rows = find_table("threads.md", ["workload", "condition", "measured at"])
    if rows:
        worst = max(number(row[-1]) for row in rows)
        costs.append((f"threads: worst default / best, {len(rows)} rows", worst, 1.2))
    return speedups, costs


def plot_ratios(path):
    import matplotlib.pyplot as plt

    speedups, costs = ratio_rows()
    fig, axes = plt.subplots(2, 1, figsize=(7.5, 1.6 + 0.4 * (len(speedups) + len(costs))),
                             height_ratios=[len(speedups), len(costs)], layout="constrained")
    for ax, rows, higher, title in [
        (axes[0], speedups, True, "speed-up (higher is better)"),
        (axes[1], costs, False, "cost ratio (lower is better)"),
    ]:
        labels = [row[0] for row in rows][::-1]
        measured = [row[1] for row in rows][::-1]
        goals = [row[2] for row in rows][::-1]
        met = [(m >= g) if higher else (m <= g) for m, g in zip(measured, goals)]
        positions = range(len(rows))
        ax.barh(positions, measured, color=["tab:green" if ok else "tab:red" for ok in met],
                alpha=0.8, height=0.6)
        ax.scatter(goals, positions, marker="|", s=300, linewidths=2, color="black", zorder=3)
        for y, value, goal in zip(positions, measured, goals):
            ax.annotate(f"{value:.3g}x (goal {goal:g}x)", (max(value, goal), y), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=9)
        ax.set_yticks(list(positions), labels, fontsize=9)
        ax.set_xscale("log")
        ax.set_xlim(0.8 if not higher else 1, max(measured + goals) * 8)
        ax.axvline(1, color="grey", linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3, which="both")
    axes[1].set_xlabel("ratio (log scale); black tick: the goal")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_primal_dual(path):
    import matplotlib.pyplot as plt

    header, rows = find_table("dual.md", ["d", "primal time", "primal peak", "dual time", "dual peak"])
    d = [number(row[0]) for row in rows]
    columns = {name: [number(row[header.index(name)]) for row in rows]
               for name in ["primal time", "dual time", "primal peak", "dual peak"]}
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.2), layout="constrained")
    for ax, kind, unit in [(axes[0], "time", "seconds"), (axes[1], "peak", "MiB")]:
        ax.plot(d, columns[f"primal {kind}"], "o-", label="primal (d x d)")
        ax.plot(d, columns[f"dual {kind}"], "s-", label="dual (Gram)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("feature dimension d")
        ax.set_ylabel(f"{kind} ({unit})")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].set_title("fit time", fontsize=10)
    axes[1].set_title("peak memory", fontsize=10)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_memory(path):
    import matplotlib.pyplot as plt

    header, rows = find_table("streaming.md", ["N", "loader traced peak", "in-memory traced peak"])
    n = [number(row[0]) for row in rows]
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    ax.plot(n, [number(row[1]) for row in rows], "o-", label="fit_from_loader (streaming)")
    ax.plot(n, [number(row[2]) for row in rows], "s-", label="fit on views in memory")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("number of images N (4 views, d = 96)")
    ax.set_ylabel("peak traced memory (MiB)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    fig.savefig(path, dpi=150)
    plt.close(fig)


PLOTTERS = {
    "benchmarks_ratios.png": plot_ratios,
    "benchmarks_primal_dual.png": plot_primal_dual,
    "benchmarks_memory.png": plot_memory,
}


# ----------------------------------------------------------------------------- page


def section_body(text):
    """A results file's text under a section of this page: its top heading dropped
    (the section has its own title), its other headings one level below the section's."""
    lines = text.strip().splitlines()
    if lines and re.match(r"^# ", lines[0]):
        lines = lines[1:]
    out = []
    fenced = False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            line = "#" * max(3, level + 1) + line[level:]
        # "Machine: ..." then "Command: ..." on the next line: keep them on two lines
        if (not fenced and out and re.match(r"^[A-Z][A-Za-z ]{0,20}: ", line)
                and re.match(r"^[A-Z][A-Za-z ]{0,20}: ", out[-1])):
            out[-1] += "\\"
        out.append(line)
    return "\n".join(out).strip()


def figure_block(image, caption):
    return "\n".join([f"```{{figure}} _static/{image}", f":alt: {caption.split('.')[0]}",
                      f":target: _static/{image}", "", caption, "```"])


def main():
    parts = [
        "# Benchmarks",
        "",
        "Every number below is measured, never asserted: speed goals are ratios measured side by "
        "side in one run on the same machine (shared machines are noisy), and each section names "
        "the machine and the command that reproduces it. This page and its plots are assembled by "
        "`python benchmarks/collect.py` from `benchmarks/results/`.",
    ]
    drawn = set()
    for filename, title, script in SECTIONS:
        path = RESULTS / filename
        parts += ["", f"## {title}", ""]
        for image, caption in FIGURES.get(filename, []):
            try:
                PLOTTERS[image](STATIC / image)
            except (FileNotFoundError, ValueError, IndexError) as exc:
                # a results file the plot reads is missing or has another layout: say so, draw nothing
                print(f"not drawn: {image} ({type(exc).__name__}: {exc})")
                continue
            drawn.add(image)
            parts += [figure_block(image, caption), ""]
        if path.exists():
            parts.append(section_body(path.read_text()))
        else:
            parts.append(MISSING.get(filename, f"Not measured yet: run `python {script}`."))
    out = HERE.parent / "docs" / "benchmarks.md"
    out.write_text("\n".join(parts) + "\n")
    print(f"wrote {out} and {', '.join(sorted(drawn))} in {STATIC}")


if __name__ == "__main__":
    main()
