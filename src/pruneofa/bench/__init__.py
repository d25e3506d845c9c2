"""Benchmarks: pruneofa's runtime timed against dense PyTorch and dense int8 ONNX Runtime.

This package measures torch and onnxruntime and builds its sparse models with the training code, so it
lives outside `pruneofa.runtime`, which imports none of them. `pruneofa.bench.model` is the whole-model
benchmark behind `pruneofa bench`.
"""
