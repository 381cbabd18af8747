"""mergekit's outputs on real-world-shaped configs, as the reference tests/test_vectors_mergekit.py compares
`tvlib merge` against (so CI needs no mergekit install).

    .venv/bin/python benchmarks/mergekit_reference.py [--mergekit-python PATH]

Builds a tiny float32 Llama (base and three fine-tuned copies, from fixed seeds: make_inputs), runs every
config of CASES through mergekit 0.1.5 in its own venv (benchmarks/_mergekit_driver.py; DARE with the
masks of benchmarks/_masks.py patched into its Bernoulli, so both tools drop the same entries), and
writes every output tensor to tests/data/mergekit_reference.safetensors, with the hash of the inputs
and mergekit's version in its metadata. mergekit's python: --mergekit-python, else
$TVLIB_MERGEKIT_PYTHON, else /tmp/mk/bin/python (create it with
`python3.11 -m venv /tmp/mk && /tmp/mk/bin/pip install torch==2.13.0 mergekit==0.1.5`; never install
mergekit into the project's venv: its pins change torch and transformers).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent / "tests" / "data" / "mergekit_reference.safetensors"
LAYERS, HIDDEN, INTER, VOCAB = 3, 16, 32, 32
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
          "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": 2,
          "num_key_value_heads": 2, "vocab_size": VOCAB, "max_position_embeddings": 32, "rms_norm_eps": 1e-6,
          "tie_word_embeddings": False, "torch_dtype": "float32", "hidden_act": "silu"}

# name -> (config with {root}, DARE masks given). The layouts people share: the base listed under
# models, top-level weight/density, normalize/int8_mask flags, filters and layer gradients.
CASES = {
    "ties_base_listed": ("""merge_method: ties
base_model: {root}/base
models:
  - model: {root}/base
  - model: {root}/ft1
    parameters: {{density: 0.5, weight: 0.5}}
  - model: {root}/ft2
    parameters: {{density: 0.5, weight: 0.5}}
parameters: {{normalize: true, int8_mask: true}}
dtype: float32
""", False),
    "ties_defaults": ("""merge_method: ties
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{weight: 0.7, density: 0.2}}
  - model: {root}/ft2
    parameters: {{weight: 0.3, density: 0.4}}
dtype: float32
""", False),
    "ties_top_level": ("""merge_method: ties
base_model: {root}/base
models:
  - model: {root}/ft1
  - model: {root}/ft2
  - model: {root}/ft3
parameters: {{weight: 1.0, density: 0.3}}
dtype: float32
""", False),
    "ties_negative_weight": ("""merge_method: ties
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{weight: 1.0, density: 0.5}}
  - model: {root}/ft2
    parameters: {{weight: -0.5, density: 0.5}}
dtype: float32
""", False),
    "ties_cancelling": ("""merge_method: ties
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{weight: 0.5}}
  - model: {root}/ft3
    parameters: {{weight: -0.5}}
parameters: {{normalize: false}}
dtype: float32
""", False),
    "ties_rescale_lambda": ("""merge_method: ties
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{weight: 0.6, density: 0.3}}
  - model: {root}/ft2
    parameters: {{weight: 0.6, density: 0.3}}
parameters: {{rescale: true, lambda: 0.8}}
dtype: float32
""", False),
    "ties_gradients_filters": ("""merge_method: ties
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters:
      weight: [{{filter: self_attn, value: [0.2, 0.8]}}, {{filter: mlp, value: 0.5}}]
      density: [0.2, 0.5, 0.9]
  - model: {root}/ft2
    parameters:
      weight: [1.0, 0.25]
parameters: {{weight: 0.3, density: 0.6}}
dtype: float32
""", False),
    "task_arithmetic": ("""merge_method: task_arithmetic
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{weight: 0.6}}
  - model: {root}/ft2
    parameters: {{weight: 0.4}}
  - model: {root}/base
parameters: {{lambda: 0.8}}
dtype: float32
""", False),
    "task_arithmetic_normalized": ("""merge_method: task_arithmetic
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{weight: [{{filter: mlp, value: 0.9}}, {{value: 0.3}}]}}
  - model: {root}/ft2
    parameters: {{weight: 0.5}}
parameters: {{normalize: true}}
dtype: float32
""", False),
    "dare_ties": ("""merge_method: dare_ties
base_model: {root}/base
models:
  - model: {root}/base
  - model: {root}/ft1
    parameters: {{density: 0.53, weight: 0.4}}
  - model: {root}/ft2
    parameters: {{density: 0.53, weight: 0.6}}
parameters: {{int8_mask: true}}
dtype: float32
""", True),
    "dare_linear": ("""merge_method: dare_linear
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{density: 0.6, weight: 0.5}}
  - model: {root}/ft2
    parameters: {{density: 0.4, weight: 0.5}}
parameters: {{normalize: true}}
dtype: float32
""", True),
    "linear_soup": ("""merge_method: linear
models:
  - model: {root}/ft1
    parameters: {{weight: 0.5}}
  - model: {root}/ft2
    parameters: {{weight: 0.3}}
  - model: {root}/ft3
    parameters: {{weight: [{{filter: mlp, value: 0.4}}, {{value: 0.2}}]}}
dtype: float32
""", False),
    "linear_unnormalized": ("""merge_method: linear
