"""The lookup tables of the integer coding path: tanh, the logistic sigmoid, exp and the normal CDF.

The integer model (`ride_tf.codec.integer`) evaluates every nonlinearity by
looking up an integer argument i, the real argument a = i / 2^10, in a
table of integers

    T[i - low] = round(f(i / 2^10) * 2^bits)      for low <= i <= high,

rounded half to even.  The tables are computed with Python's `decimal`
module at 60 significant digits (exp and sqrt are correctly rounded there;
erf by its Taylor series, summed far below the last digit kept), so every
machine that computes them gets the same integers.  They ship with the
package (`lookup_tables.npz`, written by ``python -m ride_tf.codec.lookup``)
so that no process spends seconds recomputing them, and `load` checks the
file's SHA-256 against `SHA256`; `tests/test_lookup.py` recomputes them and
compares.  Monotone functions give monotone tables, and the normal CDF's
table is exactly antisymmetric, T(-z) = 2^24 - T(z), so bin masses of the
integer model are never negative.

    name        f              argument range a      bits
    tanh        tanh(a)        [-8, 8]               15
    sigmoid     1 / (1 + e^-a) [-12, 12]             15
    exp_gate    e^a            [-16, 0]              15
    exp_weight  e^a            [-24, 0]              20
    phi         Phi(a)         [-9, 9]               24
"""
import decimal
import hashlib
import os

import numpy as np

__all__ = ["ARGUMENT_BITS", "TABLES", "compute", "load", "write", "SHA256", "PATH"]

# Arguments are integers i standing for i / 2^ARGUMENT_BITS.
ARGUMENT_BITS = 10
# name: (function, lowest argument, highest argument (reals), bits of the values)
TABLES = {
    "tanh": ("tanh", -8, 8, 15),
    "sigmoid": ("sigmoid", -12, 12, 15),
    "exp_gate": ("exp", -16, 0, 15),
    "exp_weight": ("exp", -24, 0, 20),
    "phi": ("phi", -9, 9, 24),
}
PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lookup_tables.npz")
# SHA-256 of the tables (`_digest`), fixed when lookup_tables.npz was written.
SHA256 = "74e357bdb7620c86f87655618409ad0a776ac901d8780855f1e831c92ae5509c"

_CONTEXT = decimal.Context(prec=60)
_PI = decimal.Decimal("3.14159265358979323846264338327950288419716939937510582097494459230781640628620899")
_CACHE = {}


def _erf_nonnegative(x):
    """erf(x) for x >= 0 by its Taylor series, 2/sqrt(pi) sum_n (-1)^n x^(2n+1) / (n! (2n+1))."""
    ctx = _CONTEXT
    x2 = ctx.multiply(x, x)
    term = total = x
    n = 0
    tiny = decimal.Decimal("1e-50")
    while True:
        n += 1
        term = ctx.multiply(term, ctx.divide(-x2, decimal.Decimal(n)))
        add = ctx.divide(term, decimal.Decimal(2 * n + 1))
        total = ctx.add(total, add)
        if abs(add) < tiny and n > x2:
            break
    return ctx.multiply(ctx.divide(decimal.Decimal(2), ctx.sqrt(_PI)), total)


def _value(function, a):
    """f(a) in decimal arithmetic, a a Decimal."""
    ctx = _CONTEXT
    if function == "exp":
        return ctx.exp(a)
    if function == "tanh":
        e = ctx.exp(ctx.multiply(decimal.Decimal(2), a))
        return ctx.divide(ctx.subtract(e, 1), ctx.add(e, 1))
    if function == "sigmoid":
        return ctx.divide(decimal.Decimal(1), ctx.add(decimal.Decimal(1), ctx.exp(-a)))
    if function == "phi":      # for a <= 0: (1 - erf(-a / sqrt 2)) / 2
        return ctx.divide(ctx.subtract(1, _erf_nonnegative(ctx.divide(-a, ctx.sqrt(decimal.Decimal(2))))), 2)
    raise ValueError(f"unknown function {function!r}")


def _round(value, bits):
    scaled = _CONTEXT.multiply(value, decimal.Decimal(1 << bits))
    return int(scaled.to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


def compute(name):
    """Table `name` of `TABLES`, computed exactly (int64 array, argument low * 2^10 first)."""
    function, low, high, bits = TABLES[name]
    scale = 1 << ARGUMENT_BITS
    if function == "phi":          # exactly antisymmetric: Phi(a) = 1 - Phi(-a)
        half = np.array([_round(_value("phi", decimal.Decimal(-i) / scale), bits)
                         for i in range(0, -low * scale + 1)], np.int64)                  # Phi(0), Phi(-1/1024), ...
        return np.concatenate([half[::-1], (1 << bits) - half[1:]])
    return np.array([_round(_value(function, decimal.Decimal(i) / scale), bits)
                     for i in range(low * scale, high * scale + 1)], np.int64)


def _digest(tables):
    digest = hashlib.sha256()
    for name in sorted(tables):
        digest.update(name.encode() + b":" + np.ascontiguousarray(tables[name], "<i8").tobytes())
    return digest.hexdigest()


def write(path=PATH):
    """Compute every table and write them (npz, int32); returns their SHA-256 (`SHA256` must be set to it)."""
    from ride_tf.io import atomic_path

    tables = {name: compute(name) for name in TABLES}
    with atomic_path(path, suffix=".npz", owner="lookup.write") as temporary:
        np.savez_compressed(temporary, **{name: t.astype(np.int32) for name, t in tables.items()})
    return _digest(tables)


def load(path=PATH):
    """{name: int64 array} of the shipped tables, checked against `SHA256` (ValueError if they differ)."""
    if path not in _CACHE:
        with np.load(path) as data:
            tables = {name: data[name].astype(np.int64) for name in TABLES}
        digest = _digest(tables)
        if digest != SHA256:
            raise ValueError(f"{path}: the lookup tables do not match their checksum ({digest} != {SHA256}); "
                             "reinstall ride-tf, or regenerate them with `python -m ride_tf.codec.lookup`.")
        _CACHE[path] = tables
    return _CACHE[path]


if __name__ == "__main__":
    print(write())
