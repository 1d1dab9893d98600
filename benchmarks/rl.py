"""Recurrent-policy shapes: a rollout of concatenated episodes through a GRU or an LSTM with episode resets.

A recurrent PPO or A2C update runs its GRU (or LSTM) over T steps of B environments, restarting
the state wherever an episode began. Three ways to compute it, float32:

- ``jaxgru``: ``jaxgru.gru(params, x, resets=resets)`` (``jaxgru.lstm``; ``impl="auto"``).
- ``flax_scan``: what JAX RL code writes by hand, ``nn.scan`` over Flax Linen's ``GRUCell``
  (``OptimizedLSTMCell``) with the state zeroed, ``h = jnp.where(reset[:, None], 0, h)``, before
  each step (purejaxrl's ``ScannedRNN``; both parts of an LSTM's carry).
- ``torchrl``: torchrl's ``GRUModule`` (``LSTMModule``) in recurrent mode (``is_init``), its default backend.

Modes: ``forward`` (the features of the rollout) and ``train`` (a linear value head on the
features, squared error, the gradient of every parameter and one Adam step: the update's
shape). Resets: each step of each environment with probability ``--reset-rate`` (1%).

Timing: each contender alone. After compiling and a warm-up call, each contender's calls are
timed back to back in blocks of ``--block``, each block after an untimed pause (torch's OpenMP
threads go idle), blocks of the contenders in a fresh random order every round; the median of
all timed calls is reported. ``python -m benchmarks.rl`` runs it alone; ``python -m benchmarks``
runs it as its part ``rl``.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import random
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import jaxgru
from benchmarks import machine

CONTENDERS = ("jaxgru", "flax_scan", "torchrl")
MODES = ("forward", "train")
# (T, B, I, H, cell): 128 steps of 16 to 256 environments, hidden sizes 128 to 512; the LSTM at the
# shape of Craftax-like PPO-LSTM baselines
SHAPES = (
  (128, 16, 64, 128, "gru"),
  (128, 64, 64, 256, "gru"),
  (128, 256, 64, 128, "gru"),
  (128, 256, 64, 512, "gru"),
  (128, 64, 64, 128, "lstm"),
)
LEARNING_RATE = 3e-4


class ScannedGRU(nn.Module):
  """The hand-written recurrent core of JAX RL code: Flax's GRUCell scanned over time, the state
  zeroed before every step that starts an episode."""

  hidden_size: int

  @functools.partial(nn.scan, variable_broadcast="params", in_axes=0, out_axes=0, split_rngs={"params": False})
  @nn.compact
  def __call__(self, h, inputs):
    x, reset = inputs
    h = jnp.where(reset[:, None], jnp.zeros_like(h), h)
    h, y = nn.GRUCell(features=self.hidden_size)(h, x)
    return h, y


class ScannedLSTM(nn.Module):
  """The same for an LSTM: Flax's OptimizedLSTMCell, its carry (c, h) zeroed where an episode starts."""

  hidden_size: int

  @functools.partial(nn.scan, variable_broadcast="params", in_axes=0, out_axes=0, split_rngs={"params": False})
  @nn.compact
  def __call__(self, carry, inputs):
    x, reset = inputs
    carry = tuple(jnp.where(reset[:, None], jnp.zeros_like(part), part) for part in carry)
    carry, y = nn.OptimizedLSTMCell(features=self.hidden_size)(carry, x)
    return carry, y


