"""The pack's layout, checked as rules (issue 18): programs live apart from the nodes, nothing a program's folder
holds can shadow the standard library, node files say that they hold nodes, one module talks to the host's
model management, the method never imports the host, and the files the docs name exist.

Running ``python some/folder/program.py`` puts ``some/folder`` first on ``sys.path``; a ``types.py`` there then
replaces the standard library's ``types`` for the whole interpreter (argparse -> re -> enum -> types), which is how
the toy demo, when it lived in ``nodes/`` beside a ``types.py``, crashed in any fresh interpreter.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACK_FOLDERS = ("nodes", "cli", "moviedreamer_core", "tests", "benchmarks", "workflows", "js", ".ci")
#: Host modules that only the bridge (``nodes/host.py``) may import: model management, folders, progress,
#: interruption, sampling and the server. Host *classes* (``comfy.model_base``, ``comfy.sd``...), its conditioning
#: nodes (``comfy_extras``) and the V3 API (``comfy_api``) are imported where they are used.
BRIDGE_ONLY = ("comfy.model_management", "comfy.model_patcher", "comfy.utils", "comfy.sample", "comfy.samplers",
               "folder_paths", "server", "comfy_execution", "execution", "latent_preview")
HOST_TOP_LEVEL = ("comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "node_helpers",
                  "server", "execution", "latent_preview", "app", "utils")


def python_files(*folders: str) -> list[Path]:
    files = []
    for folder in folders:
        files += [p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(files)


def is_program(path: Path) -> bool:
    """A file meant to be run (``if __name__ == "__main__":``), not a package's ``__main__.py`` (run with ``-m``,
    which puts the working directory on ``sys.path``, not the file's folder)."""
    if path.name == "__main__.py":
        return False
    return re.search(r"""^if __name__ == ["']__main__["']""", path.read_text(encoding="utf-8"), re.M) is not None


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in a file (relative imports left out)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_no_folder_with_a_program_holds_a_module_named_like_the_standard_library():
    stdlib = set(sys.stdlib_module_names)
    folders = {p.parent for p in python_files(*PACK_FOLDERS) if is_program(p)}
    assert folders, "no programs found: the scan is broken"
    clashes = [f"{rel(folder)}/{p.name}" for folder in folders for p in folder.glob("*.py") if p.stem in stdlib]
    clashes += [f"{rel(folder)}/{p.name}/" for folder in folders for p in folder.iterdir()
                if p.is_dir() and p.name in stdlib and (p / "__init__.py").is_file()]
    assert not clashes, f"these modules shadow the standard library when a program beside them runs: {clashes}"


def test_programs_live_in_cli_not_among_the_nodes():
    """Graph nodes and programs apart. (Modules of the method that run with ``python -m`` are fine: ``-m`` puts
    the working directory on ``sys.path``, not the module's folder; the test above covers a direct run too.)"""
    programs = [rel(p) for p in python_files("nodes") if is_program(p)]
    assert not programs, f"command-line programs belong in cli/, not among the graph nodes: {programs}"
    assert {p.name for p in (ROOT / "cli").glob("*.py") if is_program(p)} >= {
        "toycinema_demo.py", "toycinema_train.py", "train_renderer.py"}


