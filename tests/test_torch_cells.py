"""jaxgru.lstm and jaxgru.rnn (and their cells) against torch.nn.LSTM / RNN: outputs, final states
and every gradient, in one grid over the cells; episode resets against torch run episode by episode."""

from __future__ import annotations

import dataclasses
import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from _helpers import assert_close, needs_native, random_torch, torch_episodes
from conftest import FLOAT32, FLOAT64

import jaxgru

I, H, P, T, B = 3, 5, 2, 6, 4
IMPLS = ["fused", "native", "reference", "pallas"]  # "auto" runs native (CPU) or fused; Pallas interpreted on the CPU
NATIVE = "native"


def marked(*values) -> pytest.param:
  """One parameter set, skipped where it runs the native kernel and the kernel is not built."""
  return pytest.param(*values, marks=[needs_native] if "native" in values else [])


# A cell as torch builds it and as jaxgru runs it: (name, torch constructor keyword arguments)
CELLS = {
  "lstm": ("LSTM", {}),
  "lstm_proj": ("LSTM", {"proj_size": P}),
  "rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
  "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
}


@dataclasses.dataclass(frozen=True)
class Case:
  layers: int = 1
  bidirectional: bool = False
  batch_first: bool = False
  bias: bool = True
  lengths: list | None = None
  unbatched: bool = False
  h0: bool = False

  def __str__(self) -> str:
    return "-".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items() if v != getattr(Case, k)) or "default"


# float64 proves the maths, on the fused path and the native kernel in every case and on the
# reference (a plain scan over the engine, which the GRU's grid tests in 20 cases) and the Pallas
# kernels (interpreted; tests/test_pallas.py runs them against the reference) in the fullest two;
# float32 the kernels, in the case that reaches every code path. The LSTM without a projection
# and the ReLU RNN differ from the projected LSTM and the tanh RNN only inside the cell: they run
# the cases that reach it.
CASES = [
  Case(),
  Case(batch_first=True, bias=False, h0=True),
  Case(layers=2, bidirectional=True, lengths=[3, T, 1, 4], h0=True),
  Case(bidirectional=True, unbatched=True, h0=True),
  Case(layers=2, bidirectional=True, batch_first=True, lengths=[1, T, 1, 2]),
]
FULL = [(c, FLOAT64, impl) for impl in ("fused", NATIVE) for c in CASES]
FULL += [(CASES[i], FLOAT64, impl) for impl in ("reference", "pallas") for i in (2, 3)]
FULL += [(CASES[2], FLOAT32, impl) for impl in ("fused", NATIVE, "pallas")]
INSIDE = [(CASES[2], precision, impl) for precision in (FLOAT64, FLOAT32) for impl in ("fused", NATIVE)]
CELL_GRID = {
  "lstm_proj": FULL,
  "rnn_tanh": FULL,
  "lstm": [(CASES[i], FLOAT64, "fused") for i in (0, 1)] + [(CASES[2], FLOAT64, "reference")] + INSIDE,
  "rnn_relu": [(CASES[0], FLOAT64, "fused"), (CASES[2], FLOAT64, "pallas")] + INSIDE,
}
GRID = [marked(cell, *entry) for cell, entries in CELL_GRID.items() for entry in entries]


def torch_layer(cell: str, case: Case, dtype) -> torch.nn.Module:
  kind, options = CELLS[cell]
  module = getattr(torch.nn, kind)(
    I, H, case.layers, bias=case.bias, batch_first=case.batch_first, bidirectional=case.bidirectional, **options
  )
  return random_torch(module, seed=zlib.crc32(f"{cell}-{case}".encode()) % 1000, dtype=dtype)


def run_jax(cell: str, params, x, state, **options):
  """``(output, state parts)`` of jaxgru's layer for ``cell``; ``state`` one array (or None) per part."""
  if cell.startswith("lstm"):
    out, (h, c) = jaxgru.lstm(params, x, None if state is None else tuple(state), **options)
    return out, (h, c)
  out, h = jaxgru.rnn(params, x, None if state is None else state[0], nonlinearity=CELLS[cell][1]["nonlinearity"], **options)
  return out, (h,)


def loss_of(out, state, lib):
  """Weights every output and every part of the state differently, so that no gradient hides."""
  return lib.sum(lib.sin(out)) + sum(lib.sum(lib.cos(s) * (k + 1)) for k, s in enumerate(state))


def state_shapes(module, case: Case) -> list[tuple[int, ...]]:
  rows = case.layers * (2 if case.bidirectional else 1)
  sizes = [module.proj_size or H, H] if isinstance(module, torch.nn.LSTM) else [H]
  return [(rows, s) if case.unbatched else (rows, B, s) for s in sizes]


