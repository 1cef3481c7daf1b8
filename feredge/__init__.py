"""feredge: facial emotion recognition that runs on the edge."""

from pathlib import Path

__version__ = "0.1.0"

# In a source checkout the subpackages are the sibling folders edge/, train/, ... that pyproject's
# package-dir maps to feredge.edge, feredge.train, ...; when Python runs in the checkout's root, this
# folder shadows the installed package, so point the namespace at those folders too.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "edge" / "__init__.py").is_file():
    __path__.append(str(_checkout))