models:
  - model: {root}/ft1
    parameters: {{weight: 0.7}}
  - model: {root}/ft2
    parameters: {{weight: 0.6}}
parameters: {{normalize: false}}
dtype: float32
""", False),
    "slerp": ("""merge_method: slerp
base_model: {root}/base
models:
  - model: {root}/base
  - model: {root}/ft1
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: float32
""", False),
    "model_stock": ("""merge_method: model_stock
base_model: {root}/base
models:
  - model: {root}/ft1
  - model: {root}/ft2
  - model: {root}/ft3
dtype: float32
""", False),
    "della": ("""merge_method: della
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{weight: 0.5, density: 0.5, epsilon: 0.1}}
  - model: {root}/ft2
    parameters: {{weight: 0.5, density: 0.6}}
parameters: {{lambda: 1.1, epsilon: 0.2}}
dtype: float32
""", True),
    "della_linear": ("""merge_method: della_linear
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{weight: 0.6, density: 0.4}}
  - model: {root}/ft2
    parameters: {{weight: 0.4, density: 0.4}}
parameters: {{epsilon: 0.15}}
dtype: float32
""", True),
    "breadcrumbs": ("""merge_method: breadcrumbs
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{weight: 0.6, density: 0.8}}
  - model: {root}/ft2
    parameters: {{weight: 0.4, density: 0.7, gamma: 0.05}}
dtype: float32
""", False),
    "breadcrumbs_ties": ("""merge_method: breadcrumbs_ties
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{weight: 1.0, density: 0.9}}
  - model: {root}/ft2
    parameters: {{weight: 0.5, density: 0.8}}
parameters: {{gamma: 0.02, normalize: true}}
dtype: float32
""", False),
}


def _llama_keys() -> dict[str, tuple[int, ...]]:
    keys = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        keys.update({p + "input_layernorm.weight": (HIDDEN,), p + "post_attention_layernorm.weight": (HIDDEN,)})
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            keys[f"{p}self_attn.{m}.weight"] = (HIDDEN, HIDDEN)
        keys.update({p + "mlp.gate_proj.weight": (INTER, HIDDEN), p + "mlp.up_proj.weight": (INTER, HIDDEN),
                     p + "mlp.down_proj.weight": (HIDDEN, INTER)})
    keys.update({"model.norm.weight": (HIDDEN,), "lm_head.weight": (VOCAB, HIDDEN)})
    return keys


def make_inputs(root: str | os.PathLike) -> str:
    """Write base, ft1, ft2, ft3 under root (float32 safetensors + config.json); return the inputs' sha256.

    ft3 equals ft1 in layer 0, so a config weighting them +w and -w cancels exactly there (TIES's
    election at an exact zero sum); elsewhere each fine-tune adds noise of its own scale."""
    from safetensors.torch import save_file

    root = Path(root)
    gen = torch.Generator().manual_seed(0)
    base = {k: torch.randn(s, generator=gen) * (1.0 if len(s) == 1 else 0.1) for k, s in _llama_keys().items()}
    models = {"base": base}
    for j, scale in ((1, 0.02), (2, 0.03), (3, 0.025)):
        models[f"ft{j}"] = {k: v + scale * torch.randn(v.shape, generator=gen) for k, v in base.items()}
    for k in base:
        if k.startswith("model.layers.0."):
            models["ft3"][k] = models["ft1"][k].clone()
    digest = hashlib.sha256()
    for name, sd in models.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        save_file(sd, str(root / name / "model.safetensors"), metadata={"format": "pt"})
        (root / name / "config.json").write_text(json.dumps(CONFIG, indent=1) + "\n")
        for k in sorted(sd):
            digest.update(k.encode() + sd[k].numpy().tobytes())
    return digest.hexdigest()


def find_mergekit(arg: str | None) -> str | None:
    for cand in (arg, os.environ.get("TVLIB_MERGEKIT_PYTHON"), "/tmp/mk/bin/python"):
        if cand and Path(cand).exists() and subprocess.run([cand, "-c", "import mergekit"],
                                                           capture_output=True).returncode == 0:
            return cand
    return None


def run_mergekit(python: str, root: Path, case: str, out: Path) -> dict[str, torch.Tensor]:
    """mergekit's output for one case (its tensors, float32)."""
    from safetensors.torch import load_file

    text, masks = CASES[case]
    cfg = root / f"{case}.yaml"
    cfg.write_text(text.format(root=root))
    cmd = [python, str(HERE / "_mergekit_driver.py"), str(cfg), str(out)] + (["--hashed-masks"] if masks else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"mergekit failed on {case}:\n{done.stderr[-3000:]}")
    tensors = {}
    for f in sorted(out.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def main() -> None:
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mergekit-python")
    args = parser.parse_args()
    python = find_mergekit(args.mergekit_python)
    if python is None:
        sys.exit("no python with mergekit found: see this script's docstring")
    version = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('mergekit'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        digest = make_inputs(root)
        out = {}
        for case in CASES:
            for k, v in run_mergekit(python, root, case, root / f"out-{case}").items():
                out[f"{case}/{k}"] = v.float().contiguous()
            print(f"{case}: done")
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(REFERENCE), metadata={"inputs_sha256": digest, "mergekit": version,
                                             "torch": torch.__version__, "cases": ",".join(CASES)})
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size:,} bytes): mergekit {version}, inputs {digest[:12]}")


if __name__ == "__main__":
    main()
