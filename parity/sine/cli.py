"""``jaxgru-sine`` (``examples/sine.py``): the seed tutorial's sine-wave GRU, trained in JAX, optionally beside PyTorch.

Run ``jaxgru-sine --help``. :func:`main` is the console command; :func:`run` does the work and
returns a :class:`SineRun` (losses, predictions, timings) for tests and notebooks.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import pathlib
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxgru
from jaxgru import _compat
from parity import _argtypes, _extras

try:  # the parity and examples extras; --help works without them
  import optax
  import torch
  from tqdm import tqdm

  from parity.sine import task as sine_task
  from parity.weights.files import atomic_write
except ModuleNotFoundError as error:
  _MISSING: ModuleNotFoundError | None = _extras.missing(error, "jaxgru-sine")
else:
  _MISSING = None


LOG_EVERY = 20  # the tutorial prints the loss every 20 epochs


@dataclasses.dataclass
class SineRun:
  """What one run produced. Arrays carry a leading member axis M (1 without ``--ensemble``)."""

  args: argparse.Namespace
  data: sine_task.SineData
  losses: np.ndarray  # (M, E) training loss before each epoch's step
  test_losses: np.ndarray  # (M,) after training; NaN when nothing is held out
  predictions: np.ndarray  # (M, B_all) one-step predictions for every window, training then test
  compile_s: float
  train_s: float
  params: Any  # the trained JAX params (with the member axis when M > 1)
  torch_losses: np.ndarray | None = None  # (M, E)
  torch_test_losses: np.ndarray | None = None
  torch_predictions: np.ndarray | None = None
  torch_s: float | None = None
  output: pathlib.Path | None = None


def _float_in(low: float, high: float | None = None, *, low_open: bool = False, name: str = ""):
  def parse(text: str) -> float:
    try:
      value = float(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    too_low = value <= low if low_open else value < low
    if not np.isfinite(value) or too_low or (high is not None and value >= high):
      raise argparse.ArgumentTypeError(f"must be {name}, got {text}")
    return value

  return parse


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="jaxgru-sine",
    description=(
      "The seed tutorial's task: a GRU(1, H) -> Linear(H, 1) learns to predict the next value of a noisy sine "
      "wave, trained full-batch with Adam in JAX (jaxgru + optax), compiled; writes a PNG of the data, the "
      "prediction and the loss curve."
    ),
    formatter_class=_argtypes.DefaultsHelpFormatter,
  )
  parser.add_argument("--seed", type=_argtypes.seed, default=0, help="seeds the data's noise and the initial weights")
  parser.add_argument("--epochs", type=_argtypes.int_at_least(1), default=200, help="full-batch training epochs")
  parser.add_argument("--hidden-size", type=_argtypes.int_at_least(1), default=16, help="GRU hidden size H")
  parser.add_argument("--lr", type=_float_in(0, low_open=True, name="> 0"), default=1e-3, help="Adam learning rate")
  parser.add_argument("--seq-len", type=_argtypes.int_at_least(1), default=10, help="window length: values seen per prediction")
  parser.add_argument("--points", type=_argtypes.int_at_least(2), default=200, help="length of the series")
  parser.add_argument("--noise", type=_float_in(0, name=">= 0"), default=0.1, help="standard deviation of the noise")
  parser.add_argument(
    "--test-fraction",
    type=_float_in(0, 1, name="in [0, 1)"),
    default=0.2,
    help="share of the series, from its end, held out: its points are targets of test windows only",
  )
  parser.add_argument("--variant", choices=_argtypes.VARIANTS, default="torch", help="torch.nn.GRU's equations or the tutorial's")
  parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="parameters and data")
  parser.add_argument(
    "--ensemble", type=_argtypes.int_at_least(1), default=1, metavar="N", help="train N seeded models at once (vmap)"
  )
  parser.add_argument(
    "--compare-torch", action="store_true", help="also train the tutorial's PyTorch model from the same weights"
  )
  parser.add_argument(
    "--torch-threads", type=_argtypes.int_at_least(1), default=1, help="torch intra-op threads for --compare-torch"
  )
  parser.add_argument("--chunk", type=_argtypes.int_at_least(1), default=20, help="epochs per compiled call (one lax.scan)")
  parser.add_argument("--output", "-o", type=pathlib.Path, default=pathlib.Path("out/sine.png"), help="PNG to write")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  parser.add_argument(
    "--no-compile-cache",
    action="store_true",
    help="do not use JAX's persistent compilation cache, which the command otherwise keeps in $JAXGRU_COMPILE_CACHE_DIR, "
    "else ~/.cache/jaxgru/jax (a cache set with JAX_COMPILATION_CACHE_DIR is used as it is)",
  )
  return parser


def _check_output(parser: argparse.ArgumentParser, path: pathlib.Path) -> pathlib.Path:
  """The output path, its folder created and a file written there; refused (argparse error) before any training."""
  if path.suffix.lower() != ".png":
    parser.error(f"argument --output: must name a .png file, got {str(path)!r}")
  if path.is_dir():
    parser.error(f"argument --output: {str(path)!r} is a directory; name a .png file inside it")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
  except OSError as err:
    parser.error(f"argument --output: cannot create the folder {str(path.parent)!r}: {err.strerror or err}")
  try:  # what os.access cannot tell: read-only mounts, /proc, quotas, root's permissions
    with tempfile.TemporaryFile(dir=path.parent):
      pass
  except OSError as err:
    parser.error(f"argument --output: cannot write in the folder {str(path.parent)!r}: {err.strerror or err}")
  return path


@functools.cache
def _train_fn(lr: float, variant: str, ensemble: bool):
  """One compiled trainer per setting, shared by every run in this process."""
  opt = optax.adam(lr)
  return sine_task.make_train_fn(opt, variant=variant, ensemble=ensemble), opt


def _chunks(epochs: int, chunk: int) -> list[int]:
  return [chunk] * (epochs // chunk) + ([epochs % chunk] if epochs % chunk else [])


def _train_jax(args, data, dtype, out) -> tuple[Any, Any, np.ndarray, float, float]:
  """Trains in compiled chunks; returns (initial params, trained params, losses (M, E), compile s, training s)."""
  members = args.ensemble
  ensemble = members > 1
  train, opt = _train_fn(args.lr, args.variant, ensemble)
  keys = [sine_task.member_key(args.seed, m) for m in range(members)]
  init = functools.partial(sine_task.init_params, hidden_size=args.hidden_size, dtype=dtype)
  params = jax.vmap(init)(jnp.stack(keys)) if ensemble else init(keys[0])
  initial = params
  opt_state = jax.vmap(opt.init)(params) if ensemble else opt.init(params)
  x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
  jax.block_until_ready((params, opt_state, x, y))

  sizes = _chunks(args.epochs, args.chunk)
  bar = _bar(args, args.epochs, "JAX: compiling")  # shown at once: compiling takes most of the run
  start = time.perf_counter()
  compiled = {n: train.lower(params, opt_state, x, y, epochs=n).compile() for n in sorted(set(sizes))}
  compile_s = time.perf_counter() - start
  bar.set_description(f"JAX: compiled in {compile_s:.2f} s, training", refresh=True)

  losses = []
  done = 0
  start = time.perf_counter()
  for n in sizes:
    params, opt_state, chunk_losses = compiled[n](params, opt_state, x, y)
    chunk_losses = np.asarray(chunk_losses).reshape(members, n)
    losses.append(chunk_losses)
    for e in range(done + 1, done + n + 1):
      if e % LOG_EVERY == 0 or e == args.epochs:
        tqdm.write(f"Epoch [{e}/{args.epochs}], Loss: {chunk_losses[:, e - done - 1].mean():.4f}", file=out)
    done += n
    bar.set_postfix(loss=f"{chunk_losses[:, -1].mean():.4f}", refresh=False)
    bar.update(n)
  train_s = time.perf_counter() - start
  bar.set_description(f"JAX: compiled in {compile_s:.2f} s, trained in {train_s:.2f} s")
  bar.close()
  return initial, params, np.concatenate(losses, axis=1), compile_s, train_s


def _bar(args, total: int, desc: str) -> tqdm:
  """A progress bar on stderr that stays on screen; off with ``--no-progress`` or when stderr is no terminal."""
  return tqdm(total=total, desc=desc, unit="epoch", disable=True if args.no_progress else None, file=sys.stderr, leave=True)


def _predict_jax(params, x, variant, ensemble) -> np.ndarray:
  predict = functools.partial(sine_task.predict, variant=variant)
  if ensemble:
    predict = jax.vmap(predict, in_axes=(0, None))
  out = np.asarray(jax.jit(predict)(params, jnp.asarray(x)))
  return out.reshape(-1, x.shape[0])


def _train_torch(args, data, params) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
  members = args.ensemble
  per_member = [jax.tree.map(lambda a, m=m: a[m], params) for m in range(members)] if members > 1 else [params]
  threads = torch.get_num_threads()
  torch.set_num_threads(args.torch_threads)
  try:
    losses, tests, preds = [], [], []
    start = time.perf_counter()
    bar = _bar(args, members * args.epochs, "torch: training")
    for p in per_member:
      model = sine_task.params_to_torch(p, variant=args.variant)
      opt = torch.optim.Adam(model.parameters(), lr=args.lr)
      losses.append(sine_task.train_torch(model, opt, data.x_train, data.y_train, args.epochs, lambda e, v: bar.update()))
      preds.append(sine_task.predict_torch(model, data.x_all)[:, 0])
      tests.append(np.mean((preds[-1][len(data.x_train) :] - data.y_test[:, 0]) ** 2) if len(data.x_test) else np.nan)
    torch_s = time.perf_counter() - start
    bar.set_description(f"torch: trained in {torch_s:.2f} s")
    bar.close()
  finally:
    torch.set_num_threads(threads)
  return np.stack(losses), np.array(tests), np.stack(preds), torch_s


def _plot(result: SineRun, path: pathlib.Path) -> None:
  """Writes :func:`figure` as a PNG: to a temporary file (permissions 0666 minus the umask, like any
  new file), then renamed over ``path``."""
  fig = figure(result)
  atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=100))


def figure(result: SineRun) -> Any:
  """Data and predictions above, loss curves below; with an ensemble, its mean and its members'
  min-max band. A ``matplotlib.figure.Figure`` (no pyplot state)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  args, data = result.args, result.data
  fig = Figure(figsize=(11, 7), layout="constrained")
  FigureCanvasAgg(fig)
  top, bottom = fig.subplots(2, 1, height_ratios=(3, 2))
  targets = np.arange(data.seq_len, data.seq_len + result.predictions.shape[1])
  top.plot(data.series, color="0.6", lw=1, label="data (sin + noise)")
  members = result.predictions.shape[0]
  label = "JAX (jaxgru)" + (f", mean of {members}" if members > 1 else "")
  top.plot(targets, result.predictions.mean(0), color="tab:red", lw=1.5, label=label)
  if members > 1:
    band = result.predictions.min(0), result.predictions.max(0)
    top.fill_between(targets, *band, color="tab:red", alpha=0.3, lw=0, label=f"JAX, min-max of the {members} members")
  if result.torch_predictions is not None:
    top.plot(targets, result.torch_predictions.mean(0), color="tab:blue", lw=1, ls="--", label="PyTorch, same initial weights")
  if len(data.x_test):
    top.axvspan(data.first_test_target - 0.5, len(data.series) - 0.5, color="tab:green", alpha=0.08, label="held out (test)")
  top.set_xlabel("step")
  top.set_title(
    f"GRU(1, {args.hidden_size}) -> Linear({args.hidden_size}, 1), variant={args.variant}, {args.dtype}, "
    f"Adam lr={args.lr:g}, {args.epochs} epochs, seed {args.seed}" + (f", ensemble of {members} (vmap)" if members > 1 else "")
  )
  low, high = top.get_ylim()
  top.set_ylim(low, high + 0.22 * (high - low))  # room for the legend above the waves
  top.legend(loc="upper center", ncol=4, fontsize="small")

  epochs = np.arange(1, result.losses.shape[1] + 1)
  bottom.plot(epochs, result.losses.mean(0), color="tab:red", label="JAX training loss" + (" (mean)" if members > 1 else ""))
  if members > 1:
    bottom.fill_between(epochs, result.losses.min(0), result.losses.max(0), color="tab:red", alpha=0.25, lw=0, label="min-max")
  if result.torch_losses is not None:
    bottom.plot(epochs, result.torch_losses.mean(0), color="tab:blue", ls="--", label="PyTorch training loss")
  if len(data.x_test):
    bottom.plot(epochs[-1], result.test_losses.mean(), "x", color="tab:red", ms=8, label="JAX test loss (after training)")
    if result.torch_test_losses is not None:
      bottom.plot(epochs[-1], result.torch_test_losses.mean(), "+", color="tab:blue", ms=10, label="PyTorch test loss")
  bottom.set_yscale("log")
  bottom.set_xlabel("epoch")
  bottom.set_ylabel("MSE")
  bottom.legend(loc="upper right", fontsize="small")

  return fig