def _jax_contender(
  kind: str, x: np.ndarray, resets: np.ndarray, target: np.ndarray, hidden: int, cell: str = "gru"
) -> dict[str, Any]:
  """Compiled forward and train-step functions and their arguments for ``jaxgru`` or ``flax_scan``."""
  steps, batch, inputs = x.shape
  x, resets, target = jnp.asarray(x), jnp.asarray(resets), jnp.asarray(target)
  key = jax.random.key(0)
  head = {"w": 0.1 * jax.random.normal(key, (hidden, 1)), "b": jnp.zeros((1,))}
  if kind == "jaxgru":
    init, layer = (jaxgru.init_lstm_params, jaxgru.lstm) if cell == "lstm" else (jaxgru.init_gru_params, jaxgru.gru)
    gru_params = init(key, inputs, hidden)

    def features(gru_params, x):
      return layer(gru_params, x, resets=resets)[0]
  else:
    core = ScannedLSTM(hidden) if cell == "lstm" else ScannedGRU(hidden)
    zeros = jnp.zeros((batch, hidden))
    carry = (zeros, zeros) if cell == "lstm" else zeros
    gru_params = core.init(key, carry, (x, resets))

    def features(gru_params, x):
      return core.apply(gru_params, carry, (x, resets))[1]

  params = {"gru": gru_params, "head": head}
  optimizer = optax.adam(LEARNING_RATE)

  def loss(params):
    value = features(params["gru"], x) @ params["head"]["w"] + params["head"]["b"]
    return jnp.mean((value[..., 0] - target) ** 2)

  def train(params, state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value

  box = {"params": params, "state": optimizer.init(params)}

  @functools.cache  # each mode compiles its own program, when it is first called
  def compiled(mode):
    if mode == "forward":
      return jax.jit(features).lower(params["gru"], x).compile()
    return jax.jit(train, donate_argnums=(0, 1)).lower(params, box["state"]).compile()

  def run_train():
    box["params"], box["state"], value = compiled("train")(box["params"], box["state"])
    return value

  return {
    "forward": lambda: compiled("forward")(params["gru"], x).block_until_ready(),
    "train": lambda: run_train().block_until_ready(),
  }


def torchrl_missing() -> str | None:
  """Why the torchrl contender cannot run here, or None."""
  try:
    import tensordict  # noqa: F401
    import torchrl  # noqa: F401
  except ImportError as error:
    return f"torchrl is not installed ({error}); the rollouts run without it (pip install 'jaxgru[torchrl]')"
  return None


def _torchrl_contender(
  x: np.ndarray, resets: np.ndarray, target: np.ndarray, hidden: int, device: str, cell: str = "gru"
) -> dict[str, Any]:
  """torchrl's GRUModule (LSTMModule) in recurrent mode on the same rollout (batch-first tensordicts)."""
  from tensordict import TensorDict
  from torchrl.modules import GRUModule, LSTMModule, set_recurrent_mode

  steps, batch, inputs = x.shape
  kind = LSTMModule if cell == "lstm" else GRUModule
  module = kind(input_size=inputs, hidden_size=hidden, in_key="obs", out_key="features").to(device)
  head = torch.nn.Linear(hidden, 1).to(device)
  optimizer = torch.optim.Adam([*module.parameters(), *head.parameters()], lr=LEARNING_RATE)
  obs = torch.tensor(np.swapaxes(x, 0, 1), device=device)
  is_init = torch.tensor(np.swapaxes(resets, 0, 1), device=device)[..., None]
  goal = torch.tensor(np.swapaxes(target, 0, 1), device=device)
  state = torch.zeros(batch, steps, 1, hidden, device=device)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def features():
    states = {"recurrent_state_h": state, "recurrent_state_c": state} if cell == "lstm" else {"recurrent_state": state}
    data = TensorDict({"obs": obs, "is_init": is_init, **states}, batch_size=[batch, steps], device=device)
    with set_recurrent_mode(True):
      return module(data).get("features")

  def forward():
    with torch.no_grad():
      out = features()
    sync()
    return out

  def train():
    optimizer.zero_grad(set_to_none=True)
    loss = torch.mean((head(features())[..., 0] - goal) ** 2)
    loss.backward()
    optimizer.step()
    sync()
    return loss

  return {"forward": forward, "train": train}


def rollout(shape: tuple[int, ...], reset_rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """x (T, B, I), resets (T, B) and a regression target (T, B), float32, from ``seed``."""
  steps, batch, inputs = shape[:3]
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((steps, batch, inputs), np.float32)
  resets = rng.random((steps, batch)) < reset_rate
  return x, resets, rng.standard_normal((steps, batch), np.float32)


def run_case(
  shape, mode: str, contenders, reset_rate: float, repeats: int, block: int, gap: float, device: str = "cpu"
) -> dict[str, Any]:
  """One rollout shape and mode: each contender's median time; JAX runs on its default device,
  torch on ``device``."""
  x, resets, target = rollout(shape[:4], reset_rate)
  hidden, cell = shape[3], shape[4] if len(shape) > 4 else "gru"
  calls, compile_s = {}, {}
  for kind in contenders:
    start = time.perf_counter()
    if kind == "torchrl":
      fns = _torchrl_contender(x, resets, target, hidden, device, cell)
    else:
      fns = _jax_contender(kind, x, resets, target, hidden, cell)
    calls[kind] = fns[mode]
    calls[kind]()  # warm-up (and, for JAX, the first run after compiling)
    compile_s[kind] = time.perf_counter() - start
  times: dict[str, list[float]] = {kind: [] for kind in contenders}
  order = list(contenders)
  while min(len(t) for t in times.values()) < repeats:
    random.shuffle(order)
    for kind in order:
      time.sleep(gap)
      calls[kind]()  # untimed: the first call after the pause
      for _ in range(block):
        start = time.perf_counter()
        calls[kind]()
        times[kind].append(time.perf_counter() - start)
  results = {
    kind: {"median_ms": 1e3 * float(np.median(t)), "iqr_ms": 1e3 * float(np.subtract(*np.percentile(t, [75, 25])))}
    for kind, t in times.items()
  }
  return {
    "shape": list(shape),
    "mode": mode,
    "resets": int(resets.sum()),
    "results": results,
    "setup_s": compile_s,
  }


def ratio(case: dict[str, Any], kind: str) -> float | None:
  results = case["results"]
  if kind not in results or "jaxgru" not in results:
    return None
  return results[kind]["median_ms"] / results["jaxgru"]["median_ms"]


def markdown(report: dict[str, Any]) -> str:
  lines = [
    f"Machine: {report['machine']['cpu']} ({report['machine']['cores']} cores); {report['machine']['versions']}, "
    f"torchrl {report['torchrl']}; float32, matmul precision highest. Threads: {report['machine']['threads']}.",
    f"Native kernel: {report['machine']['native']}.",
    f"Rollouts: T steps x B environments, observation size I, hidden size H; each step resets with probability "
    f"{report['reset_rate']:g}. Median ± interquartile range in ms of {report['repeats']}+ calls per contender, each "
    "contender timed alone in blocks (see benchmarks/rl.py).",
    "",
    "| rollout (TxBxIxH) | cell | resets | mode | jaxgru ms | flax_scan ms | torchrl ms | flax_scan/jaxgru | torchrl/jaxgru |",
    "|---|---|---:|---|---:|---:|---:|---:|---:|",
  ]
  for case in report["cases"]:
    cells = []
    for kind in CONTENDERS:
      r = case["results"].get(kind)
      cells.append("-" if r is None else f"{r['median_ms']:.2f} ± {r['iqr_ms']:.2f}")
    ratios = ["-" if (v := ratio(case, k)) is None else f"{v:.2f}x" for k in ("flax_scan", "torchrl")]
    shape, cell = "x".join(map(str, case["shape"][:4])), (case["shape"][4:] or ["gru"])[0]
    lines.append(f"| {shape} | {cell} | {case['resets']} | {case['mode']} | " + " | ".join(cells + ratios) + " |")
  return "\n".join(lines)


def run(shapes=SHAPES, modes=MODES, contenders=CONTENDERS, reset_rate=0.01, repeats=10, block=5, gap=0.1) -> dict[str, Any]:
  """Every shape and mode on the CPU; returns the report (also what ``python -m benchmarks`` stores)."""
  if "torchrl" in contenders and (missing := torchrl_missing()):
    print(f"note: {missing}", flush=True)
    contenders = tuple(k for k in contenders if k != "torchrl")
  info = machine.describe("cpu", "highest")
  report = {
    "machine": info,
    "torchrl": __import__("torchrl").__version__ if "torchrl" in contenders else "not run",
    "reset_rate": reset_rate,
    "repeats": repeats,
    "cases": [],
  }
  with jax.default_matmul_precision("highest"):
    for shape in shapes:
      for mode in modes:
        case = run_case(shape, mode, contenders, reset_rate, repeats, block, gap)
        report["cases"].append(case)
        line = " ".join(f"{k}={v['median_ms']:.1f}ms" for k, v in case["results"].items())
        ratios = " ".join(f"{k}/jaxgru={v:.2f}x" for k in ("flax_scan", "torchrl") if (v := ratio(case, k)) is not None)
        print(f"{'x'.join(map(str, shape)):>21} {mode:>7}  {line}  {ratios}", flush=True)
  return report


def _shape(text: str) -> tuple[int, int, int, int, str]:
  cell, _, sizes = text.rpartition(":")
  try:
    values = tuple(int(v) for v in sizes.split("x"))
  except ValueError:
    values = ()
  if len(values) != 4 or min(values) < 1 or cell not in ("", "gru", "lstm"):
    raise argparse.ArgumentTypeError(
      f"a rollout shape is [gru:|lstm:]TxBxIxH, four positive integers, e.g. lstm:128x64x64x256; got {text!r}"
    )
  return (*values, cell or "gru")


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m benchmarks.rl", description=__doc__.split("\n")[0])
  p.add_argument("--shape", action="append", type=_shape, help="[gru:|lstm:]TxBxIxH; repeatable; replaces the default rollouts")
  p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
  p.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
  p.add_argument("--reset-rate", type=float, default=0.01, help="probability that a step starts an episode (default 0.01)")
  p.add_argument("--repeats", type=int, default=10, help="timed calls per contender and case, at least (default 10)")
  p.add_argument("--block", type=int, default=5, help="timed calls per block (default 5)")
  p.add_argument("--out", type=pathlib.Path, help="also write the report here, as JSON and Markdown (NAME.json, NAME.md)")
  args = p.parse_args(argv)
  if not 0 <= args.reset_rate <= 1:
    p.error(f"--reset-rate must be a probability in [0, 1], got {args.reset_rate}")
  if args.repeats < 1 or args.block < 1:
    p.error("--repeats and --block must be positive")
  print(machine.header(machine.describe("cpu", "highest")), flush=True)
  report = run(tuple(args.shape or SHAPES), args.modes, args.contenders, args.reset_rate, args.repeats, args.block)
  text = markdown(report)
  print("\n" + text)
  if args.out is not None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    args.out.with_suffix(".md").write_text(text + "\n")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