def torch_forward(module, x, state, lengths, batch_first):
  lstm = isinstance(module, torch.nn.LSTM)
  hx = None if state is None else (tuple(state) if lstm else state[0])
  if lengths is None:
    out, final = module(x, hx)
  else:
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    out, final = module(packed, hx)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first, total_length=T)
  return out, (final if lstm else (final,))


@pytest.mark.parametrize(
  "cell, case, precision, impl",
  GRID,
  ids=[f"{c}-{p.name}-{k}-{i}" for c, k, p, i in (entry.values for entry in GRID)],
  indirect=["precision"],
)
def test_layer_matches_torch(cell, case, impl, precision):
  """Outputs, every part of the final state and the gradients of every parameter, x and the
  initial state (h0, and an LSTM's c0), every parameter randomised, biases included."""
  module = torch_layer(cell, case, precision.torch_dtype)
  rng = np.random.default_rng(0)
  shape = (T, I) if case.unbatched else ((B, T, I) if case.batch_first else (T, B, I))
  x = torch.tensor(rng.standard_normal(shape), dtype=precision.torch_dtype, requires_grad=True)
  state = [
    torch.tensor(rng.standard_normal(s), dtype=precision.torch_dtype, requires_grad=True) for s in state_shapes(module, case)
  ]
  out, final = torch_forward(module, x, state if case.h0 else None, case.lengths, case.batch_first)
  loss_of(out, final, torch).backward()
  want_grads = {name: p.grad for name, p in module.named_parameters()}
  want_grads |= {"x": x.grad} | ({f"state{k}": s.grad for k, s in enumerate(state)} if case.h0 else {})

  params = {k: v.detach().numpy() for k, v in module.state_dict().items()}
  lengths = None if case.lengths is None else np.array(case.lengths)
  options = dict(batch_first=case.batch_first, lengths=lengths, impl=impl)

  def loss(params, x, state):
    out, final = run_jax(cell, params, x, state if case.h0 else None, **options)
    return loss_of(out, final, jnp), (out, final)

  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))
  (g_params, g_x, g_state), (got_out, got_final) = grad(params, x.detach().numpy(), [s.detach().numpy() for s in state])
  got_grads = g_params | {"x": g_x} | ({f"state{k}": g for k, g in enumerate(g_state)} if case.h0 else {})
  assert_close(got_out, out, precision.tol, "output")
  assert_close(got_final, final, precision.tol, "final state")
  assert set(got_grads) == set(want_grads)
  for name, want in want_grads.items():
    assert_close(got_grads[name], want, precision.tol, f"d{name}")


@pytest.mark.parametrize(
  "cell, impl",
  [marked(c, i) for c in ("lstm_proj", "rnn_tanh") for i in IMPLS] + [("lstm", "fused"), marked("rnn_relu", "native")],
)
def test_resets_equal_torch_run_episode_by_episode(cell, impl, x64):
  """Resets restart every part of the state (an LSTM's h and c) from the reset state: outputs,
  final states and the gradients of every parameter, x, h0 (c0) and the reset state equal torch's
  layer run on each episode alone, both directions, two layers, with lengths."""
  case = Case(layers=2, bidirectional=True)
  module = torch_layer(cell, case, torch.float64)
  gen = torch.Generator().manual_seed(4)
  x = torch.randn(11, B, I, generator=gen, dtype=torch.float64, requires_grad=True)
  shapes = state_shapes(module, case)
  h0 = [torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes]
  reset_state = [torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes]
  resets = np.random.default_rng(5).random((11, B)) < 0.25
  resets[0, 0], resets[4:6, 1], resets[:, -1] = True, True, False  # step 0, two in a row, none
  lengths = np.array([11, 7, 10, 4])
  out, final = torch_episodes(module, x, h0, resets, reset_state, lengths)
  loss_of(out, final, torch).backward()
  want = [p.grad for _, p in module.named_parameters()] + [x.grad, *(s.grad for s in h0), *(s.grad for s in reset_state)]

  params = {k: v.detach().numpy() for k, v in module.state_dict().items()}

  def loss(params, x, h0, reset_state):
    options = dict(lengths=lengths, resets=resets, impl=impl)
    if cell.startswith("lstm"):
      out, final = jaxgru.lstm(params, x, tuple(h0), reset_state=tuple(reset_state), **options)
    else:
      nonlinearity = CELLS[cell][1]["nonlinearity"]
      out, h = jaxgru.rnn(params, x, h0[0], reset_state=reset_state[0], nonlinearity=nonlinearity, **options)
      final = (h,)
    return loss_of(out, final, jnp), (out, final)

  numpy = lambda tensors: [t.detach().numpy() for t in tensors]  # noqa: E731
  grads, (got_out, got_final) = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(
    params, x.detach().numpy(), numpy(h0), numpy(reset_state)
  )
  assert_close(got_out, out, 1e-10, "output")
  assert_close(got_final, final, 1e-10, "final state")
  g_params, g_x, g_h0, g_reset = grads
  got = [g_params[name] for name, _ in module.named_parameters()] + [g_x, *g_h0, *g_reset]
  assert_close(tuple(got), tuple(want), 1e-10, "gradients")


