"""How many frames each shot gets, and how a long shot is cut into chained clips (paper section 3.5).

An image-to-video model makes clips of a fixed native length (``frames_per_clip``: 14/25 for SVD, 81 for
Wan 2.1, ...). A shot of ``duration * fps`` frames longer than that is made clip by clip, each clip starting
from the last frame of the one before (so one frame is shared and written once), while the shot's keyframe
stays the fixed identity anchor of every clip.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..script.schema import Script


@dataclass(frozen=True)
class Clip:
    first_frame: int  # index in the shot of the clip's first *new* frame
    new_frames: int  # frames this clip adds to the shot
    length: int  # frames the video model makes (new_frames, plus 1 shared with the previous clip)


@dataclass(frozen=True)
class ShotTiming:
    shot_index: int
    shot_id: str
    frames: int
    keyframes: tuple  # movie-wide indices of the shot's keyframes
    clips: tuple  # Clip, in order


def shot_frames(duration: float, fps: float) -> int:
    """Frames of a shot: duration x fps, rounded, at least one."""
    return max(1, int(round(float(duration) * float(fps))))


def split_into_clips(frames: int, frames_per_clip: int) -> tuple:
    """Chained clips covering ``frames``: the first makes up to ``frames_per_clip`` frames, every later one
    starts from the previous clip's last frame and adds up to ``frames_per_clip - 1`` new ones."""
    if frames_per_clip < 2:
        raise ValueError(f"frames_per_clip must be at least 2, got {frames_per_clip}")
    first = min(frames, frames_per_clip)
    clips = [Clip(0, first, first)]
    done = first
    while done < frames:
        new = min(frames - done, frames_per_clip - 1)
        clips.append(Clip(done, new, new + 1))
        done += new
    return tuple(clips)


def plan_shots(script: Script, fps: float, frames_per_clip: int) -> list:
    """Every shot's frame count, keyframes and clips."""
    out, k = [], 0
    for s, shot in enumerate(script.shots):
        n = shot_frames(shot.duration, fps)
        out.append(ShotTiming(s, shot.shot_id, n, tuple(range(k, k + shot.n_keyframes)), split_into_clips(n, frames_per_clip)))
        k += shot.n_keyframes
    return out
