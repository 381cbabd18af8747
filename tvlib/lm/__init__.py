"""The paper's language-model experiment: unlearning a text from a causal LM by negating its task vector.

texts (generated licence-clean stand-in texts), params (UnlearningParams), hf (tokenizer, Phi configs,
fine-tuning with the Trainer and peft), metrics (Rouge-L, token loss, alpha-hat), controls (embedding
split, norm-matched random vector), experiment (one run of the pipeline), study (the multi-seed table:
derived measures, summaries and verdicts), plots (its figures). The public names of texts, params,
hf, metrics, controls and experiment are importable from tvlib.lm.
"""

from .controls import (
    EMBEDDING_NAMES,
    embedding_share,
    is_embedding,
    norm_matched_random,
    restrict,
    split,
)
from .experiment import (
    MATCHED,
    OTHERS,
    ROUGE_ALONG_GRID,
    VECTORS,
    Experiment,
    load_model,
    load_texts,
    make_eval_sets,
    matched_step,
    measure_alpha,
    prepare,
    run_metrics,
    run_unlearning,
    sweep,
    task_vectors,
    train_base,
)
from .hf import (
    PHI_EMBEDDINGS,
    PHI_LINEARS,
    chunk,
    finetune_full,
    finetune_lora,
    phi15_config,
    tiny_config,
    train_lm,
    train_tokenizer,
)
from .metrics import (
    EvalSet,
    draw_prompts,
    evaluate,
    mean_nll,
    output_alpha_hat,
    relative_drop,
    rouge_l,
    rouge_l_f1,
)
from .params import PHI15_SHAPED, TEXTS, TINY, UnlearningParams
from .texts import borrow_words, make_texts, ngram_overlap

__all__ = [
    "TEXTS", "TINY", "PHI15_SHAPED", "PHI_LINEARS", "PHI_EMBEDDINGS", "VECTORS", "ROUGE_ALONG_GRID", "OTHERS",
    "UnlearningParams", "load_texts", "train_tokenizer", "tiny_config", "phi15_config", "load_model", "chunk",
    "train_lm", "finetune_full", "finetune_lora", "draw_prompts", "EvalSet", "make_eval_sets", "rouge_l_f1",
    "rouge_l", "mean_nll", "evaluate", "output_alpha_hat", "relative_drop", "EMBEDDING_NAMES", "is_embedding",
    "restrict", "split", "embedding_share", "norm_matched_random", "Experiment", "prepare", "train_base",
    "task_vectors", "measure_alpha", "sweep", "MATCHED", "matched_step", "run_metrics", "run_unlearning", "make_texts", "borrow_words",
    "ngram_overlap",
]
