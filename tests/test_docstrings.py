"""Every public name of skicr has a numpydoc docstring that renders correctly.

"Public" means every name in ``__all__`` of ``skicr`` and of its public
modules (:data:`PUBLIC_MODULES`), and the public methods and properties of
public classes (those defined in skicr, including ones inherited from skicr
base classes; methods inherited from scikit-learn or torch are documented
there). Each is checked with :func:`numpydoc.validate.validate` for the codes
in :data:`CHECKED`, plus one check of our own (:data:`STRAY_REFERENCE`).

Checked everywhere (structure and parsing; all of them catch docstrings
that render wrongly or document the wrong signature):

- GL01, GL02, GL03, GL05: layout (quotes, blank lines, tabs).
- GL06, GL07: unknown sections or sections in the wrong order (numpydoc
  drops or mangles them when rendering).
- GL08: no docstring. An override without a docstring passes when a base
  class documents the method (autodoc shows the inherited docstring).
- GL09, GL10: deprecation placement, directives with one colon.
- SS01, SS03, SS04, SS06: a one-line summary that ends with a period.
- PR01, PR02, PR03: the documented parameters are the signature's, in order.
- PR04, PR05, PR06, PR10: every parameter has a type, written correctly.
- PR09, RT05: descriptions end with a period (catches truncated text).
- RT01, YD01: a Returns (Yields) section where something is returned.
- SA02, SA04: See Also entries, when given, are well formed.

Checked only on the names importable from ``skicr`` itself (the main
estimators and functions, :data:`TOP_LEVEL_CODES`) and their methods:

- PR07, RT03: every parameter and returned value has a description.
- EX01 (objects, not their methods): an Examples section.

Not checked, and why:

- ES01 (extended summary), SA01 (See Also), EX01 elsewhere: welcome, not
  needed on every helper.
- SS02, PR08, RT04, SA03 (starts with a capital letter): summaries and
  descriptions legitimately start with lower-case names (sklearn, diffusers,
  alpha-ReQ, ``uint8``).
- SS05 (summary starts with an infinitive verb): numpydoc's test is "first
  word ends in s", which flags noun-phrase summaries such as "Features of
  ...", "Distances and indices of ..." that the project uses for functions
  named after what they return.
- RT02 (Returns names no value): naming the returned value (``icr : float``)
  is the project's style, as scikit-learn's.
- PR07, RT03 outside the top level: for small helpers the name and type are
  often the whole story (``stats : GroupedViewStatistics``).

Dataclasses and named tuples document their fields under Attributes; PR01
accepts that, since their constructor parameters are those fields.

Known failures in files owned by others are listed in :data:`KNOWN_FAILURES`
(strict xfail: fix the docstring, then delete the entry).
"""

import dataclasses
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")
from numpydoc.docscrape import NumpyDocString  # noqa: E402

import skicr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
API_DIR = ROOT / "docs" / "api"

PUBLIC_MODULES = [
    "skicr.metrics",
    "skicr.decomposition",
    "skicr.scoring",
    "skicr.extraction",
    "skicr.model_selection",
    "skicr.monitoring",
    "skicr.models",
    "skicr.datasets",
    "skicr.plotting",
    "skicr.views",
    "skicr.recipes",
    "skicr.streaming",
    "skicr",  # last: its names are re-exports, checked under their subpackage
]

# documented in docs/api although they live in private modules (users handle them)
DOCUMENTED_PRIVATE = []

CHECKED = {
    "GL01", "GL02", "GL03", "GL05", "GL06", "GL07", "GL08", "GL09", "GL10",
    "SS01", "SS03", "SS04", "SS06",
    "PR01", "PR02", "PR03", "PR04", "PR05", "PR06", "PR09", "PR10",
    "RT01", "RT05", "YD01",
    "SA02", "SA04",
}
TOP_LEVEL_CODES = {"PR07", "RT03"}
TOP_LEVEL_OBJECT_CODES = {"EX01"}

# Our own check: a word ending in "_" outside code, e.g. a type written
# "ndarray of shape (n, n_components_)", is a reST hyperlink reference to a
# target that does not exist; Sphinx fails on it ("Unknown target name").
STRAY_REFERENCE = "SK01"
_STRAY = re.compile(r"(?<![\w`*|\\-])([A-Za-z]\w*_)(?![\w`])")

# path -> reason (the codes it fails). Strict xfail: remove once fixed.
KNOWN_FAILURES = {}


# ---------------------------------------------------------------- collecting


