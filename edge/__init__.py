"""The edge runtime and the contract shared with training: numpy + OpenCV + a TFLite interpreter.

Nothing under ``feredge.edge`` imports TensorFlow.
"""
