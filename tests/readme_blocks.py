"""The README's ``python`` blocks (programs a user copies into a file and runs against a server), for the tests that
run them as printed: ``readme_python_program("/distributed/queue")`` is the block that posts there.

Each block is identified by the server route it posts to (``POSTS_TO``); ``tests/core/test_readme_commands.py`` fails
when the README prints a block no test runs."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
#: The server every README program talks to; the tests swap in their own loopback server's URL, nothing else.
README_SERVER = "http://127.0.0.1:8188"


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def posts_to(block: str) -> str:
    """The route a block posts its request to: ``/prompt`` or ``/distributed/queue``."""
    routes = re.findall(r'"(/[a-z_/]+)"', block) + re.findall(r'"http://[^"/]+(/[a-z_/]+)"', block)
    posted = [r for r in routes if r in ("/prompt", "/distributed/queue")]
    assert len(set(posted)) == 1, f"a README python block posts to none or several routes: {posted}\n{block}"
    return posted[0]


def readme_python_program(route: str, server: str) -> str:
    """The README block that posts to ``route``, as printed, with the README's server URL replaced by ``server``."""
    blocks = [b for b in readme_python_blocks() if posts_to(b) == route]
    assert len(blocks) == 1, f"the README prints {len(blocks)} python blocks posting to {route}"
    assert README_SERVER in blocks[0], f"the README's {route} program no longer talks to {README_SERVER}"
    return blocks[0].replace(README_SERVER, server.rstrip("/"))