def _public_objects():
    """(import path, object, owner class or None, top-level?) for every public name."""
    found = {}
    top_level = {name for name in skicr.__all__ if name in skicr._LAZY}

    def add(path, obj, owner, top):
        key = id(obj)
        if key in found:
            found[key] = (*found[key][:3], found[key][3] or top)
        else:
            found[key] = (path, obj, owner, top)

    for module_name, names in [(m, importlib.import_module(m).__all__) for m in PUBLIC_MODULES] + [
        (path.rpartition(".")[0], [path.rpartition(".")[2]]) for path in DOCUMENTED_PRIVATE
    ]:
        module = importlib.import_module(module_name)
        for name in names:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue  # submodules and constants: tested separately
            is_top = obj is getattr(skicr, name, None) and name in top_level
            add(f"{module_name}.{name}", obj, None, is_top)
            if inspect.isclass(obj):
                for attr, member in _public_members(obj):
                    add(f"{module_name}.{name}.{attr}", member, obj, is_top)
    return sorted(found.values(), key=lambda item: item[0])


def _public_members(cls):
    """Public methods and properties of ``cls`` defined in skicr (own or inherited)."""
    for attr in sorted(dir(cls)):
        if attr.startswith("_") and attr != "__call__":
            continue
        owner = next((k for k in cls.__mro__ if attr in vars(k)), None)
        if owner is None or not owner.__module__.startswith("skicr"):
            continue
        member = vars(owner)[attr]
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if inspect.isfunction(member) or isinstance(member, property):
            if _documented_by_base(cls, attr, member):
                continue
            yield attr, member


def _documented_by_base(cls, attr, member):
    """An undocumented override whose base documents the method (autodoc inherits it)."""
    if (member.__doc__ or "").strip():
        return False
    mro = cls.__mro__
    owner = next(i for i, k in enumerate(mro) if attr in vars(k))
    for base in mro[owner + 1:]:
        if attr in vars(base) and (getattr(vars(base)[attr], "__doc__", "") or "").strip():
            return True
    return False


OBJECTS = _public_objects()


def _param(path, obj, owner, top):
    marks = []
    if path in KNOWN_FAILURES:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[path]))
    return pytest.param(path, obj, owner, top, id=path, marks=marks)


# ---------------------------------------------------------------- checks


def _strip_code(text):
    """The docstring without code: literal blocks, doctests, ``code`` and roles."""
    kept, in_literal, literal_indent = [], False, 0
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if in_literal:
            if line.strip() and indent <= literal_indent:
                in_literal = False
            else:
                continue
        if line.strip().startswith((">>>", "...")):
            continue
        if line.rstrip().endswith("::") or line.strip().startswith(".. "):
            in_literal, literal_indent = True, indent
        kept.append(line)
    text = "\n".join(kept)
    text = re.sub(r"``.*?``", "", text, flags=re.S)
    text = re.sub(r":\w+(:\w+)?:`[^`]*`", "", text)
    text = re.sub(r"`[^`]*`_*", "", text)
    return re.sub(r"\$[^$]*\$", "", text)


_TEXT_SECTIONS = ["Summary", "Extended Summary", "Notes", "Warnings", "References"]
_FIELD_SECTIONS = [
    "Parameters", "Other Parameters", "Returns", "Yields", "Receives", "Raises", "Warns",
    "Attributes", "Methods",
]


def _stray_references(doc):
    """Words ending in "_" in the prose and types of a parsed docstring (not in names)."""
    texts = ["\n".join(doc[section]) for section in _TEXT_SECTIONS]
    for section in _FIELD_SECTIONS:
        for item in doc[section]:
            texts.append(item.type)
            texts.append("\n".join(item.desc))
    return sorted({word for text in texts for word in _STRAY.findall(_strip_code(text))})


def _field_names(doc, section):
    return {name.strip() for item in doc[section] for name in item.name.split(",")}


def _errors(path, obj, owner, top):
    result = numpydoc_validate.validate(path)
    codes = set(CHECKED)
    if top:
        codes |= TOP_LEVEL_CODES
        if owner is None:
            codes |= TOP_LEVEL_OBJECT_CODES
    errors = [(code, message) for code, message in result["errors"] if code in codes]

    if inspect.isclass(obj) and (dataclasses.is_dataclass(obj) or hasattr(obj, "_fields")):
        doc = numpydoc_validate.Validator(numpydoc_validate.get_doc_object(obj)).doc
        attributes = _field_names(doc, "Attributes")
        errors = [
            (code, message) for code, message in errors
            if not (code == "PR01" and set(re.findall(r"'(\w+)'", message)) <= attributes)
        ]

    stray = _stray_references(NumpyDocString(inspect.getdoc(obj) or ""))
    if stray:
        errors.append((
            STRAY_REFERENCE,
            f"{stray} outside ``code`` render as links to missing targets; "
            "write them as ``name_``",
        ))
    return errors


