"""A simulated judge with a known truth: Bradley–Terry or Thurstone, noise, ties, position bias, seeded.

Used by :func:`pairkit.select.simulate`, the benchmarks and the tests, so that selection strategies can be
scored against the truth offline.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pairkit._spec import Interval, Option, declare_options
from pairkit.errors import InputError
from pairkit.judges.base import ComparatorBase, Judgment, Request

__all__ = ["SimulatedJudge", "simulated_probabilities"]


def simulated_probabilities(
    d: np.ndarray, *, model: str = "bt", tie_margin: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities that the first answer wins and of a tie, given the first-minus-second strength ``d``.

    .. math::

        P(\\text{first}) = F(d - \\tau),\\quad P(\\text{second}) = F(-d - \\tau),\\quad
        P(\\text{tie}) = 1 - P(\\text{first}) - P(\\text{second})

    with ``F`` the logistic (Bradley–Terry; Rao & Kupper 1967, "Ties in paired-comparison experiments: a
    generalization of the Bradley–Terry model") or standard normal CDF (Thurstone 1927, "A law of comparative
    judgment"; Glenn & David 1960 for the tie threshold τ).

    Args:
        d: (M,) strength differences (first minus second, position bias included).
        model: ``"bt"`` or ``"thurstone"``.
        tie_margin: τ ≥ 0; 0 gives no ties.

    >>> import numpy as np
    >>> from pairkit.judges import simulated_probabilities
    >>> win, tie = simulated_probabilities(np.array([0.0, 1.0]), tie_margin=0.5)
    >>> print(win.round(4), tie.round(4))
    [0.3775 0.6225] [0.2449 0.1951]
    """
    if model not in ("bt", "thurstone"):
        raise InputError(f"model must be 'bt' or 'thurstone', got {model!r}")
    if not tie_margin >= 0:
        raise InputError(f"tie_margin must be >= 0, got {tie_margin!r}")
    from scipy import special  # lazily: importing pairkit.judges stays light

    cdf = special.expit if model == "bt" else special.ndtr
    d = np.asarray(d, float)
    p_first = cdf(d - tie_margin)
    p_second = cdf(-d - tie_margin)
    return p_first, np.clip(1.0 - p_first - p_second, 0.0, 1.0)


class SimulatedJudge(ComparatorBase):
    """A judge whose verdicts are drawn from a known strength model.

    The answer shown first gets ``position_bias`` extra (log-odds for ``"bt"``, standard deviations for
    ``"thurstone"``); ``noise`` divides the strength gap (a noisier judge); ``tie_margin`` produces ties.
    With ``soft=True`` the judge returns the probabilities themselves (as a logprob-reading LLM judge would),
    otherwise a sampled hard verdict. ``cost_per_call`` and ``lengths`` (answer text → length, for the
    length rule) make it a stand-in for a paid judge.

    Args:
        strengths: answer text → true strength (natural log-strength for ``"bt"``).

    >>> from pairkit.judges import SimulatedJudge
    >>> judge = SimulatedJudge({'strong': 2.0, 'weak': 0.0}, seed=0)
    >>> round(judge.judge('any prompt', 'strong', 'weak').p_a, 3)
    1.0
    """

    prompt_version = "simulated-v1"

    @declare_options(
        Option("model", str, choices=("bt", "thurstone"), doc="link of the simulated preference"),
        Option("noise", float, Interval(0, None, closed="neither"), doc="divides the strength gap"),
        Option("tie_margin", float, Interval(0, None), doc="τ: the margin that produces ties"),
        Option("position_bias", float, doc="added to the first-shown answer's log-odds"),
        Option("soft", bool, doc="return the probabilities instead of a sampled verdict"),
        Option("cost_per_call", float, Interval(0, None), doc="money per call"),
        Option("seed", (int, np.random.Generator), none=True, doc="random seed"),
        Option("judge_id", str, doc="the name recorded with each judgment"),
    )
    def __init__(
        self,
        strengths: Mapping[str, float],
        *,
        model: str = "bt",
        noise: float = 1.0,
        tie_margin: float = 0.0,
        position_bias: float = 0.0,
        soft: bool = False,
        cost_per_call: float = 0.0,
        seed: int | np.random.Generator | None = 0,
        judge_id: str = "simulated",
    ) -> None:
        super().__init__()
        self.strengths = {str(k): float(v) for k, v in strengths.items()}
        self.model, self.noise, self.tie_margin = model, float(noise), float(tie_margin)
        self.position_bias, self.soft, self.cost_per_call = float(position_bias), soft, float(cost_per_call)
        self.priced = self.cost_per_call > 0
        self.rng = np.random.default_rng(seed)
        self.judge_id = judge_id

    def cache_identity(self) -> dict:
        """The truth and noise model (part of the cache key)."""
        import hashlib
        import json

        truth = hashlib.sha256(json.dumps(sorted(self.strengths.items())).encode()).hexdigest()
        return {
            "strengths": truth,
            "model": self.model,
            "noise": self.noise,
            "tie_margin": self.tie_margin,
            "position_bias": self.position_bias,
            "soft": self.soft,
        }

    def _strength(self, text: str) -> float:
        try:
            return self.strengths[text]
        except KeyError:
            raise InputError(
                f"SimulatedJudge has no true strength for answer {text[:60]!r}; add it to strengths"
            ) from None

    async def _ajudge(self, request: Request) -> Judgment:
        d = (self._strength(request.first) - self._strength(request.second)) / self.noise + self.position_bias
        p_first, p_tie = (
            float(x[0]) for x in simulated_probabilities(np.array([d]), model=self.model, tie_margin=self.tie_margin)
        )
        if self.soft:
            shown = Judgment(p_a=p_first, p_tie=p_tie, verdict="A" if p_first >= 0.5 else "B")
        else:
            u = self.rng.random()
            verdict = "A" if u < p_first else ("tie" if u < p_first + p_tie else "B")
            shown = Judgment(p_a=float(verdict == "A"), p_tie=float(verdict == "tie"), verdict=verdict)
        shown = Judgment(
            p_a=shown.p_a, p_tie=shown.p_tie, verdict=shown.verdict, raw=shown.verdict, cost=self.cost_per_call
        )
        return shown if request.order == "ab" else shown.swapped()
