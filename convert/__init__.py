"""Conversion of trained models into edge artefacts (TFLite int8/fp16/dynamic/fp32, ONNX) with an accuracy gate."""
