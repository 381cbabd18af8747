"""tvlib: task vectors for the one-layer Transformer of Li et al. (ICLR 2025) and for real checkpoints.

The paper's objects: data (tasks of Def. 2), model (eq. 4, batched over replicas), training (SGD on
the hinge loss), evaluation (error, accuracy, alpha-hat), setting (the book's default sizes, device).
Task arithmetic: task_vector (TaskVector on any PyTorch / Hugging Face state dict), merging (rank-r,
row-norm and top-k pruning, TIES, DARE), sweep (batched grids of fine-tunings and merged models),
theory (the theorems' predictions and the estimates of beta). Experiments: images and vit (colored
digits, a small ViT), textgen and llm (unlearning a text from a causal LM), batch (the tvlib-batch
command), plots. Importing tvlib touches no network and writes no file.
"""

__version__ = "0.1.0"
