"""What the tests share: random torch GRUs, the one comparison every torch-vs-JAX test goes
through (``parity``'s), one array comparison for everything else, and fresh interpreters."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import torch

import jaxgru
import jaxgru._validate
import parity

ROOT = pathlib.Path(__file__).resolve().parent.parent

# impl="native" needs the C++ kernel, which a machine without a compiler does not build.
# An explicit-sharding mesh set for a block of code: jax.set_mesh, from jax 0.8 (the oldest
# supported JAX, 0.7, has jax.sharding.use_mesh instead; the guide 'Supported versions' says so).
needs_set_mesh = pytest.mark.skipif(
  not hasattr(jax, "set_mesh"), reason="explicit-sharding meshes: jax.set_mesh needs jax >= 0.8"
)
needs_native = pytest.mark.skipif(not jaxgru.native_available(), reason=f"native kernel: {jaxgru.native_status()}")
# Every implementation as a test parameter, the native kernel where it is built; EXPLICIT_IMPLS
# leaves out "auto", which runs one of the others (the kernel on this CPU, else fused): a grid
# that compares each with torch proves auto's numbers through the one it picks.
IMPLS = [pytest.param(impl, marks=needs_native) if impl == "native" else impl for impl in jaxgru._validate.IMPLS]
EXPLICIT_IMPLS = [impl for impl in IMPLS if impl != "auto"]


def random_torch(module: torch.nn.Module, seed: int, dtype: torch.dtype) -> torch.nn.Module:
  """Every parameter, biases included, redrawn from U(-0.6, 0.6): zero biases hide bugs."""
  gen = torch.Generator().manual_seed(seed)
  module = module.to(dtype)
  with torch.no_grad():
    for p in module.parameters():
      p.copy_(torch.rand(p.shape, generator=gen, dtype=dtype) * 1.2 - 0.6)
  return module


def compare_with_torch(module, x, h0=None, *, lengths=None, seed=0, tol=None, impl=None, remat=False) -> parity.Report:
  """``module`` (torch) against ``parity.from_torch(module)``: outputs, ``h_n`` and the gradients
  of every parameter, ``x`` and ``h0`` within ``tol`` (see :func:`parity.compare`); ``impl``, when
  given, and ``remat`` set the :class:`jaxgru.GRU`'s ``impl`` and ``remat`` (see :func:`jaxgru.gru`)."""
  jax_module = parity.from_torch(module)
  if impl is not None:
    jax_module.impl, jax_module.remat = impl, remat
  return parity.assert_close(module, jax_module, x, h0, lengths=lengths, seed=seed, tol=tol)


def assert_close(got, want, tol: float, what: str = "", *, of_max: bool = False) -> None:
  """Every array of ``got`` (a pytree: arrays, tuples, dicts, torch tensors) against the same
  place in ``want``: the same shape, NaN and infinities in the same places, and elsewhere each
  entry within ``tol * (1 + |want|)`` (``np.testing.assert_allclose`` with ``rtol = atol = tol``;
  ``tol=0``: equal), or with ``of_max`` the criterion of :func:`parity.compare`, ``max |got -
  want| <= tol * max(1, max |want|)`` (for runs whose sums go in another order, as on other
  device counts)."""
  got, want = (np.asarray(a) if isinstance(a, list) else a for a in (got, want))  # a list of numbers (JSON) is an array
  got_leaves, structure = jax.tree.flatten(got)
  want_leaves = structure.flatten_up_to(want)
  for i, (g, w) in enumerate(zip(got_leaves, want_leaves, strict=True)):
    g, w = (np.asarray(a.detach() if torch.is_tensor(a) else a, np.float64) for a in (g, w))
    where = f"{what} [{i}]" if len(got_leaves) > 1 else what
    assert g.shape == w.shape, f"{where}: shape {g.shape} against {w.shape}"
    finite = np.isfinite(w)
    assert np.array_equal(g[~finite], w[~finite], equal_nan=True), f"{where}: NaN or infinities in other places"
    g, w = g[finite], w[finite]
    if not g.size:
      continue
    if of_max:
      err, scale = float(np.max(np.abs(g - w))), max(1.0, float(np.max(np.abs(w))))
      assert err <= tol * scale, f"{where}: max abs error {err:.3g} > {tol:g} x {scale:.3g}"
    else:
      excess = np.abs(g - w) - tol * (1 + np.abs(w))
      worst = int(np.argmax(excess))
      assert excess[worst] <= 0, f"{where}: error {abs(g[worst] - w[worst]):.3g} at {w[worst]:.3g} > {tol:g} x (1 + |want|)"


def torch_episodes(module, x, h0, resets, reset_state, lengths=None):
  """(output (T, B, D*out), state parts): each episode of each row through the torch layer
  ``module`` (GRU, LSTM or RNN) alone, zeros past a row's length. ``h0`` and ``reset_state``:
  one tensor (L*D, B, ·) per part of the state (an LSTM's h and c); the forward direction starts
  a row's first episode from ``h0`` unless step 0 resets, the reverse direction its last one, and
  every other episode starts from the reset state (the contract of :func:`jaxgru.gru`)."""
  steps, batch, _ = x.shape
  D = 2 if module.bidirectional else 1
  lstm = isinstance(module, torch.nn.LSTM)
  out_size = module.proj_size or module.hidden_size if lstm else module.hidden_size
  outputs, finals = [], []
  for b in range(batch):
    n = steps if lengths is None else int(lengths[b])
    cuts = [0] + [t for t in range(1, n) if resets[t, b]] + [n]
    episodes = list(zip(cuts[:-1], cuts[1:], strict=True))
    pieces, last = [], [[None] * len(h0) for _ in range(h0[0].shape[0])]
    for k, (start, end) in enumerate(episodes):
      inits = []
      for part, reset_part in zip(h0, reset_state, strict=True):
        rows = []
        for i in range(part.shape[0]):
          from_h0 = (k == 0 and not resets[0, b]) if i % D == 0 else k == len(episodes) - 1
          rows.append(part[i, b] if from_h0 else reset_part[i, b])
        inits.append(torch.stack(rows)[:, None])
      out, state = module(x[start:end, b : b + 1], tuple(inits) if lstm else inits[0])
      state = state if lstm else (state,)
      pieces.append(out[:, 0])
      for i in range(h0[0].shape[0]):
        if (i % D == 0 and k == len(episodes) - 1) or (i % D == 1 and k == 0):
          last[i] = [s[i, 0] for s in state]
    pieces.append(torch.zeros(steps - n, D * out_size, dtype=x.dtype))
    outputs.append(torch.cat(pieces))
    finals.append([torch.stack(parts) for parts in zip(*last, strict=True)])
  return torch.stack(outputs, 1), tuple(torch.stack(parts, 1) for parts in zip(*finals, strict=True))


def xla_env(devices: int = 1, **more: str) -> dict[str, str]:
  """The environment of a subprocess on ``devices`` simulated CPU devices, with the suite's XLA
  flags (``conftest``), and ``more`` variables."""
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags, **more)


def run_python(code: str, devices: int = 1, check: bool = True) -> subprocess.CompletedProcess:
  """Runs ``code`` in a fresh interpreter with ``devices`` simulated CPU devices, the repository
  and ``examples/`` importable."""
  env = xla_env(devices)
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "examples"), env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True, text=True)
  if check and proc.returncode:
    raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}")
  return proc
