"""Tests of the interleaved rANS coder (`ride_tf.codec.rans`): exact round trips and sizes at the ideal cost."""
import numpy as np
import pytest

from ride_tf.codec.rans import MAX_TOTAL, RansDecoder, RansEncoder, RansError


def random_steps(rng, num_lanes, num_steps, total):
    """Steps of random distinct lanes, each with a random table of 5 symbols (frequencies >= 1 summing to M)."""
    steps = []
    for _ in range(num_steps):
        lanes = rng.permutation(num_lanes)[:rng.integers(0, num_lanes + 1)]
        cuts = np.sort(rng.choice(np.arange(1, total), size=4, replace=False))
        edges = np.concatenate([[0], cuts, [total]])                  # 5 symbols
        symbols = rng.integers(0, 5, len(lanes))
        steps.append((lanes, edges, symbols))
    return steps


def code(steps, num_lanes, total):
    encoder = RansEncoder(num_lanes, total)
    for lanes, edges, symbols in steps:
        encoder.step(lanes, edges[symbols], edges[symbols + 1] - edges[symbols])
    return encoder.finish()


def decode(data, steps, num_lanes, total):
    decoder = RansDecoder(data, num_lanes, total)
    out = []
    for lanes, edges, _ in steps:
        slots = decoder.slots(lanes)
        symbols = np.searchsorted(edges, slots, side="right") - 1
        decoder.advance(lanes, edges[symbols], edges[symbols + 1] - edges[symbols])
        out.append(symbols)
    decoder.check_finished()
    return out


@pytest.mark.parametrize("num_lanes, total, seed", [(1, 2 ** 20 + 256, 0), (7, 2 ** 20 + 256, 1), (16, 300, 2),
                                                   (3, MAX_TOTAL, 3)])
def test_random_streams_decode_to_the_symbols_that_were_coded(num_lanes, total, seed):
    rng = np.random.default_rng(seed)
    steps = random_steps(rng, num_lanes, 400, total)
    decoded = decode(code(steps, num_lanes, total), steps, num_lanes, total)
    for (_, _, symbols), back in zip(steps, decoded):
        np.testing.assert_array_equal(back, symbols)


def test_extend_codes_the_same_stream_as_step_by_step():
    """`extend` (all steps at once, as the codec uses it) writes the bytes of one `step` call per step."""
    rng = np.random.default_rng(8)
    total, num_lanes = 2 ** 20 + 256, 5
    steps = random_steps(rng, num_lanes, 500, total)
    lanes = np.concatenate([l for l, _, _ in steps]).astype(np.int64)
    start = np.concatenate([e[s] for _, e, s in steps]).astype(np.int64)
    freq = np.concatenate([e[s + 1] - e[s] for _, e, s in steps]).astype(np.int64)
    boundaries = np.concatenate([[0], np.cumsum([len(l) for l, _, _ in steps])])
    encoder = RansEncoder(num_lanes, total)
    encoder.extend(lanes, start, freq, boundaries)
    assert encoder.finish() == code(steps, num_lanes, total)
    with pytest.raises(ValueError, match="distinct lanes"):
        RansEncoder(2, 100).extend([1, 0, 0], [0, 0, 0], [5, 5, 5], [0, 1, 3])
    with pytest.raises(ValueError, match="boundaries"):
        RansEncoder(2, 100).extend([1, 0], [0, 0], [5, 5], [0, 1])


def test_the_size_is_the_ideal_cost_plus_the_final_states():
    """Bits written = sum log2(M / f) (+ at most 32 per lane and the 64-bit states)."""
    rng = np.random.default_rng(5)
    total, num_lanes = 2 ** 20 + 256, 4
    steps = random_steps(rng, num_lanes, 3000, total)
    ideal = sum(np.log2(total / (edges[s + 1] - edges[s])).sum() for _, edges, s in steps)
    payload_bits = 8 * len(code(steps, num_lanes, total)) - 64 * num_lanes
    assert ideal - 32 * num_lanes <= payload_bits <= ideal + 32 * num_lanes, (payload_bits, ideal)
    # A near-certain symbol costs almost nothing: 10,000 of them with f = M - 1 fit in the states.
    encoder = RansEncoder(1, total)
    for _ in range(10_000):
        encoder.step([0], [0], [total - 1])
    assert len(encoder.finish()) == 8


def test_other_tables_or_damaged_streams_are_detected():
    rng = np.random.default_rng(6)
    total, num_lanes = 2 ** 20 + 256, 3
    steps = random_steps(rng, num_lanes, 300, total)
    data = code(steps, num_lanes, total)
    other = [(lanes, np.concatenate([[0], np.sort(rng.choice(np.arange(1, total), 4, replace=False)), [total]]), s)
             for lanes, _, s in steps]
    for bad in [data[:-4], data + b"\0\0\0\0", bytes([data[0] ^ 1]) + data[1:]]:
        with pytest.raises(RansError):
            decode(bad, steps, num_lanes, total)
    with pytest.raises(RansError):
        decode(data, other, num_lanes, total)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="total M"):
        RansEncoder(1, MAX_TOTAL + 1)
    encoder = RansEncoder(2, 100)
    with pytest.raises(ValueError, match="distinct lanes"):
        encoder.step([1, 1], [0, 0], [5, 5])
    with pytest.raises(ValueError, match="freq >= 1"):
        encoder.step([0], [99], [2])
    with pytest.raises(RansError, match="bytes"):
        RansDecoder(b"\0" * 9, 2, 100)
