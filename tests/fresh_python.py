"""Running the README's commands the way a user runs them: ``python ...`` from the pack's folder, in a fresh
interpreter that imported nothing before the command started.

The test process's own interpreter is not that. Its site-packages may hold ``.pth`` start-up hooks (sandbox
certificates, setuptools' distutils shim...) that import modules such as ``types`` before a script runs; a
program folder holding a ``types.py`` then still works here and crashes for a user (it did: issue 18). So
``FreshPython`` makes a virtual environment (``venv --without-pip``, a fraction of a second) whose
site-packages lists the installed packages' folders by plain path: the packages import, but none of their
start-up hooks run. ``PYTHON*`` variables that change how an interpreter starts are removed from the
environment. ``run("python cli/toycinema_demo.py --help")`` then runs exactly the README's command.
"""

from __future__ import annotations

import os
import shlex
import site
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

PACK_DIR = Path(__file__).resolve().parents[1]
#: Environment variables that change how an interpreter starts or what it finds: a user's shell has none.
STARTUP_VARIABLES = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONNOUSERSITE",
                     "PYTHONINSPECT", "PYTHONEXECUTABLE", "PYTHONUSERBASE", "PYTHONPLATLIBDIR")


def package_folders() -> list[str]:
    """The folders this interpreter imports installed packages from (site-packages, the user's site)."""
    folders = list(site.getsitepackages())
    user = site.getusersitepackages()
    if site.ENABLE_USER_SITE and user and os.path.isdir(user):
        folders.append(user)
    folders += [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and p not in folders]
    return [f for f in folders if os.path.isdir(f)]


class FreshPython:
    """A fresh interpreter for commands: ``run("python -m moviedreamer_core.script schema")``."""

    def __init__(self, folder: Path):
        folder = Path(folder)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
        self.python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        purelib = subprocess.run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                 capture_output=True, text=True, check=True, env=self.env()).stdout.strip()
        # plain folder lines: added to sys.path without running that folder's own .pth hooks
        Path(purelib, "_moviedreamer_tests_packages.pth").write_text("\n".join(package_folders()) + "\n")
        preloaded = subprocess.run([str(self.python), "-c", "import sys; print(' '.join(sorted(sys.modules)))"],
                                   capture_output=True, text=True, check=True, env=self.env()).stdout.split()
        assert "types" not in preloaded and "torch" not in preloaded, (
            f"the fresh interpreter pre-imports modules ({preloaded}): it would hide the failures it is for")

    def env(self, extra: Optional[dict] = None) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in STARTUP_VARIABLES}
        env.update({"PYTHONUNBUFFERED": "1", **(extra or {})})
        return env

    def argv(self, command: Union[str, Sequence[str]]) -> list[str]:
        """``"python cli/<program>.py --a 1"`` -> ``[<fresh python>, "cli/<program>.py", "--a", "1"]`` (``~`` expanded as a shell
        would)."""
        words = shlex.split(command) if isinstance(command, str) else list(command)
        if not words or words[0] != "python":
            raise ValueError(f"not a python command: {command!r}")
        return [str(self.python)] + [os.path.expanduser(w) if w.startswith("~") else w for w in words[1:]]

    def run(self, command: Union[str, Sequence[str]], *extra_args: str, cwd: Optional[Path] = None,
            env: Optional[dict] = None, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
        """Run ``command`` (as printed in the README) plus ``extra_args`` from ``cwd`` (the pack's folder)."""
        return subprocess.run(self.argv(command) + list(extra_args), cwd=str(cwd or PACK_DIR), env=self.env(env),
                              capture_output=True, text=True, timeout=timeout, **kwargs)

    def ctrl_c(self, command: Union[str, Sequence[str]], ready, *, cwd: Optional[Path] = None,
               env: Optional[dict] = None, timeout: float = 120) -> tuple[int, str]:
        """Start ``command`` as ``run`` does (stdout and stderr piped, SIGINT at its default in the child however
        this process treats it), call ``ready(proc)`` until it returns (it waits for the program to be where the
        test wants it: a line on stdout, a file written), press Ctrl-C once (SIGINT) and return the exit status and
        stderr. The program is killed if anything fails on the way, so none is left behind."""
        import signal

        proc = subprocess.Popen(self.argv(command), cwd=str(cwd or PACK_DIR), env=self.env(env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            ready(proc)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        return proc.returncode, err
