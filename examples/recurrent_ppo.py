"""Recurrent PPO on CartPole with the velocities hidden: a GRU policy that has to remember.

The agent sees only the cart's position and the pole's angle (gymnax's ``CartPole-v1`` with the
two velocities dropped), so a memoryless policy cannot tell which way the pole is falling. The
policy is an NNX model around :class:`jaxgru.GRU`; the rollout collects ``num_envs``
environments for ``num_steps`` steps, episodes one after another, and the update runs the GRU
over the whole rollout at once with ``resets`` (True on the first step of every episode) in place
of a per-step scan. Everything (environments, rollout, PPO epochs) is one compiled program.

Run ``python examples/recurrent_ppo.py`` (``--help`` for the options); it prints the mean return
of the episodes finished in each rollout and writes the learning curve as a PNG.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxgru

OBSERVED = jnp.array([0, 2])  # cart position, pole angle; the velocities (1, 3) are hidden


@dataclasses.dataclass(frozen=True)
class Config:
  num_envs: int = 16
  num_steps: int = 128
  total_steps: int = 1_000_000
  update_epochs: int = 4
  num_minibatches: int = 4  # whole sequences: the environments are split, never the time axis
  hidden_size: int = 64
  learning_rate: float = 1e-3
  gamma: float = 0.99
  gae_lambda: float = 0.95
  clip: float = 0.2
  entropy_coef: float = 0.01
  value_coef: float = 0.5
  max_grad_norm: float = 0.5
  seed: int = 0

  @property
  def num_updates(self) -> int:
    return self.total_steps // (self.num_envs * self.num_steps)


class Policy(nnx.Module):
  """Observation -> Linear + ReLU -> jaxgru.GRU -> two heads (Linear + ReLU -> Linear): policy
  logits and value."""

  def __init__(self, observations: int, actions: int, hidden: int, rngs: nnx.Rngs):
    orthogonal = nnx.initializers.orthogonal
    self.embed = nnx.Linear(observations, hidden, kernel_init=orthogonal(2**0.5), rngs=rngs)
    self.gru = jaxgru.GRU(hidden, hidden, rngs=rngs)
    self.actor = nnx.Sequential(
      nnx.Linear(hidden, hidden, kernel_init=orthogonal(2**0.5), rngs=rngs),
      nnx.relu,
      nnx.Linear(hidden, actions, kernel_init=orthogonal(0.01), rngs=rngs),
    )
    self.critic = nnx.Sequential(
      nnx.Linear(hidden, hidden, kernel_init=orthogonal(2**0.5), rngs=rngs),
      nnx.relu,
      nnx.Linear(hidden, 1, kernel_init=orthogonal(1.0), rngs=rngs),
    )

  def __call__(self, obs: jax.Array, h: jax.Array, resets: jax.Array):
    """obs (T, B, O), h (1, B, H) entering step 0, resets (T, B) -> logits (T, B, A), values (T, B), h_n."""
    features, h_n = self.gru(nnx.relu(self.embed(obs)), h, resets=resets)
    return self.actor(features), self.critic(features)[..., 0], h_n


def make_train(config: Config):
  """The whole training run as one function of a PRNG key: returns the final parameters and, per
  update, the mean return of the episodes that ended in its rollout (NaN where none did)."""
  env, env_params = gymnax.make("CartPole-v1")
  actions = env.num_actions
  model = Policy(len(OBSERVED), actions, config.hidden_size, nnx.Rngs(config.seed))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # the parameters are what PPO trains
  optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate, eps=1e-5))

  def policy(params, obs, h, resets):
    return nnx.merge(graphdef, params, rest)(obs, h, resets)

  def env_step(carry, _):
    params, env_state, obs, h, start, returns, key = carry
    key, act_key, step_key = jax.random.split(key, 3)
    logits, value, h = policy(params, obs[None], h, start[None])
    logits, value = logits[0], value[0]
    action = jax.random.categorical(act_key, logits)
    log_prob = jax.nn.log_softmax(logits)[jnp.arange(config.num_envs), action]
    step_keys = jax.random.split(step_key, config.num_envs)
    stepped = jax.vmap(env.step, in_axes=(0, 0, 0, None))(step_keys, env_state, action, env_params)
    next_obs, env_state, reward, terminated, truncated, _ = stepped  # an ended episode is reset in place
    done = terminated | truncated
    returns = returns + reward
    finished = jnp.where(done, returns, jnp.nan)
    transition = (obs, start, action, log_prob, value, reward, done, finished)
    carry = (params, env_state, next_obs[:, OBSERVED], h, done, jnp.where(done, 0.0, returns), key)
    return carry, transition

  def advantages(values, rewards, dones, last_value):
    def step(next_, inputs):
      next_advantage, next_value = next_
      value, reward, done = inputs
      delta = reward + config.gamma * next_value * (1 - done) - value
      advantage = delta + config.gamma * config.gae_lambda * (1 - done) * next_advantage
      return (advantage, value), advantage

    _, adv = jax.lax.scan(step, (jnp.zeros_like(last_value), last_value), (values, rewards, dones), reverse=True)
    return adv, adv + values

  def loss(params, h0, batch):
    obs, starts, action, old_log_prob, advantage, target = batch
    logits, value, _ = policy(params, obs, h0, starts)
    log_probs = jax.nn.log_softmax(logits)
    log_prob = jnp.take_along_axis(log_probs, action[..., None], -1)[..., 0]
    ratio = jnp.exp(log_prob - old_log_prob)
    advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
    actor = -jnp.minimum(ratio * advantage, jnp.clip(ratio, 1 - config.clip, 1 + config.clip) * advantage).mean()
    critic = 0.5 * jnp.mean((value - target) ** 2)
    entropy = -jnp.mean(jnp.sum(jnp.exp(log_probs) * log_probs, -1))
    return actor + config.value_coef * critic - config.entropy_coef * entropy

  def update(carry, _):
    params, opt_state, env_state, obs, h, start, returns, key = carry
    h_rollout = h  # the state entering the rollout: where the update's sequences start
    (params, env_state, obs, h, start, returns, key), rollout = jax.lax.scan(
      env_step, (params, env_state, obs, h, start, returns, key), None, config.num_steps
    )
    seq_obs, starts, action, log_prob, value, reward, done, finished = rollout
    _, last_value, _ = policy(params, obs[None], h, start[None])
    advantage, target = advantages(value, reward, done.astype(jnp.float32), last_value[0])

    def epoch(carry, key):
      params, opt_state = carry
      order = jax.random.permutation(key, config.num_envs).reshape(config.num_minibatches, -1)

      def minibatch(carry, envs):
        params, opt_state = carry
        batch = tuple(a[:, envs] for a in (seq_obs, starts, action, log_prob, advantage, target))
        grads = jax.grad(loss)(params, h_rollout[:, envs], batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

      return jax.lax.scan(minibatch, (params, opt_state), order)[0], None

    key, epoch_key = jax.random.split(key)
    (params, opt_state), _ = jax.lax.scan(epoch, (params, opt_state), jax.random.split(epoch_key, config.update_epochs))
    mean_return = jnp.nanmean(finished)
    return (params, opt_state, env_state, obs, h, start, returns, key), mean_return

  def train(key):
    key, reset_key = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, config.num_envs), env_params)
    h = jnp.zeros((1, config.num_envs, config.hidden_size))
    start = jnp.ones((config.num_envs,), bool)  # every environment begins an episode
    carry = (params, optimizer.init(params), env_state, obs[:, OBSERVED], h, start, jnp.zeros(config.num_envs), key)
    carry, mean_returns = jax.lax.scan(update, carry, None, config.num_updates)
    return carry[0], mean_returns

  return train


def plot(steps: np.ndarray, returns: np.ndarray, path: pathlib.Path, title: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
  ax.plot(steps, returns, lw=1.0, color="#1f77b4", alpha=0.35, label="per rollout")
  window = max(1, len(returns) // 25)
  filled = np.where(np.isnan(returns), np.nanmean(returns), returns)  # a rollout where no episode ended
  average = np.convolve(filled, np.ones(window) / window, mode="valid")  # of the last `window` rollouts
  ax.plot(steps[window - 1 :], average, lw=2.0, color="#1f77b4", label=f"mean of the last {window} rollouts")
  ax.set_xlabel("environment steps")
  ax.set_ylabel("mean episode return")
  ax.set_title(title, fontsize=10)
  ax.set_ylim(0, 520)
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def main(argv: list[str] | None = None) -> int:
  defaults = Config()
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument(
    "--total-steps", type=int, default=defaults.total_steps, help=f"environment steps (default {defaults.total_steps})"
  )
  p.add_argument("--num-envs", type=int, default=defaults.num_envs, help=f"environments (default {defaults.num_envs})")
  p.add_argument("--seed", type=int, default=defaults.seed, help=f"PRNG seed (default {defaults.seed})")
  p.add_argument("--png", type=pathlib.Path, help="write the learning curve here")
  args = p.parse_args(argv)
  if args.num_envs < defaults.num_minibatches or args.num_envs % defaults.num_minibatches:
    p.error(f"--num-envs must be a positive multiple of {defaults.num_minibatches} (the minibatches split the environments)")
  config = dataclasses.replace(defaults, total_steps=args.total_steps, num_envs=args.num_envs, seed=args.seed)
  if config.num_updates < 1:
    p.error(f"--total-steps must be at least one rollout, {config.num_envs * config.num_steps} steps")
  start = time.perf_counter()
  _, mean_returns = jax.jit(make_train(config))(jax.random.key(config.seed))
  mean_returns = np.asarray(mean_returns)
  seconds = time.perf_counter() - start
  steps = np.arange(1, config.num_updates + 1) * config.num_envs * config.num_steps
  for i in range(0, config.num_updates, max(1, config.num_updates // 10)):
    print(f"steps {steps[i]:>8}: mean episode return {mean_returns[i]:6.1f}")
  tail = mean_returns[-max(1, config.num_updates // 10) :]
  print(f"last tenth of the updates: mean episode return {np.nanmean(tail):.1f}; {seconds:.0f} s including compilation")
  if args.png is not None:
    title = f"Recurrent PPO, CartPole-v1 without velocities (gymnax), jaxgru.GRU({config.hidden_size}), seed {config.seed}"
    plot(steps, mean_returns, args.png, title)
    print(f"wrote {args.png}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