def test_node_files_are_named_for_the_nodes_they_hold():
    """A reader finds the graph nodes by name: ``*_node.py``/``*_nodes.py`` hold ``io.ComfyNode`` classes, and
    no other file in ``nodes/`` does."""
    wrong = []
    for path in python_files("nodes"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        holds_nodes = any(isinstance(n, ast.ClassDef) and any(ast.unparse(b).endswith("ComfyNode") for b in n.bases)
                          for n in ast.walk(tree))
        named = path.stem.endswith(("_node", "_nodes"))
        if holds_nodes != named:
            wrong.append(f"{rel(path)} ({'holds' if holds_nodes else 'holds no'} graph nodes)")
    assert not wrong, f"name node files *_node(s).py, and only those: {wrong}"


def test_only_the_bridge_imports_the_hosts_model_management_folders_and_progress():
    leaks = []
    for path in python_files("nodes"):
        if path.name == "host.py":
            continue
        for line, module in imported_modules(path):
            if module in BRIDGE_ONLY or module.startswith(tuple(m + "." for m in BRIDGE_ONLY)):
                leaks.append(f"{rel(path)}:{line} imports {module}")
    assert not leaks, f"call the host's model management through nodes/host.py: {leaks}"


def test_the_method_never_imports_the_host():
    leaks = [f"{rel(path)}:{line} imports {module}" for path in python_files("moviedreamer_core")
             for line, module in imported_modules(path) if module.split(".")[0] in HOST_TOP_LEVEL]
    assert not leaks, f"moviedreamer_core/ must not import the host (move the call into nodes/): {leaks}"


#: ``nodes/host.py``, ``python cli/toycinema_demo.py``, ``tests/core/test_layout.py``...: paths under a pack folder.
PACK_PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./-]*[\w-]\.(?:py|md|json|mjs|js|yaml|txt))\b"
                       % "|".join(re.escape(f) for f in PACK_FOLDERS))
MARKDOWN_FILE = re.compile(r"(?<![\w./-])([\w-]+\.md)\b")


def documented_paths() -> list[tuple[str, str]]:
    """``(file that mentions it, path)`` for every pack path and Markdown file named in the code and the README."""
    sources = python_files(*PACK_FOLDERS) + [ROOT / "README.md"] + sorted((ROOT / "js").glob("*.js"))
    sources += sorted((ROOT / "tests" / "browser").glob("*.mjs"))
    found = []
    for src in sources:
        text = src.read_text(encoding="utf-8")
        found += [(rel(src), m.group(1)) for m in PACK_PATH.finditer(text)]
        found += [(rel(src), m.group(1)) for m in MARKDOWN_FILE.finditer(text)]
    return found


def test_files_named_in_docstrings_and_the_readme_exist():
    refs = documented_paths()
    assert any(path == "nodes/host.py" for _, path in refs), "the scan found no references: it is broken"
    missing = sorted({f"{src}: {path}" for src, path in refs if not (ROOT / path).exists()})
    assert not missing, f"these files are named but not in the repository: {missing}"


def _text_opens_without_encoding(path: Path) -> list[int]:
    """Lines of ``open(...)`` / ``Path.open(...)`` / ``read_text()`` / ``write_text(...)`` calls in text mode (no ``b``
    in the mode) that do not name their ``encoding``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        keywords = {k.arg for k in node.keywords}
        if "encoding" in keywords:
            continue
        if name == "open" and isinstance(func, ast.Name) or (name == "open" and isinstance(func, ast.Attribute)
                                                            and not (isinstance(func.value, ast.Name)
                                                                     and func.value.id in ("os", "Image", "av", "tarfile",
                                                                                           "zipfile", "gzip"))):
            position = 1 if isinstance(func, ast.Name) else 0
            mode = next((k.value for k in node.keywords if k.arg == "mode"), None)
            if mode is None and len(node.args) > position:
                mode = node.args[position]
            if mode is None or (isinstance(mode, ast.Constant) and isinstance(mode.value, str) and "b" not in mode.value):
                lines.append(node.lineno)
        elif name in ("read_text", "write_text") and isinstance(func, ast.Attribute):
            lines.append(node.lineno)
    return lines


def test_every_text_file_is_opened_with_its_encoding():
    """Windows reads and writes text in the locale's code page (cp1252) unless told: a script, a config or a caption
    with an accent would be misread there. Every file the pack opens as text names its encoding (UTF-8)."""
    found = [f"{rel(p)}:{line}" for p in python_files("nodes", "cli", "moviedreamer_core", "benchmarks") + [ROOT / "__init__.py"]
             for line in _text_opens_without_encoding(p)]
    assert not found, found
