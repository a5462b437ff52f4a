"""Training on preferences: chunked log-probabilities, trainers and pair construction (needs torch)."""

from pairkit.train.logprobs import *  # noqa: F403
from pairkit.train.logprobs import __all__ as _logprobs_all

__all__ = [*_logprobs_all]
