"""Checks a freshly built native kernel before it is installed: ``python native/check_kernel.py DIR``.

``setup.py`` runs this in a subprocess after it has built and stripped ``_gru_kernel.so``, with
DIR a copy of jaxgru's Python sources holding that library. The kernel runs beside the reference
implementation (plain JAX) on small random GRUs, LSTMs (with and without a projection) and RNNs
(tanh and ReLU), every parameter randomised: float32 and float64, one and two directions, with and
without ``lengths``, with episode ``resets``, forward (outputs, final states) and backward (the
gradients of the parameters, the input, the initial state and the reset state), on every float32
engine this CPU runs (``avx512``, ``avx2``, ``blas``). The GRU runs every combination in two
layers; each other cell, whose time loop is the GRU's, one layer in the fullest case (two
directions, lengths and resets) in float32, and the projected LSTM (every code path of the
LSTM's) in float64 too. A kernel that crashes here (a toolchain
that mislinks it: a signal ends this process, not the install) or disagrees is not installed.

Only jax is imported, not flax: the build environment has jax, jaxlib and OpenBLAS, nothing else.
Prints one line per case and exits 0 when the kernel agrees; otherwise its last line says why.
"""

from __future__ import annotations

import functools
import sys
import types

# float64 proves the maths, float32 the products (each against the reference at "highest" precision)
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}


def main(package: str) -> int:
  import jax

  jax.config.update("jax_enable_x64", True)
  jax.config.update("jax_default_matmul_precision", "highest")
  import jax.numpy as jnp

  stub = types.ModuleType("jaxgru")  # the package without its __init__, which imports flax
  stub.__path__ = [package]
  sys.modules["jaxgru"] = stub
  from jaxgru import _core, _lstm, _native_library, _params, _rnn

  if (reason := _native_library.native_status()) is not None:
    print(f"the kernel does not load: {reason}")
    return 1
  kernel = _native_library.load.libraries[1]
  engines = [isa for isa in _native_library.ISAS if kernel.jaxgru_select_isa(isa.encode())]

  T, B, I, H, P = 7, 5, 6, 19, 4
  # cell: (init, layer, its state's feature sizes, keyword arguments)
  cells = {
    "GRU": (_params.init_gru_params, _core.gru, (H,), {}),
    "LSTM": (_params.init_lstm_params, _lstm.lstm, (H, H), {}),
    "LSTM, proj_size 4": (functools.partial(_params.init_lstm_params, proj_size=P), _lstm.lstm, (P, H), {}),
    "RNN, tanh": (_params.init_rnn_params, _rnn.rnn, (H,), {}),
    "RNN, relu": (_params.init_rnn_params, _rnn.rnn, (H,), {"nonlinearity": "relu"}),
  }

  def loss(params, x, h0, reset_state, lengths, resets, cell, impl):
    _, layer, sizes, options = cells[cell]
    unpack = (lambda s: s) if len(sizes) > 1 else (lambda s: s[0])
    reset_state = None if resets is None else unpack(reset_state)
    out, h_n = layer(params, x, unpack(h0), lengths=lengths, resets=resets, reset_state=reset_state, impl=impl, **options)
    return jnp.sum(jnp.sin(out)) + sum(jnp.sum(jnp.cos(h) * (k + 1)) for k, h in enumerate(jax.tree.leaves(h_n))), (out, h_n)

  # compiled once per cell, impl and shape: the engines, picked at run time, share a program
  program = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True), static_argnums=(6, 7))

  def run(params, x, h0, reset_state, lengths, resets, cell, impl):
    (_, outs), grads = program(params, x, h0, reset_state, lengths, resets, cell, impl)
    return jax.tree.leaves((outs, grads))

  keys = iter(jax.random.split(jax.random.key(0), 1024))
  for cell, (init, _, sizes, _) in cells.items():
    for dtype in ("float32", "float64"):
      for bidirectional in (False, True):
        D = 2 if bidirectional else 1
        layers = 2 if cell == "GRU" else 1
        if cell != "GRU" and (not bidirectional or (dtype == "float64" and cell != "LSTM, proj_size 4")):
          continue
        params = init(next(keys), I, H, num_layers=layers, bidirectional=bidirectional, dtype=dtype)
        params = {k: v + 0.1 * jax.random.normal(next(keys), v.shape, v.dtype) for k, v in params.items()}  # biases too
        x = jax.random.normal(next(keys), (T, B, I), dtype)
        h0 = tuple(jax.random.normal(next(keys), (layers * D, B, n), dtype) for n in sizes)
        reset_state = tuple(jax.random.normal(next(keys), (layers * D, B, n), dtype) for n in sizes)
        some_lengths = jnp.array([7, 3, 1, 7, 5])
        some_resets = jax.random.bernoulli(next(keys), 0.3, (T, B))
        combinations = ((None, None), (some_lengths, None), (some_lengths, some_resets))
        if cell != "GRU":  # the fullest
          combinations = combinations[2:]
        for lengths, resets in combinations:
          if (err := compare(run, engines, kernel, params, x, h0, reset_state, lengths, resets, cell, dtype)) is not None:
            return err
  return 0


def compare(run, engines, kernel, params, x, h0, reset_state, lengths, resets, cell, dtype) -> int | None:
  """Runs one case on each engine against the reference; prints a line each, returns 1 where they disagree."""
  import numpy as np

  want = run(params, x, h0, reset_state, lengths, resets, cell, "reference")
  D = 2 if "weight_ih_l0_reverse" in params else 1
  for engine in engines if dtype == "float32" else ["blas"]:
    kernel.jaxgru_select_isa(engine.encode())
    got = run(params, x, h0, reset_state, lengths, resets, cell, "native")
    err = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(got, want, strict=True))
    case = f"{cell}, {dtype}, {D} direction(s), lengths {'yes' if lengths is not None else 'no'}, "
    case += f"resets {'yes' if resets is not None else 'no'}, {engine}"
    print(f"{case}: max abs error {err:.1e} (outputs, final states, gradients)", flush=True)
    if not err <= TOLERANCE[dtype]:
      print(f"the kernel disagrees with the reference ({case}): max abs error {err:.1e} > {TOLERANCE[dtype]:.0e}")
      return 1
  return None


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit(__doc__.split("\n\n")[0])
  sys.exit(main(sys.argv[1]))
