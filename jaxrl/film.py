"""`python -m jaxrl.film RUN_DIR`: a video of a trained run's policy, made after training.

For runs trained with `video.enabled=false`, or on a machine that could not
render: films the member training films (`video.member`) to
`RUN_DIR/videos/final.mp4` (or `step<N>.mp4` with --step) from the run folder
alone (`jaxrl.policy.film_policy`); another member (--seed, --member) gets
its own file, `final-member<M>.mp4` (`step<N>-member<M>.mp4`), never the
run's. Exit status 0 with a video, 1 when the env could not be drawn (the
reason on stderr; Brax then leaves its HTML viewer) or the video could not
be written (a read-only run folder), 2 for a folder, member
or --max-frames that does not exist or is not valid.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from jaxrl.errors import format_warning


def main(argv: list[str] | None = None) -> int:
    """Parses the command line, films, prints the video's path, return and length."""
    parser = argparse.ArgumentParser(prog="python -m jaxrl.film", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a jaxrl run folder (config.yaml and policy.msgpack or checkpoints/)")
    parser.add_argument(
        "--seed", type=int, help="the first member trained with this seed (default: the run's video.member)"
    )
    parser.add_argument("--member", type=int, help="the member by index instead (sweeps)")
    parser.add_argument("--step", type=int, help="the policy of the checkpoint at this env step instead of the last evaluated")
    parser.add_argument(
        "--max-frames", type=int, metavar="N",
        help="N >= 1: an episode longer than N steps is drawn every k-th state, k = ceil(length / N), the "
        "last state kept, so at most N + 1 frames, at the fps divided by k (default: the run's video.max_frames)",
    )
    args = parser.parse_args(argv)
    warnings.formatwarning = format_warning
    if args.max_frames is not None and args.max_frames < 1:
        print(f"error: --max-frames {args.max_frames} is below 1; it takes an integer >= 1", file=sys.stderr)
        return 2

    from jaxrl.policy import film_policy

    try:
        result = film_policy(args.run_dir, args.seed, args.member, args.step, args.max_frames)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a run folder on read-only storage, a file named videos
        print(f"error: cannot write the video into {args.run_dir}: {err}", file=sys.stderr)
        return 1
    if result.mp4 is None:
        print(f"no video: {result.reason}" + (f"; HTML viewer: {result.html}" if result.html else ""), file=sys.stderr)
        return 1
    print(f"{result.mp4}: return {result.episode_return:.1f} over {result.episode_length} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