@pytest.mark.parametrize("path, obj, owner, top", [_param(*item) for item in OBJECTS])
def test_docstring(path, obj, owner, top):
    errors = _errors(path, obj, owner, top)
    assert not errors, f"{path}:\n" + "\n".join(f"  {code}: {msg}" for code, msg in errors)


def test_known_failures_are_public_names():
    stale = set(KNOWN_FAILURES) - {path for path, *_ in OBJECTS}
    assert not stale, f"KNOWN_FAILURES lists names that are no longer public: {sorted(stale)}"


def test_objects_found():
    # guards against the collection silently finding nothing
    paths = {path for path, *_ in OBJECTS}
    assert "skicr.decomposition.InvariantResidualDecomposer.fit" in paths
    assert "skicr.metrics.icr_score" in paths
    assert len(paths) > 100


# ---------------------------------------------------------------- modules and constants


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_module_docstring(module_name):
    module = importlib.import_module(module_name)
    doc = inspect.getdoc(module) or ""
    assert doc.strip(), f"{module_name} has no module docstring"
    summary = doc.strip().splitlines()[0]
    assert summary.endswith("."), f"{module_name}: summary line {summary!r} must end with a period"


def _load_docs_helpers():
    spec = importlib.util.spec_from_file_location("skicr_docs", ROOT / "docs" / "_ext" / "skicr_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CONSTANTS = [
    (module_name, name)
    for module_name in PUBLIC_MODULES
    for name in importlib.import_module(module_name).__all__
    if not (
        inspect.ismodule(obj := getattr(importlib.import_module(module_name), name))
        or inspect.isclass(obj)
        or inspect.isroutine(obj)
    )
]


@pytest.mark.parametrize(
    "module_name, name",
    [
        pytest.param(
            m, n, id=f"{m}.{n}",
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[f"{m}.{n}"])]
            if f"{m}.{n}" in KNOWN_FAILURES else [],
        )
        for m, n in CONSTANTS
    ],
)
def test_constant_documented(module_name, name):
    """Constants and instances need a ``#:`` comment or a string after the assignment."""
    doc = _load_docs_helpers().find_attribute_doc(module_name, name)
    assert doc, (
        f"{module_name}.{name} has no documentation: put a '#: ...' comment above its "
        "assignment (or a string literal right after it)"
    )


# ---------------------------------------------------------------- API reference


def _api_entries():
    """``module.name`` of every autosummary entry in docs/api/*.rst, and the automodules."""
    entries, modules = set(), set()
    for page in sorted(API_DIR.glob("*.rst")):
        current, in_autosummary = None, False
        for line in page.read_text(encoding="utf-8").splitlines():
            if match := re.match(r"\.\. currentmodule:: (\S+)", line):
                current = match.group(1)
            if match := re.match(r"\.\. automodule:: (\S+)", line):
                modules.add(match.group(1))
            if line.startswith(".. autosummary::"):
                in_autosummary = True
                continue
            if in_autosummary:
                if line and not line.startswith(" "):
                    in_autosummary = False
                elif line.strip() and not line.strip().startswith(":"):
                    entries.add(f"{current}.{line.strip()}")
    return entries, modules


def _documented_objects(entries):
    """The classes listed in an autosummary block, whichever module lists them."""
    objects = []
    for entry in entries:
        module_name, _, name = entry.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            continue
        if inspect.isclass(obj):
            objects.append(obj)
    return objects


def test_api_reference_lists_every_public_name():
    entries, modules = _api_entries()
    # A class re-exported by a second public module (skicr.extraction re-exports
    # skicr.streaming.LoaderViews) is documented once: two class pages of one
    # object are a duplicate object description for Sphinx.
    documented_classes = _documented_objects(entries)
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        if module_name not in modules:
            missing.append(f"automodule {module_name}")
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            if f"{module_name}.{name}" not in entries and not (
                inspect.isclass(obj) and any(obj is other for other in documented_classes)
            ):
                missing.append(f"{module_name}.{name}")
    assert not missing, (
        "docs/api/*.rst must list every public name in an autosummary block; missing: "
        + ", ".join(missing)
    )
