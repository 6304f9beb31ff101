"""ScriptEncode's script-file choices: the input folder is listed once and then kept current by reading again only
the folders that changed (issue 19: walking 100,000 uploads on every queued prompt took 183 ms)."""

from __future__ import annotations

import os
import time

import pytest

from moviedreamer_core.folder_listing import FolderListing


def _age(*folders) -> None:
    """Make folders look modified a minute ago (a listing re-reads folders changed within the last seconds)."""
    old = time.time() - 60
    for folder in folders:
        os.utime(folder, (old, old))


def test_a_refresh_reads_only_the_folders_that_changed(tmp_path):
    for i in range(4):
        (tmp_path / f"batch{i}").mkdir()
        for j in range(300):
            (tmp_path / f"batch{i}" / f"upload_{j}.png").write_bytes(b"")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "a.yaml").write_text("title: a")
    (tmp_path / "top.JSON").write_text("{}")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "secret.yaml").write_text("")
    folders = [tmp_path, *(p for p in tmp_path.iterdir() if p.is_dir())]
    _age(*folders)
    listing = FolderListing(str(tmp_path), (".yaml", ".yml", ".json"))
    assert listing.files() == ["scripts/a.yaml", "top.JSON"]
    first = listing.reads
    assert first == 6  # the root, four upload folders, scripts/ (not the hidden folder)
    for _ in range(5):
        assert listing.files() == ["scripts/a.yaml", "top.JSON"]
    assert listing.reads == first, "nothing changed: no folder is read again"
    (tmp_path / "scripts" / "b.yml").write_text("title: b")
    (tmp_path / "scripts" / "new").mkdir()
    (tmp_path / "scripts" / "new" / "c.yaml").write_text("title: c")
    _age(tmp_path / "scripts", tmp_path / "scripts" / "new")
    assert listing.files() == ["scripts/a.yaml", "scripts/b.yml", "scripts/new/c.yaml", "top.JSON"]
    assert listing.reads == first + 2, "only the changed folder and its new subfolder are read"
    (tmp_path / "scripts" / "a.yaml").unlink()
    os.rename(tmp_path / "scripts" / "new", tmp_path / "scripts" / "renamed")
    assert listing.files() == ["scripts/b.yml", "scripts/renamed/c.yaml", "top.JSON"]


def test_a_folder_changed_just_now_is_read_again(tmp_path):
    """A file added in the same tick of the filesystem's clock as the listing would not change the folder's time:
    a folder modified within the last seconds is not trusted."""
    (tmp_path / "a.yaml").write_text("")
    listing = FolderListing(str(tmp_path), (".yaml",))
    assert listing.files() == ["a.yaml"]
    stamp = os.stat(tmp_path).st_mtime_ns
    (tmp_path / "b.yaml").write_text("")
    os.utime(tmp_path, ns=(stamp, stamp))  # as if within the same clock tick
    assert listing.files() == ["a.yaml", "b.yaml"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_only_regular_files_inside_the_folder_are_offered(tmp_path):
    """A named pipe or a link that leads out of the input folder was offered in ``script_file`` and refused once
    chosen (a pipe as "not found"); neither is offered now. A link to a file inside the folder is."""
    root, outside = tmp_path / "input", tmp_path / "outside.yaml"
    (root / "sub").mkdir(parents=True)
    outside.write_text("title: t\n")
    (root / "real.yaml").write_text("title: t\n")
    os.mkfifo(root / "pipe.yaml")
    os.symlink(outside, root / "out.yaml")
    os.symlink(root / "real.yaml", root / "sub" / "in.yaml")
    os.symlink(tmp_path / "missing.yaml", root / "dangling.yaml")
    assert FolderListing(str(root), (".yaml",)).files() == ["real.yaml", "sub/in.yaml"]
