"""The paper's one-layer Transformer and its experiments (Theorems 1-3, Corollaries 1-2).

setting (the book's sizes), data (tasks of Def. 2), model (eq. 4, batched over replicas), training
(SGD on the hinge loss), evaluation (error and accuracy), grid (batched task vectors: fine-tune many,
evaluate many merged models), sweeps (the experiments of Theorems 1-3), sparsity (the merge methods
of tvlib.vectors on toy task vectors), theory (the theorems' predictions as formulas), fits (lines, power
laws and feasible intervals fitted to arrays), measured (Theorems 1-2 measured on a sweep), ood_edges
(Theorem 3 at its edges), vector_stats (the task vectors' own shape: Corollaries 1-2), plots_model (one
model's figures), plots_sweeps (the sweeps of Theorems 1-2), plots_merging (Corollaries 1-2, merge methods).
"""
