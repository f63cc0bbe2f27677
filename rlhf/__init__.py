"""rlhf: training language models from human feedback, on PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
