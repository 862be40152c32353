"""MountainCar frames for the gymnax adapter, drawn like gym with NumPy and PIL.

Owns the drawing of gymnax's two MountainCars (`MountainCar-v0`,
`MountainCarContinuous-v0`): host code on recorded positions, about a
millisecond a frame, needing no OpenGL. `GymnaxEnv.render` calls
`render_episode`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from jaxrl.envs.base import EnvState, Frames, TimeStep, frame_indices

__all__ = ["ENVS", "FPS", "HEIGHT", "WIDTH", "mountaincar_frames", "render_episode"]

ENVS = ("MountainCar-v0", "MountainCarContinuous-v0")

# gym's MountainCar window size and playback rate (its metadata["render_fps"]).
WIDTH, HEIGHT = 400, 300
FPS = 30


def _hill(x: np.ndarray) -> np.ndarray:
    # gym's classic_control/mountain_car.py draws the track at this height.
    return np.sin(3.0 * x) * 0.45 + 0.55


def mountaincar_frames(
    positions: np.ndarray,
    *,
    min_position: float = -1.2,
    max_position: float = 0.6,
    goal_position: float = 0.45,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> np.ndarray:
    """Draws MountainCar like gym: the hill, the flag at the goal, the car tilted on the slope.

    positions: [T] car x positions (the env's `state.position`).
    Returns uint8 [T, height, width, 3]. Pure NumPy/PIL on the host, about a
    millisecond a frame, so it needs no OpenGL.
    """
    from PIL import Image, ImageDraw

    positions = np.asarray(positions, dtype=np.float64).reshape(-1)
    span = max_position - min_position
    scale = width / span
    pole_len, flag_w, flag_h = 0.18, 0.1, 0.05
    # The hill spans heights [0.1, 1.0]; the flag may stand above it. Put the
    # top of the flag just under the frame's top edge (same scale on both axes,
    # so the car's tilt matches the slope it sits on).
    y_view_top = max(1.0, float(_hill(goal_position)) + pole_len) + 0.04

    def to_px(x, y):
        return (x - min_position) * scale, (y_view_top - y) * scale

    background = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(background)
    xs = np.linspace(min_position, max_position, max(2, width // 2))
    track = [to_px(x, y) for x, y in zip(xs, _hill(xs), strict=True)]
    draw.polygon([*track, (width, height), (0, height)], fill=(225, 235, 215))
    draw.line(track, fill=(40, 40, 40), width=max(1, round(width / 200)))
    fx, fy = to_px(goal_position, _hill(goal_position))
    top = fy - pole_len * scale
    draw.line([(fx, fy), (fx, top)], fill=(20, 20, 20), width=max(1, round(width / 300)))
    flag = [(fx, top), (fx, top + flag_h * scale), (fx + flag_w * scale, top + flag_h * scale / 2)]
    draw.polygon(flag, fill=(230, 190, 20))

    car_len, car_h = 0.18 * scale, 0.08 * scale
    wheel_r = 0.03 * scale
    frames = np.empty((positions.shape[0], height, width, 3), np.uint8)
    for t, pos in enumerate(positions):
        image = background.copy()
        draw = ImageDraw.Draw(image)
        # Car axes in pixel space: along the track and its upward normal
        # (screen y points down, hence the minus on the slope).
        angle = math.atan(1.35 * math.cos(3.0 * pos))
        along = np.array([math.cos(angle), -math.sin(angle)])
        up = np.array([-math.sin(angle), -math.cos(angle)])
        # Wheel centres one radius above the track, so the wheels touch it.
        base = np.array(to_px(pos, _hill(pos))) + up * wheel_r
        body = [base + along * s * car_len / 2 + up * h for s, h in ((-1, 0), (1, 0), (1, car_h), (-1, car_h))]
        draw.polygon([tuple(p) for p in body], fill=(0, 0, 0))
        for s in (-0.6, 0.6):
            c = base + along * s * car_len / 2
            draw.ellipse([c[0] - wheel_r, c[1] - wheel_r, c[0] + wheel_r, c[1] + wheel_r], fill=(128, 128, 128))
        frames[t] = np.asarray(image)
    return frames


def render_episode(
    params: Any,
    states: EnvState,
    steps: TimeStep,
    *,
    width: int | None = None,
    height: int | None = None,
    max_frames: int = 250,
) -> Frames:
    """Draws a recorded MountainCar episode, one frame per state plus the car where it ended.

    params: the gymnax env params (track bounds and goal).
    states, steps: host arrays [T, ...] from `jaxrl.video.rollout`.
    max_frames: an episode of more steps is drawn every k-th position (`frame_indices`).
    Returns Frames: [T + 1, height, width, 3] uint8 (default 400x300) at 30
    fps, or, past max_frames, every k-th of them at 30 / k fps.
    """
    # The env auto-resets on the last step, so the car's final position (at the
    # flag, when it succeeded) exists only as the first entry of final_obs.
    final = np.asarray(steps.final_obs)[-1, 0]
    positions = np.append(np.asarray(states.inner.position), final)
    indices, stride = frame_indices(positions.shape[0] - 1, max_frames)
    frames = mountaincar_frames(
        positions[indices],
        min_position=float(params.min_position),
        max_position=float(params.max_position),
        goal_position=float(params.goal_position),
        width=width or WIDTH,
        height=height or HEIGHT,
    )
    return Frames(frames, FPS / stride)
