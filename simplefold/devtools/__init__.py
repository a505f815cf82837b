"""Developer tools: fixtures, benchmarks and side-by-side checks against the official code.

Nothing in the rest of the package imports this subpackage. Its modules import torch, hydra and
the official apple/ml-simplefold tree only inside functions, so importing them is cheap and needs
neither.

* :mod:`simplefold.devtools.official` — build and import the official PyTorch FoldingDiT.
* :mod:`simplefold.devtools.torch_writer` — write torch zip checkpoints without torch.
"""
