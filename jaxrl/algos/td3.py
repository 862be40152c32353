"""Twin Delayed DDPG (Fujimoto et al., 2018): DDPG with its three switches on.

1. twin critics: the TD target bootstraps from the smaller of two target critics;
2. delayed actor updates: one actor step (and target update) per `policy_delay`
   critic steps;
3. target policy smoothing: clipped Gaussian noise on the target action.
"""

from __future__ import annotations

from flax import struct

from jaxrl.algos.base import static
from jaxrl.algos.ddpg import DDPG, DDPGConfig


@struct.dataclass
class TD3Config(DDPGConfig):
    """DDPGConfig with the paper's TD3 switches as defaults."""

    twin_critics: bool = static(True)
    policy_delay: int = static(2)
    # Gradient steps must come in whole groups of policy_delay; 2 env steps per
    # update keep the paper's one critic step per env step.
    rollout_length: int = static(2)
    gradient_steps: int = static(2)
    target_noise: float = 0.2
    target_noise_clip: float = 0.5


class TD3(DDPG):
    """TD3: the DDPG implementation with TD3Config's defaults."""

    config_cls = TD3Config
