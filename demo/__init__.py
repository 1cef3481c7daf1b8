"""``feredge demo``: a Gradio UI and a REST ``POST /predict`` on the edge runtime (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

# A real photo (astronaut.png, first by name), drawn faces (the tests' ``draw_face``) and a face-free
# image, shipped so the demo works offline; examples/SOURCES.md says where each comes from.
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


def example_images() -> list[Path]:
    """The shipped example images, sorted; empty when the package was installed without them."""
    return sorted(p for p in EXAMPLES_DIR.glob("*") if p.suffix in (".png", ".jpg"))
