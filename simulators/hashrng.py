"""Counter-based random numbers: every draw is a pure function of (seed, device, n, salt).

Why not ``numpy.random.Generator``: a stream generator hands out numbers in call
order, so the data would change with the batch size, the tick length or the
pacing. Hashing the reading's coordinates instead makes reading ``n`` of device
``d`` the same whichever way the run is cut into batches, which is what lets a
test compare a run with anomalies against the same run without them, reading by
reading. The mixer is SplitMix64's finaliser, vectorised on ``uint64`` arrays
(wrap-around multiplication is the point, not an accident).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_K_DEVICE = np.uint64(0xD6E8FEB86659FD93)
_K_SALT = np.uint64(0xA0761D6478BD642F)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_LOW32 = np.uint64(0xFFFFFFFF)
_INV53 = 1.0 / (1 << 53)
_INV32 = 1.0 / (1 << 32)


def _mix(x: U64) -> U64:
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def hash64(seed: int, device: npt.NDArray[np.integer], n: npt.ArrayLike, salt: int) -> U64:
    """64 well-mixed bits per (seed, device, n, salt)."""
    with np.errstate(over="ignore"):
        key = np.uint64((seed * 0x2545F4914F6CDD1D + salt * 0x9E3779B9) & 0xFFFFFFFFFFFFFFFF)
        d = np.asarray(device).astype(np.uint64) * _K_DEVICE
        c = np.asarray(n).astype(np.uint64) + _GOLDEN
        return _mix(_mix(d ^ key) ^ (c * _K_SALT))


def uniform(seed: int, device: npt.NDArray[np.integer], n: npt.ArrayLike, salt: int) -> F64:
    """Uniform floats in [0, 1)."""
    return (hash64(seed, device, n, salt) >> _S11).astype(np.float64) * _INV53


def normal(seed: int, device: npt.NDArray[np.integer], n: npt.ArrayLike, salt: int) -> F64:
    """Standard normal floats (Box-Muller on the two 32-bit halves of one hash)."""
    h = hash64(seed, device, n, salt)
    u1 = ((h >> _S32).astype(np.float64) + 0.5) * _INV32
    u2 = (h & _LOW32).astype(np.float64) * _INV32
    out: F64 = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return out
