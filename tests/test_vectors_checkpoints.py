"""Checkpoints in and out, the streaming engine, `tvlib merge` and its config, on tiny Llamas built offline."""

import math
import json
import os

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from tvlib.vectors import (
    NonFiniteError,
    Recipe,
    StateDictMismatch,
    TaskVector,
    load_state_dict,
    merge,
    merge_checkpoints,
)
from tvlib.vectors.checkpoint import open_checkpoint, save_state_dict
from tvlib.vectors.cli import main
from tvlib.vectors.config import parse_config
from tvlib.vectors.engine import plan_merge
from tvlib.vectors.methods import run_recipe


def config(layers: int = 2, tie: bool = True):
    return transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                    num_attention_heads=4, num_key_value_heads=4, vocab_size=96,
                                    max_position_embeddings=64, tie_word_embeddings=tie)


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(["task vectors add and negate"] * 20, trainers.BpeTrainer(vocab_size=96, special_tokens=["<unk>"]))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def perturbed(base, seed: int, scale: float = 0.02):
    model = transformers.LlamaForCausalLM(base.config).to(base.dtype)
    model.load_state_dict(base.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p += (scale * torch.randn(p.shape, generator=gen)).to(p.dtype)
    return model


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """base (tied, bf16, sharded, with a tokenizer) and two fine-tuned copies."""
    root = tmp_path_factory.mktemp("llama")
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(config()).to(torch.bfloat16).eval()
    base.save_pretrained(root / "base", max_shard_size="40KB")
    tokenizer().save_pretrained(root / "base")
    for i in (1, 2):
        perturbed(base, i).save_pretrained(root / f"ft{i}")
    return root, base


def models(root):
    return [root / "ft1", root / "ft2"]


def test_reads_directories_files_shards_and_refuses_a_missing_hub_id(ckpts, monkeypatch):
    root, base = ckpts
    assert len(list((root / "base").glob("model-*.safetensors"))) > 1  # sharded, with an index
    sd = load_state_dict(root / "base")
    ref = base.state_dict()
    assert set(sd) == set(ref) - {"lm_head.weight"}  # the tied weight is saved once
    assert all(torch.equal(sd[k], ref[k]) for k in sd)
    one = open_checkpoint(root / "ft1" / "model.safetensors")
    assert torch.equal(one.read("model.norm.weight"), load_state_dict(root / "ft1")["model.norm.weight"])
    part = one.read("model.embed_tokens.weight", part=(10, 50))
    assert torch.equal(part, load_state_dict(root / "ft1")["model.embed_tokens.weight"].reshape(-1)[10:50])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="not fetched as a Hugging Face id"):
        open_checkpoint("no-such-org/no-such-model")
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_checkpoint(root / "nothing" / "here")


def test_merged_directory_loads_with_from_pretrained_and_matches_the_in_memory_merge(ckpts, tmp_path):
    root, base = ckpts
    out = tmp_path / "merged"
    summary = merge_checkpoints(root / "base", models(root), Recipe("task_arithmetic", [0.7, -0.4]), out)
    files = sorted(os.listdir(out))
    assert "config.json" in files and "tokenizer.json" in files and "generation_config.json" in files
    assert summary["merged"] == len(load_state_dict(root / "base"))
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert model.dtype == torch.bfloat16 and model.lm_head.weight is model.model.embed_tokens.weight
    tvs = [TaskVector.from_models(base, root / f"ft{i}") for i in (1, 2)]
    ref = merge(base, tvs, [0.7, -0.4])
    got = model.state_dict()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    expected = transformers.AutoModelForCausalLM.from_pretrained(root / "base").eval()
    expected.load_state_dict(ref)
    ids = torch.arange(12)[None]
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, expected(input_ids=ids).logits)
    assert transformers.AutoTokenizer.from_pretrained(out)("task vectors")["input_ids"]


