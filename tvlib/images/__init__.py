"""The paper's image experiment with offline stand-ins: colored 8x8 digits and a small ViT.

data (colored digit-parity tasks from scikit-learn's bundled digits), vit (the ViT, batched training
with torch.func.vmap, merged-model evaluation, alpha-hat), params (the chapter's ImagesParams),
experiment (pre-training, fine-tuning and alpha-hat steps on ImagesParams), calibrate (choosing the
tasks whose alpha-hat is nearest the paper's), table (one run as one row of the multi-seed table,
and the table read back), plots (the chapter's figures and its explorer).
"""
