"""Frames for the gymnax adapter, drawn on the host with NumPy and PIL.

Owns the drawing of the gymnax envs jaxrl films, each frame from the
observation of one recorded state:
  - gym's classic-control scenes: CartPole, Pendulum (without gym's torque
    arrow) and Acrobot in gym's geometry, sizes and colours; the two
    MountainCars in gym's geometry, at 400x300;
  - the envs whose observation is a picture of the board (MinAtar's five
    games, Pong-misc, bsuite's Catch and DeepSea), drawn cell by cell, one
    colour per channel, as gymnax's own animations draw MinAtar; and the
    grid worlds whose observation is a position on a fixed map (FourRooms,
    FrozenLake), drawn as such boards;
  - the misc envs' 2D scenes, which gymnax leaves undrawn: Reacher's arm and
    goal, Swimmer's swimmer, urchins and goal, PointRobot's robot and the arc
    its hidden goal lies on.
About a millisecond a frame and no OpenGL: gym's own drawings would need
pygame and a gym env made per frame (gymnax's adapter to them does so), and
gymnax's MinAtar animation needs seaborn and matplotlib. `GymnaxEnv.render`
calls `render_episode`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from PIL import Image, ImageDraw

from jaxrl.envs.base import EnvState, Frames, TimeStep, frame_indices

__all__ = [
    "ENVS",
    "acrobot_frames",
    "board_frames",
    "cartpole_frames",
    "mountaincar_frames",
    "pendulum_frames",
    "pointrobot_frames",
    "reacher_frames",
    "render_episode",
    "swimmer_frames",
]

# An env's drawer: (observations [N, *native_obs_shape], env params, width or None, height or None) -> [N, H, W, 3]
Drawer = Callable[..., np.ndarray]

WHITE, BLACK = (255, 255, 255), (0, 0, 0)
# the misc scenes' colours: gym's Acrobot links and joints for the body, gym's Pendulum red for goals
BODY, JOINT, GOAL = (0, 204, 204), (204, 204, 0), (204, 77, 77)


def _size(design: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """(width, height) of a frame: the design size, or the sides given, a
    missing one following the design's aspect ratio."""
    if width and not height:
        return width, max(1, round(width * design[1] / design[0]))
    if height and not width:
        return max(1, round(height * design[0] / design[1])), height
    return width or design[0], height or design[1]


class _Canvas:
    """A frame drawn in `design` coordinates (gym's pixels, or MountainCar's
    track units) of that width x height, y pointing up from the bottom edge,
    scaled uniformly into width x height pixels (`_size`) and centred."""

    def __init__(self, design: tuple[int, int], width: int | None, height: int | None):
        self.size = _size(design, width, height)
        self.scale = min(self.size[0] / design[0], self.size[1] / design[1])
        self.offset = ((self.size[0] - self.scale * design[0]) / 2, (self.size[1] - self.scale * design[1]) / 2)
        self.top = design[1]

    def px(self, x: float, y: float) -> tuple[float, float]:
        """Design coordinates (y up) -> image pixel coordinates (y down)."""
        return self.offset[0] + self.scale * x, self.offset[1] + self.scale * (self.top - y)

    def polygon(self, draw: Any, points: np.ndarray, fill: tuple[int, int, int]) -> None:
        """Fills the polygon of design points [K, 2]."""
        draw.polygon([self.px(x, y) for x, y in points], fill=fill)

    def box(self, centre: np.ndarray, radius: float) -> list[float]:
        """The pixel box [left, top, right, bottom] of the circle of `radius`
        design units around a design point, as PIL's ellipse and arc take it."""
        cx, cy = self.px(*centre)
        r = radius * self.scale
        return [cx - r, cy - r, cx + r, cy + r]

    def disc(self, draw: Any, centre: np.ndarray, radius: float, fill: tuple[int, int, int]) -> None:
        """Fills a circle of `radius` design units around a design point."""
        draw.ellipse(self.box(centre, radius), fill=fill)


