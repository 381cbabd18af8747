"""The paper's language-model experiment: unlearning a text from a causal LM by negating its task vector.

texts (generated licence-clean stand-in texts), params (UnlearningParams), hf (tokenizer, tiny Phi,
fine-tuning with the Trainer and peft), metrics (Rouge-L, token loss, alpha-hat), experiment (the
pipeline and its tables). The public names of all of them are importable from tvlib.lm.
"""

from .experiment import (
    Experiment,
    compare_table,
    forget_vectors,
    load_model,
    load_texts,
    make_eval_sets,
    measure_alpha,
    prepare,
    results_table,
    run_unlearning,
    save_results,
    summarize,
    sweep,
    train_base,
)
from .hf import (
    PHI_LINEARS,
    chunk,
    finetune_full,
    finetune_lora,
    tiny_config,
    train_lm,
    train_tokenizer,
)
from .metrics import (
    EvalSet,
    draw_prompts,
    mean_nll,
    negation_sweep,
    output_alpha_hat,
    relative_drop,
    rouge_l,
)
from .params import TEXTS, TINY, UnlearningParams
from .texts import make_texts, ngram_overlap

__all__ = [
    "TEXTS", "TINY", "PHI_LINEARS", "UnlearningParams", "load_texts", "train_tokenizer", "tiny_config", "load_model",
    "chunk", "train_lm", "finetune_full", "finetune_lora", "draw_prompts", "EvalSet", "make_eval_sets", "rouge_l",
    "mean_nll", "output_alpha_hat", "negation_sweep", "relative_drop", "results_table", "compare_table",
    "Experiment", "prepare", "train_base", "forget_vectors", "measure_alpha", "sweep", "summarize",
    "save_results", "run_unlearning", "make_texts", "ngram_overlap",
]
