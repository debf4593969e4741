"""The few distribution functions the gate calls, as scipy.special's ufuncs.

scipy.stats' distributions check and broadcast their arguments on every call
(about 40 µs each); the special functions beneath them take about 1 µs. A
comparison calls these a few dozen times per endpoint, a session of many tests
or the gate's simulations tens of thousands of times: same numbers, less waiting.
"""

from __future__ import annotations

from scipy import special

__all__ = ["f_isf", "norm_isf", "norm_sf", "t_cdf", "t_isf", "t_ppf", "t_sf"]


def norm_sf(z: float) -> float:
    """P(Z > z), Z standard normal."""
    return float(special.ndtr(-z))


def norm_isf(p: float) -> float:
    """The z with P(Z > z) = p."""
    return float(-special.ndtri(p))


def t_sf(t: float, df: float) -> float:
    """P(T > t), T Student's t with ``df`` degrees of freedom."""
    return float(special.stdtr(df, -t))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t)."""
    return float(special.stdtr(df, t))


def t_isf(p: float, df: float) -> float:
    """The t with P(T > t) = p (computed from the lower tail's end: exact for small p)."""
    return float(-special.stdtrit(df, p))


def t_ppf(q: float, df: float) -> float:
    """The t with P(T <= t) = q."""
    return float(special.stdtrit(df, q))


def f_isf(p: float, dfn: float, dfd: float) -> float:
    """The x with P(F > x) = p, F Fisher's F with (``dfn``, ``dfd``) degrees of freedom."""
    return float(special.fdtri(dfn, dfd, 1.0 - p))