@pytest.mark.parametrize("cell", ["lstm", "rnn_relu"])  # the tanh RNN's cell is its layer's step, in the grid above
@pytest.mark.parametrize("unbatched", [False, True])
def test_cells_match_torch(cell, unbatched, precision):
  """``lstm_cell`` and ``rnn_cell`` against torch's ``LSTMCell`` and ``RNNCell``, with and without
  a given state and a bias: the new state and the gradients of every parameter, x and the state."""
  kind, options = CELLS[cell]
  for bias, with_state in ((True, True), (False, False)):
    module = random_torch(getattr(torch.nn, kind + "Cell")(I, H, bias=bias, **options), seed=7, dtype=precision.torch_dtype)
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.standard_normal((I,) if unbatched else (B, I)), dtype=precision.torch_dtype, requires_grad=True)
    parts = 2 if kind == "LSTM" else 1
    state = [
      torch.tensor(rng.standard_normal((H,) if unbatched else (B, H)), dtype=precision.torch_dtype, requires_grad=True)
      for _ in range(parts)
    ]
    hx = (tuple(state) if parts == 2 else state[0]) if with_state else None
    new = module(x, hx)
    new = new if parts == 2 else (new,)
    loss_of(torch.zeros(()), new, torch).backward()
    want = [p.grad for _, p in module.named_parameters()] + [x.grad] + ([s.grad for s in state] if with_state else [])

    def loss(params, x, state, with_state=with_state):
      given = state if with_state else None
      if kind == "LSTM":
        new = jaxgru.lstm_cell(params, x, None if given is None else tuple(given))
      else:
        new = (jaxgru.rnn_cell(params, x, None if given is None else given[0], nonlinearity=options["nonlinearity"]),)
      return loss_of(jnp.zeros(()), new, jnp), new

    params = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    (g_params, g_x, g_state), got = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(
      params, x.detach().numpy(), [s.detach().numpy() for s in state]
    )
    assert_close(got, new, precision.tol, "new state")
    got_grads = [g_params[name] for name, _ in module.named_parameters()] + [g_x] + (list(g_state) if with_state else [])
    assert_close(tuple(got_grads), tuple(want), precision.tol, "gradients")


def test_torch_refusals_and_clear_errors():
  """torch's own refusals, in its words where it has them; jaxgru's arguments named."""
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
    jaxgru.init_lstm_params(key, I, H, proj_size=H)
  with pytest.raises(ValueError, match="proj_size should be a positive integer or zero"):
    jaxgru.init_lstm_params(key, I, H, proj_size=-1)
  with pytest.raises(ValueError, match="only supported for LSTM"):
    jaxgru.expected_shapes(I, H, 1, True, False, mode="GRU", proj_size=2)
  with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'. Select from 'tanh' or 'relu'."):
    jaxgru.rnn(jaxgru.init_rnn_params(key, I, H), jnp.ones((T, B, I)), nonlinearity="sigmoid")
  with pytest.raises(ValueError, match="hidden_size must be a positive int"):
    jaxgru.init_lstm_params(key, I, 0)
  params = jaxgru.init_lstm_params(key, I, H, num_layers=2, proj_size=P)
  x = jnp.ones((T, B, I))
  with pytest.raises(TypeError, match=r"hx must be a pair \(h0, c0\)"):
    jaxgru.lstm(params, x, jnp.zeros((2, B, P)))
  with pytest.raises(ValueError, match=r"hx\[1\] \(c0\) must have shape \(2, 4, 5\)"):
    jaxgru.lstm(params, x, (jnp.zeros((2, B, P)), jnp.zeros((2, B, P))))
  with pytest.raises(ValueError, match=r"reset_state\[0\] \(h\) must have shape"):
    jaxgru.lstm(params, x, resets=jnp.zeros((T, B), bool), reset_state=(jnp.zeros((2, H)), None))
  with pytest.raises(ValueError, match="reset_state is the state that resets put in"):
    jaxgru.lstm(params, x, reset_state=(jnp.zeros((2, P)), None))
  with pytest.raises(ValueError, match="remat=True is not supported by impl='pallas'"):
    jaxgru.lstm(params, x, impl="pallas", remat=True)
  with pytest.raises(ValueError, match="params do not describe a torch.nn.LSTM"):
    jaxgru.lstm(jaxgru.init_gru_params(key, I, H), x)  # a GRU's params: 3H rows, not 4H
  with pytest.raises(ValueError, match="unexpected key.*weight_hr_l0"):
    jaxgru.rnn({**jaxgru.init_rnn_params(key, I, H), "weight_hr_l0": jnp.zeros((P, H))}, x)
  with pytest.raises(ValueError, match=r"weight_hr_l0.*proj_size has to be smaller than hidden_size"):
    jaxgru.lstm({**jaxgru.init_lstm_params(key, I, H), "weight_hr_l0": jnp.zeros((H, H))}, x)
  spec = jaxgru.lstm_spec(params)
  assert (spec.mode, spec.num_layers, spec.hidden_size, spec.proj_size, spec.output_size) == ("LSTM", 2, H, P, P)
  assert jaxgru.expected_shapes(I, H, 2, True, True, mode="LSTM", proj_size=P) == {
    k: tuple(v.shape) for k, v in torch.nn.LSTM(I, H, 2, bidirectional=True, proj_size=P).state_dict().items()
  }


