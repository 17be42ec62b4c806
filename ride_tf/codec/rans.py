"""Interleaved rANS (Duda 2013; Giesen 2014): entropy coding of symbols given as (start, frequency) integers.

A symbol is coded with an integer model: its cumulative start and frequency
f >= 1 out of a total M, so its ideal cost is log2(M / f) bits.  Because the
coder sees integers only, the encoder and the decoder agree exactly whenever
they compute the same integers (the tables of `ride_tf.codec.integer`).

Lanes: `num_lanes` independent rANS states share one stream of 32-bit
words.  Symbols are coded in steps; a step codes at most one symbol per
lane, so a decoder can decode all lanes of a step at once (vectorised).  The
encoder runs the steps backwards (rANS is last-in, first-out) and, within a
step, emits the words of its lanes in decreasing lane order; the stream is
then reversed, so that the decoder, going forwards, reads the words of each
step in increasing lane order.

State and renormalisation: each state x lies in [L, 2^32 L) with
L = 2^8 M, and words are 32 bits.  Encoding (start, f): if x >= 2^40 f,
the low word of x is emitted and x >>= 32 (at most once), then
x <- (x // f) M + x % f + start.  Decoding: the slot x % M identifies the
symbol (start <= slot < start + f), x <- f (x // M) + slot - start, and if
x < L a word is read (at most once).  With M < 2^21 every state fits in 61
bits of a uint64.  Every state starts at L, so a decoder that ends with all
states at L and every word read has checked the whole stream.

Stream layout (little-endian): the lanes' final states (u64 each), then the
words (u32).
"""
import numpy as np

__all__ = ["RansEncoder", "RansDecoder", "RansError", "state_bound", "MAX_TOTAL"]

WORD_BITS = 32
# The largest total M: states stay below 2^40 M < 2^61.
MAX_TOTAL = 1 << 21


class RansError(ValueError):
    """A stream that does not decode: truncated, corrupted, or decoded with other tables."""


def state_bound(total):
    """L = 2^8 M, the lower end of the state interval [L, 2^32 L)."""
    return np.uint64(total) << np.uint64(8)


def _check_total(total):
    total = int(total)
    if not 2 <= total <= MAX_TOTAL:
        raise ValueError(f"rANS: the total M must lie in [2, {MAX_TOTAL}], got {total}.")
    return total


