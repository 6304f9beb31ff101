"""The toy cinema's face recogniser: an identity embedding of a character from an image of it.

Real users' characters get their identity vector from a face-recognition model run on reference photos
(paper section 3.2); the toy cinema's six characters get theirs from this small CNN, trained the way face
recognisers are trained: as a classifier over known identities whose embedding (the L2-normalised layer
before the classifier) is then used on its own, compared by cosine similarity. It serves two purposes:

1. ScriptEncode embeds each character's reference portrait (``render.render_reference``: the character
   alone on neutral grey, a close-up) with ``ToyIdentityEmbedder``, the identity the planner and the
   renderer read.
2. A benchmark crops every character out of rendered keyframes (``character_crops``: we know from the plan
   where each one stands) and asks whether crops of one character are closer to each other, and to that
   character's reference embedding, than to anybody else's (``identity_consistency``).

**The crop.** A crop is the reference portrait's window moved onto the figure: a square as wide as the
close-up camera (0.25 world units), its top the same distance above the feet as in a portrait. A crop of a
centred character in a close-up is therefore framed exactly like its reference portrait, whatever the
background; a wide shot shows the same window at a quarter of the resolution (8x8 pixels of a 32x32
keyframe, a figure about 4 pixels wide). Parts of the window outside the frame are neutral grey (the
portrait's background), never the edge pixels: a figure standing near the frame's edge would otherwise be
smeared across the padding. A neighbour standing close may show at the crop's side; the net is trained on
such crops and learns to read the centre.

**The net.** ``ToyIdentityNet``: five 3x3 conv layers (two with stride 2) on a 24x24 crop, a 1x1 reduction,
and a linear layer over the flattened 6x6 map (flattening, not pooling, keeps where things are, so the
centre figure counts and a neighbour at the edge does not) to a 32-D L2-normalised embedding. Training
loss: a cosine classifier with scale and additive margin (CosFace, Wang et al. 2018): logits
``s * (cos(e, w_c) - m [c = label])``, which packs each identity tightly around its class direction.
Besides the six characters there is a seventh class, ``nobody``: windows where no character stands. A
benchmark asks about generated keyframes, which may have lost a character; without this class such a
window landed near some character with a cosine as high as a real crop's (0.7-0.9 against 0.83 for the
worst real crop); with it, empty windows stayed below 0.27 and real crops above 0.88 (three training
seeds), and
``classify(..., allow_nobody=True)`` answers ``-1`` for them. About 120 k parameters.

**The data.** Character crops from keyframes of generated films at 32x32 and 64x64, the six reference
portraits at 64 and 32 px, and empty windows (empty scenes, free screen positions of the films' wide and
medium keyframes). Augmentation: random scale, shift and mirror (read from a wider context crop, so
a shift shows real surroundings), random loss of resolution (what a wide shot at 32x32 looks like), small
colour gain, offset and noise, and for portraits their grey background replaced by a piece of a real
location half of the time. Training is deterministic for a seed with a fixed thread count; the defaults
(32 films, 500 steps of 96 crops) took 57 s on one thread of a busy two-core machine, rendering included.

Weights are saved with safetensors only; the configuration and training record travel as JSON in the
file's metadata. The embedding space's name carries a fingerprint of the weights, so vectors from two
different trained nets are never mistaken for one space (nor share an identity-cache folder).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..identity.base import MAX_FACES, EmbeddingSpace, FaceEmbedder, check_rgb_uint8
from ..text_files import loads_json_object
from .film import Film, KeyframePlan
from .grammar import PAN, generate_films
from .render import FIGURE_TOP, camera_window, render_keyframe, render_reference
from .world import CAMERAS, FEET_Y, N_CAMERAS, N_CHARACTERS, N_LOCATIONS, N_POSITIONS, NEUTRAL, POSITION_U

FORMAT = "moviedreamer-toycinema-identity"
FORMAT_VERSION = 1
#: Every toy identity space is named ``toycinema.identity-<weights fingerprint>``.
SPACE_PREFIX = "toycinema.identity"

#: Side of the square crop the net reads.
INPUT_SIZE = 24
EMBED_DIM = 32

#: Figure geometry in world units (``render.draw_figure``): half width, and height from feet to the top of a hat
#: (``world.FIGURE_TOP``; a bare head ends lower).
FIGURE_HALF_WIDTH = 0.06
FIGURE_HEIGHT = FIGURE_TOP
#: The crop window in world units: the close-up camera's width, and how far above the feet its top is.
CROP_SIDE = CAMERAS[-1].width
CROP_TOP_ABOVE_FEET = FEET_Y - CAMERAS[-1].y0
#: Training crops are cut this much wider than the crop window, so random shifts and zooms show real pixels.
CONTEXT = 1.5
CONTEXT_SIZE = int(INPUT_SIZE * CONTEXT)
#: A reference whose embedding is further than this from all six toy portraits (cosine) is no toy character: the
#: portraits themselves read 1.00 and the next portrait at most 0.09; real photos, noise and plain colours 0.00-0.36.
TOY_REFERENCE_COSINE = 0.8

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in continuous pixel units: pixel i covers [i, i + 1)


# ------------------------------------------------------------------------------------------- crops


def _to_pixels(plan: KeyframePlan, size: int) -> tuple[Callable[[float], float], Callable[[float], float], list]:
    """World-to-pixel maps of a keyframe and the world x of each figure. Pixel ``i`` covers ``[i, i + 1)``."""
    x0, y0, w = camera_window(plan.camera, plan.pan)
    figures = [(c, x0 + (POSITION_U[pos] + dx) * w) for c, pos, dx in plan.figures]
    return (lambda x: (x - x0) / w * size), (lambda y: (y - y0) / w * size), figures


def character_boxes(plan: KeyframePlan, size: int) -> list[tuple[int, Box]]:
    """``(character id, (x0, y0, x1, y1))`` of each figure of a keyframe rendered at ``size`` x ``size``:
    the figure's bounding box in pixels (floats, not clipped: a close-up's feet are below the frame)."""
    px, py, figures = _to_pixels(plan, size)
    top, bottom = py(FEET_Y - FIGURE_HEIGHT), py(FEET_Y)
    return [(c, (px(cx - FIGURE_HALF_WIDTH), top, px(cx + FIGURE_HALF_WIDTH), bottom)) for c, cx in figures]


def crop_boxes(plan: KeyframePlan, size: int, context: float = 1.0) -> list[tuple[int, Box]]:
    """``(character id, square box)`` of each figure's crop window in pixels (see the module docstring),
    ``context`` times wider around the same centre."""
    px, py, figures = _to_pixels(plan, size)
    cy = FEET_Y - CROP_TOP_ABOVE_FEET + CROP_SIDE / 2
    half = CROP_SIDE * context / 2
    return [(c, (px(cx - half), py(cy - half), px(cx + half), py(cy + half))) for c, cx in figures]


def resize(image: np.ndarray | torch.Tensor, out: int) -> torch.Tensor:
    """``uint8 [H, W, 3]`` (or float ``[3, H, W]`` in 0..1) to float ``[3, out, out]`` in 0..1; antialiased
    bilinear, so shrinking averages instead of skipping pixels."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0 if isinstance(image, np.ndarray) else image
    if tuple(x.shape[-2:]) == (out, out):
        return x
    return F.interpolate(x[None], size=(out, out), mode="bilinear", antialias=True, align_corners=False)[0]


