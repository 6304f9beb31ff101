"""Shot animation (MovieDreamer paper section 3.5): shot timing, backends, streaming the movie to disk."""

from .animatic import animatic_backend, shot_frames as animatic_frames
from .movie import MovieResult, make_movie
from .timing import Clip, ShotTiming, plan_shots, shot_frames, split_into_clips

__all__ = ["animatic_backend", "animatic_frames", "MovieResult", "make_movie", "Clip", "ShotTiming", "plan_shots", "shot_frames",
           "split_into_clips"]
