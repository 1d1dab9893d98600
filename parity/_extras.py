"""The optional packages parity uses, the extra of jaxgru's that installs each, and the error
that says which to install when one is missing (instead of a bare ``No module named 'torch'``)."""

from __future__ import annotations

# import name -> the extra of jaxgru that installs it (pyproject.toml's optional-dependencies)
EXTRA = {
  "torch": "parity",
  "safetensors": "parity",
  "optax": "examples",
  "matplotlib": "examples",
  "tqdm": "examples",
  "orbax": "examples",
  "equinox": "others",
  "haiku": "others",
  "keras": "keras",
  "onnx": "onnx",
  "onnxruntime": "onnx",
  "torchrl": "torchrl",
  "tensordict": "torchrl",
  "gymnax": "examples",
}


def missing(error: ModuleNotFoundError, what: str) -> ModuleNotFoundError:
  """The error to raise when ``what`` (a module, a command) failed to import an optional package:
  it names the package and the extra that installs it. An error about any other module comes
  back as it was."""
  package = (error.name or "").split(".")[0]
  if package not in EXTRA:
    return error
  extras = "parity,examples" if what == "jaxgru-sine" else EXTRA[package]
  return ModuleNotFoundError(
    f"{what} needs {package}, which is not installed; it comes with jaxgru's [{extras}] extra: pip install 'jaxgru[{extras}]'",
    name=error.name,
  )
