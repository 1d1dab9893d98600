"""parity's folders (weights, proof, frameworks, sine) and the frameworks' short names, which are
attributes of ``parity`` imported on first use."""

from __future__ import annotations

import importlib
import pathlib
import warnings

import pytest
from _helpers import run_python

import parity

ROOT = pathlib.Path(__file__).parent.parent
FRAMEWORKS = ("keras", "onnx", "other_jax", "torchrl")


def test_the_folders_hold_the_four_concerns():
  folders = sorted(p.name for p in (ROOT / "parity").iterdir() if (p / "__init__.py").exists())
  assert folders == ["frameworks", "proof", "sine", "weights"]


@pytest.mark.parametrize("name", FRAMEWORKS)
def test_a_frameworks_short_name_is_its_module_without_a_warning(name):
  pytest.importorskip(f"parity.frameworks.{name}", reason="needs its extra")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    namespace = {}
    exec(f"from parity import {name} as short", namespace)
  assert namespace["short"] is getattr(parity, name) is importlib.import_module(f"parity.frameworks.{name}")
  assert name in dir(parity)


def test_an_unknown_name_is_an_attribute_error():
  with pytest.raises(AttributeError, match="no attribute 'nope'"):
    parity.nope  # noqa: B018
  with pytest.raises(ModuleNotFoundError):
    importlib.import_module("parity.nope")


def test_a_short_name_without_its_extra_names_the_extra():
  """In a fresh interpreter where Keras is missing (the import of it fails)."""
  proc = run_python("import sys\nsys.modules['keras'] = None\nfrom parity import keras\n", check=False)
  assert proc.returncode == 1
  assert "ModuleNotFoundError: parity.keras needs keras" in proc.stderr and "pip install 'jaxgru[keras]'" in proc.stderr, (
    proc.stderr
  )
