"""The on-policy skeleton shared by PPO, A2C and TRPO.

Acting, rollout collection, observation/reward normalisation and GAE are the
same for the three; only how a batch is learned from differs, so each
algorithm subclasses `OnPolicy` and implements `learn`.
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
from jaxrl.algos.common import adam_state, apply_where, flatten_steps, gae
from jaxrl.envs.base import Env
from jaxrl.envs.normalize import RewardScaler, RunningStats
from jaxrl.errors import ConfigError
from jaxrl.networks import CategoricalPolicy, GaussianPolicy, ValueCritic, deterministic_action, policy_distribution


@struct.dataclass
class OnPolicyConfig:
    """Settings every on-policy algorithm has (float hyperparameters are traced unless `static`)."""

    # pydantic's settings when jaxrl.config validates it: no unknown keys, finite numbers
    __pydantic_config__ = {"extra": "forbid", "allow_inf_nan": False}

    num_envs: int = static(16)
    rollout_length: int = static(256)
    hidden: tuple[int, ...] = static((256, 256))
    activation: str = static("tanh")
    conv: tuple[tuple[int, int, int], ...] = static(())  # [features, kernel, stride] per layer, for image observations
    log_std_init: float = static(0.0)
    normalize_obs: bool = static(True)
    normalize_reward: bool = static(True)
    anneal_lr: bool = static(True)
    lr: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    max_grad_norm: float = 0.5

    def validate(self, total_timesteps: int) -> None:
        """Raises ConfigError for settings that cannot train; called before compiling."""
        check_positive(self, "num_envs", "rollout_length", "lr", "max_grad_norm")
        check_network(self)
        batch = self.num_envs * self.rollout_length
        if total_timesteps < batch:
            raise ConfigError(
                f"total_timesteps={total_timesteps} is less than one rollout "
                f"(algo.num_envs x algo.rollout_length = {batch})"
            )
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"algo.gamma must be in (0, 1], got {self.gamma}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ConfigError(f"algo.gae_lambda must be in [0, 1], got {self.gae_lambda}")

    def unused(self) -> dict[str, str]:
        """Traced hyperparameters that these settings never read, {name: why}; none on-policy."""
        return {}


def check_minibatches(name: str, num_minibatches: int, batch: int) -> None:
    """Raises ConfigError unless `num_minibatches` (the value of algo.<name>)
    is positive and divides a rollout of `batch` samples."""
    if num_minibatches <= 0:
        raise ConfigError(f"algo.{name} must be positive, got {num_minibatches}")
    if batch % num_minibatches:
        divisors = [d for d in range(1, min(batch, 4096) + 1) if batch % d == 0]
        raise ConfigError(
            f"algo.{name}={num_minibatches} does not divide the batch of "
            f"algo.num_envs x algo.rollout_length = {batch} samples; divisors: {divisors}"
        )


@struct.dataclass
class Batch:
    """One rollout, flattened or not: every leaf is [T, B, ...] (or [N, ...])."""

    obs: jax.Array  # normalised observations the policy saw
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array  # value targets (GAE returns)


@struct.dataclass
class OnPolicyState:
    """Everything an on-policy run needs to continue (see algos/base.py)."""

    actor: Any
    critic: Any
    opt_state: Any
    env_state: Any  # EnvState, batched [num_envs]
    obs: jax.Array  # [num_envs, *obs_shape] raw observations
    obs_stats: RunningStats
    reward_scaler: RewardScaler
    key: jax.Array
    env_steps: jax.Array  # [] int32, env steps taken by this member
    update_idx: jax.Array  # [] int32
    hp: Any  # the algorithm's config as a pytree: traced hyperparameters are its leaves


class OnPolicy(abc.ABC):
    """Base class: subclasses set `config_cls` and implement `learn`."""

    config_cls: type = OnPolicyConfig

    def __init__(self, env: Env, config: OnPolicyConfig, total_timesteps: int, sized_for: int | None = None):
        """total_timesteps: env steps per member the lr anneals over;
        sized_for: unused, since no part of an on-policy state is sized by the
        budget (see `OffPolicy`)."""
        self.env = env
        self.config = StaticView(config)
        self.steps_per_update = config.num_envs * config.rollout_length
        self.num_updates = max(1, total_timesteps // self.steps_per_update)
        spec = env.spec
        conv = conv_torso(config, env)
        if spec.discrete:
            self.actor_net = CategoricalPolicy(spec.action_dim, config.hidden, config.activation, conv=conv)
        else:
            self.actor_net = GaussianPolicy(spec.action_dim, config.hidden, config.activation, config.log_std_init, conv=conv)
        self.critic_net = ValueCritic(config.hidden, config.activation, conv=conv)

    def init_params(self, key: jax.Array) -> tuple[Any, Any]:
        """Fresh (actor, critic) params."""
        k_actor, k_critic = jax.random.split(key)
        dummy = jnp.zeros(self.env.spec.obs_shape, jnp.float32)
        return self.actor_net.init(k_actor, dummy), self.critic_net.init(k_critic, dummy)

    def init_opt_state(self, actor, critic) -> Any:
        """Optimiser state for (actor, critic); PPO and A2C optimise both jointly."""
        return adam_state({"actor": actor, "critic": critic})

    def init(self, key: jax.Array, hp: OnPolicyConfig) -> OnPolicyState:
        """A fresh state: params, optimiser, `num_envs` reset envs, empty statistics."""
        k_params, k_env, k_state = jax.random.split(key, 3)
        actor, critic = self.init_params(k_params)
        env_state, obs = jax.vmap(self.env.reset)(jax.random.split(k_env, self.config.num_envs))
        return OnPolicyState(
            actor=actor,
            critic=critic,
            opt_state=self.init_opt_state(actor, critic),
            env_state=env_state,
            obs=obs,
            obs_stats=RunningStats.create(self.env.spec.obs_shape),
            reward_scaler=RewardScaler.create(self.config.num_envs),
            key=k_state,
            env_steps=jnp.zeros((), jnp.int32),
            update_idx=jnp.zeros((), jnp.int32),
            hp=hp,
        )

    def normalize(self, stats: RunningStats, obs: jax.Array) -> jax.Array:
        """Observations [..., *obs_shape] as the networks see them."""
        return stats.normalize(obs) if self.config.normalize_obs else obs

    def policy_params(self, state: OnPolicyState) -> PolicyParams:
        """What `policy` needs from a state."""
        return PolicyParams(state.actor, state.obs_stats)

    def policy(self, params: PolicyParams, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """obs [*obs_shape] -> normalised action ([action_dim] in [-1, 1], or an int)."""
        outputs = self.actor_net.apply(params.actor, self.normalize(params.obs_stats, obs))
        if deterministic:
            action = deterministic_action(self.env.spec.discrete, outputs)
        else:
            action = policy_distribution(self.env.spec.discrete, outputs).sample(seed=key)
        return action if self.env.spec.discrete else jnp.clip(action, -1.0, 1.0)

    def collect(self, state: OnPolicyState, key: jax.Array) -> tuple[OnPolicyState, Batch, dict[str, jax.Array]]:
        """Runs `rollout_length` steps of `num_envs` envs and computes GAE.

        Returns the advanced state, a Batch of [T, B] leaves, and episode metrics.
        Observation statistics are updated once per rollout, after it, so the
        whole batch is normalised consistently.
        """
        cfg, hp = self.config, state.hp
        discrete = self.env.spec.discrete
        step_env = jax.vmap(self.env.step)

        def step(carry, step_key):
            env_state, obs, scaler = carry
            k_act, k_env = jax.random.split(step_key)
            obs_n = self.normalize(state.obs_stats, obs)
            dist = policy_distribution(discrete, self.actor_net.apply(state.actor, obs_n))
            action, log_prob = dist.sample_and_log_prob(seed=k_act)
            env_state, ts = step_env(jax.random.split(k_env, cfg.num_envs), env_state, action)
            if cfg.normalize_reward:
                scaler = scaler.update(ts.reward, ts.done, hp.gamma)
                reward = scaler.scale(ts.reward)
            else:
                reward = ts.reward
            out = (obs_n, action, log_prob, reward, ts)
            return (env_state, ts.obs, scaler), out

        (env_state, obs, scaler), (obs_n, action, log_prob, reward, ts) = jax.lax.scan(
            step, (state.env_state, state.obs, state.reward_scaler), jax.random.split(key, cfg.rollout_length)
        )

        def critic(raw_obs):
            return self.critic_net.apply(state.critic, self.normalize(state.obs_stats, raw_obs))

        # every observation the rollout acted on, and the one after: [T + 1, B, ...]
        seen = jnp.concatenate([state.obs[None], ts.obs])
        # acting needs no value: the critic runs once over them all, not T times over B rows in the loop
        values = critic(seen)
        value, last_value = values[:-1], values[-1]
        # Only a truncated step bootstraps from its final observation, and the
        # time limit truncates an env at most ceil(T / max_episode_steps) times
        # in a rollout: the critic runs on those rows, not on all T x B.
        max_truncations = cfg.num_envs * -(-cfg.rollout_length // self.env.spec.max_episode_steps)
        final_value = apply_where(
            critic, flatten_steps(ts.final_obs), flatten_steps(ts.truncated), max_truncations
        ).reshape(ts.truncated.shape)
        next_value = jnp.concatenate([value[1:], last_value[None]], axis=0)
        next_value = jnp.where(ts.truncated, final_value, next_value)
        advantage, target = gae(reward, value, next_value, ts.terminated, ts.done, hp.gamma, hp.gae_lambda)

        obs_stats = state.obs_stats.update(seen[:-1]) if cfg.normalize_obs else state.obs_stats
        state = state.replace(
            env_state=env_state,
            obs=obs,
            obs_stats=obs_stats,
            reward_scaler=scaler,
            env_steps=state.env_steps + self.steps_per_update,
        )
        batch = Batch(obs_n, action, log_prob, value, advantage, target)
        return state, batch, episode_metrics(ts)

    @abc.abstractmethod
    def learn(self, state: OnPolicyState, batch: Batch, key: jax.Array) -> tuple[OnPolicyState, dict[str, jax.Array]]:
        """Improves actor and critic from one rollout ([T, B] leaves)."""

    def update(self, state: OnPolicyState) -> tuple[OnPolicyState, dict[str, jax.Array]]:
        """One iteration: collect a rollout, then learn from it."""
        key, k_collect, k_learn = jax.random.split(state.key, 3)
        state, batch, metrics = self.collect(state.replace(key=key), k_collect)
        state, learn_metrics = self.learn(state, batch, k_learn)
        return state.replace(update_idx=state.update_idx + 1), {**metrics, **learn_metrics}
