"""Data-parallel training of a jaxgru model over every visible device, ensembles, checkpoints.

The task is the seed tutorial's: a GRU reads a window of a noisy sine wave and a linear head
predicts the next value. What this example shows:

- **Data parallel.** One ``jax.sharding.Mesh`` with a ``"data"`` axis over the devices. The global
  batch is split along it (``NamedSharding(mesh, P("data"))``), the training state (parameters,
  optax state, RNG key, step) is replicated (``P()``), and ``jax.jit(..., in_shardings,
  out_shardings)`` compiles one program in which XLA reduces the gradients across devices. No
  ``pmap``, no hand-written all-reduce. The same code runs on one CPU, eight GPUs or a TPU pod.
- **Any batch size.** A batch not divisible by the device count is padded with zero rows of
  weight 0; the loss is the weighted mean over valid rows, so it is the unpadded loss.
- **Ensembles.** ``--ensemble N`` trains N models with seeds ``seed, ..., seed + N - 1`` in one
  compiled program: the per-model step is ``jax.vmap``-ed over stacked parameters, optimizer
  states and RNG keys; every model sees the same batches. N = 1 (the default) is one model.
- **Bounded asynchrony.** At most ``--max-in-flight`` steps are dispatched ahead of the host (1 on
  CPU devices, where XLA's in-process all-reduce can deadlock with more: see
  :func:`default_max_in_flight`).
- **Checkpoints.** ``--checkpoint-dir`` saves the whole state with orbax (``checkpointing.py``)
  and resumes from the latest complete and readable checkpoint: the resumed run follows the
  uninterrupted run's trajectory exactly.

Run::

  python examples/sharded_training.py --steps 300
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/sharded_training.py  # 8 CPU devices
  python examples/sharded_training.py --ensemble 4 --checkpoint-dir /tmp/gru-ckpt --save-every 50
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import sys
from collections.abc import Sequence
from typing import Any

import checkpointing  # examples/checkpointing.py, next to this file
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxgru

DATA = "data"  # the mesh axis the batch is split along


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that determines a training trajectory; a checkpoint must match it to resume."""

  hidden_size: int = 32
  num_layers: int = 2
  dropout: float = 0.0
  seq_len: int = 20
  batch_size: int = 64
  learning_rate: float = 3e-3
  seed: int = 0  # model initialisation and dropout; ensemble member i uses seed + i
  data_seed: int = 0
  ensemble: int = 1  # N models stacked along a leading axis; 1: a single model, no such axis

  def __post_init__(self):
    for name in ("hidden_size", "num_layers", "seq_len", "batch_size", "ensemble"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}" + (" (1: a single model)" if name == "ensemble" else ""))
    if not 0.0 <= self.dropout <= 1.0:  # as torch.nn.GRU: 1 zeroes everything between layers
      raise ValueError(f"dropout must be in [0, 1], got {self.dropout!r}")
    if not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")


class SineRegressor(nnx.Module):
  """``jaxgru.GRU`` over a (B, T, 1) window, ``nnx.Linear`` on its last output: (B,) predictions."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.gru = jaxgru.GRU(1, cfg.hidden_size, cfg.num_layers, batch_first=True, dropout=cfg.dropout, rngs=rngs)
    self.head = nnx.Linear(cfg.hidden_size, 1, rngs=rngs)

  def __call__(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
    out, _ = self.gru(x, rngs=dropout_key, deterministic=dropout_key is None)
    return self.head(out[:, -1])[:, 0]


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh (axis ``"data"``) over the first ``num_devices`` devices (all by default).

  With several processes (``jax.distributed.initialize``) ``jax.devices()`` lists every process's
  devices, so the mesh spans the whole cluster.
  """
  devices = jax.devices()
  if num_devices is None:
    num_devices = len(devices)
  if isinstance(num_devices, bool) or not isinstance(num_devices, int) or not 1 <= num_devices <= len(devices):
    raise ValueError(f"num_devices must be an int in [1, {len(devices)}] (the visible devices), got {num_devices!r}")
  # Auto axes: XLA's partitioner propagates the shardings and inserts the gradient all-reduce.
  # (jax.make_mesh's default is Explicit axes, which type every op's sharding; not needed here.)
  return jax.make_mesh((num_devices,), (DATA,), (jax.sharding.AxisType.Auto,), devices=devices[:num_devices])


def optimizer(cfg: Config) -> optax.GradientTransformation:
  return optax.adam(cfg.learning_rate)


@functools.cache
def _skeleton(cfg: Config) -> tuple[nnx.GraphDef, nnx.State]:
  """The model's structure and its non-parameter state (the dropout stream, unused: the train
  step passes explicit keys), shared by every member of an ensemble."""
  graphdef, _, rest = nnx.split(SineRegressor(cfg, rngs=nnx.Rngs(0)), nnx.Param, ...)
  return graphdef, rest


