"""pairkit.metrics: ranking, agreement, calibration and threshold-consistency metrics (numpy)."""

from pairkit.metrics.ranking import (
    average_precision,
    dcg,
    ideal_dcg,
    kendall_tau,
    ndcg,
    ordered_pair_accuracy,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    spearman_rho,
)
from pairkit.metrics.threshold import opis

__all__ = [
    "average_precision",
    "dcg",
    "ideal_dcg",
    "kendall_tau",
    "ndcg",
    "opis",
    "ordered_pair_accuracy",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "spearman_rho",
]
