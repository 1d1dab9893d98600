"""Sphinx configuration: ``bash scripts/docs.sh`` builds the site into docs/_build/html.

Sphinx with MyST (Markdown pages) and myst-nb (their code cells executed at every build), and
sphinx-book-theme: the toolchain JAX, Flax and optax build their sites with. The docstrings are
Google style with RST maths (``.. math::``), read by napoleon and rendered by MathJax.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jaxgru  # noqa: E402

project = "jaxgru"
author = "The jaxgru authors"
copyright = "2026, The jaxgru authors"  # noqa: A001
release = jaxgru.__version__

extensions = [
  "myst_nb",
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx.ext.viewcode",
  "sphinx.ext.intersphinx",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}

# API pages: signatures with their types, members in source order, no private names.
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": False}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields of the class, not objects of their own

# Guides: every code cell runs at build time; an error fails the build (-W).
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "colon_fence"]

html_theme = "sphinx_book_theme"
html_title = f"jaxgru {release}"
html_theme_options = {"show_toc_level": 2, "use_download_button": False}
