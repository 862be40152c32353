"""Twin Delayed DDPG (Fujimoto et al., 2018): DDPG with its three switches on.

1. twin critics: the TD target bootstraps from the smaller of two target critics;
2. delayed actor updates: one actor step (and target update) per `policy_delay`
   critic steps;
3. target policy smoothing: clipped Gaussian noise on the target action.
"""

from __future__ import annotations

import dataclasses

from jaxrl.algos.base import traced
from jaxrl.algos.ddpg import DDPG, DDPGConfig


@dataclasses.dataclass(frozen=True)
class TD3Config(DDPGConfig):
    """DDPGConfig with the paper's TD3 switches as defaults."""

    twin_critics: bool = True
    policy_delay: int = 2
    # Gradient steps must come in whole groups of policy_delay; 2 env steps per
    # update keep the paper's one critic step per env step.
    rollout_length: int = 2
    gradient_steps: int = 2
    target_noise: float = traced(0.2)
    target_noise_clip: float = traced(0.5)


class TD3(DDPG):
    """TD3: the DDPG implementation with TD3Config's defaults."""

    config_cls = TD3Config
