"""The label probe: a small CNN that reads location, camera and who is on screen (and where) from any image.

Every stage of the pipeline (tokenizer reconstructions, planned keyframes, renders) is scored by asking
this probe what it sees and comparing with the ground truth (``scores.py``). It is trained on ground-truth
keyframes of generated films, with light noise and blur so that it still reads slightly degraded images
the way it reads clean ones. Any image size is accepted: inputs are resized to ``INPUT_SIZE`` (area
averaging when shrinking, bilinear when enlarging).

Network: four 3x3 conv layers (24-32-48-64 channels, ReLU, two of them with stride 2) to an 8x8 feature
grid, then: location and camera (softmax) from pooled features; character presence (one sigmoid per
character, multi-label) and screen position (softmax over left/centre/right, trained only where the
character is on screen) from one score map per character (see ``ProbeNet``); the per-film state (issue #21): the
place's look (softmax, pooled features) and the hat worn at each screen place of a medium or close-up keyframe
(one score map per hat colour, maxima over the thirds of the frame; a wide shot's hat is a pixel or two and is
not read). A keyframe in which the network finds nobody is framed by its background instead (``predict``): the
network learnt the camera from the figures' size. About 60 k parameters; a
training step at batch 64 takes about 0.04 s on one CPU thread. Weights are saved with safetensors only; the configuration travels in
the file's metadata.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..text_files import loads_json_object
from .film import FrameLabel, KeyframePlan
from .grammar import generate_films
from .world import N_CAMERAS, N_CHARACTERS, N_HATS, N_LOCATIONS, N_PLACE_LOOKS, N_POSITIONS, camera_id

#: Cameras whose keyframes show hats large enough to read (medium and close-up).
HAT_CAMERAS = (camera_id("medium"), camera_id("close_up"))

INPUT_SIZE = 32
FORMAT = "moviedreamer-toycinema-probe"
FORMAT_VERSION = 1


class ProbeNet(nn.Module):
    """The probe's network: ``float [B, 3, 32, 32]`` in -1..1 -> a dict of logits.

    Characters are small in wide shots (a torso is about 4 pixels at 32x32), so they are detected by a map:
    a 1x1 convolution gives one score map per character over an 8x8 grid; its maximum is the presence
    logit (found anywhere in the frame) and its maxima over the left, middle and right thirds of the frame
    are the position logits. Location and camera read the pooled (mean and max) features.
    """

    def __init__(self, n_locations: int = N_LOCATIONS, n_cameras: int = N_CAMERAS, n_characters: int = N_CHARACTERS,
                 n_positions: int = N_POSITIONS, width: int = 32, hidden: int = 128, n_looks: int = 0, n_hats: int = 0):
        super().__init__()
        self.n_locations, self.n_cameras, self.n_looks = n_locations, n_cameras, n_looks
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, 3 * w // 4, 3, padding=1), nn.ReLU(),
            nn.Conv2d(3 * w // 4, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, 3 * w // 2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(3 * w // 2, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.character_map = nn.Conv2d(2 * w, n_characters, 1)
        self.n_positions = n_positions
        self.scene = nn.Sequential(nn.Linear(4 * w, hidden), nn.ReLU(), nn.Linear(hidden, n_locations + n_cameras + n_looks))
        self.hat_map = nn.Conv2d(2 * w, n_hats, 1) if n_hats else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        maps = self.character_map(h)
        scene = self.scene(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))
        k = self.n_locations + self.n_cameras
        out = {
            "location": scene[:, : self.n_locations],
            "camera": scene[:, self.n_locations:k],
            "presence": maps.amax(dim=(2, 3)),
            "position": F.adaptive_max_pool2d(maps, (1, self.n_positions)).flatten(2),
        }
        if self.n_looks:
            out["look"] = scene[:, k:]
        if self.hat_map is not None:  # [B, n_hats, n_positions]: each hat colour's best score in each third
            out["hat"] = F.adaptive_max_pool2d(self.hat_map(h), (1, self.n_positions)).flatten(2)
        return out


def to_input(images) -> torch.Tensor:
    """Images to the probe's input ``float [B, 3, 32, 32]`` in -1..1.

    Accepts ``uint8 [H, W, 3]`` or ``[B, H, W, 3]`` arrays, float arrays/tensors ``[B, H, W, 3]`` in 0..1
    (ComfyUI's IMAGE), or a list of ``uint8 [H, W, 3]`` arrays of any sizes.
    """
    if isinstance(images, (list, tuple)):
        return torch.cat([to_input(im) for im in images]) if images else torch.zeros(0, 3, INPUT_SIZE, INPUT_SIZE)
    if isinstance(images, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(images))
    else:
        x = images.detach().cpu()
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] not in (3, 4):
        raise ValueError(f"expected images [B, H, W, 3], got shape {tuple(x.shape)}")
    x = x[..., :3]
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = x.permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    if (h, w) != (INPUT_SIZE, INPUT_SIZE):
        mode = "area" if h >= INPUT_SIZE and w >= INPUT_SIZE else "bilinear"
        kwargs = {} if mode == "area" else {"align_corners": False}
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode=mode, **kwargs)
    return x * 2.0 - 1.0


@dataclass
class Probe:
    """A trained probe. ``predict(images)`` -> one ``FrameLabel`` per image."""

    net: ProbeNet
    info: dict

    @torch.no_grad()
    def logits(self, images, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Raw outputs for a batch of images (see ``to_input`` for the accepted forms)."""
        return self._logits(to_input(images), batch_size)

    def _logits(self, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        self.net.eval()
        parts = [self.net(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        if not parts:
            return {k: torch.zeros(0) for k in ("location", "camera", "presence", "position")}
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def predict(self, images, threshold: float = 0.5, frame_empty: bool = True) -> list[FrameLabel]:
        """What the probe sees in each image: location, camera and ``(character, position)`` on screen.

        The network learnt the camera from the figures' size: it reads every empty ground-truth keyframe as a wide
        shot, and misplaces some empty close-ups (0.83 of their places right). A viewer reads a picture that shows
        nobody by its background, and so does this reading (``frame_empty``): where the network finds nobody, the
        camera and the place are those of the nearest empty ground-truth background
        (``background_match.empty_framing``, exact on ground truth), from the image at the probe's input size, unless
        the picture is far from every empty background (``EMPTY_DISTANCE``: a figure the network missed, as in a
        decoded close-up of the test films)."""
        x = to_input(images)
        with torch.no_grad():
            out = self._logits(x)
        if not len(out["location"]):
            return []
        loc = out["location"].argmax(1).tolist()
        cam = out["camera"].argmax(1).tolist()
        present = (torch.sigmoid(out["presence"]) > threshold).numpy()
        pos = out["position"].argmax(2).numpy()
        if frame_empty:
            from .background_match import EMPTY_DISTANCE, nearest_empty

            pixels = ((x.permute(0, 2, 3, 1) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
            for i in np.flatnonzero(~present.any(1)):
                camera, location, distance = nearest_empty(pixels[i])
                if distance <= EMPTY_DISTANCE:  # a figure the network missed is no empty place to frame
                    cam[i], loc[i] = camera, location
        return [
            FrameLabel(loc[i], cam[i], tuple((int(c), int(pos[i, c])) for c in np.flatnonzero(present[i])))
            for i in range(len(loc))
        ]

    def read_state(self, images) -> list[dict]:
        """The per-film state each image shows: ``{"look": look id, "hats": [hat id at left, centre, right]}``
        (``look``/``hats`` are ``None`` for a probe trained without them). Hats are what each third of the frame
        shows most; they mean something only where a figure stands in a medium or close-up keyframe."""
        out = self.logits(images)
        n = len(out["location"])
        looks = out["look"].argmax(1).tolist() if "look" in out else [None] * n
        hats = out["hat"].argmax(1).tolist() if "hat" in out else [None] * n
        return [{"look": looks[i], "hats": hats[i]} for i in range(n)]

    def save(self, path: str) -> None:
        """Write the weights and configuration as one ``.safetensors`` file."""
        from ..files import save_safetensors

        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "info": json.dumps(self.info)}
        save_safetensors(state, path, metadata=meta)

    @classmethod
    def load(cls, path: str) -> "Probe":
        """Read a probe written by ``save``."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a toy cinema probe (format {meta.get('format')!r})")
        info = loads_json_object(meta["info"], f"{path}: its 'info' metadata")
        net = ProbeNet(**info["config"])
        net.load_state_dict(load_file(path))
        net.eval()
        return cls(net, info)


# ------------------------------------------------------------------------------------------- training


def state_targets(plans: Sequence[KeyframePlan], n_positions: int = N_POSITIONS) -> dict[str, torch.Tensor]:
    """Targets of the per-film state: each keyframe's look, and the hat at each screen place (``-1``: nobody
    there, a wide shot, or a keyframe without hats)."""
    hat = torch.full((len(plans), n_positions), -1, dtype=torch.long)
    for i, plan in enumerate(plans):
        if plan.camera in HAT_CAMERAS and plan.hats:
            for (_, p, _), h in zip(plan.figures, plan.hats):
                hat[i, p] = h
    return {"look": torch.tensor([plan.look for plan in plans], dtype=torch.long), "hat": hat}


def label_targets(labels: Sequence[FrameLabel], n_characters: int = N_CHARACTERS) -> dict[str, torch.Tensor]:
    """Training targets: class ids, multi-hot presence, and per character its position (``-1`` off screen)."""
    position = torch.full((len(labels), n_characters), -1, dtype=torch.long)
    for i, lab in enumerate(labels):
        for c, p in lab.on_screen:
            position[i, c] = p
    return {
        "location": torch.tensor([lab.location for lab in labels], dtype=torch.long),
        "camera": torch.tensor([lab.camera for lab in labels], dtype=torch.long),
        "presence": (position >= 0).float(),
        "position": position,
    }


def frames_and_labels(seed: int, n_films: int, size: int = INPUT_SIZE, plans: bool = False,
                      **film_kwargs) -> tuple:
    """Ground-truth keyframes (``uint8 [N, size, size, 3]``) and labels of ``n_films`` films drawn from ``seed``
    (and, with ``plans``, the keyframe plans: the per-film state's truth)."""
    films = generate_films(seed, n_films, **film_kwargs)
    images = np.concatenate([f.images(size) for f in films])
    labels = [lab for f in films for lab in f.labels()]
    if plans:
        return images, labels, [k for f in films for k in f.keyframes]
    return images, labels


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Light degradations (inputs in -1..1): half the batch blurred, small colour gain, Gaussian noise."""
    b = x.shape[0]
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    pick = (torch.rand(b, 1, 1, 1, generator=gen) < 0.5).float()
    x = pick * blur + (1 - pick) * x
    gain = 1.0 + 0.06 * (torch.rand(b, 3, 1, 1, generator=gen) * 2 - 1)
    x = (x + 1) * gain - 1
    sigma = 0.08 * torch.rand(b, 1, 1, 1, generator=gen)
    return x + sigma * torch.randn(x.shape, generator=gen)


def probe_loss(out: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
    loss = F.cross_entropy(out["location"], target["location"]) + F.cross_entropy(out["camera"], target["camera"])
    loss = loss + F.binary_cross_entropy_with_logits(out["presence"], target["presence"]) * 2.0
    pos = target["position"]
    if (pos >= 0).any():
        loss = loss + F.cross_entropy(out["position"].reshape(-1, out["position"].shape[-1]), pos.reshape(-1), ignore_index=-1)
    if "look" in out and "look" in target:
        loss = loss + F.cross_entropy(out["look"], target["look"])
    if "hat" in out and "hat" in target and (target["hat"] >= 0).any():
        logits = out["hat"].transpose(1, 2).reshape(-1, out["hat"].shape[1])  # [B * positions, n_hats]
        loss = loss + F.cross_entropy(logits, target["hat"].reshape(-1), ignore_index=-1)
    return loss


def train_probe(seed: int = 0, n_films: int = 240, steps: int = 1200, batch_size: int = 64, lr: float = 3e-3,
                log_every: int = 0, threads: int | None = 1) -> Probe:
    """Train a probe from scratch on the keyframes of ``n_films`` films drawn from ``seed`` (deterministic
    for a seed on one machine). Score it on films drawn from another seed.

    The defaults are the shipped probe's. It is the instrument every toy figure is read with, so it must read
    ground truth without error: 60 films and 600 steps (the earlier recipe) saw each (place, light, camera)
    combination only a few times and read 0.97 of the test films' places on ground truth (beach close-ups as
    snowfield, their ground being all a close-up shows); 240 films and 1200 steps read 1.00 of places, lights and
    hats on 24 films of another seed.

    ``threads``: torch CPU threads while training (restored afterwards). One thread is the default: this
    net is too small to gain from more, and on a busy two-core machine two threads run many times slower.
    """
    from ..threads import torch_threads

    with torch_threads(threads):
        return _train(seed, n_films, steps, batch_size, lr, log_every)


def _train(seed: int, n_films: int, steps: int, batch_size: int, lr: float, log_every: int) -> Probe:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    images, labels, plans = frames_and_labels(seed, n_films, plans=True)
    x_all = to_input(images)
    t_all = {**label_targets(labels), **state_targets(plans)}
    net = ProbeNet(n_looks=N_PLACE_LOOKS, n_hats=N_HATS)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.15)
    net.train()
    loss = torch.zeros(())
    for step in range(steps):
        idx = torch.randint(0, len(x_all), (batch_size,), generator=gen)
        out = net(augment(x_all[idx], gen))
        loss = probe_loss(out, {k: v[idx] for k, v in t_all.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step + 1) % log_every == 0:
            print(f"probe step {step + 1}/{steps} loss {loss.item():.4f}")
    net.eval()
    config = {"n_locations": N_LOCATIONS, "n_cameras": N_CAMERAS, "n_characters": N_CHARACTERS, "n_positions": N_POSITIONS,
              "n_looks": N_PLACE_LOOKS, "n_hats": N_HATS}
    info = {"config": config, "seed": seed, "n_films": n_films, "steps": steps, "n_frames": len(labels),
            "final_loss": float(loss.item()), "seconds": round(time.perf_counter() - started, 2)}
    return Probe(net, info)