def _spread(values: np.ndarray) -> str:
  if values.size == 1:
    return f"{values[0]:.6f}"
  return f"{values.mean():.6f} ± {values.std():.6f} (mean ± std of {values.size}; min {values.min():.6f}, max {values.max():.6f})"


def compile_cache() -> str:
  """Turns on JAX's persistent compilation cache for this process and returns its folder: the
  user's own (``JAX_COMPILATION_CACHE_DIR``) if set, else ``$JAXGRU_COMPILE_CACHE_DIR``, else
  ``~/.cache/jaxgru/jax`` (``$XDG_CACHE_HOME`` respected). Every compiled program is kept (JAX's
  default keeps only those that took over a second; the sine task's take less), so a repeat run
  with the same settings loads its programs instead of compiling them."""
  if not jax.config.jax_compilation_cache_dir:
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "jaxgru" / "jax"
    jax.config.update("jax_compilation_cache_dir", os.environ.get("JAXGRU_COMPILE_CACHE_DIR") or str(cache))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return jax.config.jax_compilation_cache_dir


def run(argv: Sequence[str] | None = None, *, out: Any = None, cache: bool = False) -> SineRun:
  """Parses ``argv`` (``sys.argv[1:]`` when None), trains, prints to ``out`` (stdout), writes the PNG.
  ``cache``: use JAX's persistent compilation cache (:func:`compile_cache`) unless
  ``--no-compile-cache``; the command has it on, other callers off."""
  out = sys.stdout if out is None else out
  parser = build_parser()
  args = parser.parse_args(argv)
  if _MISSING is not None:
    parser.exit(2, f"{_MISSING}\n")
  output = _check_output(parser, args.output)
  cache_dir = compile_cache() if cache and not args.no_compile_cache else None
  try:
    data = sine_task.make_data(args.seed, args.points, args.seq_len, args.noise, args.test_fraction, np.dtype(args.dtype))
  except ValueError as err:
    parser.error(str(err))
  x64 = args.dtype == "float64"
  with _compat.enable_x64(x64), jax.default_matmul_precision("highest"):
    say = functools.partial(print, file=out)
    say(f"machine: {machine()}")
    if cache_dir:
      say(f"JAX's compilation cache: {cache_dir} (--no-compile-cache: off)")
    say(
      f"GRU(1, {args.hidden_size}) -> Linear({args.hidden_size}, 1), variant={args.variant}, {args.dtype}, "
      f"Adam lr={args.lr:g}, {args.epochs} full-batch epochs, seed {args.seed}"
      + (f", ensemble of {args.ensemble} (vmap)" if args.ensemble > 1 else "")
    )
    say(
      f"data: {args.points} points of sin(linspace(0, 100)) + N(0, {args.noise:g}^2); windows of {args.seq_len}: "
      f"{len(data.x_train)} for training, {len(data.x_test)} held out"
    )
    initial, params, losses, compile_s, train_s = _train_jax(args, data, np.dtype(args.dtype), out)
    ensemble = args.ensemble > 1
    preds = _predict_jax(params, data.x_all, args.variant, ensemble)
    n_train = len(data.x_train)
    test = ((preds[:, n_train:] - data.y_test[:, 0]) ** 2).mean(1) if len(data.x_test) else np.full(len(preds), np.nan)
    result = SineRun(args, data, losses, test, preds, compile_s, train_s, params)
    say(
      f"JAX {jax.__version__} on {jax.devices()[0].platform}: compile {compile_s:.2f} s, then training {train_s:.2f} s "
      f"({1e3 * train_s / args.epochs:.2f} ms/epoch, {args.chunk} epochs per compiled call)"
    )
    say(f"  final training loss {_spread(losses[:, -1])}")
    if len(data.x_test):
      say(f"  test loss (held-out tail) {_spread(test)}")

    if args.compare_torch:
      result.torch_losses, result.torch_test_losses, result.torch_predictions, result.torch_s = _train_torch(args, data, initial)
      say(
        f"torch {torch.__version__} (CPU, {args.torch_threads} thread{'s' * (args.torch_threads > 1)}): training {result.torch_s:.2f} s"
      )
      say(f"  final training loss {_spread(result.torch_losses[:, -1])}")
      if len(data.x_test):
        say(f"  test loss (held-out tail) {_spread(result.torch_test_losses)}")
      diff = np.abs(losses - result.torch_losses)
      rel = (diff / np.abs(result.torch_losses)).max()
      say(f"largest |JAX - torch| over the loss curves: {diff.max():.3e} (relative {rel:.3e})")
      say(f"largest |JAX - torch| between final predictions: {np.abs(preds - result.torch_predictions).max():.3e}")
      say(f"wall time: JAX {train_s:.2f} s (+ {compile_s:.2f} s compile), torch {result.torch_s:.2f} s")

  _plot(result, output)
  result.output = output
  say(f"wrote {output}")
  return result


def main(argv: Sequence[str] | None = None) -> int:
  """The ``jaxgru-sine`` console command."""
  run(argv, cache=True)
  return 0


def machine() -> str:
  """One line naming this machine and the library versions, for reports."""
  return (
    f"{_cpu_name()}, {os.cpu_count()} cores, {platform.system()}, Python {platform.python_version()}, "
    f"jax {jax.__version__}, jaxgru {jaxgru.__version__}, optax {optax.__version__}, torch {torch.__version__}"
  )


def _cpu_name() -> str:
  with contextlib.suppress(OSError):
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  return platform.processor() or platform.machine()


if __name__ == "__main__":
  sys.exit(main())