def _init_member(cfg: Config, seed: jax.Array) -> dict[str, Any]:
  init_key, train_key = jax.random.split(jax.random.key(seed))
  params = nnx.state(SineRegressor(cfg, rngs=nnx.Rngs(init_key)), nnx.Param)
  return {"params": params, "opt_state": optimizer(cfg).init(params), "key": jax.random.key_data(train_key)}


def _program_key(cfg: Config) -> Config:
  """``cfg`` without the fields that do not change a compiled program (seeds, shapes: jit sees
  those), so that models differing only there share one compilation."""
  return dataclasses.replace(cfg, seed=0, data_seed=0, seq_len=1, batch_size=1)


@functools.cache
def _init_fn(cfg: Config, mesh: Mesh):
  def init(seed):
    if cfg.ensemble > 1:
      state = jax.vmap(functools.partial(_init_member, cfg))(seed + jnp.arange(cfg.ensemble))
    else:
      state = _init_member(cfg, seed)
    return state | {"step": jnp.zeros((), jnp.int32)}

  return jax.jit(init, out_shardings=NamedSharding(mesh, P()))


def init_state(cfg: Config, mesh: Mesh) -> dict[str, Any]:
  """The training state, replicated over ``mesh``: ``params`` (an ``nnx.State``), ``opt_state``,
  ``key`` (raw RNG key data) and ``step``; with ``cfg.ensemble = N > 1`` every leaf but ``step`` has
  a leading axis of N, member i initialised from ``cfg.seed + i``."""
  return _init_fn(_program_key(cfg), mesh)(jnp.asarray(cfg.seed, jnp.int32))


def loss_fn(cfg: Config, params: nnx.State, x: jax.Array, y: jax.Array, weight: jax.Array, dropout_key=None) -> jax.Array:
  """Weighted mean squared error: ``sum(w * (f(x) - y)^2) / sum(w)``; padding rows have w = 0."""
  graphdef, rest = _skeleton(cfg)
  pred = nnx.merge(graphdef, params, rest)(x, dropout_key)
  return jnp.sum(weight * (pred - y) ** 2) / jnp.sum(weight)


def train_step(cfg: Config, mesh: Mesh):
  """``state, loss = step(state, x, y, weight)``, compiled once per (config, mesh): the batch
  sharded along ``"data"``, the state and the loss ((N,) for an ensemble) replicated."""
  return _train_step(_program_key(cfg), mesh)


@functools.cache
def _train_step(cfg: Config, mesh: Mesh):
  opt = optimizer(cfg)

  def member(params, opt_state, key, x, y, weight):
    key, dropout_key = jax.random.split(jax.random.wrap_key_data(key))
    dropout_key = dropout_key if cfg.dropout > 0 else None
    loss, grads = jax.value_and_grad(lambda p: loss_fn(cfg, p, x, y, weight, dropout_key))(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, jax.random.key_data(key), loss

  if cfg.ensemble > 1:
    member = jax.vmap(member, in_axes=(0, 0, 0, None, None, None))

  def step(state, x, y, weight):
    params, opt_state, key, loss = member(state["params"], state["opt_state"], state["key"], x, y, weight)
    return {"params": params, "opt_state": opt_state, "key": key, "step": state["step"] + 1}, loss

  replicated, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P(DATA))
  return jax.jit(step, in_shardings=(replicated, batch, batch, batch), out_shardings=(replicated, replicated))


def sine_windows(cfg: Config, step: int) -> tuple[np.ndarray, np.ndarray]:
  """Batch ``step``: x (B, T, 1) windows of noisy sines of random frequency and phase, y (B,) the
  next value. A pure function of (data_seed, step), so a resumed run sees the same data."""
  rng = np.random.default_rng([cfg.data_seed, step])
  b, t = cfg.batch_size, np.arange(cfg.seq_len + 1)
  freq, phase = rng.uniform(0.1, 0.5, (b, 1)), rng.uniform(0.0, 2 * np.pi, (b, 1))
  series = (np.sin(freq * t + phase) + rng.normal(0.0, 0.05, (b, t.size))).astype(np.float32)
  return series[:, :-1, None], series[:, -1]


