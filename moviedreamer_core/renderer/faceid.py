"""IP-Adapter FaceID files as identity-only renderer adapters.

The FaceID family (Ye et al., 2023; ``ip-adapter-faceid*``) is what MovieDreamer's identity path is made of
(paper section 3.4: the decoder reads the characters' face embeddings): an InsightFace ArcFace embedding
(512-D, ``buffalo_l``) becomes a few context tokens that a decoupled key/value pair per cross-attention
layer reads. Such a file maps onto ``RendererAdapter``'s *identity* path; it has no token path, so a
storyboard rendered with it keeps its text and its faces but not the planner's visual tokens.

* plain FaceID (``ip-adapter-faceid_sd15``...): ``image_proj.proj.0/2`` (a two-layer MLP) and ``norm``
  ->  ``identity_proj.mlp.0/2`` and ``identity_proj.norm``;
* FaceID plus / plus v2 (``ip-adapter-faceid-plus(v2)_sd15``, ``..._sdxl``): the same MLP, then a perceiver
  (``image_proj.perceiver_resampler.*``) in which those identity tokens attend to CLIP Vision's penultimate
  hidden states of the aligned face crop; v2 adds the MLP tokens back (``shortcut``, weight
  ``shortcut_scale``). Which of the two a file is cannot be read from its weights, only from its name, as
  every FaceID loader does: a name containing ``v2`` is v2.
* ``ip_adapter.<2i+1>.to_k_ip`` / ``to_v_ip``  ->  ``identity_kv.<i>.to_k`` / ``to_v``.

The FaceID LoRA (``*_lora`` keys in the original ``.bin``, or the separate ``..._lora.safetensors``) belongs
to the UNet, not to the adapter: load it with the host's own ``LoraLoaderModelOnly`` on the MODEL, as
FaceID workflows do. LoRA keys found in the file are ignored and reported in ``cfg.extra``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .resampler import PerceiverStack

#: FaceID files were trained on InsightFace ``buffalo_l`` ArcFace embeddings (512-D, L2-normalised).
FACEID_IDENTITY_SPACE = {"encoder": "insightface_buffalo_l", "dim": 512}
#: The face crop's CLIP Vision penultimate hidden states (any number of them: 257 for a 224 px ViT-H).
FACE_STATES_SOURCE = "clip_vision.penultimate_hidden_states"


#: The FaceID plus perceiver: identity tokens (the latents) attend to face-crop features. Unlike the plus
#: Resampler it has no learned queries: the queries are the identity tokens.
FacePerceiver = PerceiverStack


class IdentityProjector(nn.Module):
    """``[B, Di]`` face identity -> ``[B, M, C]`` identity tokens: a two-layer MLP and a LayerNorm (FaceID's
    ``MLPProjModel``). With ``perceiver`` set, the tokens then attend to the face crop's CLIP Vision
    features (FaceID plus), and ``shortcut`` adds the MLP tokens back (plus v2)."""

    def __init__(self, Di: int, M: int, C: int, hidden: int | None = None, perceiver: dict | None = None,
                 shortcut: bool = False, shortcut_scale: float = 1.0):
        super().__init__()
        self.M, self.C = M, C
        self.mlp = nn.Sequential(nn.Linear(Di, hidden or C * 2), nn.GELU(), nn.Linear(hidden or C * 2, M * C))
        self.norm = nn.LayerNorm(C)
        self.perceiver = FacePerceiver(**perceiver) if perceiver else None
        self.shortcut, self.shortcut_scale = bool(shortcut), float(shortcut_scale)

    @property
    def needs_face_states(self) -> bool:
        return self.perceiver is not None

    def forward(self, identity: torch.Tensor, face_states: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(self.mlp(identity).reshape(identity.shape[0], self.M, self.C))
        if self.perceiver is None:
            return x
        if face_states is None:
            raise ValueError("this identity projector (IP-Adapter FaceID plus) needs the face crops' CLIP Vision "
                             "hidden states as well as the identity embeddings")
        out = self.perceiver(x, face_states)
        return x + self.shortcut_scale * out if self.shortcut else out


def is_faceid(proj: dict) -> bool:
    """An ``image_proj`` state (prefix removed) of the FaceID family: an MLP ``proj.0``/``proj.2``."""
    return "proj.0.weight" in proj and "proj.2.weight" in proj


def faceid_adapter(proj: dict, ip: dict, name: str):
    """A FaceID (plain, plus, plus v2) state, split into ``image_proj``/``ip_adapter`` parts, as an adapter."""
    from .adapter import RendererAdapter, RendererConfig
    from .ipadapter import _kv_layers, kv_from_file

    w0, w2 = proj["proj.0.weight"], proj["proj.2.weight"]  # [H, Di], [M*C, H]
    C = int(proj["norm.weight"].shape[0])
    Di, H, M = int(w0.shape[1]), int(w0.shape[0]), int(w2.shape[0]) // C
    perceiver_state = {k[len("perceiver_resampler."):]: v for k, v in proj.items() if k.startswith("perceiver_resampler.")}
    perceiver = FacePerceiver.shape_from_state(perceiver_state) if perceiver_state else None
    v2 = perceiver is not None and "v2" in name.lower()
    indices, layer_dims = _kv_layers(ip)
    lora = sorted({k for k in ip if "_lora" in k})
    kind = "faceid-plusv2" if v2 else "faceid-plus" if perceiver else "faceid"
    identity_projector = {"hidden": H, "perceiver": perceiver, "shortcut": v2, "shortcut_scale": 1.0}
    cfg = RendererConfig(token_space={"source": "none", "K": 0, "D": 0}, context_dim=C, layer_dims=layer_dims,
                         identity_space=dict(FACEID_IDENTITY_SPACE, dim=Di), identity_tokens=M, token_path=False,
                         identity_projector=identity_projector, source=f"ipadapter-{kind}",
                         extra={"file": name, "ignored_lora_keys": len(lora)})
    adapter = RendererAdapter(cfg)
    mapped = {"identity_proj.mlp.0.weight": w0, "identity_proj.mlp.0.bias": proj["proj.0.bias"],
              "identity_proj.mlp.2.weight": w2, "identity_proj.mlp.2.bias": proj["proj.2.bias"],
              "identity_proj.norm.weight": proj["norm.weight"], "identity_proj.norm.bias": proj["norm.bias"]}
    mapped.update({f"identity_proj.perceiver.{k}": v for k, v in perceiver_state.items()})
    mapped.update(kv_from_file(ip, indices, "identity_kv"))
    adapter.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=True)
    return adapter.eval()


def faceid_state_from_adapter(adapter) -> dict:
    """The inverse mapping (FaceID file layout), used by tests to write FaceID-format files."""
    from .ipadapter import kv_to_file

    sd = adapter.state_dict()
    out = {}
    for k, v in sd.items():
        if k.startswith("identity_proj.mlp."):
            out["image_proj.proj." + k[len("identity_proj.mlp."):]] = v
        elif k.startswith("identity_proj.norm."):
            out["image_proj.norm." + k[len("identity_proj.norm."):]] = v
        elif k.startswith("identity_proj.perceiver."):
            out["image_proj.perceiver_resampler." + k[len("identity_proj.perceiver."):]] = v
    out.update(kv_to_file(sd, adapter.n_layers, "identity_kv"))
    return {k: v.contiguous() for k, v in out.items()}