def cut_square(image: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of a square box (rounded to whole pixels), neutral grey where it leaves the image."""
    h, w = image.shape[:2]
    side = max(1, int(round(box[2] - box[0])))
    left, top = int(round(box[0])), int(round(box[1]))
    out = np.empty((side, side, 3), np.uint8)
    out[:] = NEUTRAL
    sx0, sy0, sx1, sy1 = max(left, 0), max(top, 0), min(left + side, w), min(top + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = image[sy0:sy1, sx0:sx1]
    return out


def character_crops(image: np.ndarray, plan: KeyframePlan, out_size: int = INPUT_SIZE,
                    context: float = 1.0) -> list[tuple[int, np.ndarray]]:
    """``(character id, uint8 [out_size, out_size, 3])`` for each figure of a rendered keyframe, in the
    plan's order. The crop is the figure's crop window (``crop_boxes``) resized to ``out_size``."""
    image = check_rgb_uint8(image)
    if image.shape[0] != image.shape[1]:
        raise ValueError(f"keyframes are square, got {image.shape[1]}x{image.shape[0]} pixels")
    crops = []
    for c, box in crop_boxes(plan, image.shape[0], context):
        x = resize(cut_square(image, box), out_size)
        crops.append((c, (x.permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()))
    return crops


@dataclass
class CropSet:
    """Character crops of many keyframes: ``crops uint8 [N, R, R, 3]`` and per crop its character, camera
    id and keyframe size."""

    crops: np.ndarray
    characters: np.ndarray
    cameras: np.ndarray
    sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.characters)


def film_crops(films: Sequence[Film], size: int, out_size: int = INPUT_SIZE, context: float = 1.0) -> CropSet:
    """Every figure of every keyframe of ``films`` rendered at ``size``, cropped (``character_crops``)."""
    crops, chars, cams = [], [], []
    for film in films:
        for plan, image in zip(film.keyframes, film.images(size)):
            for c, crop in character_crops(image, plan, out_size, context):
                crops.append(crop)
                chars.append(c)
                cams.append(plan.camera)
    if not crops:
        return CropSet(np.zeros((0, out_size, out_size, 3), np.uint8), *(np.zeros(0, np.int64) for _ in range(3)))
    return CropSet(np.stack(crops), np.asarray(chars), np.asarray(cams), np.full(len(chars), size))


# ------------------------------------------------------------------------------------------- the net


@dataclass
class IdentityConfig:
    """Everything needed to rebuild the net (saved with the weights)."""

    dim: int = EMBED_DIM
    n_characters: int = N_CHARACTERS  # identities; one more class, ``nobody``, is an empty window
    width: int = 32
    input_size: int = INPUT_SIZE
    scale: float = 16.0  # cosine-softmax temperature
    margin: float = 0.2  # CosFace additive margin


class ToyIdentityNet(nn.Module):
    """``float [B, 3, 24, 24]`` in -1..1 -> L2-normalised ``[B, dim]`` embeddings.

    ``classes`` holds one direction per training identity plus a last one, ``nobody``, learnt from crop
    windows of empty scenes: without it a window where a character should be but is not (a planner or
    renderer that lost it) would land near some character anyway, with cosines as high as real crops'.
    ``loss`` is the cosine-softmax over all of them.
    """

    def __init__(self, cfg: IdentityConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width

        def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(3, w), *block(w, w, 2), *block(w, 2 * w), *block(2 * w, 2 * w, 2), *block(2 * w, 2 * w),
            nn.Conv2d(2 * w, 16, 1),
        )
        grid = cfg.input_size // 4
        self.embed = nn.Linear(16 * grid * grid, cfg.dim)
        self.classes = nn.Parameter(torch.randn(cfg.n_characters + 1, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.embed(self.features(x).flatten(1)), dim=1)

    def cosines(self, e: torch.Tensor) -> torch.Tensor:
        """Cosine of each embedding to each class direction, ``[B, n_characters + 1]`` (last: nobody)."""
        return e @ F.normalize(self.classes, dim=1).T

    def loss(self, e: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cos = self.cosines(e)
        margin = F.one_hot(target, cos.shape[1]).to(cos.dtype) * self.cfg.margin
        return F.cross_entropy(self.cfg.scale * (cos - margin), target)


def to_input(crops, size: int = INPUT_SIZE) -> torch.Tensor:
    """``uint8`` images (an array ``[N, H, W, 3]`` or a list of ``[H, W, 3]`` of any sizes) to the net's
    input ``float [N, 3, size, size]`` in -1..1."""
    if isinstance(crops, np.ndarray) and crops.ndim == 4 and crops.shape[1:3] == (size, size):
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
    elif len(crops) == 0:
        x = torch.zeros(0, 3, size, size)
    else:
        x = torch.stack([resize(_check_crop(c), size) for c in crops])
    return x * 2.0 - 1.0


def _check_crop(crop) -> np.ndarray:
    """A ``uint8 [H, W, 3]`` crop of any size (a wide shot's crop at 32x32 is only 8 pixels)."""
    crop = np.asarray(crop)
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8 or min(crop.shape[:2]) < 1:
        raise ValueError(f"expected a uint8 RGB crop [H, W, 3], got {crop.dtype} {tuple(crop.shape)}")
    return crop


def weights_fingerprint(net: nn.Module) -> str:
    """First 10 hex digits of the SHA-256 of the weights (names, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:10]


# ------------------------------------------------------------------------------------------- the embedder


class ToyIdentityEmbedder(FaceEmbedder):
    """The toy cinema's ``FaceEmbedder``: the whole image (a reference portrait, or a ``character_crops``
    crop) resized to the net's input and embedded. There is no face detection: toy images hold one
    character, framed like a portrait."""

    version = "1"

    def __init__(self, net: ToyIdentityNet, info: Optional[dict] = None):
        self.net = net.eval()
        self.info = dict(info or {})
        self.fingerprint = weights_fingerprint(net)
        self.space = EmbeddingSpace(f"{SPACE_PREFIX}-{self.fingerprint}", net.cfg.dim)

    @torch.no_grad()
    def embed_crops(self, crops, batch_size: int = 512) -> np.ndarray:
        """``float32 [N, dim]`` L2-normalised embeddings of ``uint8`` crops (array ``[N, H, W, 3]`` or a list
        of images of any sizes), in batches."""
        self.net.eval()
        x = to_input(crops, self.net.cfg.input_size)
        if not len(x):
            return np.zeros((0, self.space.dim), np.float32)
        out = torch.cat([self.net(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        return out.numpy().astype(np.float32)

    def _embed(self, image: np.ndarray) -> np.ndarray:
        return self.embed_crops([image])[0]

    def embed_many(self, images) -> np.ndarray:
        """All images through the net in one batch (each checked like ``embed`` does)."""
        return self.embed_crops([check_rgb_uint8(im) for im in images])

    def faces(self, image: np.ndarray, camera: Optional[str] = None, limit: int = MAX_FACES, expected: int = 0) -> list:
        """The figures at the keyframe's screen places, read at the shot's ``camera`` size (``toycinema/faces.py``)."""
        from .faces import toy_faces

        return toy_faces(self, image, camera, limit)

    def face_crop(self, image: np.ndarray) -> np.ndarray:
        """The centre square: a toy portrait is the face crop already."""
        image = check_rgb_uint8(image)
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return image[top:top + side, left:left + side].copy()

    def reference_embeddings(self, size: int = 64) -> np.ndarray:
        """``[n_characters, dim]``: each character's reference portrait at ``size`` px, embedded."""
        return self.embed_crops([render_reference(c, size) for c in range(self.net.cfg.n_characters)])

    @property
    def nobody(self) -> np.ndarray:
        """The unit direction of the ``nobody`` class: where a window with no character in it lands."""
        return F.normalize(self.net.classes.detach()[-1], dim=0).numpy().astype(np.float32)

    def classify(self, crops, references: Optional[np.ndarray] = None, allow_nobody: bool = False) -> np.ndarray:
        """Character id of each crop: the nearest reference embedding by cosine (the zero-shot identity
        check a benchmark makes). ``references`` defaults to ``reference_embeddings(64)``. With
        ``allow_nobody`` the ``nobody`` direction competes too, and a crop nearest to it gets ``-1``."""
        refs = self.reference_embeddings() if references is None else np.asarray(references, np.float32)
        if allow_nobody:
            refs = np.concatenate([refs, self.nobody[None]])
        pred = (self.embed_crops(crops) @ refs.T).argmax(1)
        if allow_nobody:
            pred[pred == len(refs) - 1] = -1
        return pred

    def reference_problems(self, name: str, embeddings: np.ndarray, labels: Sequence[str]) -> list[str]:
        """What is wrong with one character's reference embeddings for the toy models, in words (none: ``[]``).

        The toy planner and renderer draw the six toy characters only, and this embedder puts any picture somewhere
        in their space: a photo, or a portrait of another toy character among a character's references, was
        drawn as some toy character (or a blend of two) with no word (an audit). ScriptEncode shows these."""
        if not len(embeddings):
            return []
        cos = np.asarray(embeddings, np.float32) @ self.reference_embeddings().T
        nearest, best = cos.argmax(1), cos.max(1)
        out = [f"{name}: reference {label} looks like none of the toy cinema's six characters (nearest: portrait "
               f"[{int(k)}], cosine {b:.2f}); the toy models draw only those six (references: [0] ... [5])"
               for label, k, b in zip(labels, nearest, best) if b < TOY_REFERENCE_COSINE]
        portraits = sorted({int(k) for k, b in zip(nearest, best) if b >= TOY_REFERENCE_COSINE})
        if len(portraits) > 1:
            out.append(f"{name}: its references are different toy characters (portraits "
                       f"{', '.join(f'[{k}]' for k in portraits)}); it is drawn as a blend of them")
        return out

    def save(self, path: str) -> None:
        """Write weights, configuration and training record as one ``.safetensors`` file."""
        from ..files import save_safetensors

        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
                "config": json.dumps(asdict(self.net.cfg)), "info": json.dumps(self.info)}
        save_safetensors(state, path, metadata=meta)

    @classmethod
    def load(cls, path: str) -> "ToyIdentityEmbedder":
        """Read a file written by ``save`` (safetensors only: anything else is refused, nothing is unpickled)."""
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"{path} is not a safetensors file ({e})") from e
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a toy cinema identity net (format {meta.get('format')!r})")
        if int(meta.get("format_version", "0")) > FORMAT_VERSION:
            raise ValueError(f"{path} has format version {meta['format_version']}, newer than this code reads")
        net = ToyIdentityNet(IdentityConfig(**loads_json_object(meta["config"], f"{path}: its 'config' metadata")))
        net.load_state_dict(load_file(path))
        return cls(net, loads_json_object(meta.get("info", "{}"), f"{path}: its 'info' metadata"))


