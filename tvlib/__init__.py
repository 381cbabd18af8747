"""tvlib: task vectors for the one-layer Transformer of Li et al. (ICLR 2025) and for real checkpoints.

Modules: data (tasks of Def. 2), model (eq. 4), training (SGD on the hinge loss),
evaluation (error, accuracy, alpha-hat), task_vector (arithmetic on any state dict), setting
(the book's default sizes). Importing tvlib touches no network and writes no file.
"""

__version__ = "0.1.0"
