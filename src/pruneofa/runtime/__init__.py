"""CPU runtime for exported sparse models; imports nothing from torch or the training code.

`pruneofa.runtime.kernels` holds the compiled sparse matmul kernels.
"""