def _bar(left: float, right: float, bottom: float, top: float, angle: float, at: np.ndarray) -> np.ndarray:
    """Corners [4, 2] of the rectangle [left, right] x [bottom, top], turned by
    `angle` (radians, counter-clockwise) about the origin, then moved to `at`."""
    corners = np.array([[left, bottom], [left, top], [right, top], [right, bottom]], np.float64)
    c, s = math.cos(angle), math.sin(angle)
    return corners @ np.array([[c, s], [-s, c]]) + at


def _frames(obs: np.ndarray, canvas: _Canvas, background: Any, draw_one: Callable[[Any, np.ndarray], None]) -> np.ndarray:
    """Every observation's frame: a copy of `background` (a PIL image) that `draw_one(draw, obs_row)` draws on."""
    frames = np.empty((obs.shape[0], canvas.size[1], canvas.size[0], 3), np.uint8)
    for t, row in enumerate(obs):
        image = background.copy()
        draw_one(ImageDraw.Draw(image), row)
        frames[t] = np.asarray(image)
    return frames


def _blank(canvas: _Canvas) -> Image.Image:
    return Image.new("RGB", canvas.size, WHITE)


def cartpole_frames(obs: np.ndarray, params: Any, width: int | None = None, height: int | None = None) -> np.ndarray:
    """CartPole as gym draws it (600x400): the track, the cart at x, the pole at angle theta.

    obs: [N, 4] (x, x_dot, theta, theta_dot). Returns uint8 [N, height, width, 3].
    """
    canvas = _Canvas((600, 400), width, height)
    scale = 600 / (2 * float(params.x_threshold))
    pole_w, pole_len = 10.0, scale * 2 * float(params.length)
    cart_w, cart_h, cart_y = 50.0, 30.0, 100.0
    background = _blank(canvas)
    ImageDraw.Draw(background).line([canvas.px(0, cart_y), canvas.px(600, cart_y)], fill=BLACK)

    def draw_one(draw: Any, row: np.ndarray) -> None:
        cart_x = float(row[0]) * scale + 300
        axle = np.array([cart_x, cart_y + cart_h / 4])
        canvas.polygon(draw, _bar(-cart_w / 2, cart_w / 2, -cart_h / 2, cart_h / 2, 0.0, np.array([cart_x, cart_y])), BLACK)
        pole = _bar(-pole_w / 2, pole_w / 2, -pole_w / 2, pole_len - pole_w / 2, -float(row[2]), axle)
        canvas.polygon(draw, pole, (202, 152, 101))
        canvas.disc(draw, axle, pole_w / 2, (129, 132, 203))

    return _frames(obs, canvas, background, draw_one)


