"""Tile candidates for a rank: divisors of its size from its prime factorisation, in time bounded whatever the size.

Enumerating divisors by trial up to sqrt(n) takes minutes for a rank of 1e20 (seq_len 1e20 took 161 s); the
divisors built from the factorisation cost nothing by comparison. Assumptions:
- Factorisation is trial division by 2 and the odd numbers up to `TRIAL_BOUND` (2**16, a few ms in Python at
  worst); what is left above 1 is kept whole, prime or not. So a size whose part above 2**16 is a product of
  two larger primes (only possible above 4e9) offers only the tiles that keep that part whole. We do not
  use sympy's `factorint`, which splits it: importing sympy costs about half a second per process, more than
  the whole search, for tiles of more than 65536 along one rank that no mapping here asks for.
- A size with more divisors than `limit` offers `limit` of them, spread evenly in log scale (1 and the size
  itself always among them); with at most `limit` divisors, all of them. The mapper's search loops together
  offer at most its budget of combinations (`thinned`), each loop as many as the budget allows.
"""

from __future__ import annotations

import math
from bisect import bisect_left

TRIAL_BOUND = 1 << 16


def prime_factors(n: int) -> dict[int, int]:
    """Prime -> exponent for the primes up to `TRIAL_BOUND`, and the cofactor left above it (exponent 1)."""
    factors: dict[int, int] = {}
    d = 2
    while d <= TRIAL_BOUND and d * d <= n:
        while n % d == 0:
            factors[d] = factors.get(d, 0) + 1
            n //= d
        d += 1 if d == 2 else 2
    if n > 1:
        factors[n] = factors.get(n, 0) + 1
    return factors


def divisors(n: int, limit: int) -> list[int]:
    """Divisors of `n` (at least 1), largest first: all of them, or `limit` spread in log scale if it has more.
    Partial products are thinned as they grow, so the work stays near limit**2 whatever `n`."""
    found = [1]
    for p, k in prime_factors(max(1, n)).items():
        exponents = range(k + 1) if k <= limit else sorted({round(k * j / limit) for j in range(limit + 1)})
        found = spread(sorted({d * p**e for d in found for e in exponents}), limit)
    return sorted(found, reverse=True)


def spread(values: list[int], k: int) -> list[int]:
    """`min(k, len(values))` of the sorted, distinct positive `values`, near k points evenly spaced in log scale from
    the first to the last (both kept; with k = 1 only the first, the smallest): each the first at or above its
    point that is not taken yet and leaves room for the rest, so crowded values (divisors bunch in the middle of
    the log scale) still give k."""
    if len(values) <= k:
        return values
    if k <= 1:
        return values[:1]
    logs = [math.log(v) for v in values]
    lo, hi = logs[0], logs[-1]
    picked: list[int] = []
    for j in range(k):
        at = bisect_left(logs, lo + (hi - lo) * j / (k - 1))
        picked.append(min(max(at, picked[-1] + 1 if picked else 0), len(values) - k + j))
    return [values[i] for i in picked]


def thinned(options: list[list[int]], budget: int) -> list[list[int]]:
    """`options` (per search loop, distinct factors, largest first, 1 among them) thinned so that their
    combinations number at most `budget` (>= 1), each loop keeping as many as the budget allows: the loop keeping
    the fewest (of those that can) keeps one more until none can without going over it. Each keeps a `spread`
    of its own, 1 and its largest among them, largest first."""
    kept = [1] * len(options)
    while True:
        total = math.prod(kept)
        can = [j for j, o in enumerate(options) if kept[j] < len(o) and total // kept[j] * (kept[j] + 1) <= budget]
        if not can:
            break
        kept[min(can, key=lambda j: kept[j])] += 1
    return [sorted(spread(sorted(o), k), reverse=True) for o, k in zip(options, kept, strict=True)]