# ------------------------------------------------------------------------------------------- scoring


def identity_consistency(embeddings: np.ndarray, labels: Sequence[int]) -> dict[str, float]:
    """How well embeddings group by identity, with no reference images involved.

    * ``nn_accuracy``: the fraction of samples whose nearest *other* sample (cosine) has the same label,
      i.e. leave-one-out 1-nearest-neighbour identification.
    * ``centroid_accuracy``: the fraction whose nearest class centroid is its own class, the sample's own
      class centroid computed without it (leave-one-out).
    * ``same_cosine`` / ``different_cosine``: mean cosine over pairs of one identity / of two identities;
      ``gap`` is their difference (0 for embeddings that ignore identity, up to 2).
    * ``chance``: the ``nn_accuracy`` expected from embeddings that ignore identity with these labels
      (sum over classes of ``n_c (n_c - 1)``, over ``N (N - 1)``).
    """
    e = np.asarray(embeddings, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    y = np.asarray(labels)
    n = len(y)
    if n < 2:
        raise ValueError("identity_consistency needs at least two samples")
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    nn_acc = float((y[sim.argmax(1)] == y).mean())
    same = y[:, None] == y[None, :]
    off = ~np.eye(n, dtype=bool)
    np.fill_diagonal(sim, 0.0)
    same_cos = float(sim[same & off].mean()) if (same & off).any() else float("nan")
    diff_cos = float(sim[~same].mean()) if (~same).any() else float("nan")
    classes = np.unique(y)
    sums = np.stack([e[y == c].sum(0) for c in classes])
    counts = np.asarray([(y == c).sum() for c in classes], np.float64)
    own = np.searchsorted(classes, y)
    centroid_hits = 0
    for i in range(n):
        s, k = sums.copy(), counts.copy()
        s[own[i]] -= e[i]
        k[own[i]] -= 1
        valid = k > 0
        cent = s[valid] / np.linalg.norm(s[valid], axis=1, keepdims=True).clip(1e-12)
        centroid_hits += int(classes[valid][(cent @ e[i]).argmax()] == y[i])
    chance = float(((counts * (counts - 1)).sum()) / (n * (n - 1)))
    return {"nn_accuracy": nn_acc, "centroid_accuracy": centroid_hits / n, "same_cosine": same_cos,
            "different_cosine": diff_cos, "gap": same_cos - diff_cos, "chance": chance, "n": n}


# ------------------------------------------------------------------------------------------- training


def _empty_windows(films: Sequence[Film], sizes: Sequence[int]) -> torch.Tensor:
    """Context windows where nobody stands, ``float [M, 3, CONTEXT_SIZE, CONTEXT_SIZE]`` in 0..1: every
    location, camera and screen position of an empty scene at three pans and a plain grey one (what stands
    behind a character, and the examples of the ``nobody`` class), plus the free screen positions of the
    films' wide and medium keyframes (nobody in the centre, maybe a neighbour's edge at a side; close-ups
    are left out, since there a free position's window still holds half of the other figure)."""
    out = [torch.full((3, CONTEXT_SIZE, CONTEXT_SIZE), NEUTRAL[0] / 255.0)]
    for size in sizes:
        for loc in range(N_LOCATIONS):
            for cam in range(N_CAMERAS):
                for pan in (-PAN, 0.0, PAN):  # the grammar's pan range
                    pan *= CAMERAS[cam].width
                    image = render_keyframe(KeyframePlan(loc, cam, (), pan), size)
                    ghosts = KeyframePlan(loc, cam, tuple((0, p, 0.0) for p in range(N_POSITIONS)), pan)
                    out += [resize(cut_square(image, box), CONTEXT_SIZE) for _, box in crop_boxes(ghosts, size, CONTEXT)]
        for film in films:
            for plan, image in zip(film.keyframes, film.images(size)):
                free = set(range(N_POSITIONS)) - {pos for _, pos, _ in plan.figures}
                if plan.camera == N_CAMERAS - 1 or not free:
                    continue
                ghosts = KeyframePlan(plan.location, plan.camera, tuple((0, p, 0.0) for p in sorted(free)), plan.pan)
                out += [resize(cut_square(image, box), CONTEXT_SIZE) for _, box in crop_boxes(ghosts, size, CONTEXT)]
    return torch.stack(out)


def _portraits(sizes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference portraits padded with grey to the context window: images, labels, background masks
    (1 where the pixel is the portrait's neutral grey)."""
    images, labels = [], []
    for size in sizes:
        pad = int(round(size * (CONTEXT - 1) / 2))
        for c in range(N_CHARACTERS):
            big = np.empty((size + 2 * pad, size + 2 * pad, 3), np.uint8)
            big[:] = NEUTRAL
            big[pad:pad + size, pad:pad + size] = render_reference(c, size)
            images.append(resize(big, CONTEXT_SIZE))
            labels.append(c)
    x = torch.stack(images)
    grey = torch.tensor(NEUTRAL, dtype=torch.float32).view(1, 3, 1, 1) / 255.0
    mask = ((x - grey).abs().amax(1, keepdim=True) < 3 / 255.0).float()
    return x, torch.tensor(labels), mask


def augment(x: torch.Tensor, gen: torch.Generator, out: int = INPUT_SIZE) -> torch.Tensor:
    """Context crops ``[B, 3, CONTEXT_SIZE, CONTEXT_SIZE]`` in 0..1 -> augmented net inputs in -1..1.

    Zoom 0.87-1.15 and shift up to 8 % of the crop side (a benchmark's crop is never perfectly placed),
    a mirror (figures are symmetric), in half the batch a loss of resolution to 6-20 px and back (wide shots
    at 32x32 are 8 px crops), per-channel gain and offset of a few percent, and a little noise.
    """
    b = x.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    zoom = (0.87 + 0.28 * u(b)) / CONTEXT
    flip = torch.where(u(b) < 0.5, -1.0, 1.0)
    shift = (u(b, 2) * 2 - 1) * 0.08 * 2 / CONTEXT
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = zoom * flip, zoom, shift
    grid = F.affine_grid(theta, [b, 3, out, out], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    low = u(b) < 0.5
    if low.any():
        r = int(6 + 15 * u(1))
        small = F.interpolate(x[low], size=(r, r), mode="bilinear", antialias=True, align_corners=False)
        x[low] = F.interpolate(small, size=(out, out), mode="bilinear", align_corners=False)
    x = x * (1 + 0.06 * (u(b, 3, 1, 1) * 2 - 1)) + 0.04 * (u(b, 1, 1, 1) * 2 - 1)
    x = x + 0.03 * u(b, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1) * 2 - 1


def training_data(seed: int, n_films: int, sizes: Sequence[int] = (32, 64)) -> dict[str, torch.Tensor]:
    """Context crops of every character in ``n_films`` films drawn from ``seed`` at each keyframe size,
    reference portraits (64 and 32 px) with their grey masks, and windows where nobody stands."""
    films = generate_films(seed, n_films)
    sets = [film_crops(films, s, CONTEXT_SIZE, CONTEXT) for s in sizes]
    crops = np.concatenate([s.crops for s in sets])
    portraits, portrait_labels, masks = _portraits((64, 32))
    return {
        "crops": to_input(crops, CONTEXT_SIZE) * 0.5 + 0.5,
        "labels": torch.from_numpy(np.concatenate([s.characters for s in sets])).long(),
        "portraits": portraits,
        "portrait_labels": portrait_labels,
        "portrait_masks": masks,
        "empty": _empty_windows(films, sizes),
    }


def train_identity_embedder(seed: int = 0, n_films: int = 32, steps: int = 500, batch_size: int = 96,
                            lr: float = 3e-3, portrait_fraction: float = 0.25, empty_fraction: float = 0.125,
                            threads: Optional[int] = 1,
                            log: Optional[Callable[[str], None]] = None) -> ToyIdentityEmbedder:
    """Train a ``ToyIdentityNet`` from scratch and wrap it as an embedder (deterministic for a seed and a
    thread count). Evaluate on films drawn from another seed.

    Each batch holds ``portrait_fraction`` reference portraits (half of them on a real background),
    ``empty_fraction`` windows where nobody stands (class ``nobody``) and film crops for the rest. ``threads``: torch CPU threads while training (restored afterwards). One is the
    default: on a busy two-core machine a training step took 0.09 s with one thread and 0.4-1.0 s with two.
    ``log``: called with a progress line now and then (e.g. ``print``).
    """
    from ..threads import torch_threads

    with torch_threads(threads):
        return _train(seed, n_films, steps, batch_size, lr, portrait_fraction, empty_fraction, log)


def _train(seed: int, n_films: int, steps: int, batch_size: int, lr: float, portrait_fraction: float,
           empty_fraction: float, log: Optional[Callable[[str], None]]) -> ToyIdentityEmbedder:
    started = time.perf_counter()
    data = training_data(seed, n_films)
    data_seconds = time.perf_counter() - started
    cfg = IdentityConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ToyIdentityNet(cfg)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.15)
    n_port = int(round(batch_size * portrait_fraction))
    n_empty = int(round(batch_size * empty_fraction))
    n_crop = batch_size - n_port - n_empty
    crops, labels = data["crops"], data["labels"]
    portraits, plabels, masks, empty = data["portraits"], data["portrait_labels"], data["portrait_masks"], data["empty"]
    nobody = torch.full((n_empty,), cfg.n_characters, dtype=torch.long)
    net.train()
    loss = torch.zeros(())
    for step in range(steps):
        i = torch.randint(0, len(crops), (n_crop,), generator=gen)
        j = torch.randint(0, len(portraits), (n_port,), generator=gen)
        bg = empty[torch.randint(0, len(empty), (n_port,), generator=gen)]
        swap = masks[j] * (torch.rand(n_port, 1, 1, 1, generator=gen) < 0.5).float()
        k = torch.randint(0, len(empty), (n_empty,), generator=gen)
        x = torch.cat([crops[i], swap * bg + (1 - swap) * portraits[j], empty[k]])
        y = torch.cat([labels[i], plabels[j], nobody])
        loss = net.loss(net(augment(x, gen)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log and ((step + 1) % 200 == 0 or step + 1 == steps):
            log(f"identity step {step + 1}/{steps} loss {loss.item():.4f} ({time.perf_counter() - started:.1f} s)")
    net.eval()
    info = {"seed": seed, "n_films": n_films, "steps": steps, "batch_size": batch_size, "lr": lr,
            "n_crops": len(crops), "n_empty": len(empty), "final_loss": round(float(loss.item()), 5),
            "data_seconds": round(data_seconds, 2), "seconds": round(time.perf_counter() - started, 2),
            "threads": torch.get_num_threads()}
    return ToyIdentityEmbedder(net, info)