@pytest.mark.parametrize("cell", ["lstm_proj", "rnn_relu"])
def test_transforms_compose(cell, x64):
  """Under jit, remat (fused and native), forward mode (the reference, which auto falls back to),
  the LSTM's grad of grad (through the hand-written backward pass, and through the kernel's,
  whose derivative is the fused path's) and the RNN's vmap give the reference's numbers."""
  module = torch_layer(cell, Case(), torch.float64)
  params = {k: jnp.asarray(v.detach().numpy()) for k, v in module.state_dict().items()}
  x = jax.random.normal(jax.random.key(1), (T, B, I), jnp.float64)

  def f(x, impl="auto", remat=False):
    out, state = run_jax(cell, params, x, None, impl=impl, remat=remat)
    return loss_of(out, state, jnp)

  grad = jax.jit(jax.grad(f), static_argnums=(1, 2))
  want = grad(x, "reference")
  assert_close(grad(x, "fused", True), want, 1e-12, "remat")
  if jaxgru.native_available():
    assert_close(grad(x, "native", True), want, 1e-12, "native remat")
  tangent = jnp.ones_like(x)
  assert_close(jax.jit(lambda x: jax.jvp(f, (x,), (tangent,))[1])(x), jnp.sum(want * tangent), 1e-12, "jvp")
  if cell.startswith("lstm"):
    hvp = jax.jit(lambda x, impl: jax.grad(lambda x: jnp.vdot(jax.grad(f)(x, impl), tangent))(x), static_argnums=1)
    assert_close(hvp(x, "fused"), hvp(x, "reference"), 1e-10, "grad of grad")
    if jaxgru.native_available():
      assert_close(hvp(x, "native"), hvp(x, "reference"), 1e-10, "native grad of grad")
  else:
    for impl in ("fused", "native") if jaxgru.native_available() else ("fused",):
      vmapped = jax.jit(jax.vmap(jax.grad(functools.partial(f, impl=impl)), in_axes=1, out_axes=1))
      assert_close(vmapped(x[:, :, None]), want[:, :, None], 1e-12, f"{impl} vmap")


class TorchEncoderDecoder(torch.nn.Module):
  """A torch model mixing the layers: a projected bidirectional LSTM encoder, a GRU, a Linear head."""

  def __init__(self):
    super().__init__()
    self.encoder = torch.nn.LSTM(I, H, 2, bidirectional=True, proj_size=P)
    self.decoder = torch.nn.GRU(2 * P, H)
    self.head = torch.nn.Linear(H, 2)

  def forward(self, x):
    out, _ = self.encoder(x)
    out, _ = self.decoder(out)
    return self.head(out)