class RansEncoder:
    """Collects the steps of symbols in decoding order; `finish()` codes them all and returns the bytes."""

    def __init__(self, num_lanes, total):
        if int(num_lanes) < 1:
            raise ValueError(f"rANS: num_lanes must be >= 1, got {num_lanes}.")
        self.num_lanes, self.total = int(num_lanes), _check_total(total)
        self.steps = []

    def step(self, lanes, start, freq):
        """Append one step: symbols (start, freq) for distinct lanes (int arrays of equal length)."""
        lanes = np.asarray(lanes, np.int64)
        start, freq = np.asarray(start, np.int64), np.asarray(freq, np.int64)
        if len(lanes):
            if lanes.min() < 0 or lanes.max() >= self.num_lanes or len(np.unique(lanes)) != len(lanes):
                raise ValueError("rANS: a step needs distinct lanes in [0, num_lanes).")
            if freq.min() < 1 or start.min() < 0 or (start + freq).max() > self.total:
                raise ValueError(f"rANS: symbols need freq >= 1 and 0 <= start < start + freq <= {self.total}.")
        self.steps.append((lanes, start.astype(np.uint64), freq.astype(np.uint64)))

    def extend(self, lanes, start, freq, boundaries):
        """Append many steps at once: step k is entries boundaries[k]:boundaries[k + 1] of the int arrays lanes,
        start, freq (the checks of `step`, done once for all of them)."""
        lanes = np.asarray(lanes, np.int64)
        start, freq = np.asarray(start, np.int64), np.asarray(freq, np.int64)
        boundaries = np.asarray(boundaries, np.int64)
        if len(boundaries) < 1 or boundaries[0] != 0 or boundaries[-1] != len(lanes) or (np.diff(boundaries) < 0).any():
            raise ValueError("rANS: boundaries must rise from 0 to the number of symbols.")
        if len(lanes):
            step_of = np.repeat(np.arange(len(boundaries) - 1), np.diff(boundaries))
            key = np.sort(step_of * self.num_lanes + lanes)
            if lanes.min() < 0 or lanes.max() >= self.num_lanes or (np.diff(key) == 0).any():
                raise ValueError("rANS: a step needs distinct lanes in [0, num_lanes).")
            if freq.min() < 1 or start.min() < 0 or (start + freq).max() > self.total:
                raise ValueError(f"rANS: symbols need freq >= 1 and 0 <= start < start + freq <= {self.total}.")
        start, freq = start.astype(np.uint64), freq.astype(np.uint64)
        for a, b in zip(boundaries[:-1], boundaries[1:]):
            self.steps.append((lanes[a:b], start[a:b], freq[a:b]))

    def finish(self):
        """The coded stream (bytes): final states, then the words (see the module docstring)."""
        total = np.uint64(self.total)
        low = state_bound(self.total)
        shift = np.uint64(WORD_BITS)
        states = np.full(self.num_lanes, low, np.uint64)
        words = []
        for lanes, start, freq in reversed(self.steps):
            if not len(lanes):
                continue
            x = states[lanes]
            emit = x >= (freq << np.uint64(WORD_BITS + 8))
            if emit.any():
                order = np.argsort(-lanes[emit], kind="stable")        # decreasing lane order
                words.append((x[emit] & np.uint64(0xFFFFFFFF)).astype(np.uint32)[order])
                x = np.where(emit, x >> shift, x)
            states[lanes] = (x // freq) * total + x % freq + start
        stream = np.concatenate(words)[::-1] if words else np.zeros(0, np.uint32)
        return states.astype("<u8").tobytes() + stream.astype("<u4").tobytes()


class RansDecoder:
    """Decodes a stream of `RansEncoder.finish()` step by step: `slots`, then `advance` with the symbols found."""

    def __init__(self, data, num_lanes, total):
        self.num_lanes, self.total = int(num_lanes), _check_total(total)
        data = bytes(data)
        head = 8 * self.num_lanes
        if len(data) < head or (len(data) - head) % 4:
            raise RansError(f"the coded stream has {len(data)} bytes, not {head} bytes of states plus 32-bit words.")
        self.states = np.frombuffer(data[:head], "<u8").astype(np.uint64)
        self.words = np.frombuffer(data[head:], "<u4").astype(np.uint64)
        self.position = 0
        self.low = state_bound(self.total)
        if (self.states < self.low).any() or (self.states >= self.low << np.uint64(WORD_BITS)).any():
            raise RansError("a final state lies outside the state interval.")

    def slots(self, lanes):
        """The slots x % M of the lanes' states (int64): the symbol of each lane is the one whose
        [start, start + freq) holds its slot."""
        return (self.states[np.asarray(lanes, np.int64)] % np.uint64(self.total)).astype(np.int64)

    def advance(self, lanes, start, freq):
        """Consume the decoded symbols (start, freq) of the lanes and renormalise (reading words in lane order)."""
        lanes = np.asarray(lanes, np.int64)
        start, freq = np.asarray(start, np.uint64), np.asarray(freq, np.uint64)
        x = self.states[lanes]
        slot = x % np.uint64(self.total)
        if ((slot < start) | (slot >= start + freq)).any():
            raise RansError("a symbol does not hold its lane's slot (the tables differ from the encoder's).")
        x = freq * (x // np.uint64(self.total)) + slot - start
        read = x < self.low
        if read.any():
            order = np.argsort(lanes[read], kind="stable")             # increasing lane order
            count = int(read.sum())
            if self.position + count > len(self.words):
                raise RansError("the coded stream ends too early (truncated, or decoded with other tables).")
            fresh = np.empty(count, np.uint64)
            fresh[order] = self.words[self.position:self.position + count]
            self.position += count
            x[read] = (x[read] << np.uint64(WORD_BITS)) | fresh
        self.states[lanes] = x

    def check_finished(self):
        """RansError unless every word was read and every state is back at its start."""
        if self.position != len(self.words) or (self.states != self.low).any():
            raise RansError("the coded stream did not end where it should (corrupted, or decoded with other tables).")
