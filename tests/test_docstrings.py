"""The examples in the docstrings of the public API run and print what they say (doctest)."""

from __future__ import annotations

import doctest
import importlib
import inspect

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxgru
import parity


def _public_objects():
  """(qualified name, object) for every public name of jaxgru, jaxgru.linen, parity and its frameworks."""
  found = []
  modules = {
    "jaxgru": jaxgru.__all__,
    "jaxgru.linen": ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNCell"],
    "parity": parity.__all__,
    "parity.frameworks.keras": None,
    "parity.frameworks.onnx": None,
    "parity.frameworks.other_jax": None,
    "parity.frameworks.cell_trees": None,
    "parity.frameworks.torchrl": None,
  }
  for module_name, names in modules.items():
    module = importlib.import_module(module_name)
    found.append((module_name, module))
    for name in names if names is not None else module.__all__ if hasattr(module, "__all__") else []:
      obj = getattr(module, name)
      found.append((f"{module_name}.{name}", obj))
      for attr, member in vars(obj).items() if isinstance(obj, type) else []:
        if callable(member) and (not attr.startswith("_") or attr == "__call__"):
          found.append((f"{module_name}.{name}.{attr}", member))
  return found


GLOBALS = {"jax": jax, "jnp": jnp, "np": np, "nnx": nnx, "flax": flax, "torch": torch, "jaxgru": jaxgru, "parity": parity}
EXAMPLES = [
  (name, test)
  for name, obj in _public_objects()
  for test in doctest.DocTestFinder(recurse=False).find(obj, name, globs=dict(GLOBALS))
  if test.examples
]


@pytest.mark.parametrize("test", [t for _, t in EXAMPLES], ids=[n for n, _ in EXAMPLES])
def test_docstring_examples_run(test, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  test.globs.update(GLOBALS)
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  runner.run(test)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, f"{test.name}: {result.failed} of {result.attempted} examples failed (see the output above)"


def test_there_are_examples():
  names = {n for n, _ in EXAMPLES}
  assert {"jaxgru.gru", "jaxgru.GRU", "jaxgru.GRUCell.forward", "parity.assert_close"} <= names, sorted(names)


# functions that take nothing or never raise: their docstrings say so instead of a section
NO_ARGS = {"jaxgru.native_available", "jaxgru.native_status", "jaxgru.export_checks"}
NEVER_RAISE = {"jaxgru.native_available", "jaxgru.native_status", "jaxgru.export_checks"}


MODULES = {n for n, o in _public_objects() if inspect.ismodule(o)}
FUNCTIONS = [(n, o) for n, o in _public_objects() if inspect.isfunction(o) and n.rpartition(".")[0] in MODULES]


@pytest.mark.parametrize("name, obj", FUNCTIONS, ids=[n for n, _ in FUNCTIONS])
def test_public_functions_have_every_section(name, obj):
  """Every public function documents its arguments, what it returns, what it raises, and has an
  example (which test_docstring_examples_run runs)."""
  text = inspect.getdoc(obj) or ""
  missing = [
    section
    for section in ("Args:", "Returns:", "Raises:", "Example")
    if section not in text and not (section == "Args:" and name in NO_ARGS) and not (section == "Raises:" and name in NEVER_RAISE)
  ]
  assert not missing, f"{name}'s docstring lacks {missing}"
