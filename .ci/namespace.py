"""The feredge namespace laid out as pyproject's package-dir maps it, for tools that find modules by walking folders.

feredge's subpackages live in sibling folders (``feredge.edge`` is ``edge/``), so import-linter and mypy
would see only ``feredge/``. ``lay_out`` builds the namespace as symlinks to this checkout's files, so
the tools read the working tree as it is, edits included.
"""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "pyproject.toml"


def lay_out(tree: Path) -> None:
    """Symlinks in the empty folder ``tree``: ``tree/feredge/*.py`` and ``tree/feredge/<sub>`` -> its folder."""
    package_dir = tomllib.loads(CONFIG.read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(package_dir.items()):
        target = Path(tree, *package.split("."))
        if package.count(".") == 0:
            target.mkdir()
            for module in (ROOT / folder).glob("*.py"):
                (target / module.name).symlink_to(module)
        else:
            target.symlink_to(ROOT / folder, target_is_directory=True)
