"""``workflows/`` is what users see in ComfyUI's template browser: the host lists every ``<pack>/workflows/*.json``
(not subfolders) as a template of the pack (ComfyUI's app/custom_node_manager.py, ``GET /workflow_templates``;
tests/host/test_workflows.py asks the real route). So only user-facing UI workflows sit directly in it; their
API-format twins live in ``workflows/api/`` and test-only workflows in ``tests/workflows/``."""

from __future__ import annotations

import json
from pathlib import Path

from ..workflow_layout import uses_distributed

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "workflows"
TEST_ONLY_NODE_PREFIX = "MovieDreamerTest"  # tests/host/tiny_nodes.py: registered only with MOVIEDREAMER_TEST_NODES=1


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_template_folder_holds_only_user_facing_ui_workflows():
    templates = sorted(TEMPLATES.glob("*.json"))
    assert templates
    for path in templates:
        workflow = load(path)
        assert isinstance(workflow.get("nodes"), list), f"{path.name} is not a UI workflow (API twins go in workflows/api/)"
        test_nodes = [n["type"] for n in workflow["nodes"] if n["type"].startswith(TEST_ONLY_NODE_PREFIX)]
        assert not test_nodes, f"{path.name} needs test-only nodes {test_nodes}: it belongs in tests/workflows/"
    assert not [p.name for p in TEMPLATES.iterdir() if p.is_file() and p.suffix != ".json"]


def test_every_template_has_its_api_twin_in_the_api_folder():
    twins = sorted(p.name for p in (TEMPLATES / "api").glob("*.json"))
    assert twins == sorted(f"{p.stem}_api.json" for p in TEMPLATES.glob("*.json"))
    for name in twins:
        prompt = load(TEMPLATES / "api" / name)
        assert "nodes" not in prompt and all("class_type" in v for v in prompt.values()), name
        assert not [v["class_type"] for v in prompt.values() if v["class_type"].startswith(TEST_ONLY_NODE_PREFIX)]


def test_a_workflow_needs_comfyui_distributed_exactly_when_its_name_says_distributed():
    """``*_distributed`` workflows (and only they) use ComfyUI-Distributed's nodes: users see from the name that
    they need it, and the tests check them on a host that has it (tests/distributed/test_workflows.py)."""
    files = [p for folder in (TEMPLATES, TEMPLATES / "api", ROOT / "tests" / "workflows") for p in folder.glob("*.json")]
    wrong = [p.name for p in files if uses_distributed(load(p)) != ("_distributed" in p.stem)]
    assert not wrong, wrong
    assert any("_distributed" in p.stem for p in files)
