"""Gold scoring: accuracy estimates with honest uncertainty, and the suspension rule."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Beta(1, 1) prior for reported estimates: with no gold answers accuracy is "unknown".
PRIOR_CORRECT = 1.0
PRIOR_WRONG = 1.0
# The suspension rule gives newcomers the benefit of the doubt: a Beta(4, 1) prior (as if they
# had already got 3 of 3 right) so that two unlucky answers never suspend anyone.
SUSPEND_PRIOR = (4, 1)


@dataclass(frozen=True)
class Accuracy:
    """A gold accuracy estimate: posterior mean and a central credible interval."""

    correct: int
    total: int
    mean: float
    low: float
    high: float

    @property
    def raw(self) -> float | None:
        """The plain share of correct gold answers, None without gold answers."""
        return self.correct / self.total if self.total else None

    @property
    def shown_interval(self) -> tuple[float | None, float | None]:
        """(low, high) to show, or (None, None) without gold answers (the prior's is no news)."""
        return (self.low, self.high) if self.total else (None, None)


def _beta_cdf(x: float, a: int, b: int) -> float:
    """Regularized incomplete beta I_x(a, b) for integer a, b (a binomial tail sum)."""
    n = a + b - 1
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    # I_x(a, b) = P(Binomial(n, x) >= a); summed in log space to stay finite for large n.
    lx, l1x = math.log(x), math.log1p(-x)
    total = 0.0
    for j in range(a, n + 1):
        total += math.exp(
            math.lgamma(n + 1)
            - math.lgamma(j + 1)
            - math.lgamma(n - j + 1)
            + j * lx
            + (n - j) * l1x
        )
    return min(1.0, total)


def _beta_quantile(q: float, a: int, b: int) -> float:
    """The q-quantile of Beta(a, b) for integer a, b, by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if _beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def accuracy(correct: int, total: int, level: float = 0.95) -> Accuracy:
    """Posterior accuracy under a uniform Beta prior, with a `level` central interval."""
    a = correct + int(PRIOR_CORRECT)
    b = total - correct + int(PRIOR_WRONG)
    tail = (1.0 - level) / 2
    return Accuracy(
        correct=correct,
        total=total,
        mean=a / (a + b),
        low=_beta_quantile(tail, a, b),
        high=_beta_quantile(1.0 - tail, a, b),
    )


def confidently_below(correct: int, total: int, threshold: float, confidence: float = 0.95) -> bool:
    """True when we are `confidence` sure the true accuracy is below `threshold`."""
    if total == 0:
        return False
    a = correct + SUSPEND_PRIOR[0]
    b = total - correct + SUSPEND_PRIOR[1]
    # P(accuracy < threshold) under the posterior.
    return _beta_cdf(threshold, a, b) >= confidence


# What an average annotator is assumed to get right before a project has gold answers.
TYPICAL_ACCURACY = 0.7


def crowd_accuracy(correct: int, total: int) -> float:
    """An average annotator's accuracy: the project's pooled gold, shrunk toward a typical crowd."""
    # Ten pseudo-answers: a project's first few gold answers should not swing every weight.
    return (correct + TYPICAL_ACCURACY * 10) / (total + 10)


def person_accuracy(correct: int, total: int, prior_acc: float = TYPICAL_ACCURACY) -> float:
    """One person's gold accuracy, shrunk toward the average annotator's (`prior_acc`, see
    crowd_accuracy) so two lucky gold answers do not make an oracle."""
    return (correct + prior_acc * 4.0) / (total + 4.0)


def reliability_weight(
    correct: int, total: int, n_labels: int, prior_acc: float = TYPICAL_ACCURACY
) -> float:
    """Log-odds vote weight from gold; an unscored annotator weighs like an average one."""
    k = max(n_labels, 2)
    p = min(max(person_accuracy(correct, total, prior_acc), 1e-3), 1 - 1e-3)
    return max(0.0, math.log((k - 1) * p / (1 - p)))