def pendulum_frames(obs: np.ndarray, params: Any, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Pendulum as gym draws it (500x500): the rod at angle theta (0: upright) about its axle.

    obs: [N, 3] (cos theta, sin theta, theta_dot). Returns uint8 [N, height, width, 3].
    """
    canvas = _Canvas((500, 500), width, height)
    scale = 500 / 4.4  # gym's view: 2.2 rod lengths either side
    rod_len, rod_w = float(params.l) * scale, 0.2 * scale
    centre = np.array([250.0, 250.0])

    def draw_one(draw: Any, row: np.ndarray) -> None:
        angle = math.atan2(float(row[1]), float(row[0])) + math.pi / 2
        canvas.polygon(draw, _bar(0, rod_len, -rod_w / 2, rod_w / 2, angle, centre), (204, 77, 77))
        tip = centre + rod_len * np.array([math.cos(angle), math.sin(angle)])
        for end in (centre, tip):  # both ends rounded
            canvas.disc(draw, end, rod_w / 2, (204, 77, 77))
        canvas.disc(draw, centre, 0.05 * scale, BLACK)

    return _frames(obs, canvas, _blank(canvas), draw_one)


def acrobot_frames(obs: np.ndarray, params: Any, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Acrobot as gym draws it (500x500): two links hanging from a pivot, and
    the line the tip must rise above (height 1 over the pivot: gym's goal).

    obs: [N, 6] (cos, sin of both joint angles, two velocities). Returns uint8 [N, height, width, 3].
    """
    canvas = _Canvas((500, 500), width, height)
    l1, l2 = float(params.link_length_1), float(params.link_length_2)
    scale = 500 / (2 * (l1 + l2 + 0.2))
    centre = np.array([250.0, 250.0])
    background = _blank(canvas)
    goal_y = 250 + 1.0 * scale
    ImageDraw.Draw(background).line([canvas.px(250 - 2.2 * scale, goal_y), canvas.px(250 + 2.2 * scale, goal_y)], fill=BLACK)

    def draw_one(draw: Any, row: np.ndarray) -> None:
        a1 = math.atan2(float(row[1]), float(row[0]))
        a2 = a1 + math.atan2(float(row[3]), float(row[2]))
        # angle 0 hangs straight down; each link turns counter-clockwise from there
        elbow = centre + l1 * scale * np.array([math.sin(a1), -math.cos(a1)])
        for joint, angle, length in ((centre, a1, l1), (elbow, a2, l2)):
            link = _bar(0, length * scale, -0.1 * scale, 0.1 * scale, angle - math.pi / 2, joint)
            canvas.polygon(draw, link, (0, 204, 204))
            canvas.disc(draw, joint, 0.1 * scale, (204, 204, 0))

    return _frames(obs, canvas, background, draw_one)


def board_frames(obs: np.ndarray, params: Any = None, width: int | None = None, height: int | None = None) -> np.ndarray:
    """A board game's observations as pictures, one square of colour per cell.

    obs: [N, H, W, C] (a cell takes the colour of its last channel that is
    set, black where none is) or [N, H, W] (set cells in one colour). A board
    with nothing on it shows the one before: DeepSea's diver leaves the board
    on its last step. Cells are as large as fit width x height (default:
    about 400 pixels along the longer side; a frame smaller than the board
    shows its middle), with a dark grid around them when large enough to show it.
    Returns uint8 [N, height, width, 3].
    """
    del params
    import matplotlib

    obs = np.asarray(obs)
    if obs.ndim == 3:
        obs = obs[..., None]
    obs = obs.copy()
    for t in range(1, obs.shape[0]):
        if not obs[t].any():
            obs[t] = obs[t - 1]
    rows, cols, channels = obs.shape[1:]
    # 0 where no channel is set, else 1 + the last set channel's index (gymnax draws MinAtar so)
    index = np.max((obs > 0) * np.arange(1, channels + 1), axis=-1)
    palette = np.array([BLACK, *(tuple(round(255 * c) for c in rgb) for rgb in matplotlib.colormaps["tab10"].colors)])
    colours = palette[np.minimum(index, len(palette) - 1)].astype(np.uint8)
    fits = [side // n for side, n in ((width, cols), (height, rows)) if side]
    cell = max(1, min(fits) if fits else 400 // max(rows, cols))
    big = colours.repeat(cell, axis=1).repeat(cell, axis=2)
    if cell >= 8:
        big[:, ::cell] = big[:, -1] = 40
        big[:, :, ::cell] = big[:, :, -1] = 40
    size = _size((cols * cell, rows * cell), width, height)
    frames = np.zeros((obs.shape[0], size[1], size[0], 3), np.uint8)
    # centred: a margin where the frame is larger than the board, a crop where it is smaller
    (top, crop_top), (left, crop_left) = (
        (max(0, (side - n * cell) // 2), max(0, (n * cell - side) // 2)) for side, n in ((size[1], rows), (size[0], cols))
    )
    shown = big[:, crop_top : crop_top + size[1], crop_left : crop_left + size[0]]
    frames[:, top : top + shown.shape[1], left : left + shown.shape[2]] = shown
    return frames


def _hill(x: np.ndarray) -> np.ndarray:
    # gym's classic_control/mountain_car.py draws the track at this height.
    return np.sin(3.0 * x) * 0.45 + 0.55


def mountaincar_frames(
    positions: np.ndarray,
    *,
    min_position: float = -1.2,
    max_position: float = 0.6,
    goal_position: float = 0.45,
    width: int = 400,
    height: int = 300,
) -> np.ndarray:
    """Draws MountainCar like gym: the hill, the flag at the goal, the car tilted on the slope.

    positions: [T] car x positions (the env's `state.position`).
    Returns uint8 [T, height, width, 3]. Pure NumPy/PIL on the host, about a
    millisecond a frame, so it needs no OpenGL.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1)
    pole_len, flag_w, flag_h = 0.18, 0.1, 0.05
    car_len, car_h, wheel_r = 0.18, 0.08, 0.03
    # The view holds the track's span and the hill up to just above the flag,
    # both axes at one scale, so that the car's tilt matches the slope it sits on.
    y_view_top = max(1.0, float(_hill(goal_position)) + pole_len) + 0.04
    canvas = _Canvas((max_position - min_position, y_view_top), width, height)

    def at(x: float, y: float) -> np.ndarray:
        # track coordinates -> the canvas's, whose x starts at 0
        return np.array([x - min_position, y])

    background = _blank(canvas)
    draw = ImageDraw.Draw(background)
    xs = np.linspace(min_position, max_position, max(2, width // 2))
    track = [canvas.px(*at(x, y)) for x, y in zip(xs, _hill(xs), strict=True)]
    draw.polygon([*track, (track[-1][0], canvas.size[1]), (track[0][0], canvas.size[1])], fill=(225, 235, 215))
    draw.line(track, fill=(40, 40, 40), width=max(1, round(width / 200)))
    foot, top = at(goal_position, _hill(goal_position)), at(goal_position, _hill(goal_position) + pole_len)
    draw.line([canvas.px(*foot), canvas.px(*top)], fill=(20, 20, 20), width=max(1, round(width / 300)))
    canvas.polygon(draw, np.array([top, top - [0, flag_h], top + [flag_w, -flag_h / 2]]), (230, 190, 20))

    def draw_one(draw: Any, pos: float) -> None:
        angle = math.atan(1.35 * math.cos(3.0 * pos))  # the slope of _hill
        along, up = np.array([math.cos(angle), math.sin(angle)]), np.array([-math.sin(angle), math.cos(angle)])
        # wheel centres one radius above the track, so the wheels touch it
        base = at(pos, _hill(pos)) + up * wheel_r
        body = [base + along * s * car_len / 2 + up * h for s, h in ((-1, 0), (1, 0), (1, car_h), (-1, car_h))]
        canvas.polygon(draw, np.array(body), BLACK)
        for s in (-0.6, 0.6):
            canvas.disc(draw, base + along * s * car_len / 2, wheel_r, (128, 128, 128))

    return _frames(positions, canvas, background, draw_one)


def _mountaincar(obs: np.ndarray, params: Any, width: int | None, height: int | None) -> np.ndarray:
    bounds = {k: float(getattr(params, k)) for k in ("min_position", "max_position", "goal_position")}
    width, height = _size((400, 300), width, height)
    return mountaincar_frames(obs[:, 0], **bounds, width=width, height=height)


def reacher_frames(obs: np.ndarray, params: Any = None, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Reacher-misc (500x500): the arm of unit links from the centre, each at
    its own absolute angle (gymnax sums them so), and the goal its tip should reach.

    obs: [N, 3n + 2] (cos and sin of the n angles, n velocities, goal x, y).
    Returns uint8 [N, height, width, 3].
    """
    del params
    joints = (obs.shape[1] - 2) // 3
    canvas = _Canvas((500, 500), width, height)
    scale = 250 / (joints + 0.3)  # the whole reach, goals included, and a margin
    centre = np.array([250.0, 250.0])
    background = _blank(canvas)
    ImageDraw.Draw(background).ellipse(canvas.box(centre, joints * scale), outline=(200, 200, 200))

    def draw_one(draw: Any, row: np.ndarray) -> None:
        canvas.disc(draw, centre + scale * row[-2:], 0.12 * scale, GOAL)
        joint = centre
        for c, s in zip(row[:joints], row[joints : 2 * joints], strict=True):
            canvas.polygon(draw, _bar(0, scale, -0.06 * scale, 0.06 * scale, math.atan2(s, c), joint), BODY)
            canvas.disc(draw, joint, 0.08 * scale, JOINT)
            joint = joint + scale * np.array([c, s])

    return _frames(obs, canvas, background, draw_one)


def swimmer_frames(obs: np.ndarray, params: Any = None, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Swimmer-misc (500x500, x and y in [-2, 2]): the swimmer, the goal it
    swims to and the urchins it must keep away from (all start in [-1, 1]).

    obs: [N, 2u + 6] (u urchins' x, y, the swimmer's x, y, its velocity, goal x, y).
    Returns uint8 [N, height, width, 3].
    """
    del params
    canvas = _Canvas((500, 500), width, height)
    scale, centre = 125.0, np.array([250.0, 250.0])

    def draw_one(draw: Any, row: np.ndarray) -> None:
        canvas.disc(draw, centre + scale * row[-2:], 0.1 * scale, GOAL)
        for urchin in row[:-6].reshape(-1, 2):
            canvas.disc(draw, centre + scale * urchin, 0.1 * scale, (60, 60, 60))
        canvas.disc(draw, centre + scale * row[-6:-4], 0.08 * scale, BODY)

    return _frames(obs, canvas, _blank(canvas), draw_one)


def pointrobot_frames(obs: np.ndarray, params: Any, width: int | None = None, height: int | None = None) -> np.ndarray:
    """PointRobot-misc (600x400): the robot, and the half circle on which its
    goal lies; the goal itself is not in the observation (the robot must find
    it), so a step that reached it shows the robot in the goal's colour, as
    it starts again elsewhere.

    obs: [N, 6] (x, y, last reward, last action's two forces, time).
    Returns uint8 [N, height, width, 3].
    """
    canvas = _Canvas((600, 400), width, height)
    radius = float(params.circle_radius)
    scale, centre = 200 / radius, np.array([300.0, 100.0])
    background = _blank(canvas)
    ImageDraw.Draw(background).arc(canvas.box(centre, radius * scale), 180, 360, fill=GOAL, width=3)

    def draw_one(draw: Any, row: np.ndarray) -> None:
        canvas.disc(draw, centre + scale * row[:2], float(params.goal_radius) * scale / 2, GOAL if row[2] > 0 else BODY)

    return _frames(obs, canvas, background, draw_one)


def _grid_boards(fixed: np.ndarray, *marks: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Boards [N, H, W, C + M] for `board_frames`: a map's fixed layers [H, W, C]
    under each of N steps, then one layer per mark (rows [N], columns [N]:
    one cell a step, the agent last so that it shows over a goal)."""
    steps = len(marks[0][0])
    boards = np.zeros((steps, *fixed.shape[:2], fixed.shape[2] + len(marks)), np.float32)
    boards[..., : fixed.shape[2]] = fixed
    for channel, (rows, cols) in enumerate(marks, start=fixed.shape[2]):
        boards[np.arange(steps), rows, cols, channel] = 1
    return boards


def _rooms_boards(obs: np.ndarray, gymnax_env: Any) -> np.ndarray:
    """FourRooms-misc's observations [N, 4] (agent x, y, goal x, y) on the
    env's map: boards [N, H, W, 3] of walls, goal and agent."""
    at = np.rint(obs).astype(int)
    return _grid_boards(np.asarray(gymnax_env.occupied_map, bool)[..., None], (at[:, 3], at[:, 2]), (at[:, 1], at[:, 0]))


def _lake_boards(obs: np.ndarray, gymnax_env: Any) -> np.ndarray:
    """FrozenLake-misc's observations [N, 1] (the agent's tile, row-major) on
    the env's map: boards [N, H, W, 3] of holes, goal and agent (frozen tiles black)."""
    from gymnax.environments.misc.frozen_lake import GOAL as GOAL_TILE
    from gymnax.environments.misc.frozen_lake import HOLE

    tiles = np.asarray(gymnax_env.desc)
    agent = np.divmod(np.rint(obs[:, 0]).astype(int), tiles.shape[1])
    return _grid_boards(np.stack([tiles == HOLE, tiles == GOAL_TILE], axis=-1), agent)


class _Drawing(NamedTuple):
    """How an env is filmed: its drawer, its playback fps (gym's render_fps for
    its scenes, gymnax's 10 for the boards, 20 for the misc scenes), and for
    an env whose observation is a position on the env's own map, what turns
    (observations [N, ...], gymnax env) into the boards [N, H, W, C] drawn."""

    draw: Drawer
    fps: float
    boards: Callable[[np.ndarray, Any], np.ndarray] | None = None


_DRAWERS: dict[str, _Drawing] = {
    "CartPole-v1": _Drawing(cartpole_frames, 50),
    "Pendulum-v1": _Drawing(pendulum_frames, 30),
    "Acrobot-v1": _Drawing(acrobot_frames, 15),
    "MountainCar-v0": _Drawing(_mountaincar, 30),
    "MountainCarContinuous-v0": _Drawing(_mountaincar, 30),
    **{
        name: _Drawing(board_frames, 10)
        for name in (
            "Asterix-MinAtar",
            "Breakout-MinAtar",
            "Freeway-MinAtar",
            "Seaquest-MinAtar",
            "SpaceInvaders-MinAtar",
            "Pong-misc",
            "Catch-bsuite",
            "DeepSea-bsuite",
        )
    },
    "FourRooms-misc": _Drawing(board_frames, 10, _rooms_boards),
    "FrozenLake-misc": _Drawing(board_frames, 10, _lake_boards),
    "Reacher-misc": _Drawing(reacher_frames, 20),
    "Swimmer-misc": _Drawing(swimmer_frames, 20),
    "PointRobot-misc": _Drawing(pointrobot_frames, 20),
}
ENVS = tuple(_DRAWERS)


@functools.partial(jax.jit, static_argnums=0)
def _observations(gymnax_env: Any, params: Any, inner: Any) -> jax.Array:
    # jitted: op by op, Seaquest's observation of 12 states took 3 s. `observe`, not the older
    # `get_obs` that FrozenLake lacks; no drawn env's observation uses its key
    return jax.vmap(lambda s: gymnax_env.observe(jax.random.key(0), s, None, params))(inner)


def render_episode(
    name: str,
    gymnax_env: Any,
    params: Any,
    native_obs_shape: tuple[int, ...],
    states: EnvState,
    steps: TimeStep,
    *,
    width: int | None = None,
    height: int | None = None,
    max_frames: int = 250,
) -> Frames:
    """Draws a recorded episode of one of `ENVS`: one frame per state, plus the state it ended in.

    name: the env's registered name, one of `ENVS` (some gymnax envs call
        themselves otherwise).
    gymnax_env, params: the gymnax env and its params (`params.max_steps_in_episode` bounds T).
    native_obs_shape: gymnax's own observation shape (the boards' [H, W, C]).
    states, steps: host arrays [T, ...] from `jaxrl.video.rollout`.
    max_frames: an episode of more steps is drawn every k-th state (`frame_indices`).
    Returns Frames [<= max_frames + 1, height, width, 3] uint8 at the env's
    fps (divided by k where k > 1).
    """
    drawer, fps, boards = _DRAWERS[name]
    last = int(np.asarray(steps.reward).shape[0])
    indices, stride = frame_indices(last, max_frames)
    # frames come from observations; the env auto-resets on the last step, so
    # the state the episode ended in survives only as its final_obs. The states
    # are padded to as many as an episode can draw, so that episodes of any
    # length share one compile, and no more than the rollout held.
    most = min(max_frames, int(params.max_steps_in_episode))
    padded = np.pad(indices[:-1], (0, max(0, most - len(indices) + 1)), mode="edge")
    kept = jax.tree.map(lambda x: np.asarray(x)[padded], states.inner)
    obs = np.asarray(_observations(gymnax_env, params, kept), np.float32)[: len(indices) - 1]
    final = np.asarray(steps.final_obs, np.float32)[-1]
    obs = np.concatenate([obs.reshape((-1, *native_obs_shape)), final.reshape((1, *native_obs_shape))])
    if boards is not None:
        obs = boards(obs, gymnax_env)
    return Frames(drawer(obs, params, width, height), fps / stride)