def test_model_mixing_lstm_gru_linear_round_trips(x64):
  """Loaded from torch's state dict into jaxgru's NNX modules, the model gives torch's outputs and
  every parameter's gradient; its state dict written back into a fresh torch model equals the
  original bit for bit."""
  from flax import nnx

  torch_model = random_torch(TorchEncoderDecoder(), seed=11, dtype=torch.float64)

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.encoder = jaxgru.LSTM(I, H, 2, bidirectional=True, proj_size=P, param_dtype=jnp.float64, rngs=rngs)
      self.decoder = jaxgru.GRU(2 * P, H, param_dtype=jnp.float64, rngs=rngs)
      self.head = nnx.Linear(H, 2, param_dtype=jnp.float64, rngs=rngs)

    def __call__(self, x):
      return self.head(self.decoder(self.encoder(x)[0])[0])

  model = Model(nnx.Rngs(0))
  state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
  for name in ("encoder", "decoder"):
    getattr(model, name).load_state_dict({k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(name + ".")})
  model.head.kernel[...] = state["head.weight"].T
  model.head.bias[...] = state["head.bias"]

  x = np.random.default_rng(2).standard_normal((T, B, I))
  x_torch = torch.tensor(x, requires_grad=True)
  torch_out = torch_model(x_torch)
  torch_out.sin().sum().backward()

  def loss(model, x):
    out = model(x)
    return jnp.sum(jnp.sin(out)), out

  grads, out = nnx.jit(nnx.grad(loss, argnums=(0, 1), has_aux=True))(model, x)
  assert_close(out, torch_out, 1e-10, "output")
  for name in ("encoder", "decoder"):
    for key in getattr(model, name).state_dict():  # every parameter, by torch's name
      got = getattr(getattr(grads[0], name), key)[...]
      assert_close(got, getattr(torch_model, name).get_parameter(key).grad, 1e-10, f"d{name}.{key}")
  assert_close(grads[0].head.kernel[...].T, torch_model.head.weight.grad, 1e-10, "dhead")
  assert_close(grads[1], x_torch.grad, 1e-10, "dx")

  back = TorchEncoderDecoder().double()
  back.encoder.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.encoder.state_dict().items()})
  back.decoder.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.decoder.state_dict().items()})
  for key, value in back.encoder.state_dict().items():
    assert torch.equal(value, torch_model.encoder.state_dict()[key]), key


def test_modules_equal_the_functions_and_torch_cells():
  """NNX and Linen LSTM and RNN modules compute the functions' numbers from torch-named parameters;
  the cells run inside nnx.RNN and flax.linen.RNN and equal torch's LSTMCell / RNNCell step by step."""
  import flax.linen as linen
  from flax import nnx

  x = np.random.default_rng(3).standard_normal((T, B, I)).astype(np.float32)
  lstm = jaxgru.LSTM(I, H, 2, proj_size=P, batch_first=True, rngs=nnx.Rngs(0))
  out, (h_n, c_n) = lstm(x.swapaxes(0, 1))
  want_out, (want_h, want_c) = jaxgru.lstm(lstm.state_dict(), x)
  assert_close((out.swapaxes(0, 1), h_n, c_n), (want_out, want_h, want_c), 1e-6, "nnx LSTM")
  assert set(lstm.state_dict()) == set(torch.nn.LSTM(I, H, 2, proj_size=P).state_dict())
  rnn = jaxgru.linen.RNN(I, H, nonlinearity="relu", bidirectional=True)
  variables = rnn.init(jax.random.key(0), x)
  got = rnn.apply(variables, x)
  assert_close(got, jaxgru.rnn(variables["params"], x, nonlinearity="relu"), 1e-6, "linen RNN")

  for kind, options in (("LSTM", {}), ("RNN", {"nonlinearity": "relu"})):
    torch_cell = random_torch(getattr(torch.nn, kind + "Cell")(I, H, **options), seed=1, dtype=torch.float32)
    state = None
    steps = []
    for t in range(T):
      state = torch_cell(torch.from_numpy(x[t]), state)
      steps.append(state[0] if kind == "LSTM" else state)
    want = torch.stack(steps, 1)  # (B, T, H), batch-major like Flax's RNN
    nnx_cell = getattr(jaxgru, kind + "Cell")(I, H, **options, rngs=nnx.Rngs(0))
    nnx_cell.load_state_dict(torch_cell.state_dict())
    with jax.default_matmul_precision("highest"):
      assert_close(nnx.RNN(nnx_cell)(x.swapaxes(0, 1)), want, 1e-5, f"nnx {kind}Cell")
      linen_rnn = linen.RNN(getattr(jaxgru.linen, kind + "Cell")(I, H, **options))
      params = {"params": {"cell": {k: v.detach().numpy() for k, v in torch_cell.state_dict().items()}}}
      assert_close(linen_rnn.apply(params, x.swapaxes(0, 1)), want, 1e-5, f"linen {kind}Cell")
