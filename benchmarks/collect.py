"""Assemble docs/benchmarks.md from the latest benchmarks/results/*.md.

Run after any benchmark: ``python benchmarks/collect.py``. Each results file
is written by its benchmark script (machine, command, numbers).
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = [
    ("core.md", "Numerical core", "benchmarks/bench_core.py"),
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


def main():
    parts = [
        "# Benchmarks",
        "",
        "Every number below is measured, never asserted: speed goals are ratios measured side by "
        "side in one run on the same machine (these machines are noisy), and each section names "
        "the machine and the command that reproduces it. This page is assembled by "
        "`python benchmarks/collect.py` from `benchmarks/results/`.",
    ]
    for filename, title, script in SECTIONS:
        path = HERE / "results" / filename
        parts += ["", f"## {title}", ""]
        if path.exists():
            body = path.read_text().strip()
            # demote the result file's own headings below this section
            body = "\n".join(("##" + line) if line.startswith("#") else line for line in body.splitlines())
            parts.append(body)
        else:
            parts.append(MISSING.get(filename, f"Not measured yet: run `python {script}`."))
    out = HERE.parent / "docs" / "benchmarks.md"
    out.write_text("\n".join(parts) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
