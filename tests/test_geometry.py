"""Tests of `ride_tf.geometry`: padding indicators and the wavefront schedule."""
import numpy as np
import pytest
import tensorflow as tf

from ride_tf import geometry


@pytest.mark.parametrize("nb_size", [3, 5, 7])
@pytest.mark.parametrize("size", [(1, 1), (4, 9), (9, 4), (6, 6)])
def test_fronts_cover_every_pixel_once_and_after_its_dependencies(nb_size, size):
    height, width = size
    r = nb_size // 2
    front = np.full((height, width), -1)
    for t in range(geometry.num_fronts(height, width, nb_size)):
        i_lo, i_hi = geometry.front_rows(t, height, width, nb_size)
        i_lo_t, i_hi_t = (int(v) for v in geometry.front_rows(tf.constant(t), height, width, nb_size))
        assert (i_lo, i_hi) == (i_lo_t, i_hi_t)
        assert i_hi >= i_lo                      # no front is empty
        for i in range(i_lo, i_hi + 1):
            j = t - (r + 1) * i
            assert 0 <= j < width and front[i, j] == -1
            front[i, j] = t
    assert (front >= 0).all()
    assert geometry.num_fronts(height, width, nb_size) == (r + 1) * (height - 1) + width
    for i in range(height):
        for j in range(width):
            assert front[i, j] == geometry.front_index(i, j, nb_size)
            deps = [(i + di, j + dj) for di, dj in geometry.causal_offsets(nb_size)] + [(i, j - 1), (i - 1, j)]
            for a, b in deps:
                if 0 <= a < height and 0 <= b < width:
                    assert front[a, b] < front[i, j]


def test_outside_indicators_match_a_direct_count():
    nb_size, height, width = 5, 4, 6
    ind = geometry.outside_indicators(tf.range(height), tf.range(width), width, nb_size).numpy()
    assert ind.shape == (height, width, 12)
    for i in range(height):
        for j in range(width):
            expected = [float(i + di < 0 or not 0 <= j + dj < width) for di, dj in geometry.causal_offsets(nb_size)]
            np.testing.assert_array_equal(ind[i, j], expected)
    # The valid region has no outside inputs, every other pixel has some.
    rows, cols = geometry.valid_slices(nb_size)
    assert ind[rows, cols].sum() == 0
    border = np.ones((height, width), bool)
    border[rows, cols] = False
    assert (ind.sum(-1)[border] > 0).all()
    with pytest.raises(ValueError, match="nb_size"):
        geometry.radius(4)
    with pytest.raises(ValueError, match="valid region"):
        geometry.valid_shape(2, 9, 5)
