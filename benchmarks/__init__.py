"""``feredge bench``: latency, size, memory and accuracy of edge models (and peers) side by side."""