def padded_size(batch_size: int, num_devices: int) -> int:
  """The smallest multiple of ``num_devices`` that holds ``batch_size`` rows."""
  return -(-batch_size // num_devices) * num_devices


def global_batch(cfg: Config, mesh: Mesh, step: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Batch ``step`` as global arrays sharded along ``"data"``: x, y and the row weights.

  Rows are padded to a multiple of the device count with zeros of weight 0. Each process passes
  only the rows its own devices hold to ``jax.make_array_from_process_local_data``; this toy
  generates the whole batch and slices, a real loader would read just those rows.
  """
  x, y = sine_windows(cfg, step)
  rows = padded_size(cfg.batch_size, mesh.size)
  weight = np.zeros(rows, np.float32)
  weight[: cfg.batch_size] = 1.0
  pad = [(0, rows - cfg.batch_size)]
  x, y = np.pad(x, pad + [(0, 0), (0, 0)]), np.pad(y, pad)
  sharding = NamedSharding(mesh, P(DATA))
  spans = sorted(idx[0].indices(rows)[:2] for idx in sharding.addressable_devices_indices_map((rows,)).values())
  lo, hi = spans[0][0], spans[-1][1]
  if any(a[1] != b[0] for a, b in zip(spans, spans[1:], strict=False)):
    raise ValueError(f"this process's devices hold non-contiguous rows {spans}; order the mesh's devices by process")
  return tuple(jax.make_array_from_process_local_data(sharding, a[lo:hi], a.shape) for a in (x, y, weight))


def _host(x: jax.Array) -> np.ndarray:
  """A replicated array's value on this host (``np.asarray`` would fail across processes)."""
  return np.asarray(x.addressable_data(0))


def default_max_in_flight(mesh: Mesh) -> int:
  """How many dispatched steps :func:`train` lets run ahead of the host: 1 on CPU devices, 2 else.

  XLA:CPU runs the all-reduce of a program over several CPU devices in-process: one thread per
  device must meet the others at a rendezvous. With steps queued by JAX's asynchronous dispatch
  and more simulated devices than cores, a device's thread can sit in a later step's rendezvous
  while an earlier step waits for it: XLA then aborts the process ("Expected 8 threads to join
  the rendezvous, but only 6 of them arrived"). One step in flight rules that out; the next
  batch is still prepared while the step runs. GPUs and TPUs have no such rendezvous, and a
  second queued step keeps them busy while Python dispatches.
  """
  return 1 if mesh.devices.flat[0].platform == "cpu" else 2


def _check_count(name: str, value: Any, low: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def train(
  cfg: Config,
  steps: int,
  *,
  num_devices: int | None = None,
  checkpoint_dir: str | None = None,
  save_every: int = 0,
  log_every: int = 0,
  max_in_flight: int | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
  """Trains until ``state["step"] == steps``, resuming from ``checkpoint_dir``'s latest checkpoint.

  Args:
    cfg: the run's configuration (a checkpoint must have been written with an equal one).
    steps: the total number of steps, counting those a restored checkpoint already did.
    num_devices: how many devices the batch is split over; all by default.
    checkpoint_dir: if given, restore from it and save into it every ``save_every`` steps
      (0: only at the end) and at the end.
    log_every: print the loss every this many steps (0: never).
    max_in_flight: at most this many steps dispatched and not finished (default:
      :func:`default_max_in_flight`).

  Returns:
    ``(state, losses)``: the final state and the losses of the steps run here, (S,) or (S, N).

  Raises:
    ValueError: a bad argument; a checkpoint of another configuration, or one already past
      ``steps``; no readable checkpoint in ``checkpoint_dir``.
  """
  _check_count("steps", steps, 0)
  _check_count("save_every", save_every, 0)
  _check_count("log_every", log_every, 0)
  mesh = make_mesh(num_devices)
  max_in_flight = default_max_in_flight(mesh) if max_in_flight is None else max_in_flight
  _check_count("max_in_flight", max_in_flight, 1)
  say = functools.partial(print, flush=True) if jax.process_index() == 0 else lambda *_: None
  state, step_fn, config = init_state(cfg, mesh), train_step(cfg, mesh), dataclasses.asdict(cfg)
  mngr = checkpointing.manager(checkpoint_dir) if checkpoint_dir is not None else None
  losses, saving = [], None
  try:
    restored = checkpointing.restore(mngr, state, config, log=say) if mngr is not None else None
    unreadable = restored.unreadable if restored is not None else {}
    if restored is not None:
      if restored.step > steps:
        raise ValueError(
          f"checkpoint {restored.step} in {mngr.directory} is already past steps={steps}; "
          f"ask for more than {restored.step} steps, or use another checkpoint directory"
        )
      state = restored.state
      say(f"resumed from step {restored.step} in {mngr.directory}")
      if restored.step == steps:
        say(f"step {steps} reached already: nothing to train")
    in_flight: collections.deque = collections.deque()
    for s in range(int(_host(state["step"])), steps):
      batch = global_batch(cfg, mesh, s)  # host work, done while the previous step runs
      while len(in_flight) >= max_in_flight:
        jax.block_until_ready(in_flight.popleft())
      state, loss = step_fn(state, *batch)
      in_flight.append(state)
      losses.append(loss)
      if log_every and (s + 1) % log_every == 0:
        say(f"step {s + 1:5d}  loss {np.array2string(_host(loss), precision=5)}")
      if mngr is not None and (s + 1 == steps or (save_every and (s + 1) % save_every == 0)):
        if s + 1 in unreadable and s + 1 in mngr.all_steps():  # (unless max_to_keep removed it)
          say(f"replacing the unreadable checkpoint {s + 1} in {mngr.directory}")
          mngr.delete(s + 1)
        checkpointing.save(mngr, s + 1, state, config)  # waits for the previous save to finish
        if saving is not None:
          say(f"saved step {saving} in {mngr.directory}")
        saving = s + 1
  finally:
    if mngr is not None:
      mngr.close()  # waits for a background save to finish
  if saving is not None:
    say(f"saved step {saving} in {mngr.directory}")
  shape = (0, cfg.ensemble) if cfg.ensemble > 1 else (0,)
  return state, np.stack([_host(loss) for loss in losses]) if losses else np.zeros(shape, np.float32)


def _at_least(low: int):
  """An argparse type: an int >= ``low``."""

  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < low:
      raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value

  return parse


def main(argv: Sequence[str] | None = None) -> np.ndarray:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  helps = {
    "hidden_size": "GRU hidden size",
    "num_layers": "stacked GRU layers",
    "dropout": "dropout between GRU layers",
    "seq_len": "input window length",
    "batch_size": "global batch size, padded to a multiple of the device count",
    "learning_rate": "Adam learning rate",
    "seed": "model seed (initialisation, dropout); ensemble member i uses seed + i",
    "data_seed": "seed of the synthetic data",
    "ensemble": "train N models with seeds seed..seed+N-1 in one program (1: a single model)",
  }
  positive = {"hidden_size", "num_layers", "seq_len", "batch_size", "ensemble"}
  for field in dataclasses.fields(Config):
    flag, default = "--" + field.name.replace("_", "-"), field.default
    kind = _at_least(1) if field.name in positive else type(default)
    parser.add_argument(flag, type=kind, default=default, help=f"{helps[field.name]} (default %(default)s)")
  parser.add_argument("--steps", type=_at_least(0), default=300, help="total training steps (default %(default)s)")
  parser.add_argument("--devices", type=_at_least(1), default=None, help="split the batch over this many devices (default: all)")
  parser.add_argument("--checkpoint-dir", default=None, help="save here and resume from the latest readable checkpoint")
  parser.add_argument("--save-every", type=_at_least(0), default=0, help="checkpoint every N steps (default 0: at the end only)")
  parser.add_argument(
    "--log-every", type=_at_least(0), default=50, help="print the loss every N steps, 0: never (default %(default)s)"
  )
  parser.add_argument(
    "--max-in-flight",
    type=_at_least(1),
    default=None,
    help="steps dispatched ahead of the host (default: 1 on CPU devices, whose in-process all-reduce can "
    "deadlock with more queued, 2 on GPUs and TPUs)",
  )
  parser.add_argument(
    "--distributed",
    action="store_true",
    help="call jax.distributed.initialize first (one process per host); on TPU, Slurm and Open MPI "
    "the next three flags may be left out",
  )
  parser.add_argument("--coordinator-address", default=None, help="host:port of process 0 (or env JAX_COORDINATOR_ADDRESS)")
  parser.add_argument("--num-processes", type=_at_least(1), default=None, help="how many processes in all")
  parser.add_argument("--process-id", type=_at_least(0), default=None, help="this process's index in [0, num-processes)")
  args = parser.parse_args(argv)
  cfg = Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config)})
  if args.distributed:
    jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
  mesh = make_mesh(args.devices)
  print(
    f"jax {jax.__version__}, {jax.process_count()} process(es), {mesh.size} {mesh.devices.flat[0].platform} device(s); "
    f"global batch {cfg.batch_size} padded to {padded_size(cfg.batch_size, mesh.size)}; "
    f"ensemble {cfg.ensemble if cfg.ensemble > 1 else 'off'}"
  )
  _, losses = train(
    cfg,
    args.steps,
    num_devices=args.devices,
    checkpoint_dir=args.checkpoint_dir,
    save_every=args.save_every,
    log_every=args.log_every,
    max_in_flight=args.max_in_flight,
  )
  return losses


if __name__ == "__main__":
  try:
    main(sys.argv[1:])
  except ValueError as err:  # bad flags, a checkpoint of another configuration: no traceback
    sys.exit(f"error: {err}")
