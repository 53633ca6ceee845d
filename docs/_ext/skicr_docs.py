"""Sphinx helpers for the skicr docs (also imported by ``tests/test_docstrings.py``).

* ``skicr.FeatureExtractor`` and the other top-level names are re-exports:
  each object is documented once, under its public subpackage
  (``skicr.extraction.FeatureExtractor``), and references to the short
  top-level name are resolved to it here.
* Class pages list the members defined in skicr (including those inherited
  from skicr base classes), not those inherited from scikit-learn, torch or
  the standard library, which those projects document.
* Constants re-exported by a package (``skicr.models.SIGMA_DATA``) are
  documented by a ``#:`` comment, or a string right after the assignment, in
  the module that assigns them; autodoc only looks in the package itself.
"""

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
from pathlib import Path

import skicr


# ---------------------------------------------------------------- constants


def _assigned_names(node):
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [t.id for t in targets if isinstance(t, ast.Name)]


def attribute_docs(path):
    """Documented module-level names of one source file.

    Parameters
    ----------
    path : str or Path
        A Python source file.

    Returns
    -------
    docs : dict of str to str
        Name -> its documentation: the ``#:`` comment lines right above its
        assignment, else a string literal right after it.
    """
    source = Path(path).read_text(encoding="utf-8")
    lines = source.splitlines()
    body = ast.parse(source).body
    docs = {}
    for position, node in enumerate(body):
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            continue
        comment = []
        row = node.lineno - 2
        while row >= 0 and lines[row].strip().startswith("#:"):
            comment.insert(0, lines[row].strip()[2:].strip())
            row -= 1
        text = " ".join(comment)
        following = body[position + 1] if position + 1 < len(body) else None
        if not text and isinstance(following, ast.Expr) and isinstance(
            getattr(following, "value", None), ast.Constant
        ) and isinstance(following.value.value, str):
            text = inspect.cleandoc(following.value.value)
        if text:
            for name in _assigned_names(node):
                docs[name] = text
    return docs


def find_attribute_doc(module_name, name):
    """Documentation of a constant exported by a module or by any module of a package.

    Parameters
    ----------
    module_name : str
        The public module whose ``__all__`` lists ``name``.
    name : str
        The constant's name.

    Returns
    -------
    doc : str or None
        None when no module assigns ``name`` with a ``#:`` comment or a
        docstring.
    """
    module = importlib.import_module(module_name)
    files = [module.__file__]
    if hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, prefix=module_name + "."):
            spec = importlib.util.find_spec(info.name)
            if spec is not None and spec.origin and spec.origin.endswith(".py"):
                files.append(spec.origin)
    for path in files:
        doc = attribute_docs(path).get(name)
        if doc:
            return doc
    return None


def document_constants(app, what, name, obj, options, lines):
    """``autodoc-process-docstring`` handler for re-exported constants."""
    if what != "data" or not name.startswith("skicr."):
        return
    module_name, _, attr = name.rpartition(".")
    doc = find_attribute_doc(module_name, attr)
    type_doc = inspect.getdoc(type(obj)) or ""
    if doc:
        lines[:] = doc.splitlines()
    elif "\n".join(lines).strip() == type_doc.strip():
        lines[:] = []  # never show the docstring of float or dict as the constant's


# ---------------------------------------------------------------- references


def _top_level_target(target, module=None):
    """``skicr.X[.attr]`` -> ``<module of X>.X[.attr]`` for a lazily re-exported X.

    A bare ``X[.attr]`` written in the context of the ``skicr`` package (the
    top-level API page) is read as ``skicr.X[.attr]``.
    """
    parts = target.split(".")
    if module == "skicr" and parts[0] in skicr._LAZY:
        parts = ["skicr", *parts]
    if len(parts) < 2 or parts[0] != "skicr" or parts[1] not in skicr._LAZY:
        return None
    return ".".join([skicr._LAZY[parts[1]], *parts[1:]])


def resolve_top_level(app, env, node, contnode):
    """``missing-reference`` handler for references to top-level re-exports."""
    if node.get("refdomain") != "py":
        return None
    target = _top_level_target(node.get("reftarget", ""), node.get("py:module"))
    if target is None:
        return None
    node = node.deepcopy()
    node["reftarget"] = target
    return env.get_domain("py").resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], target, node, contnode
    )


# ---------------------------------------------------------------- class members


def _defining_module(obj):
    """Module that defines a class member; None for plain data attributes."""
    if hasattr(obj, "__objclass__"):  # C-level methods and descriptors (numpy, torch)
        return getattr(obj.__objclass__, "__module__", "") or ""
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if inspect.isroutine(obj) or inspect.isclass(obj):
        return getattr(obj, "__module__", None) or ""
    return None


def skip_foreign_members(app, what, name, obj, skip, options):
    """``autodoc-skip-member`` handler: on class pages keep only skicr's own members."""
    if what != "class" or skip:
        return None
    module = _defining_module(obj)
    if module is None:
        return None  # data attributes: autodoc's rules (documented ones only)
    if not re.match(r"skicr(\.|$)", module):
        return True
    return None


def setup(app):
    app.connect("missing-reference", resolve_top_level)
    app.connect("autodoc-skip-member", skip_foreign_members)
    app.connect("autodoc-process-docstring", document_constants, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
