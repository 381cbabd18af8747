"""Run mergekit's run_merge on a YAML config inside mergekit's own venv; with --hashed-masks, DARE's and
DELLA's Bernoulli masks are replaced by benchmarks/_masks.hashed_keep (the masks tvlib is given too).

    <mergekit venv>/bin/python benchmarks/_mergekit_driver.py CONFIG OUT [--hashed-masks]
"""

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    config, out = sys.argv[1], sys.argv[2]
    from mergekit import sparsify
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    if "--hashed-masks" in sys.argv:
        from _masks import hashed_keep

        def bernoulli(tensor, density, rescale_norm=None):
            if density >= 1:
                return tensor
            mask = hashed_keep(tensor, density).to(tensor.dtype)
            return sparsify.rescaled_masked_tensor(tensor, mask, rescale_norm)

        sparsify.bernoulli = bernoulli
        current = {}
        della_magprune, real_torch = sparsify.della_magprune, sparsify.torch

        def della(tensor, density, epsilon, rescale_norm=None):
            current["delta"] = tensor  # its torch.bernoulli(probs) draws from the hash of this delta
            try:
                return della_magprune(tensor, density, epsilon, rescale_norm)
            finally:
                current.clear()

        class HashedTorch:
            def __getattr__(self, name):
                return getattr(real_torch, name)

            @staticmethod
            def bernoulli(probs):
                d = current["delta"]
                return hashed_keep(d, probs.reshape(d.shape)).to(probs.dtype).reshape(probs.shape)

        sparsify.della_magprune = della
        sparsify.torch = HashedTorch()
    cfg = MergeConfiguration.model_validate(yaml.safe_load(Path(config).read_text()))
    run_merge(cfg, out, options=MergeOptions(quiet=True))


if __name__ == "__main__":
    main()
