"""Tests of the integer model's lookup tables (`ride_tf.codec.lookup`): exact, shipped, monotone."""
import math

import numpy as np

from ride_tf.codec import lookup


def test_the_shipped_tables_are_the_exact_ones():
    """Every 61st entry (and both ends) of every shipped table equals its exact decimal computation."""
    tables = lookup.load()
    for name, (function, low, high, bits) in lookup.TABLES.items():
        table = tables[name]
        assert len(table) == (high - low) * 1024 + 1
        for index in list(range(0, len(table), 61)) + [len(table) - 1]:
            argument = (low * 1024 + index) / 1024
            if function == "phi" and argument > 0:      # stored as 2^24 - Phi(-a)
                exact = (1 << bits) - lookup._round(lookup._value("phi", lookup.decimal.Decimal(-argument)), bits)
            else:
                exact = lookup._round(lookup._value(function, lookup.decimal.Decimal(low * 1024 + index) / 1024),
                                      bits)
            assert table[index] == exact, (name, index)


def test_the_tables_are_monotone_bounded_and_the_cdf_antisymmetric():
    tables = lookup.load()
    for name, (function, low, high, bits) in lookup.TABLES.items():
        assert (np.diff(tables[name]) >= 0).all() and tables[name].min() >= -(1 << bits)
        assert tables[name].max() <= 1 << bits
    phi = tables["phi"]
    np.testing.assert_array_equal(phi + phi[::-1], np.full_like(phi, 1 << 24))
    assert phi[0] == 0 and phi[-1] == 1 << 24
    # Against float64 references: one unit of the last place at most.
    for name, reference in [("tanh", math.tanh), ("sigmoid", lambda a: 1 / (1 + math.exp(-a))), ("phi",
                            lambda a: 0.5 * math.erfc(-a / math.sqrt(2)))]:
        _, low, _, bits = lookup.TABLES[name]
        for index in range(0, len(tables[name]), 997):
            assert abs(tables[name][index] - reference(low + index / 1024) * 2 ** bits) <= 0.5 + 1e-6, name


def test_a_damaged_table_file_is_refused(tmp_path):
    tables = lookup.load()
    damaged = dict(tables)
    damaged["tanh"] = tables["tanh"].copy()
    damaged["tanh"][5] += 1
    np.savez(tmp_path / "t.npz", **damaged)
    try:
        lookup.load(str(tmp_path / "t.npz"))
    except ValueError as error:
        assert "checksum" in str(error)
    else:
        raise AssertionError("a damaged table file was accepted")
