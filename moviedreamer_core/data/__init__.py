"""Films to a planner training set: the dataset builder (``python -m moviedreamer_core.data build``).

MovieDreamer trains its autoregressive keyframe planner on movies cut into keyframes, each keyframe paired
with sentence-level text (plot/action, scene, style), the characters on screen with their face identities,
and its visual tokens (arXiv 2407.16655, sections 3.2-3.3). The paper builds that data from films with
shot detection, keyframe selection, face clustering and captioning; this package does the same, one job
per module:

* ``video``      decode with PyAV, streamed (scan pass at low resolution, then only the keyframes);
* ``shots``      shot boundaries with PySceneDetect's ``ContentDetector``, fed our decoded frames;
* ``keyframes``  the sharpest frame (variance of the Laplacian) near the middle of each shot, or K spread
                 over it;
* ``faces``      every face in a keyframe, found with dlib's detector and embedded with the pack's
                 ``FaceEmbedder`` (the one ScriptEncode uses, so identities share its identity space);
* ``clustering`` faces grouped into characters across the film (average-linkage, cosine distance);
* ``characters`` cluster names from ``characters/<name>/*.jpg|png`` reference photos, else ``char_00``...;
* ``captions``   per-keyframe text from a sidecar (``<video>.srt`` or ``<video>.json``) or a user captioner;
* ``encoders``   the text and visual-token encoders, loaded with transformers from local folders;
* ``movie``      one video -> one ``Story`` (the planner's training view) and a JSON record;
* ``store``      the on-disk dataset (``planner.train`` format), written atomically, one file per video;
* ``build``      the whole folder: skip finished videos, worker processes, progress, failures logged.
"""

from .build import BuildOptions, BuildResult, build_dataset

__all__ = ["BuildOptions", "BuildResult", "build_dataset"]
