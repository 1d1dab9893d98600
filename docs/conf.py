"""Sphinx configuration: ``bash scripts/docs.sh`` builds the site into docs/_build/html.

Sphinx with MyST (Markdown pages) and myst-nb (their code cells executed at every build), and
sphinx-book-theme: the toolchain JAX, Flax and optax build their sites with. The docstrings are
Google style with RST maths (``.. math::``), read by napoleon and rendered by MathJax, which the
site carries (sphinx-mathjax-offline) so that its pages render without a network.
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
  "sphinx-mathjax-offline",  # MathJax copied into the site, not fetched from a CDN
  "sphinx.ext.viewcode",
  "sphinx.ext.intersphinx",
  "sphinx_copybutton",
]
# Copy buttons copy the code, not the prompts or outputs of docstring examples.
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = False
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}

# API pages: signatures with their types, members in source order, no private names, no base
# classes (autodoc reads any value of a flag option, False included, as the flag set).
autodoc_default_options = {"members": True, "member-order": "bysource"}
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
myst_heading_anchors = 3  # [text](#a-heading) links within and across pages

html_theme = "sphinx_book_theme"
html_title = f"jaxgru {release}"
html_theme_options = {"show_toc_level": 2, "use_download_button": False}
# One search box: the one in the page header; the sidebar lists the pages only.
html_sidebars = {"**": ["navbar-logo.html", "sbt-sidebar-nav.html"]}
html_static_path = ["_static"]
html_css_files = ["jaxgru.css"]


class _Source:
  """A default value shown as the source spells it (``jnp.float32``, not ``<class 'jax.numpy.float32'>``)."""

  def __init__(self, text: str) -> None:
    self.text = text

  def __repr__(self) -> str:
    return self.text


def _constructor_signatures() -> None:
  """The modules' signatures as a reader writes the call. Flax NNX modules are built by their
  metaclass's ``__call__(*args, **kwargs)``, which autodoc would show as the class's signature:
  show ``__init__``'s instead (for the docs only: set on the class, ``__signature__`` would also
  answer for instances, whose call is ``__call__``). Linen's are dataclasses, whose generated
  ``__init__`` lost the source's spelling of the defaults."""
  import inspect

  for cls in (jaxgru.GRU, jaxgru.GRUCell, jaxgru.linen.GRU, jaxgru.linen.GRUCell):
    init = inspect.signature(cls.__init__)
    params = []
    for param in list(init.parameters.values())[1:]:
      default = param.default
      if param.name == "parent":  # Linen's, set by Flax itself
        continue
      if isinstance(default, type) and default.__module__.startswith("jax.numpy"):
        param = param.replace(default=_Source(f"jnp.{default.__name__}"))
      elif inspect.isfunction(default) and "initializers" in default.__module__:
        param = param.replace(default=_Source(f"jax.nn.initializers.{default.__name__}"))
      params.append(param)
    cls.__signature__ = init.replace(parameters=params)


_constructor_signatures()
