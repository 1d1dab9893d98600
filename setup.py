"""Builds the optional native kernel (native/gru_kernel.cc); everything else is in pyproject.toml.

The kernel is an XLA FFI custom call: it needs a C++17 compiler and the FFI headers that the
jaxlib wheel ships (a build requirement). Where either is missing or the build fails, the
install goes on without it (``optional=True``) and jaxgru runs on its XLA paths;
``jaxgru.native_available()`` says which.
"""

import importlib.util
import pathlib

from setuptools import Extension, setup


def _ffi_include() -> str | None:
  spec = importlib.util.find_spec("jaxlib")
  if spec is None or not spec.submodule_search_locations:
    return None
  include = pathlib.Path(next(iter(spec.submodule_search_locations))) / "include"
  return str(include) if (include / "xla" / "ffi" / "api" / "ffi.h").exists() else None


include = _ffi_include()
kernel = Extension(
  "jaxgru._gru_kernel",
  sources=["native/gru_kernel.cc"],
  depends=["native/gru_support.h", "native/gru_gemm.h", "native/gru_gemm_isa.h"],
  include_dirs=[include] if include else [],
  language="c++",
  # -fno-trapping-math: no FP exception flags are read, and without it GCC vectorises the gate
  # loops only in their AVX-512 clone (the AVX2 one ran scalar: benchmarks/NOTES.md, entry 11f)
  extra_compile_args=["-std=c++17", "-O3", "-fno-trapping-math", "-Wno-attributes", "-Wno-return-type"],
  optional=True,
)
setup(ext_modules=[kernel] if include else [])
