"""A folder tree deeper than Python's recursion limit is listed (ScriptEncode's script_file choices)."""

import os
import sys

from moviedreamer_core.folder_listing import FolderListing


def _chain(folder, depth: int, make: bool) -> None:
    """Make (or remove) ``folder/a/a/.../s.yaml``, ``depth`` folders deep, by relative steps: the whole path is longer
    than a path may be given at once, and shutil.rmtree (pytest's clean-up too) recurses once a level."""
    cwd = os.getcwd()
    try:
        os.chdir(folder)
        for _ in range(depth):
            if make:
                os.mkdir("a")
            os.chdir("a")
        if make:
            open("s.yaml", "w").close()
            return
        os.remove("s.yaml")
        for _ in range(depth):
            os.chdir("..")
            os.rmdir("a")
    finally:
        os.chdir(cwd)


def test_a_tree_deeper_than_the_recursion_limit_is_listed(tmp_path):
    depth = sys.getrecursionlimit() + 50
    folder = tmp_path / "deep"
    folder.mkdir()
    _chain(folder, depth, make=True)
    try:
        (tmp_path / "top.yaml").write_text("x")
        listing = FolderListing(str(tmp_path), (".yaml",))
        files = listing.files()
        assert "top.yaml" in files
        assert listing.files() == files  # a second, cached listing agrees
    finally:
        _chain(folder, depth, make=False)