RECIPES = [
    Recipe("task_arithmetic", [0.7, 0.5], normalize="weights"),
    Recipe("ties", [0.7, 0.5], [0.2, 0.3]),
    Recipe("ties", [0.7, -0.5], [0.2, 0.2], scope="tensor", normalize="weights", rounding="floor"),
    Recipe("magnitude", [1.0, 1.0], [0.1, 0.1]),
    Recipe("dare", [0.7, 0.5], [0.5, 0.5], seed=3),
    Recipe("dare_ties", [0.7, 0.5], [0.5, 0.5], rescale="l1"),
    Recipe("della", [0.7, 0.5], [0.5, 0.4], rescale="l1", normalize="signed_weights", options={"epsilon": [0.1, 0.2]}),
    Recipe("della_linear", [0.7, 0.5], [0.5, 0.5], seed=2),
    Recipe("breadcrumbs", [0.7, 0.5], [0.8, 0.6], options={"gamma": [0.05, 0.1]}),
    Recipe("breadcrumbs_ties", [0.7, -0.5], [0.9, 0.3], options={"gamma": 0.02}, zero_sum="plus"),
    Recipe("rows", [1.0, 1.0], [0.5, 0.5]),
    Recipe("low_rank", [1.0, 1.0], rank=2, lam=[("mlp", 0.5), (None, 1.0)]),
    Recipe("task_arithmetic", [[("self_attn", 0.2), (None, 1.0)], 1.0], exclude=["*norm*"]),
]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.method)
def test_streaming_equals_in_memory_for_every_method(ckpts, tmp_path, recipe):
    root, base = ckpts
    merge_checkpoints(root / "base", models(root), recipe, tmp_path / "a", chunk=333)  # tensors in pieces
    tvs = [TaskVector.from_models(base, root / f"ft{i}") for i in (1, 2)]
    ref = run_recipe(recipe, tvs).apply_to(base)
    got = load_state_dict(tmp_path / "a")
    tol = 1e-2 if recipe.method == "low_rank" else 0  # an SVD's last bits depend on the thread count
    for k in got:
        torch.testing.assert_close(got[k].float(), ref[k].float(), rtol=0, atol=tol)


@pytest.mark.parametrize("recipe", [Recipe("linear", [0.5, 0.3, 0.2]), Recipe("slerp", [1.0], options={"t": (0.2, 0.9)}),
                                    Recipe("model_stock", [1.0, 1.0, 1.0])], ids=lambda r: r.method)
def test_whole_model_methods_give_the_same_model_in_pieces(ckpts, tmp_path, recipe):
    root, base = ckpts
    perturbed(base, 7).save_pretrained(tmp_path / "ft3")
    models_ = [root / "ft1", root / "ft2", tmp_path / "ft3"][:len(recipe.weights)]
    ref = root / "ft1" if recipe.method == "linear" else root / "base"
    merge_checkpoints(ref, models_, recipe, tmp_path / "whole", dtype=torch.float32)
    merge_checkpoints(ref, models_, recipe, tmp_path / "pieces", dtype=torch.float32, chunk=333)
    whole, pieces = load_state_dict(tmp_path / "whole"), load_state_dict(tmp_path / "pieces")
    assert not torch.equal(whole["model.layers.0.mlp.up_proj.weight"],
                           load_state_dict(root / "base")["model.layers.0.mlp.up_proj.weight"].float())
    for k in whole:
        torch.testing.assert_close(pieces[k], whole[k], rtol=1e-6, atol=1e-7)  # sums in another order


def test_failed_merge_leaves_nothing_and_keeps_an_existing_output(ckpts, tmp_path):
    root, _base = ckpts
    bad = tmp_path / "bad"
    sd = {k: v.clone() for k, v in load_state_dict(root / "ft1").items()}
    sd["model.layers.1.mlp.up_proj.weight"][0, 0] = float("nan")
    save_state_dict(sd, bad, like=root / "ft1")
    out = tmp_path / "out"
    merge_checkpoints(root / "base", models(root), Recipe("task_arithmetic", [1.0, 1.0]), out)
    before = load_state_dict(out)
    with pytest.raises(NonFiniteError, match=r"model 1 .*bad.*model\.layers\.1\.mlp\.up_proj\.weight holds NaN"):
        merge_checkpoints(root / "base", [root / "ft1", bad], Recipe("task_arithmetic", [1.0, 1.0]), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "out"]  # no temporary left
    after = load_state_dict(out)
    assert all(torch.equal(before[k], after[k]) for k in before)  # the old output is intact
    merge_checkpoints(root / "base", [root / "ft1", bad], Recipe("task_arithmetic", [1.0, 1.0]), tmp_path / "nan",
                      allow_nonfinite=True)
    assert torch.isnan(load_state_dict(tmp_path / "nan")["model.layers.1.mlp.up_proj.weight"]).any()


