"""Public IP-Adapter files as renderer adapters, so users can render today.

An IP-Adapter (Ye et al., 2023) is exactly a token projector plus decoupled key/value pairs per
cross-attention layer, for a single "token": the CLIP Vision pooled image embedding. Its files map onto
``RendererAdapter`` with token space ``clip_vision.image_embeds`` (K=1):

* ``image_proj.proj`` [N*C, D], ``image_proj.norm``  ->  ``token_proj.proj``, ``token_proj.norm``
* ``ip_adapter.<2i+1>.to_k_ip`` / ``to_v_ip``          ->  ``token_kv.<i>.to_k`` / ``to_v``

Layer i is the i-th cross-attention layer in diffusers order (down blocks, up blocks, then the middle
block), the order ``nodes/attention_patch.py`` gives its discovered layers. Supported: the plain
IP-Adapter family (``ip-adapter_sd15``, ``ip-adapter_sdxl_vit-h``, ``ip-adapter-light``...) and the "plus"
family (``ip-adapter-plus_sd15``, ``ip-adapter-plus-face_sd15``, ``ip-adapter-plus_sdxl_vit-h``...), whose
``image_proj`` is a perceiver resampler over CLIP Vision's penultimate hidden states (token space
``clip_vision.penultimate_hidden_states``, K=257). FaceID files (plain, plus, plus v2) map onto the
identity path instead; see ``faceid.py``.
"""

from __future__ import annotations


from .adapter import RendererAdapter, RendererConfig

#: A resampler reads any number of penultimate states (257 for a 224 px ViT with 14 px patches): K=0, "any".
PENULTIMATE_TOKENS = 0


def _split(state: dict) -> tuple[dict, dict]:
    """Both layouts: flat ``image_proj.x``/``ip_adapter.x`` keys, or nested (as some converters write)."""
    proj = {k[len("image_proj."):]: v for k, v in state.items() if k.startswith("image_proj.")}
    ip = {k[len("ip_adapter."):]: v for k, v in state.items() if k.startswith("ip_adapter.")}
    return proj, ip


def adapter_from_ipadapter(state: dict, name: str = "ip-adapter") -> RendererAdapter:
    proj, ip = _split(state)
    if not proj or not ip:
        raise ValueError(f"{name} is neither a MovieDreamer renderer nor an IP-Adapter file (no image_proj/ip_adapter weights)")
    if "latents" in proj and "proj_in.weight" in proj:
        return _plus_adapter(proj, ip, name)
    from .faceid import faceid_adapter, is_faceid

    if is_faceid(proj):
        return faceid_adapter(proj, ip, name)
    if "proj.weight" not in proj or "norm.weight" not in proj:
        raise ValueError(f"{name}: an IP-Adapter layout this pack does not know (image_proj keys: {', '.join(sorted(proj)[:6])})")
    w = proj["proj.weight"]  # [N*C, D]
    C = int(proj["norm.weight"].shape[0])
    N, D = w.shape[0] // C, int(w.shape[1])
    indices, layer_dims = _kv_layers(ip)
    cfg = RendererConfig(token_space={"source": "clip_vision.image_embeds", "K": 1, "D": D}, context_dim=C,
                         layer_dims=layer_dims, context_tokens=N, identity_space=None, source="ipadapter",
                         extra={"file": name})
    adapter = RendererAdapter(cfg)
    mapped = {"token_proj.proj.weight": w, "token_proj.proj.bias": proj["proj.bias"],
              "token_proj.norm.weight": proj["norm.weight"], "token_proj.norm.bias": proj["norm.bias"]}
    mapped.update(kv_from_file(ip, indices, "token_kv"))
    adapter.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=True)
    return adapter.eval()


def _kv_layers(ip: dict) -> tuple[list[int], list[int]]:
    indices = sorted({int(k.split(".")[0]) for k in ip if k.endswith("to_k_ip.weight")})
    return indices, [int(ip[f"{i}.to_k_ip.weight"].shape[0]) for i in indices]


def kv_from_file(ip: dict, indices: list[int], pairs: str) -> dict:
    """``ip_adapter.<i>.to_k_ip``/``to_v_ip`` (the file's cross-attention slots, in order) as the adapter's
    ``<pairs>.<layer>.to_k``/``to_v`` (``pairs``: ``token_kv`` or ``identity_kv``)."""
    mapped = {}
    for layer, i in enumerate(indices):
        mapped[f"{pairs}.{layer}.to_k.weight"] = ip[f"{i}.to_k_ip.weight"]
        mapped[f"{pairs}.{layer}.to_v.weight"] = ip[f"{i}.to_v_ip.weight"]
    return mapped


def kv_to_file(state: dict, n_layers: int, pairs: str) -> dict:
    """The inverse of ``kv_from_file``, in the file layout (cross-attention layer ``l`` is slot ``2l+1``)."""
    out = {}
    for layer in range(n_layers):
        out[f"ip_adapter.{2 * layer + 1}.to_k_ip.weight"] = state[f"{pairs}.{layer}.to_k.weight"]
        out[f"ip_adapter.{2 * layer + 1}.to_v_ip.weight"] = state[f"{pairs}.{layer}.to_v.weight"]
    return out


def _plus_adapter(proj: dict, ip: dict, name: str) -> RendererAdapter:
    """IP-Adapter plus: a perceiver resampler over CLIP Vision's penultimate hidden states."""
    from .resampler import Resampler

    shape = Resampler.shape_from_state(proj)
    indices, layer_dims = _kv_layers(ip)
    cfg = RendererConfig(token_space={"source": "clip_vision.penultimate_hidden_states", "K": PENULTIMATE_TOKENS,
                                      "D": shape["embedding_dim"]},
                         context_dim=shape["output_dim"], layer_dims=layer_dims, context_tokens=shape["num_queries"],
                         identity_space=None, source="ipadapter-plus", resampler=shape, extra={"file": name})
    adapter = RendererAdapter(cfg)
    mapped = {f"token_proj.{k}": v for k, v in proj.items()}
    mapped.update(kv_from_file(ip, indices, "token_kv"))
    adapter.load_state_dict({k: v.float() for k, v in mapped.items()}, strict=True)
    return adapter.eval()


def ipadapter_state_from_adapter(adapter: RendererAdapter) -> dict:
    """The inverse mapping (plain IP-Adapter layout), used by tests to write IP-Adapter-format files."""
    sd = adapter.state_dict()
    if adapter.cfg.resampler:
        out = {"image_proj." + k[len("token_proj."):]: v for k, v in sd.items() if k.startswith("token_proj.")}
    else:
        out = {"image_proj.proj.weight": sd["token_proj.proj.weight"], "image_proj.proj.bias": sd["token_proj.proj.bias"],
               "image_proj.norm.weight": sd["token_proj.norm.weight"], "image_proj.norm.bias": sd["token_proj.norm.bias"]}
    out.update(kv_to_file(sd, adapter.n_layers, "token_kv"))
    return {k: v.contiguous() for k, v in out.items()}
