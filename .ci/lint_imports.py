"""Run import-linter on the feredge namespace as pyproject's package-dir lays it out.

import-linter finds modules by walking the package's folder, but feredge's subpackages live in
sibling folders (``feredge.edge`` is ``edge/``), so it would see only ``feredge/``. This lays the
namespace out as symlinks in a temporary folder, runs ``lint-imports`` there on this checkout's
files, and exits with its code.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    config = ROOT / "pyproject.toml"
    package_dir = tomllib.loads(config.read_text())["tool"]["setuptools"]["package-dir"]
    with tempfile.TemporaryDirectory(prefix="feredge-imports-") as tree:
        for package, folder in sorted(package_dir.items()):
            target = Path(tree, *package.split("."))
            if package.count(".") == 0:
                target.mkdir()
                for module in (ROOT / folder).glob("*.py"):
                    (target / module.name).symlink_to(module)
            else:
                target.symlink_to(ROOT / folder, target_is_directory=True)
        return subprocess.run(["lint-imports", "--config", str(config), *sys.argv[1:]], cwd=tree).returncode


if __name__ == "__main__":
    sys.exit(main())
