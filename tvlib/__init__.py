"""tvlib: task vectors for the one-layer Transformer of Li et al. (ICLR 2025) and for real checkpoints.

Ground floor (no other tvlib imports): vectors (TaskVector and merge methods on any PyTorch / Hugging
Face state dict, the device rule, atomic output), params (the parameter dataclass pattern), metrics
(hinge loss, alpha-hat), rules (best lambda and the book's verdict rules), paper (the paper's numbers).
Experiments, side by side: toy (the paper's one-layer model), images (colored digits, a small ViT),
lm (unlearning a text from a causal LM). Tooling: batch (the tvlib-batch command), style (figures).
Importing tvlib touches no network and writes no file.
"""

__version__ = "0.1.0"
