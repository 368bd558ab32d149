"""The scheduler NAS uses internally is never named agent-side (SPEC section 7)."""

from __future__ import annotations

from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
# Built from pieces so that this file itself never contains the words.
FORBIDDEN = ["q" + "stash", "up" + "stash"]
SCANNED = ["hermes_cron", "builtin_plugins", "docs", "README.md"]


def _files() -> List[Path]:
    found: List[Path] = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(
                p for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
            )
    return found


def test_the_scan_covers_the_library_plugins_and_docs() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in _files()}
    assert "hermes_cron/webhook.py" in files
    assert "builtin_plugins/chronos/__init__.py" in files
    assert "builtin_plugins/chronos/_nas_client.py" in files
    assert "README.md" in files


def test_no_scheduler_vendor_name_anywhere() -> None:
    hits = []
    for path in _files():
        text = path.read_bytes().decode("utf-8", errors="replace").lower()
        for word in FORBIDDEN:
            if word in text:
                line = text[: text.index(word)].count("\n") + 1
                hits.append(f"{path.relative_to(ROOT)}:{line}: {word}")
    assert hits == []
