"""Algorithms by name. Each class follows the contract in `jaxrl.algos.base`."""

from jaxrl.algos.ppo import PPO

ALGORITHMS = {"ppo": PPO}

__all__ = ["ALGORITHMS", "PPO"]
