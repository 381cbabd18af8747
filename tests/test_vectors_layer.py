"""tvlib.vectors is the ground floor: importing it pulls in nothing else of tvlib, no pandas and no
Hugging Face library (those load on first use)."""

import subprocess
import sys

FORBIDDEN = ("tvlib.toy", "tvlib.images", "tvlib.lm", "tvlib.batch", "tvlib.style", "pandas", "transformers",
             "peft", "safetensors", "yaml", "huggingface_hub", "matplotlib")


def test_import_pulls_in_nothing_above_it():
    code = "import sys, tvlib.vectors; print('\\n'.join(sorted(sys.modules)))"
    mods = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    bad = [m for m in mods if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"import tvlib.vectors loaded {bad}"
    ours = {m for m in mods if m.startswith("tvlib.") and not m.startswith("tvlib.vectors.merge_methods.")}
    assert ours <= {f"tvlib.vectors.{m}" for m in
                    ("device", "io", "kernels", "methods", "recipe", "statedict", "task_vector", "merge_methods")} | {"tvlib.vectors"}


def test_lazy_names_and_the_command_import_on_use():
    code = ("import sys, tvlib.vectors as v; v.merge_checkpoints; v.load_state_dict; import tvlib.vectors.cli; "
            "print('pandas' in sys.modules, 'tvlib.toy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
