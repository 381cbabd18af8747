"""Task arithmetic on a genuinely pre-trained Transformer: all-MiniLM-L6-v2 and generated sentence tasks.

Modules: load (the shipped weights found without importing their package, hash-checked, loaded with
transformers; or any BERT-class encoder), texts (the task generator and its word lists), params (the
chapter's parameters), model (classifier with a fixed head, full and LoRA fine-tuning, merged-model
outputs), experiment (one run of the chapter) and corollaries (low-rank and row-sparse task vectors).
"""
