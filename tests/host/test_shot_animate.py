"""ShotAnimate (animatic backend) through the real executor: the whole chain from script to movie file."""

from __future__ import annotations

from pathlib import Path

from moviedreamer_core.video_io import video_info

from .test_render import graph, previews, script


def movie_graph(n: int, project: str) -> dict:
    g = graph(script(n), project=project)
    g["13"] = {"class_type": "ShotAnimate", "inputs": {"keyframes": ["11", 0], "script": ["2", 0], "backend": "animatic",
                                                       "fps": 8.0, "frames_per_clip": 25, "project_name": project}}
    return g


def test_script_to_movie_file(host, photos, model_dirs):
    result = host.run(movie_graph(3, "movie"))
    previews(host, result)
    text = result.outputs["13"]["text"][0]
    movie = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "movie" / "movie.mp4"
    assert str(movie) in text and "3 shots, 3 made this run" in text
    assert video_info(str(movie)) == {"frames": 3 * 16, "width": 64, "height": 64, "fps": 8.0}
    progress = [d["value"] for d in result.events("progress") if d["node"] == "13"]
    assert progress[-1] == 3


def test_cancel_then_rerun_makes_only_the_missing_shots(host, photos, model_dirs):
    cancelled = host.run_and_cancel(movie_graph(4, "resume_movie"), node="13", at_progress=2)
    assert cancelled.events("execution_interrupted")
    shots = Path(host.folder_paths.get_output_directory()) / "moviedreamer" / "resume_movie" / "shots"
    assert len(list(shots.glob("shot_*.mp4"))) == 2
    again = host.run(movie_graph(4, "resume_movie"))
    previews(host, again)
    assert "4 shots, 2 made this run" in again.outputs["13"]["text"][0]
