"""pairkit.judges: the Comparator protocol, its implementations, the judgment cache and cost accounting."""

from pairkit.judges.base import (
    BudgetExhausted,
    CallableJudge,
    Comparator,
    ComparatorBase,
    JudgeError,
    Judgment,
    Request,
    Usage,
    run_sync,
)
from pairkit.judges.batch import BatchJudge
from pairkit.judges.cache import (
    SCHEMA_VERSION,
    Budget,
    CachedFailure,
    CachedJudge,
    CacheWarning,
    JudgmentCache,
    cache_key,
    check_priced,
    judge_identity,
)
from pairkit.judges.config import judge_from_config
from pairkit.judges.distributed import RayJudge
from pairkit.judges.embedding import EmbeddingJudge
from pairkit.judges.escalate import Calibration, EscalatingJudge, calibrate_threshold, confidence
from pairkit.judges.evaluation import JudgeReport, evaluate_judge
from pairkit.judges.http import OpenAIJudge, Price, RetryWarning, verdict_from_logprobs
from pairkit.judges.human import HumanJudge
from pairkit.judges.likelihood import DensityRatioJudge, FollowUpJudge, continuation_log_likelihoods
from pairkit.judges.local import HFJudge
from pairkit.judges.pairwise_classifier import (
    MARKER,
    PairwiseClassifierJudge,
    encode_pairwise,
    is_pairwise_classifier,
)
from pairkit.judges.panel import PanelJudge, panel_reliability
from pairkit.judges.prompts import (
    TEMPLATES,
    VERDICT_SCALES,
    PromptTemplate,
    VerdictScale,
    parse_verdict,
    verdict_distribution,
    verdict_probabilities,
)
from pairkit.judges.protocols import (
    BSMJudge,
    CallableChat,
    CGCoTJudge,
    Chat,
    ChatReply,
    DiscussionJudge,
    FewShotJudge,
    PointwiseJudge,
    PortiaJudge,
    SimulatedAnnotatorsJudge,
    align_segments,
    chat_identity,
    pointwise_shortlist,
    retrieve_exemplars,
    soft_rating,
    split_points,
)
from pairkit.judges.seq2seq import Seq2SeqJudge, mono_shortlist
from pairkit.judges.simulated import SimulatedJudge, simulated_probabilities

__all__ = [
    "BSMJudge",
    "BatchJudge",
    "Budget",
    "BudgetExhausted",
    "CGCoTJudge",
    "CacheWarning",
    "CachedFailure",
    "CachedJudge",
    "Calibration",
    "CallableChat",
    "CallableJudge",
    "Chat",
    "ChatReply",
    "Comparator",
    "ComparatorBase",
    "DensityRatioJudge",
    "DiscussionJudge",
    "EmbeddingJudge",
    "EscalatingJudge",
    "FewShotJudge",
    "FollowUpJudge",
    "HFJudge",
    "HumanJudge",
    "JudgeError",
    "JudgeReport",
    "Judgment",
    "JudgmentCache",
    "MARKER",
    "OpenAIJudge",
    "PairwiseClassifierJudge",
    "PanelJudge",
    "PointwiseJudge",
    "PortiaJudge",
    "Price",
    "PromptTemplate",
    "RayJudge",
    "Request",
    "RetryWarning",
    "SCHEMA_VERSION",
    "Seq2SeqJudge",
    "SimulatedAnnotatorsJudge",
    "SimulatedJudge",
    "TEMPLATES",
    "Usage",
    "VERDICT_SCALES",
    "VerdictScale",
    "align_segments",
    "cache_key",
    "calibrate_threshold",
    "chat_identity",
    "check_priced",
    "confidence",
    "continuation_log_likelihoods",
    "encode_pairwise",
    "evaluate_judge",
    "is_pairwise_classifier",
    "judge_from_config",
    "judge_identity",
    "mono_shortlist",
    "panel_reliability",
    "parse_verdict",
    "pointwise_shortlist",
    "retrieve_exemplars",
    "run_sync",
    "simulated_probabilities",
    "soft_rating",
    "split_points",
    "verdict_distribution",
    "verdict_from_logprobs",
    "verdict_probabilities",
]
