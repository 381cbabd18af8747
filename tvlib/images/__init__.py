"""The paper's image experiment with offline stand-ins: colored 8x8 digits and a small ViT.

data (colored digit-parity tasks from scikit-learn's bundled digits), vit (the ViT, batched training
with torch.func.vmap, merged-model evaluation, alpha-hat).
"""
