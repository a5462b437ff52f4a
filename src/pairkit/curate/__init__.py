"""pairkit.curate: which examples to label, weight, sample and build for training on preferences.

Every rule is registered by name with its family and declared options (``pairkit.curate.names("acquisition")``,
``pairkit.curate.get("eubo")``, ``pairkit.curate.spec("rucb").options``). Families: ``acquisition`` (what to label
next), ``bandit`` (dueling-bandit baselines), and the sampling, reweighting and construction rules of the papers.
numpy and scipy only; nothing here imports torch.
"""

from pairkit.curate._registry import RULES, get, names, spec
from pairkit.curate.acquisition import (
    RUCB,
    DoubleThompson,
    active_preference_batch,
    double_thompson,
    predictive_entropy,
    preference_certainty,
    rucb,
)
from pairkit.curate.construction import (
    negclip_negative,
    rrm_augment,
    unified_reward_pairs,
    verified_pairs,
)
from pairkit.curate.maple import MAPLE, maple_query_scores
from pairkit.curate.pairwise_gp import (
    PairwiseGP,
    eubo,
    preference_entropy,
    rbf_kernel,
)
from pairkit.curate.skew_gp import (
    SkewGP,
    hallucination_believer,
    orthant_ess,
)
from pairkit.curate.weighting import (
    bpr_loss,
    curriculum_weights,
    delift_select,
    difference_sampling,
    dynamic_loss_weights,
    pld_sample,
    tas_balanced_batches,
)

__all__ = [
    "DoubleThompson",
    "MAPLE",
    "PairwiseGP",
    "RUCB",
    "RULES",
    "SkewGP",
    "active_preference_batch",
    "bpr_loss",
    "curriculum_weights",
    "delift_select",
    "difference_sampling",
    "double_thompson",
    "dynamic_loss_weights",
    "eubo",
    "get",
    "hallucination_believer",
    "maple_query_scores",
    "names",
    "negclip_negative",
    "orthant_ess",
    "pld_sample",
    "predictive_entropy",
    "preference_certainty",
    "preference_entropy",
    "rbf_kernel",
    "rrm_augment",
    "rucb",
    "spec",
    "tas_balanced_batches",
    "unified_reward_pairs",
    "verified_pairs",
]
