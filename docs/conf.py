"""Sphinx configuration of the skicr documentation.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Quick iterations without running the example gallery (its pages then have no
outputs)::

    SKICR_DOCS_NO_GALLERY=1 python -m sphinx -b html docs docs/_build/html

Nothing here needs the network, neither to build nor to read the site: no
intersphinx inventories are fetched, so references to other projects (numpy,
scikit-learn, torch...) are not linked and are exempt from the nitpicky
reference check (every reference to skicr itself must resolve); MathJax is
served from the site itself (the ``sphinx-mathjax-offline`` package), and no
page loads anything from another host (``.ci/browser_check.py`` checks it).
"""

import os
import sys
import warnings
from pathlib import Path

# Before numpy or torch load: one thread per process (on a busy 2-core machine,
# spinning OpenMP threads cost several times the CPU time), no plot windows.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "agg")

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document the checkout, installed or not
sys.path.insert(0, str(DOCS / "_ext"))

import skicr  # noqa: E402

# ----------------------------------------------------------------------------- project
project = "skicr"
author = "the skicr developers"
copyright = "2026, the skicr developers"
release = skicr.__version__
version = ".".join(release.split(".")[:2])

# ----------------------------------------------------------------------------- general
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax: no CDN
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "skicr_docs",  # docs/_ext/skicr_docs.py: top-level aliases, member filter
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
default_role = "literal"  # `x` is code, as in Markdown
nitpicky = True  # every reference must resolve (skicr's own; see below)
# No network here, so no intersphinx: references to other projects cannot
# resolve and are exempt from the check. References to skicr are not.
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|scipy|sklearn|torch|pandas|pd|joblib|matplotlib|diffusers"
               r"|kornia|tqdm|dask|ray|PIL|safetensors)(\..*)?"),
    (r"py:.*", r"(int|float|str|bool|dict|list|tuple|callable|None|object|Path"
               r"|ndarray|array-like|Exception|UserWarning)"),
]

# ----------------------------------------------------------------------------- autodoc
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc's Parameters section carries the types
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = True  # an override without its own docstring shows its base's
add_module_names = False

# numpydoc: the class template lists members itself (no stub-less autosummary)
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True

# ----------------------------------------------------------------------------- MyST
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# ----------------------------------------------------------------------------- gallery
# Examples run on the CPU with the bundled denoiser. Only files named plot_*.py
# run; the others (a diffusers checkpoint that would need a download) are shown.
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "gallery_order.ExampleOrder",
    "doc_module": ("skicr",),
    "backreferences_dir": "api/generated/backreferences",
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "show_memory": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib", "gallery_order.reset_torch"),
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    # The execution-times pages load jQuery and DataTables from CDNs.
    "write_computation_times": False,
    "plot_gallery": os.environ.get("SKICR_DOCS_NO_GALLERY", "0") != "1",
}

warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

# ----------------------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"skicr {release}"
html_static_path = ["_static"]
html_css_files = ["skicr.css"]  # code, tables and figures inside the content column
html_favicon = "_static/favicon.png"
# Pages without sub-pages have nothing to show in the left sidebar: give the
# content the room.
html_sidebars = {"index": [], "getting_started": [], "benchmarks": []}
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 7,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_show_sourcelink = True
html_context = {"default_mode": "light"}
