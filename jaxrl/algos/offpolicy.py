"""The off-policy skeleton shared by DDPG, TD3 and SAC.

Collection (uniform random actions during warm-up, then the policy with
exploration noise), the replay buffer, observation normalisation, the loop of
gradient steps, delayed actor updates and Polyak target updates are the same
for the three; only the networks, the losses and how noise enters an action
differ, so each algorithm subclasses `OffPolicy`. The losses' math is in
losses.py; an algorithm's `critic_loss` and `actor_loss` apply its networks
and call it.

One `update` collects `rollout_length` steps from each of `num_envs` envs into
the buffer, then takes `gradient_steps` gradient steps on batches sampled from
it, all inside the jitted chunk: the replay ratio (gradient steps per env
step) is gradient_steps / (num_envs x rollout_length).
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.algos.base import (
    PolicyParams,
    StaticView,
    check_network,
    check_positive,
    conv_torso,
    episode_metrics,
    static,
)
from jaxrl.algos.common import clipped_adam_step, flatten_steps
from jaxrl.algos.replay import Transition, make_buffer
from jaxrl.envs.base import Env
from jaxrl.envs.normalize import RunningStats
from jaxrl.errors import ConfigError

NOISES = ("gaussian", "ou")


@struct.dataclass
class OffPolicyConfig:
    """Settings every off-policy algorithm has (float hyperparameters are traced unless `static`)."""

    # pydantic's settings when jaxrl.config validates it: no unknown keys, finite numbers
    __pydantic_config__ = {"extra": "forbid", "allow_inf_nan": False}

    num_envs: int = static(1)
    rollout_length: int = static(1)  # env steps per env per update
    gradient_steps: int = static(1)  # gradient steps per update
    policy_delay: int = static(1)  # critic steps per actor step (and per target update)
    batch_size: int = static(256)
    buffer_size: int = static(1_000_000)  # transitions; capped at the first session's total_timesteps
    warmup_steps: int = static(10_000)  # env steps (all envs) of uniform random actions, without learning
    hidden: tuple[int, ...] = static((256, 256))
    activation: str = static("relu")
    conv: tuple[tuple[int, int, int], ...] = static(())  # [features, kernel, stride] per layer, for image observations
    normalize_obs: bool = static(False)
    noise: str = static("gaussian")  # exploration noise: gaussian (white) | ou (temporally correlated)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005  # Polyak step of the target networks
    reward_scale: float = 1.0
    noise_theta: float = 0.15  # OU mean reversion per env step (correlation exp(-theta k))

    def validate(self, total_timesteps: int) -> None:
        """Raises ConfigError for settings that cannot train; called before compiling."""
        check_positive(self, "num_envs", "rollout_length", "gradient_steps", "policy_delay", "batch_size", "buffer_size")
        if self.warmup_steps < 0:
            raise ConfigError(f"algo.warmup_steps must be >= 0, got {self.warmup_steps}")
        check_network(self)
        if self.noise not in NOISES:
            raise ConfigError(f"unknown algo.noise {self.noise!r}; choose one of: {', '.join(NOISES)}")
        if self.gradient_steps % self.policy_delay:
            raise ConfigError(
                f"algo.gradient_steps={self.gradient_steps} must be a multiple of "
                f"algo.policy_delay={self.policy_delay} (each actor step follows policy_delay critic steps)"
            )
        batch = self.num_envs * self.rollout_length
        if self.buffer_size < batch:
            raise ConfigError(
                f"algo.buffer_size={self.buffer_size} is smaller than one update's "
                f"algo.num_envs x algo.rollout_length = {batch} transitions"
            )
        # flashbax cannot draw a batch larger than its ring, so such a buffer
        # would have to hold more than algo.buffer_size transitions
        if self.buffer_size < self.batch_size:
            raise ConfigError(
                f"algo.buffer_size={self.buffer_size} is smaller than algo.batch_size={self.batch_size}"
            )
        if total_timesteps < batch:
            raise ConfigError(
                f"total_timesteps={total_timesteps} is less than one update "
                f"(algo.num_envs x algo.rollout_length = {batch})"
            )
        # warmup is checked before each update, against the env steps taken so
        # far; the last update starts (ceil(total / batch) - 1) x batch steps in
        last_update_at = (-(-total_timesteps // batch) - 1) * batch
        if last_update_at < self.warmup_steps:
            raise ConfigError(
                f"total_timesteps={total_timesteps} never takes a gradient step: the first "
                f"algo.warmup_steps={self.warmup_steps} env steps are random actions; give "
                f"total_timesteps >= {-(-self.warmup_steps // batch) * batch + 1} or a smaller algo.warmup_steps"
            )
        check_positive(self, "actor_lr", "critic_lr", "reward_scale", "noise_theta")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"algo.gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"algo.tau must be in (0, 1], got {self.tau}")

    def unused(self) -> dict[str, str]:
        """Traced hyperparameters that these settings never read, {name: why}:
        a sweep over one would train identical members."""
        if self.noise == "ou":
            return {}
        return {"noise_theta": "it sets the correlation of algo.noise=ou, and algo.noise=gaussian draws white noise; set algo.noise=ou"}


@struct.dataclass
class Learner:
    """What gradient steps change.

    params: {"actor": ..., "critic": ..., and algorithm extras such as SAC's
        "log_alpha"}; target: Polyak-averaged copies of some of them, by the
        same names; opt_state: one Adam state per entry of params.
    """

    params: dict[str, Any]
    target: dict[str, Any]
    opt_state: dict[str, Any]


@struct.dataclass
class OffPolicyState:
    """Everything an off-policy run needs to continue (see algos/base.py)."""

    learner: Learner
    buffer: Any  # flashbax buffer state of `Transition`s
    env_state: Any  # EnvState, batched [num_envs]
    obs: jax.Array  # [num_envs, *obs_shape] raw observations
    noise: jax.Array  # [num_envs, action_dim] exploration noise process, unit stationary variance
    obs_stats: RunningStats
    key: jax.Array
    env_steps: jax.Array  # [] int32, env steps taken by this member
    update_idx: jax.Array  # [] int32
    hp: Any  # the algorithm's config as a pytree: traced hyperparameters are its leaves


def ou_step(x: jax.Array, key: jax.Array, theta: jax.Array, sigma: jax.Array) -> jax.Array:
    """One env step of an Ornstein-Uhlenbeck process dx = -theta x dt + sigma dW (dt = 1 step).

    Uses the exact discretisation x' = x e^-theta + sigma sqrt((1 - e^-2theta) / (2 theta)) xi,
    xi ~ N(0, 1), so for any theta > 0 the stationary law is N(0, sigma^2 / (2 theta))
    and the autocorrelation at lag k is e^(-theta k) (the Euler step many codes use
    is only close to that for theta << 1). x [...] -> x' [...].
    """
    decay = jnp.exp(-theta)
    scale = sigma * jnp.sqrt((1.0 - decay**2) / (2.0 * theta))
    return x * decay + scale * jax.random.normal(key, x.shape, x.dtype)


def polyak(target: Any, online: Any, tau: jax.Array) -> Any:
    """Target update (1 - tau) target + tau online, leaf by leaf (same pytree structure)."""
    return jax.tree.map(lambda t, o: t + tau * (o - t), target, online)


class OffPolicy(abc.ABC):
    """Base class: subclasses set `config_cls` and implement the abstract methods."""

    config_cls: type = OffPolicyConfig

    def __init__(self, env: Env, config: OffPolicyConfig, total_timesteps: int, sized_for: int | None = None):
        """total_timesteps: env steps per member of the run; sized_for: those
        of its first session (default: total_timesteps), which the replay
        buffer's capacity derives from: a resumed run keeps its buffer's shape
        when total_timesteps changes."""
        if env.spec.discrete:
            raise ConfigError(
                f"{type(self).__name__} needs continuous actions; {env.name} has {env.spec.action_dim} discrete ones: "
                "train it with algo=ppo, a2c or trpo"
            )
        self.env = env
        self.config = StaticView(config)
        self.steps_per_update = config.num_envs * config.rollout_length
        # A buffer larger than the whole run would only hold zeros.
        capacity = max(config.batch_size, self.steps_per_update, min(config.buffer_size, sized_for or total_timesteps))
        self.buffer = make_buffer(capacity, config.batch_size)
        self.conv = conv_torso(config, env)  # the actor's and critics' conv layers, None for vector observations

    # ---- what each algorithm defines -------------------------------------------------

    @abc.abstractmethod
    def init_learner(self, key: jax.Array, hp: Any) -> Learner:
        """Fresh params, targets and optimiser states."""

    @abc.abstractmethod
    def explore(self, params: dict[str, Any], obs: jax.Array, noise: jax.Array, hp: Any) -> jax.Array:
        """Behaviour actions: obs [N, *obs_shape] (normalised), noise [N, action_dim]
        (unit variance) -> actions [N, action_dim] in [-1, 1]."""

    @abc.abstractmethod
    def critic_loss(self, critic: Any, learner: Learner, batch: Transition, key: jax.Array, hp) -> tuple[Any, dict]:
        """TD loss of critic params `critic` on a batch ([B] leaves, normalised): the
        network applies around a loss of losses.py. Returns (loss [], metrics)."""

    @abc.abstractmethod
    def actor_loss(self, actor: Any, learner: Learner, batch: Transition, key: jax.Array, hp) -> tuple[Any, dict]:
        """Policy loss of actor params `actor` on a batch ([B] leaves, normalised): the
        network applies around a loss of losses.py. Returns (loss [], metrics)."""

    @abc.abstractmethod
    def policy(self, params: PolicyParams, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """obs [*obs_shape] -> normalised action [action_dim] in [-1, 1]."""

    # ---- shared machinery --------------------------------------------------------------

    def init(self, key: jax.Array, hp: Any) -> OffPolicyState:
        """A fresh state: params, an empty buffer, `num_envs` reset envs, stationary noise."""
        k_learner, k_env, k_noise, k_state = jax.random.split(key, 4)
        spec = self.env.spec
        env_state, obs = jax.vmap(self.env.reset)(jax.random.split(k_env, self.config.num_envs))
        example = Transition(
            obs=jnp.zeros(spec.obs_shape, jnp.float32),
            action=jnp.zeros((spec.action_dim,), jnp.float32),
            reward=jnp.zeros((), jnp.float32),
            next_obs=jnp.zeros(spec.obs_shape, jnp.float32),
            terminated=jnp.zeros((), jnp.float32),
        )
        state = OffPolicyState(
            learner=self.init_learner(k_learner, hp),
            buffer=self.buffer.init(example),
            env_state=env_state,
            obs=obs,
            noise=jax.random.normal(k_noise, (self.config.num_envs, spec.action_dim)),
            obs_stats=RunningStats.create(spec.obs_shape),
            key=k_state,
            env_steps=jnp.zeros((), jnp.int32),
            update_idx=jnp.zeros((), jnp.int32),
            hp=hp,
        )
        # Some leaves start weakly typed (gymnax's reset state, flashbax's index)
        # and come out of `update` strongly typed; a chunk fed its own output
        # would then be traced and compiled a second time.
        return jax.tree.map(lambda x: jnp.asarray(x, x.dtype), state)

    def normalize(self, stats: RunningStats, obs: jax.Array) -> jax.Array:
        """Observations [..., *obs_shape] as the networks see them."""
        return stats.normalize(obs) if self.config.normalize_obs else obs

    def policy_params(self, state: OffPolicyState) -> PolicyParams:
        """What `policy` needs from a state."""
        return PolicyParams(state.learner.params["actor"], state.obs_stats)

    def noise_step(self, noise: jax.Array, key: jax.Array, hp: Any) -> jax.Array:
        """Advances the per-env exploration noise [num_envs, action_dim] by one step.

        Both kinds have unit stationary variance, so switching kinds changes the
        noise's temporal correlation and not its scale.
        """
        if self.config.noise == "ou":
            return ou_step(noise, key, hp.noise_theta, jnp.sqrt(2.0 * hp.noise_theta))
        return jax.random.normal(key, noise.shape)

    def collect(
        self, state: OffPolicyState, key: jax.Array, warmup: jax.Array
    ) -> tuple[OffPolicyState, dict[str, jax.Array]]:
        """Runs `rollout_length` steps of `num_envs` envs and adds them to the buffer.

        warmup: [] bool, act uniformly at random instead of with the policy.
        Returns the advanced state and episode metrics.
        """
        cfg, hp = self.config, state.hp
        shape = (cfg.num_envs, self.env.spec.action_dim)
        step_env = jax.vmap(self.env.step)

        def step(carry, step_key):
            env_state, obs, noise = carry
            k_noise, k_random, k_env, k_reset = jax.random.split(step_key, 4)
            noise = self.noise_step(noise, k_noise, hp)
            policy_action = self.explore(state.learner.params, self.normalize(state.obs_stats, obs), noise, hp)
            action = jnp.where(warmup, jax.random.uniform(k_random, shape, minval=-1.0, maxval=1.0), policy_action)
            env_state, ts = step_env(jax.random.split(k_env, cfg.num_envs), env_state, action)
            # A new episode starts from a fresh draw of the stationary noise, so
            # correlated noise carries nothing over from the last episode.
            noise = jnp.where(ts.done[:, None], jax.random.normal(k_reset, shape), noise)
            transition = Transition(obs, action, ts.reward, ts.final_obs, ts.terminated.astype(jnp.float32))
            return (env_state, ts.obs, noise), (transition, ts)

        (env_state, obs, noise), (transitions, ts) = jax.lax.scan(
            step, (state.env_state, state.obs, state.noise), jax.random.split(key, cfg.rollout_length)
        )
        flat = flatten_steps(transitions)
        state = state.replace(
            buffer=self.buffer.add(state.buffer, flat),
            env_state=env_state,
            obs=obs,
            noise=noise,
            obs_stats=state.obs_stats.update(flat.obs) if cfg.normalize_obs else state.obs_stats,
            env_steps=state.env_steps + self.steps_per_update,
        )
        return state, episode_metrics(ts)

    def sample(self, buffer: Any, obs_stats: RunningStats, key: jax.Array, hp) -> Transition:
        """A batch [batch_size] from the buffer as the losses see it: observations
        normalised with the current statistics, rewards scaled."""
        batch = self.buffer.sample(buffer, key).experience
        return batch.replace(
            obs=self.normalize(obs_stats, batch.obs),
            next_obs=self.normalize(obs_stats, batch.next_obs),
            reward=batch.reward * hp.reward_scale,
        )

    def apply_grads(self, learner: Learner, name: str, grads: Any, lr: jax.Array) -> Learner:
        """An Adam step on `learner.params[name]`."""
        params, opt_state, _ = clipped_adam_step(learner.params[name], learner.opt_state[name], grads, lr, eps=1e-8)
        return learner.replace(
            params={**learner.params, name: params}, opt_state={**learner.opt_state, name: opt_state}
        )

    def critic_step(self, learner: Learner, batch: Transition, key: jax.Array, hp) -> tuple[Learner, dict]:
        """One gradient step of the critic(s)."""
        grads, metrics = jax.grad(self.critic_loss, has_aux=True)(learner.params["critic"], learner, batch, key, hp)
        return self.apply_grads(learner, "critic", grads, hp.critic_lr), metrics

    def actor_step(self, learner: Learner, batch: Transition, key: jax.Array, hp) -> tuple[Learner, dict]:
        """One gradient step of the actor (SAC also tunes its temperature here)."""
        grads, metrics = jax.grad(self.actor_loss, has_aux=True)(learner.params["actor"], learner, batch, key, hp)
        return self.apply_grads(learner, "actor", grads, hp.actor_lr), metrics

    def learn(self, learner: Learner, buffer: Any, obs_stats: RunningStats, key: jax.Array, hp) -> tuple[Learner, dict]:
        """`gradient_steps` gradient steps: groups of `policy_delay` critic steps, each
        group followed by one actor step and a Polyak update of the targets. Every
        step samples its own batch. Returns the learner and metrics averaged over steps.

        The grouping is static, so TD3's delayed actor updates cost no wasted
        actor gradients (a `cond` on a step counter would compute both branches
        once vmapped over seeds).
        """
        cfg = self.config

        def critic_update(learner, step_key):
            k_sample, k_loss = jax.random.split(step_key)
            return self.critic_step(learner, self.sample(buffer, obs_stats, k_sample, hp), k_loss, hp)

        def group(learner, group_key):
            k_critic, k_sample, k_actor = jax.random.split(group_key, 3)
            learner, critic_metrics = jax.lax.scan(critic_update, learner, jax.random.split(k_critic, cfg.policy_delay))
            learner, actor_metrics = self.actor_step(learner, self.sample(buffer, obs_stats, k_sample, hp), k_actor, hp)
            online = {name: learner.params[name] for name in learner.target}
            learner = learner.replace(target=polyak(learner.target, online, hp.tau))
            return learner, {**jax.tree.map(jnp.mean, critic_metrics), **actor_metrics}

        num_groups = cfg.gradient_steps // cfg.policy_delay
        learner, metrics = jax.lax.scan(group, learner, jax.random.split(key, num_groups))
        return learner, jax.tree.map(jnp.mean, metrics)

    def update(self, state: OffPolicyState) -> tuple[OffPolicyState, dict[str, jax.Array]]:
        """One iteration: collect `num_envs x rollout_length` steps, then learn.

        No learning while the update's actions were warm-up random ones; the
        learning metrics of those updates are zeros.
        """
        key, k_collect, k_learn = jax.random.split(state.key, 3)
        warmup = state.env_steps < self.config.warmup_steps
        state, metrics = self.collect(state.replace(key=key), k_collect, warmup)

        def learn(learner):
            return self.learn(learner, state.buffer, state.obs_stats, k_learn, state.hp)

        def skip(learner):
            return learner, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(learn, learner)[1])

        # Only the learner goes through the cond: under vmap it becomes a select
        # of both branches' outputs, which must not include the replay buffer.
        learner, learn_metrics = jax.lax.cond(warmup, skip, learn, state.learner)
        state = state.replace(learner=learner, update_idx=state.update_idx + 1)
        return state, {**metrics, **learn_metrics}
