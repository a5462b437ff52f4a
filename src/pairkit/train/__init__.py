"""Training on preferences: chunked log-probabilities, trainers, pair construction and the online loop (needs torch)."""

from pairkit._optional import requires

with requires("train", "pairkit.train"):
    import torch  # noqa: F401  (first, so that a missing torch names the extra to install)

from pairkit.train._fsdp import full_state_dict
from pairkit.train._loop import (
    TrainConfig,
    TrainResult,
    check_number,
    init_distributed,
)
from pairkit.train.cloud import (
    CLOUD_TEMPLATE,
    CLoudResult,
    CLoudRewardModel,
    train_cloud_reward_model,
)
from pairkit.train.construct import (
    BMC_PROMPT,
    DSTC_SOLUTION_PROMPT,
    DSTC_TEST_PROMPT,
    RISE_ERRORS,
    RISE_PROMPT,
    SPO_KEY_COLUMNS,
    TPO_PROMPT,
    bmc_pseudo_winners,
    dstc_self_tests,
    edited_fraction,
    rise_self_edits,
    spo_degraded_samples,
    tpo_topic_rewrites,
)
from pairkit.train.contrastive import (
    train_contrastive,
)
from pairkit.train.data import (
    TruncationWarning,
    encode_completion,
    prompt_ids,
    read_records,
    to_listwise,
    to_pairs,
    to_unpaired,
)
from pairkit.train.diffusion import (
    train_diffusion_preference,
)
from pairkit.train.distillation import (
    SOURCES,
    train_distillation,
    train_mcmi_teacher,
)
from pairkit.train.features import (
    collect_hidden_states,
)
from pairkit.train.instruction_distill import (
    POINTWISE_PROMPT,
    evaluate_pointwise_ranker,
    pointwise_scores,
    read_ranking_lists,
    save_pointwise_ranker,
    teacher_scores,
    train_instruction_distillation,
)
from pairkit.train.logprobs import (
    completion_logps,
    sequence_logps,
    token_logps_from_hidden,
    token_logps_from_logits,
)
from pairkit.train.online import (
    METHODS,
    OnlineConfig,
    SelfJudge,
    check_method_loss,
    judge_samples,
    rate_samples,
    sample_completions,
    train_online,
)
from pairkit.train.pairs import (
    best_vs_worst_pairs,
    curriculum_pairs,
    read_pairs,
    sweet_spot_pairs,
)
from pairkit.train.pairwise_judge import (
    ATTACK_OPTIONS,
    evaluate_pairwise_judge,
    read_pairwise_judgments,
    save_pairwise_judge,
    train_pairwise_judge,
)
from pairkit.train.pmp import (
    PMP_SOURCES,
    pmp_pairs,
    pretrain_preference_model,
    read_pmp_pairs,
    reddit_pairs,
    stack_exchange_pairs,
    stack_exchange_scores,
    wikipedia_pairs,
)
from pairkit.train.policy_gradient import (
    cream_consistency,
    group_advantages,
    grpo_loss,
    p3o_loss,
    rloo_loss,
    score_function_kl,
    sppo_loss,
    superhf_loss,
    win_rates,
)
from pairkit.train.probe import (
    ProbeResult,
    fit_probe,
    probe_hidden_states,
    train_probe,
)
from pairkit.train.regression import (
    train_regression,
)
from pairkit.train.reward_model import (
    PALRewardModel,
    evaluate_reward_model,
    mean_pooled_embeddings,
    train_reward_model,
)
from pairkit.train.sampling import HFSampler, OpenAISampler, RaySampler, VLLMSampler
from pairkit.train.semi_supervised import (
    text_augment,
    train_semi_supervised,
)
from pairkit.train.trainers import (
    CheckedLoss,
    SparseMaskHead,
    check_loss,
    evaluate_preference,
    train_listwise,
    train_preference,
    train_unpaired,
)

__all__ = [
    "ATTACK_OPTIONS",
    "BMC_PROMPT",
    "CLOUD_TEMPLATE",
    "CLoudResult",
    "CLoudRewardModel",
    "CheckedLoss",
    "DSTC_SOLUTION_PROMPT",
    "DSTC_TEST_PROMPT",
    "HFSampler",
    "METHODS",
    "OnlineConfig",
    "OpenAISampler",
    "PALRewardModel",
    "PMP_SOURCES",
    "POINTWISE_PROMPT",
    "ProbeResult",
    "RISE_ERRORS",
    "RISE_PROMPT",
    "RaySampler",
    "SOURCES",
    "SPO_KEY_COLUMNS",
    "SelfJudge",
    "SparseMaskHead",
    "TPO_PROMPT",
    "TrainConfig",
    "TrainResult",
    "TruncationWarning",
    "VLLMSampler",
    "best_vs_worst_pairs",
    "bmc_pseudo_winners",
    "check_loss",
    "check_method_loss",
    "check_number",
    "collect_hidden_states",
    "completion_logps",
    "cream_consistency",
    "curriculum_pairs",
    "dstc_self_tests",
    "edited_fraction",
    "encode_completion",
    "evaluate_pairwise_judge",
    "evaluate_pointwise_ranker",
    "evaluate_preference",
    "evaluate_reward_model",
    "fit_probe",
    "full_state_dict",
    "group_advantages",
    "grpo_loss",
    "init_distributed",
    "judge_samples",
    "mean_pooled_embeddings",
    "p3o_loss",
    "pmp_pairs",
    "pointwise_scores",
    "pretrain_preference_model",
    "probe_hidden_states",
    "prompt_ids",
    "rate_samples",
    "read_pairs",
    "read_pairwise_judgments",
    "read_pmp_pairs",
    "read_ranking_lists",
    "read_records",
    "reddit_pairs",
    "rise_self_edits",
    "rloo_loss",
    "sample_completions",
    "save_pairwise_judge",
    "save_pointwise_ranker",
    "score_function_kl",
    "sequence_logps",
    "spo_degraded_samples",
    "sppo_loss",
    "stack_exchange_pairs",
    "stack_exchange_scores",
    "superhf_loss",
    "sweet_spot_pairs",
    "teacher_scores",
    "text_augment",
    "to_listwise",
    "to_pairs",
    "to_unpaired",
    "token_logps_from_hidden",
    "token_logps_from_logits",
    "tpo_topic_rewrites",
    "train_cloud_reward_model",
    "train_contrastive",
    "train_diffusion_preference",
    "train_distillation",
    "train_instruction_distillation",
    "train_listwise",
    "train_mcmi_teacher",
    "train_online",
    "train_pairwise_judge",
    "train_preference",
    "train_probe",
    "train_regression",
    "train_reward_model",
    "train_semi_supervised",
    "train_unpaired",
    "wikipedia_pairs",
    "win_rates",
]
