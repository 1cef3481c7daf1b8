"""feredge: facial emotion recognition that runs on the edge."""

__version__ = "0.1.0"
