"""Algorithms by name. Each class follows the contract in `jaxrl.algos.base`."""

from jaxrl.algos.a2c import A2C
from jaxrl.algos.ddpg import DDPG
from jaxrl.algos.ppo import PPO
from jaxrl.algos.sac import SAC
from jaxrl.algos.td3 import TD3
from jaxrl.algos.trpo import TRPO

ALGORITHMS = {"ppo": PPO, "a2c": A2C, "trpo": TRPO, "ddpg": DDPG, "td3": TD3, "sac": SAC}

__all__ = ["A2C", "ALGORITHMS", "DDPG", "PPO", "SAC", "TD3", "TRPO"]
