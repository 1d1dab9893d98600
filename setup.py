"""Builds the optional native kernel (native/gru_kernel.cc); everything else is in pyproject.toml.

The kernel is an XLA FFI custom call that ``jaxgru._native`` loads with ``ctypes``: a plain shared
library, not a CPython extension. So it is named ``jaxgru/_gru_kernel.so`` whatever the Python,
and the wheel is tagged ``py3-none-<platform>``: one wheel serves every Python the project
supports. It is compiled against the XLA FFI headers of the oldest jaxlib in the supported range
(a build requirement in pyproject.toml), whose FFI API version every newer XLA accepts: one
binary for the whole range. libstdc++ is linked statically (its symbols hidden, unused sections
dropped), so the library needs only the C library and libgcc_s, which keeps the wheel's manylinux
policy as low as the build machine's glibc allows (``scripts/wheel.sh`` repairs and checks it).

Where the compiler or the headers are missing or the build fails, the install goes on without
the kernel (``optional=True``) and jaxgru runs on its XLA paths; ``jaxgru.native_available()``
and ``jaxgru.native_status()`` say which and why.
"""

import importlib.util
import os
import pathlib

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:
  from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
  from wheel.bdist_wheel import bdist_wheel


def _ffi_include() -> str | None:
  spec = importlib.util.find_spec("jaxlib")
  if spec is None or not spec.submodule_search_locations:
    return None
  include = pathlib.Path(next(iter(spec.submodule_search_locations))) / "include"
  return str(include) if (include / "xla" / "ffi" / "api" / "ffi.h").exists() else None


class BuildKernel(build_ext):
  """Names the library ``_gru_kernel.so`` (no Python ABI in the name: ctypes loads it), and says
  so plainly when it could not be built."""

  def get_ext_filename(self, fullname: str) -> str:
    return os.path.join(*fullname.split(".")) + ".so"

  def run(self) -> None:
    try:
      super().run()
    finally:
      if self.extensions and not all(os.path.exists(self.get_ext_fullpath(e.name)) for e in self.extensions):
        print("jaxgru: the native CPU kernel was not built (see the compiler's message above); jaxgru runs on its XLA paths")


class Wheel(bdist_wheel):
  """A platform wheel for any Python 3: the only binary is the ctypes-loaded kernel."""

  def finalize_options(self) -> None:
    super().finalize_options()
    self.root_is_pure = False

  def get_tag(self) -> tuple[str, str, str]:
    return "py3", "none", super().get_tag()[2]


include = _ffi_include()
if include is None:
  print("jaxgru: jaxlib's XLA FFI headers were not found at build time; installing without the native CPU kernel")
kernel = Extension(
  "jaxgru._gru_kernel",
  sources=["native/gru_kernel.cc"],
  depends=["native/gru_support.h", "native/gru_gemm.h", "native/gru_gemm_isa.h"],
  include_dirs=[include] if include else [],
  language="c++",
  # -fno-trapping-math: no FP exception flags are read, and without it GCC vectorises the gate
  # loops only in their AVX-512 clone (the AVX2 one ran scalar: benchmarks/NOTES.md, entry 11f)
  extra_compile_args=[
    *("-std=c++17", "-O3", "-g0", "-fno-trapping-math", "-Wno-attributes", "-Wno-return-type"),
    *("-ffunction-sections", "-fdata-sections"),  # for --gc-sections below
  ],
  # libstdc++ inside the library, its symbols kept to itself (jaxlib brings its own); libgcc stays
  # shared (its static unwinder needs glibc 2.35's _dl_find_object); stripped: 0.8 MB, not 5.6
  extra_link_args=["-static-libstdc++", "-Wl,--exclude-libs,ALL", "-Wl,--gc-sections", "-s"],
  optional=True,
)
setup(ext_modules=[kernel] if include else [], cmdclass={"build_ext": BuildKernel, "bdist_wheel": Wheel})
