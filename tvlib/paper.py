"""Every number the paper reports (Li et al., ICLR 2025), once; chapters compare against these.

Plain Python data, no imports: Table 1 and the task correlations of the Colored-MNIST experiment,
Table 2 (out-of-domain), and the Phi-1.5 unlearning tables. Section numbers refer to the paper.
"""

from __future__ import annotations

# ------------------------------------------------------------------ Colored-MNIST (Section 6, image)

#: measured alpha-hat of the three task relations (mean output cosine of the fine-tuned models)
IMAGE_ALPHA_HAT = {"irrelevant": 0.164, "aligned": 0.891, "contradictory": -0.849}

#: Table 1: (relation, goal) -> (best lambda on a 0.2 grid, T1 accuracy %, T2 accuracy %),
#: for Psi = Psi0 + dPsi_T1 + lambda dPsi_T2; goal "add" or "negate"
TABLE1 = {
    ("irrelevant", "add"): (1.4, 91.83, 88.40),
    ("irrelevant", "negate"): (-0.6, 95.02, 50.34),
    ("aligned", "add"): (0.2, 95.62, 92.46),
    ("aligned", "negate"): (0.0, 95.20, 90.51),
    ("contradictory", "add"): (0.6, 79.54, 62.52),
    ("contradictory", "negate"): (-1.0, 94.21, 4.97),
}

#: Table 2 (out-of-domain): red fractions among odd digits of T1, T2 and the target T'
OOD_R_ODD = {"T1": 0.85, "T2": 0.05, "target": 0.9}
#: estimated gamma of the target, mu_T' = gamma_1 mu_T1 + gamma_2 mu_T2 + kappa mu'_perp
OOD_GAMMA = (0.792, -0.637)
#: the searched grid lambda_i in {-2, -1.8, ..., 3} and the best pair on it
OOD_LAM_GRID = (-2.0, 3.0, 0.2)
OOD_BEST_LAM = (1.2, -0.6)
#: accuracy % on T': the best merge, fine-tuning on T' directly, Psi*_T1 and Psi*_T2
OOD_ACCURACY = {"merged": 91.74, "finetuned_target": 92.21, "T1": 88.10, "T2": 45.06}

# ------------------------------------------------------------------ Phi-1.5 unlearning (Section 6, language)

#: the lambda grid of Tables 3 and 4, Psi = Psi0' + lambda dPsi_HP1
UNLEARNING_LAMS = (0.0, -0.2, -0.4, -0.6, -0.8, -1.0)
#: Rouge-L of generated continuations: "full" (full-rank task vector) and "lora"; texts by role
UNLEARNING_ROUGE_L = {
    "full": {"forget": (0.2213, 0.2211, 0.1732, 0.1866, 0.1572, 0.1389),
             "aligned": (0.2302, 0.2032, 0.2111, 0.2034, 0.1695, 0.1503),
             "less_aligned": (0.1983, 0.1888, 0.1877, 0.1802, 0.1932, 0.1683)},
    "lora": {"forget": (0.2432, 0.2033, 0.1857, 0.1665, 0.1439, 0.1568),
             "aligned": (0.2335, 0.1932, 0.2065, 0.1813, 0.1664, 0.1772),
             "less_aligned": (0.2111, 0.2001, 0.1884, 0.1963, 0.1849, 0.1819)},
}
#: the drops (%) the paper prints next to Tables 3 and 4
UNLEARNING_DROP = {"full": {"forget": 37.23, "aligned": 34.71, "less_aligned": 15.13},
                   "lora": {"forget": 35.53, "aligned": 24.11, "less_aligned": 13.83}}
#: alpha-hat of the evaluation books to the forget book
UNLEARNING_ALPHA_HAT = {"aligned": 0.498, "less_aligned": 0.239}
#: the paper's books by role
UNLEARNING_NAMES = {"forget": "HP1", "aligned": "HP2", "less_aligned": "PP"}
#: the appendix's Phi-3-small LoRA drops (%); its HP2 row prints 52.29 but its own numbers give 41.85
PHI3_DROP = {"forget": 55.61, "aligned": 52.29, "less_aligned": 20.65}
