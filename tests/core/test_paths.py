"""File names from scripts and workflows stay inside their folder and are never a Windows device (``paths``)."""

from __future__ import annotations

import os

import pytest

from moviedreamer_core.paths import UnsafePathError, is_windows_device_name, resolve_inside, safe_folder_name
from moviedreamer_core.project import project_folder_name

DEVICES = ["CON", "con", "Nul", "nul.png", "NUL.tar.gz", "aux.", "prn ", "Com1 .jpg", "COM9", "lpt1.txt", "COM\u00b9",
           "CONIN$", "conout$.log", "COM0", "LPT0"]
NOT_DEVICES = ["console.png", "nullify", "icon", "com10.png", "lpt", "COMA", "a.con", "my con.png", "conin", "Ava.png"]


@pytest.mark.parametrize("name", DEVICES)
def test_windows_device_names_are_seen_in_any_case_with_any_extension(name):
    assert is_windows_device_name(name)


@pytest.mark.parametrize("name", NOT_DEVICES)
def test_names_that_only_look_like_devices_are_files(name):
    assert not is_windows_device_name(name)


@pytest.mark.parametrize("name", ["nul.png", "refs/CON", "refs\\Com1 .jpg\\x.png", "a/b/aux"])
def test_a_device_name_anywhere_in_a_path_is_refused_naming_the_part(name, tmp_path):
    """On Windows, reading ``input/CON`` waits for the console: refused on every system, before anything is opened."""
    with pytest.raises(UnsafePathError, match="is a device name on Windows"):
        resolve_inside(str(tmp_path), name)


@pytest.mark.parametrize("name", NOT_DEVICES)
def test_ordinary_names_resolve_inside_the_folder(name, tmp_path):
    assert resolve_inside(str(tmp_path), "refs/" + name) == os.path.join(os.path.realpath(tmp_path), "refs", name)


@pytest.mark.parametrize("name,folder", [("CON", "CON_"), ("nul.v2", "nul_.v2"), ("Com1 .take", "Com1_.take"),
                                         (" aux ", "aux_"), ("console", "console"), ("My Movie: Part 1", "My Movie_ Part 1")])
def test_folder_and_file_names_made_from_titles_are_never_devices(name, folder):
    """Project folders, renderer files (``save_name``) and shot files are made with ``safe_folder_name``: a title
    ``CON`` gets the folder ``CON_`` (on Windows the folder ``CON`` cannot exist, and ``nul.safetensors`` would throw
    the renderer away); other names keep the folder they always had, so their projects resume."""
    assert safe_folder_name(name) == folder and not is_windows_device_name(folder)
    assert project_folder_name(name) == folder
    assert safe_folder_name("CON", max_length=3) == "untitled"  # no room to change it: the fallback


def test_a_link_to_another_drive_is_refused_as_leaving_the_folder(tmp_path, monkeypatch):
    """On Windows ``commonpath`` raises ``ValueError`` for paths on two drives (a reference reached through a link or
    junction to D:): the script check must report it like any link leaving the folder, not crash."""
    def other_drive(paths):
        raise ValueError("Paths don't have the same drive")

    monkeypatch.setattr(os.path, "commonpath", other_drive)
    with pytest.raises(UnsafePathError, match="leads outside its folder"):
        resolve_inside(str(tmp_path), "refs/ava.png")


def test_a_project_an_earlier_version_filed_under_a_device_name_starts_afresh_rather_than_failing(tmp_path):
    """A Linux project titled ``CON`` lived in ``moviedreamer/CON``; that name is refused now, so the project opens
    ``CON_`` (afresh) instead of failing on its old folder."""
    import json

    from moviedreamer_core.project import MovieProject

    old = tmp_path / "moviedreamer" / "CON"
    old.mkdir(parents=True)
    (old / "manifest.json").write_text(json.dumps({"format": 1, "name": "CON", "keyframes": {}, "shots": {}}))
    assert MovieProject(str(tmp_path), "CON").root == str((tmp_path / "moviedreamer" / "CON_").resolve())
