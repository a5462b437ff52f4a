"""Training on preferences: chunked log-probabilities, trainers, pair construction and the online loop (needs torch)."""

from pairkit._optional import requires

with requires("train", "pairkit.train"):
    import torch  # noqa: F401  (first, so that a missing torch names the extra to install)

from pairkit.train import (
    _loop,
    data,
    diffusion,
    features,
    logprobs,
    online,
    pairs,
    pairwise_judge,
    policy_gradient,
    reward_model,
    trainers,
)
from pairkit.train._loop import *  # noqa: F403
from pairkit.train.data import *  # noqa: F403
from pairkit.train.diffusion import *  # noqa: F403
from pairkit.train.features import *  # noqa: F403
from pairkit.train.logprobs import *  # noqa: F403
from pairkit.train.online import *  # noqa: F403
from pairkit.train.pairs import *  # noqa: F403
from pairkit.train.pairwise_judge import *  # noqa: F403
from pairkit.train.policy_gradient import *  # noqa: F403
from pairkit.train.reward_model import *  # noqa: F403
from pairkit.train.trainers import *  # noqa: F403

__all__ = [
    *_loop.__all__,
    *data.__all__,
    *diffusion.__all__,
    *features.__all__,
    *logprobs.__all__,
    *online.__all__,
    *pairs.__all__,
    *pairwise_judge.__all__,
    *policy_gradient.__all__,
    *reward_model.__all__,
    *trainers.__all__,
]
