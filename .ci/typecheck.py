"""Run mypy over edge/ and feredge/ (``[tool.mypy]`` in pyproject.toml) on the namespace as pyproject's
package-dir lays it out (``namespace.py``), on this checkout's files, and exit with its code.

The same command works on an editable or a plain ``pip install ".[dev]"``: mypy reads the working tree,
never the installed copy. Its cache is ``.mypy_cache/`` in the checkout, so a second run takes seconds.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from namespace import CONFIG, ROOT, lay_out


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="feredge-types-") as tree:
        lay_out(Path(tree))
        command = [sys.executable, "-m", "mypy", "--config-file", str(CONFIG), "--cache-dir", str(ROOT / ".mypy_cache")]
        return subprocess.run([*command, *sys.argv[1:]], cwd=tree).returncode


if __name__ == "__main__":
    sys.exit(main())
