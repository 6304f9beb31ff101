"""A readable report of ``ScriptEmbeds``: the keyframe list and how well each character's photos agree.

Identity consistency is what MovieDreamer is about (paper section 3.4), and it starts with the reference
photos: if two photos of "Ava" embed far apart, or "Ava" sits closer to "Bo" than to herself, every later
stage inherits the confusion. The report shows, per character, the lowest cosine similarity between its
own photos and the highest similarity to any other character, and flags characters that are confusable.
"""

from __future__ import annotations

import torch

from .embeds import ScriptEmbeds
from .script.mentions import names_off_screen
from .script.problems import listed


def identity_similarity(embeds: ScriptEmbeds) -> dict[str, dict[str, float]]:
    """Per character: ``self_min`` (lowest cosine between its own photos; 1.0 for one photo) and
    ``other_max`` with ``closest`` (the most similar other character, by mean identity)."""
    out: dict[str, dict[str, float]] = {}
    with_id = [c for c in embeds.characters if c.has_identity]
    means = torch.stack([c.mean for c in with_id]) if with_id else torch.zeros(0, embeds.identity_space.dim)
    for i, ch in enumerate(with_id):
        sims = ch.bank @ ch.bank.T
        n = sims.shape[0]
        self_min = float(sims[~torch.eye(n, dtype=torch.bool)].min()) if n > 1 else 1.0
        row = {"self_min": self_min, "other_max": float("nan"), "closest": ""}
        if len(with_id) > 1:
            others = means @ ch.mean
            others[i] = -float("inf")
            j = int(others.argmax())
            row.update(other_max=float(others[j]), closest=with_id[j].name)
        out[ch.name] = row
    return out


def script_report(embeds: ScriptEmbeds, max_keyframes: int = 200) -> str:
    """Multi-line text: summary, characters with identity agreement, then the keyframes (capped)."""
    lines = [embeds.summary(), ""]
    sims = identity_similarity(embeds)
    for ch in embeds.characters:
        if not ch.has_identity:
            lines.append(f"{ch.name}: no reference photos (no identity embedding)")
            continue
        s = sims[ch.name]
        text = f"{ch.name}: {ch.bank.shape[0]} photo(s), own photos agree >= {s['self_min']:.2f}"
        if s["closest"]:
            text += f", closest other: {s['closest']} {s['other_max']:.2f}"
            if s["other_max"] >= s["self_min"]:
                text += "  <- WARNING: as close to another character as to its own photos"
        lines.append(text)
    lines.append("")
    names = [c.name for c in embeds.characters]
    for spec in embeds.keyframes[:max_keyframes]:
        who = ", ".join(embeds.characters[c].name for c in spec.characters) or "nobody"
        line = f"#{spec.index} shot {spec.shot_id}.{spec.index_in_shot} [{spec.camera}] {who}: {spec.action}"
        away = names_off_screen(spec.action, names, {names[c] for c in spec.characters})
        if away:  # what the action says of them reaches no mention (script/check.py off_screen_names)
            line += f"  <- names {listed(away)}, not on screen"
        lines.append(line)
    if embeds.n_keyframes > max_keyframes:
        lines.append(f"... {embeds.n_keyframes - max_keyframes} more keyframes")
    return "\n".join(lines)
