"""Algorithms by name, with their config structs. Each class follows the contract in `jaxrl.algos.base`."""

from jaxrl.algos.a2c import A2C, A2CConfig
from jaxrl.algos.ddpg import DDPG, DDPGConfig
from jaxrl.algos.ppo import PPO, PPOConfig
from jaxrl.algos.sac import SAC, SACConfig
from jaxrl.algos.td3 import TD3, TD3Config
from jaxrl.algos.trpo import TRPO, TRPOConfig

ALGORITHMS = {"ppo": PPO, "a2c": A2C, "trpo": TRPO, "ddpg": DDPG, "td3": TD3, "sac": SAC}

__all__ = [
    "A2C",
    "ALGORITHMS",
    "DDPG",
    "PPO",
    "SAC",
    "TD3",
    "TRPO",
    "A2CConfig",
    "DDPGConfig",
    "PPOConfig",
    "SACConfig",
    "TD3Config",
    "TRPOConfig",
]
