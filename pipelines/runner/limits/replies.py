"""What a budget's settled calls used: running estimates, and the advice drawn from them.

:class:`Replies` keeps exponentially weighted means of the tokens each
settled call used (:class:`~lc_async_pipelines.runner.limits.budget.RateBudget`
charges the next calls from them); :class:`MaxTokensAdvice` is what the budget
says once when ``max_tokens``, not the replies, binds a run's TPM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MaxTokensAdvice", "Replies"]

_EWMA = 0.2  # weight of the newest reply in the running estimates


@dataclass(frozen=True)
class MaxTokensAdvice:
    """``max_tokens``, not the replies, binds a run's TPM (with ``tpm_charge="max_tokens"``).

    Attributes:
        max_tokens: the calls' ``max_tokens``, counted in full when each is admitted.
        reply_tokens: the replies' running mean, in tokens (under a quarter of ``max_tokens``).
        largest_reply_tokens: the largest reply seen.
        calls_per_min: calls a minute the budget allows at this ``max_tokens``.
        suggested_max_tokens: twice the largest reply seen.
        suggested_calls_per_min: calls a minute it would allow with
            ``suggested_max_tokens`` (within ``rpm``).
    """

    max_tokens: int
    reply_tokens: float
    largest_reply_tokens: int
    calls_per_min: float
    suggested_max_tokens: int
    suggested_calls_per_min: float

    @property
    def speedup(self) -> float:
        """How many times faster the run would go with ``suggested_max_tokens``."""
        return self.suggested_calls_per_min / self.calls_per_min


@dataclass
class Replies:
    """Running estimates (exponentially weighted) of what settled calls used."""

    count: int = 0
    rest_mean: float = 0.0  # used less the prompt's estimate
    rest_var: float = 0.0
    output_mean: float = 0.0
    output_max: int = 0
    prompt_mean: float = 0.0

    def add(self, rest: float, output: int, prompt: float) -> None:
        """Count one settled call: tokens used beyond its prompt estimate, output, prompt."""
        if not self.count:
            self.rest_mean, self.output_mean, self.prompt_mean = rest, float(output), prompt
        else:
            diff = rest - self.rest_mean
            self.rest_mean += _EWMA * diff
            self.rest_var = (1 - _EWMA) * (self.rest_var + _EWMA * diff * diff)
            self.output_mean += _EWMA * (output - self.output_mean)
            self.prompt_mean += _EWMA * (prompt - self.prompt_mean)
        self.output_max = max(self.output_max, output)
        self.count += 1

    @property
    def rest(self) -> float | None:
        """What a call uses beyond its prompt estimate, on the high side (mean + 2 sd); None yet."""
        return self.rest_mean + 2 * math.sqrt(self.rest_var) if self.count else None
