"""Losses for learning from comparisons (requires torch).

Every loss is a pure function ``f(inputs..., *, options..., reduction="mean")`` registered by name as a
:class:`~pairkit._spec.Spec` declaring its inputs, options and whether it is batch-coupled:
``pairkit.losses.get("dpo")`` (the function), ``pairkit.losses.spec("dpo")``, ``pairkit.losses.names()``.
Peers' names (TRL ``loss_type`` values, pytorch-metric-learning classes in snake case) are aliases.
"""

from pairkit.losses import (  # noqa: F401  (importing registers the losses)
    classification,
    contrastive,
    diagnostics,
    distill,
    distributed,
    divergence,
    preference,
    preference_listwise,
    preference_token,
    preference_unpaired,
    ranking,
    reward,
)
from pairkit.losses._core import canonical_name, family_of, get, names, reduce_loss, register, spec, specs
from pairkit.losses.classification import *  # noqa: F403
from pairkit.losses.contrastive import *  # noqa: F403
from pairkit.losses.diagnostics import *  # noqa: F403
from pairkit.losses.distill import *  # noqa: F403
from pairkit.losses.divergence import *  # noqa: F403
from pairkit.losses.preference import *  # noqa: F403
from pairkit.losses.preference_listwise import *  # noqa: F403
from pairkit.losses.preference_token import *  # noqa: F403
from pairkit.losses.preference_unpaired import *  # noqa: F403
from pairkit.losses.ranking import *  # noqa: F403
from pairkit.losses.reward import *  # noqa: F403

__all__ = ["canonical_name", "family_of", "get", "names", "reduce_loss", "register", "spec", "specs"]