def test_key_shape_and_layer_count_mismatches_name_the_keys(ckpts, tmp_path):
    root, _base = ckpts
    deeper = transformers.LlamaForCausalLM(config(layers=3)).to(torch.bfloat16)
    deeper.save_pretrained(tmp_path / "deeper")
    with pytest.raises(StateDictMismatch, match=r"model\.layers\.2\.mlp\.up_proj\.weight: only in model 0"):
        merge_checkpoints(root / "base", [tmp_path / "deeper"], Recipe("task_arithmetic", [1.0]), tmp_path / "o")
    with pytest.raises(StateDictMismatch, match=r"model\.layers\.2\.self_attn\.q_proj\.weight: only in base"):
        merge_checkpoints(tmp_path / "deeper", [root / "ft1"], Recipe("task_arithmetic", [1.0]), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_fp16_overflow_is_reported_by_key(ckpts, tmp_path):
    root, _ = ckpts
    with pytest.raises(NonFiniteError, match="overflows to inf"):
        merge_checkpoints(root / "base", models(root), Recipe("task_arithmetic", [1e7, 1e7]), tmp_path / "o",
                          dtype=torch.float16)
    assert not (tmp_path / "o").exists()


def write_config(path, root, text):
    path.write_text(text.format(root=root))
    return path


MERGEKIT_STYLE = """merge_method: ties
base_model: {root}/base
models:
  - model: {root}/ft1
    parameters: {{weight: 0.7, density: 0.2}}
  - model: {root}/ft2
    parameters:
      weight: [{{filter: mlp, value: 0.3}}, {{value: 0.5}}]
      density: 0.2
parameters: {{normalize: true, int8_mask: true, scope: tensor}}
dtype: float32
exclude: ["*norm*"]
"""


def test_command_merges_and_dry_run_reports(ckpts, tmp_path, capsys):
    root, _base = ckpts
    cfg = write_config(tmp_path / "merge.yaml", root, MERGEKIT_STYLE)
    assert main(["merge", str(cfg), str(tmp_path / "out"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    for needed in ("ties of 2 model(s)", "model 0 weight 0.7, density 0.2", "normalize=signed_weights",
                   "scope=tensor", "rounding=mergekit", "zero_sum=plus", "copied from the base",
                   "estimated peak memory", "nothing written"):
        assert needed in text, needed
    assert not (tmp_path / "out").exists()
    assert main(["merge", str(cfg), str(tmp_path / "out")]) == 0
    got = load_state_dict(tmp_path / "out")
    assert got["model.layers.0.mlp.up_proj.weight"].dtype == torch.float32
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "float32"
    assert "merge_method: ties" in (tmp_path / "out" / "tvlib_merge.yaml").read_text()
    card = (tmp_path / "out" / "README.md").read_text()  # a model card: metadata, inputs, method, config
    assert card.startswith("---\nbase_model: ") and "- merge" in card and "by **ties**" in card
    assert f"`{root}/ft1`: weight 0.7, density 0.2" in card and "merge_method: ties" in card
    ref = load_state_dict(root / "base")
    assert torch.equal(got["model.norm.weight"], ref["model.norm.weight"].float())  # excluded: the base's


@pytest.mark.parametrize("bad, message", [
    ({"slices": [], "models": None}, "slices: tvlib reads one slice"),
    ({"slices": [{"sources": [{"model": "m", "layer_range": [4, 8]}]}], "models": None}, "frankenmerges"),
    ({"colour": 1}, "unknown config keys"),
    ({"merge_method": "frankenmerge"}, "merge_method='frankenmerge'"),
    ({"parameters": {"normalize": "mean"}}, "normalize='mean'"),
    ({"parameters": {"lambda": float("nan")}}, "lambda"),
])
def test_config_errors_are_clear(bad, message):
    cfg = {"merge_method": "ties", "base_model": "b", "models": [{"model": "m", "parameters": {"weight": 1, "density": 0.2}}],
           **bad}
    with pytest.raises((ValueError, TypeError), match=message):
        parse_config(cfg)


def test_command_reports_errors_without_a_traceback(ckpts, tmp_path, capsys):
    root, _ = ckpts
    cfg = write_config(tmp_path / "c.yaml", root, "merge_method: ties\nbase_model: {root}/base\nmodels: []\n")
    assert main(["merge", str(cfg), str(tmp_path / "o")]) == 2
    assert "tvlib merge: error: models" in capsys.readouterr().err


def test_plan_drops_an_untied_copy_of_a_tied_embedding(tmp_path):
    torch.manual_seed(1)
    model = transformers.LlamaForCausalLM(config())
    sd = {k: v.clone() for k, v in model.state_dict().items()}  # lm_head saved as its own tensor
    save_state_dict(sd, tmp_path / "base")
    model.config.save_pretrained(tmp_path / "base")
    save_state_dict(sd, tmp_path / "ft")
    plan = plan_merge(tmp_path / "base", [tmp_path / "ft"], Recipe("task_arithmetic", [1.0]))
    assert "lm_head.weight" in plan.dropped and "lm_head.weight" not in plan.dtypes


def test_a_float32_fine_tune_of_a_bfloat16_base_merges_through_the_command_and_dry_run(ckpts, tmp_path, capsys):
    """The default output of many training scripts: the base in bf16, the fine-tune saved in float32."""
    root, base = ckpts
    ft32 = perturbed(base, 5).float()
    ft32.save_pretrained(tmp_path / "ft32")
    assert open_checkpoint(tmp_path / "ft32").infos["model.norm.weight"].dtype == torch.float32
    cfg = tmp_path / "mixed.yaml"
    cfg.write_text(f"merge_method: task_arithmetic\nbase_model: {root}/base\nmodels:\n"
                   f"  - model: {tmp_path}/ft32\n    parameters: {{weight: 0.5}}\n"
                   f"  - model: {root}/ft1\n    parameters: {{weight: 0.5}}\n")
    assert main(["merge", str(cfg), str(tmp_path / "out"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "model 0" in text and "float32" in text and "bfloat16" in text  # the dtypes are reported
    assert main(["merge", str(cfg), str(tmp_path / "out")]) == 0
    got = load_state_dict(tmp_path / "out")
    b, f32, f1 = (load_state_dict(p) for p in (root / "base", tmp_path / "ft32", root / "ft1"))
    for k in got:
        assert got[k].dtype == b[k].dtype  # the output keeps the base's dtype unless told otherwise
        expected = (b[k].float() + 0.5 * (f32[k].float() - b[k].float()) + 0.5 * (f1[k].float() - b[k].float()))
        torch.testing.assert_close(got[k].float(), expected.to(got[k].dtype).float(), rtol=0, atol=0)
    # and the other way round: a bf16 fine-tune of a float32 base, in pieces
    save_state_dict({k: v.float() for k, v in b.items()}, tmp_path / "base32", like=root / "base")
    merge_checkpoints(tmp_path / "base32", [root / "ft1"], Recipe("ties", [1.0], [0.3]), tmp_path / "o2", chunk=333)
    assert load_state_dict(tmp_path / "o2")["model.norm.weight"].dtype == torch.float32


# ---------------------------------------------------------------------------- output safety


def ta_config(tmp_path, root):
    return write_config(tmp_path / "ta.yaml", root, "merge_method: task_arithmetic\nbase_model: {root}/base\n"
                        "models:\n  - model: {root}/ft1\n    parameters: {{weight: 0.5}}\n")


def test_an_input_or_a_foreign_non_empty_folder_is_not_replaced_without_force(ckpts, tmp_path, capsys):
    root, _ = ckpts
    cfg = ta_config(tmp_path, root)
    before = sorted(os.listdir(root / "ft1"))
    for args in ([], ["--dry-run"]):
        assert main(["merge", str(cfg), str(root / "ft1"), *args]) == 2  # an input model
        assert "is (or holds) the input model" in capsys.readouterr().err
    assert sorted(os.listdir(root / "ft1")) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["merge", str(cfg), str(mine)]) == 2
    assert "non-empty folder that is not a tvlib merge output" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me"
    assert main(["merge", str(cfg), str(mine), "--force"]) == 0
    assert not (mine / "notes.txt").exists() and (mine / "tvlib_merge.json").is_file()
    assert main(["merge", str(cfg), str(mine)]) == 0  # an earlier tvlib output is replaced
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["merge", str(cfg), str(empty)]) == 0


def test_an_unwritable_output_fails_before_any_weight_is_read(ckpts, tmp_path, capsys, monkeypatch):
    from tvlib.vectors.checkpoint import Checkpoint

    root, _ = ckpts
    cfg = ta_config(tmp_path, root)
    (tmp_path / "afile").write_text("x")

    def no_reading(*args, **kwargs):
        raise AssertionError("a weight was read")

    monkeypatch.setattr(Checkpoint, "read", no_reading)
    for out, message in ((tmp_path / "afile", "is a file: expected a directory"),
                         (tmp_path / "afile" / "out", "is a file, not a directory")):
        for args in ([], ["--dry-run"]):
            assert main(["merge", str(cfg), str(out), *args]) == 2
            err = capsys.readouterr().err
            assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        assert main(["merge", str(cfg), str(locked / "out")]) == 2
        assert "is not writable" in capsys.readouterr().err
        locked.chmod(0o700)


def test_os_errors_are_one_line_and_exit_2(ckpts, tmp_path, capsys, monkeypatch):
    import errno

    from tvlib.vectors import checkpoint

    root, _ = ckpts
    cfg = ta_config(tmp_path, root)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out"))

    monkeypatch.setattr(checkpoint.ShardWriter, "write", full)
    assert main(["merge", str(cfg), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"tvlib merge: error: No space left on device: {tmp_path / 'out'}"
    assert not any(p.name.startswith(".out.") for p in tmp_path.iterdir())  # the temporary is gone


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_output_permissions_follow_the_umask(ckpts, tmp_path, mask):
    root, _ = ckpts
    old = os.umask(mask)
    try:
        merge_checkpoints(root / "base", [root / "ft1"], Recipe("task_arithmetic", [1.0]), tmp_path / "out")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~mask
    for p in (tmp_path / "out").iterdir():
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask, p.name


def test_sigterm_removes_the_partial_output_and_stale_temporaries_are_swept(ckpts, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    root, _ = ckpts
    cfg = ta_config(tmp_path, root)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.{int(dead.stdout)}.abcd.tmp"  # left by a SIGKILLed merge
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    slow = ("import sys, time; from tvlib.vectors import checkpoint as c; w = c.ShardWriter.write\n"
            "def slow(*a, **k):\n    time.sleep(0.2); return w(*a, **k)\n"
            "c.ShardWriter.write = slow\nfrom tvlib.vectors.cli import main\nsys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", slow, "merge", str(cfg), str(tmp_path / "out")],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not any(p.name.startswith(f".out.{proc.pid}.") for p in tmp_path.iterdir()):
        assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.05)
    assert not stale.exists()  # swept when the new merge began: its process no longer runs
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ta.yaml"]  # no output, no temporary


def test_the_progress_bar_counts_every_byte_written(ckpts, tmp_path, monkeypatch):
    from tvlib.vectors import engine

    seen = {}

    class Bar:
        def __init__(self, total, name):
            seen.update(total=total, done=0, closed=False)

        def update(self, n):
            seen["done"] += n

        def close(self):
            seen["closed"] = True

    monkeypatch.setattr(engine, "_progress", Bar)
    root, _ = ckpts
    summary = merge_checkpoints(root / "base", models(root), Recipe("ties", [1.0, 1.0], [0.5, 0.5]), tmp_path / "o",
                                progress=True)
    assert seen == {"total": summary["bytes"], "done": summary["bytes"], "closed": True}


def test_inspect_reports_cosines_ranks_and_the_theorems_lambda_ranges(tmp_path, capsys):
    """Vectors built with known cosines: tau_1 = tau_0 (aligned, cos 1), tau_2 = -tau_0 (contradictory),
    tau_3 orthogonal in every tensor (irrelevant); one rank-1 matrix with a single non-zero row."""
    from tvlib.vectors.inspection import inspect_checkpoints, lambda_guidance

    gen = torch.Generator().manual_seed(0)
    base = {"model.layers.0.mlp.weight": torch.randn(8, 6, generator=gen),
            "model.layers.1.mlp.weight": torch.randn(8, 6, generator=gen), "lm_head.weight": torch.randn(5, 6, generator=gen)}
    tau = {k: 0.1 * torch.randn(v.shape, generator=gen) for k, v in base.items()}
    tau["model.layers.1.mlp.weight"] = torch.zeros(8, 6)
    tau["model.layers.1.mlp.weight"][3] = torch.arange(6.0)  # rank 1, one row
    ortho = {k: torch.where(torch.arange(v.numel()).reshape(v.shape) % 2 == 0, 0.0, 1.0) for k, v in base.items()}
    tau = {k: v * (1 - ortho[k]) for k, v in tau.items()}  # tau lives on even entries, tau_3 on odd ones
    for name, sd in (("base", base), ("ft0", {k: base[k] + tau[k] for k in base}),
                     ("ft1", {k: base[k] + tau[k] for k in base}), ("ft2", {k: base[k] - 2 * tau[k] for k in base}),
                     ("ft3", {k: base[k] + 0.1 * ortho[k] for k in base})):
        save_state_dict(sd, tmp_path / name)
    got = inspect_checkpoints(tmp_path / "base", [tmp_path / f"ft{i}" for i in range(4)])
    assert got.cosine(0, 1) == pytest.approx(1.0) and got.cosine(0, 2) == pytest.approx(-1.0)
    assert got.cosine(0, 3) == pytest.approx(0.0, abs=1e-12)
    assert got.total.sq[2] == pytest.approx(4 * got.total.sq[0])
    assert set(got.layers) == {"layer 0", "layer 1", "other"}
    assert lambda_guidance(0.4, 0, 1)[1].endswith("about 0.60 or a little more")
    assert "no lambda learns both" in lambda_guidance(-0.5, 0, 1)[1]
    assert "about -4" in lambda_guidance(-0.5, 0, 1)[2]
    from tvlib.vectors.inspection import lambda_range

    assert lambda_range(0.0, "add") == (1.0, math.inf) and lambda_range(0.4, "add") == pytest.approx((0.6, math.inf))
    assert lambda_range(-0.5, "add") is None and lambda_range(0.4, "negate") is None
    assert lambda_range(-0.5, "negate") == (-4.0, 0.0) and lambda_range(0.01, "negate") == (-math.inf, 0.0)
    with pytest.raises(ValueError, match="'add' or 'negate'"):
        lambda_range(0.1, "forget")
    assert main(["inspect", str(tmp_path / "base"), str(tmp_path / "ft0"), str(tmp_path / "ft3")]) == 0
    text = capsys.readouterr().out
    assert "irrelevant tasks (alpha ~ 0)" in text and "theory-based guidance" in text and "assumptions:" in text
    assert "cos(0,1)" in text and "layer 1" in text
    one_row = inspect_checkpoints(tmp_path / "base", [tmp_path / "ft0"]).total
    assert min(one_row.rows[0]) == pytest.approx(1 / 8)  # layer 1's matrix: one row of eight holds it all
    assert min(one_row.ranks[0]) == pytest.approx(1.0, abs=1e-4)


def test_seeded_dare_masks_are_the_same_whole_or_in_pieces():
    from tvlib.vectors.recipe import MASK_BLOCK, seeded_masks

    masks = seeded_masks(7)
    n = 2 * MASK_BLOCK + 12345
    whole = masks(1, "model.embed_tokens.weight", torch.zeros(n), 0.3)
    cuts = [0, 1000, MASK_BLOCK - 5, MASK_BLOCK + 7, 2 * MASK_BLOCK + 100, n]
    pieces = [masks(1, "model.embed_tokens.weight", torch.zeros(b - a), 0.3, a) for a, b in zip(cuts, cuts[1:])]
    assert torch.equal(whole, torch.cat(pieces))
    assert abs(float(whole.float().mean()) - 0.7) < 0.005  # keeps 1 - p
    assert not torch.equal(whole, masks(2, "model.embed_tokens.weight", torch.zeros(n), 0.3))  # per vector
