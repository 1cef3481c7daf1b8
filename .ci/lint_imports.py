"""Run import-linter on the feredge namespace as pyproject's package-dir lays it out (``namespace.py``),
on this checkout's files, and exit with its code."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from namespace import CONFIG, lay_out


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="feredge-imports-") as tree:
        lay_out(Path(tree))
        return subprocess.run(["lint-imports", "--config", str(CONFIG), *sys.argv[1:]], cwd=tree).returncode


if __name__ == "__main__":
    sys.exit(main())
