/* ride_tf.codec.palette_kernels: the palette coder of `ride_tf.codec.palette` in C, the same bytes.
 *
 * `palette.py` is the specification (the candidates, the escape tree, the context models, the mixers, the
 * binary arithmetic coder); this file computes exactly its integers: unsigned 32-bit hashes and coder
 * bounds, int64 sums, floors of divisions by powers of two written with complements (no reliance on how >>
 * treats negative numbers).  No floating point, so the bytes do not depend on the compiler or the CPU.
 *
 *   encode(indices, height, width, colours) -> bytes       indices: int32 [H * W], each < colours
 *   decode(data, height, width, colours) -> bytes          the int32 indices [H * W]; ValueError if corrupted
 *
 * Both release the GIL while they code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NUM_NEIGHBOURS 12
#define CANDIDATES 6
#define NUM_MODELS 8
#define PATTERN_MODEL 7
#define PROB_BITS 22
#define COUNT_LIMIT 255
#define LEARNING_RATE 1
#define KINDS (CANDIDATES * 64 + 12)
#define APM_RATE 7
#define WEIGHT_LIMIT (1 << 24)
#define MAX_COLOURS 4096

static const int NEIGHBOURS[NUM_NEIGHBOURS][2] = {{0, -1}, {-1, 0}, {-1, -1}, {-1, 1}, {0, -2}, {-2, 0},
                                                  {-1, -2}, {-2, -1}, {-2, 1}, {-1, 2}, {0, -3}, {-3, 0}};
/* The neighbours each context model reads (MODELS of palette.py); the pattern model is apart. */
static const int MODEL_SIZE[NUM_MODELS] = {0, 1, 2, 4, 6, 12, 3, 0};
static const int MODEL_READS[NUM_MODELS][NUM_NEIGHBOURS] = {
    {0}, {0}, {0, 1}, {0, 1, 2, 3}, {0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {1, 5, 11}, {0}};

static int SQUASH[4095];
static int STRETCH[4096];
static int64_t RATE[COUNT_LIMIT + 1];

static inline int64_t floor_shift(int64_t x, int s) { return x >= 0 ? (x >> s) : ~((~x) >> s); }
static inline int64_t clip64(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : (x > hi ? hi : x); }

static void init_tables(void) {
    static const int knots[33] = {1, 2, 3, 6, 10, 16, 27, 45, 73, 120, 194, 310, 488, 747, 1101, 1546, 2047,
                                  2549, 2994, 3348, 3607, 3785, 3901, 3975, 4024, 4050, 4068, 4079, 4085, 4089,
                                  4092, 4093, 4094};
    for (int d = -2047; d <= 2047; d++) {
        int w = d & 127, k = (int)floor_shift(d, 7) + 16;
        SQUASH[d + 2047] = (knots[k] * (128 - w) + knots[k + 1] * w + 64) >> 7;
    }
    int p = 0;
    for (int d = -2047; d <= 2047; d++)
        while (p <= SQUASH[d + 2047] && p < 4096) STRETCH[p++] = d;
    while (p < 4096) STRETCH[p++] = 2047;
    for (int n = 0; n <= COUNT_LIMIT; n++) RATE[n] = (1 << 17) / (2 * n + 3);
}

static inline uint32_t hash32(uint32_t h, uint32_t value) { return (h + value + 1u) * 0x9E3779B1u; }

/* ------------------------------------------------------------------ the binary arithmetic coder */
typedef struct {
    uint32_t low, high, x;
    const uint8_t *in;
    Py_ssize_t in_size, in_pos;
    uint8_t *out;
    Py_ssize_t out_size, out_cap;
    int failed;                          /* out of memory */
} Coder;

static inline uint32_t next_byte(Coder *c) { return c->in_pos < c->in_size ? c->in[c->in_pos++] : (c->in_pos++, 0u); }

static inline void put_byte(Coder *c, uint8_t byte) {
    if (c->out_size == c->out_cap) {
        Py_ssize_t cap = c->out_cap ? 2 * c->out_cap : 4096;
        uint8_t *grown = realloc(c->out, cap);
        if (!grown) { c->failed = 1; return; }
        c->out = grown, c->out_cap = cap;
    }
    c->out[c->out_size++] = byte;
}

static inline int code_bit(Coder *c, int bit, int p) {
    uint32_t middle = c->low + ((c->high - c->low) >> 12) * (uint32_t)p;
    if (c->in) bit = c->x <= middle;
    if (bit) c->high = middle;
    else c->low = middle + 1;
    while (((c->low ^ c->high) & 0xFF000000u) == 0) {
        if (c->in) c->x = (c->x << 8) | next_byte(c);
        else put_byte(c, (uint8_t)(c->high >> 24));
        c->low <<= 8;
        c->high = (c->high << 8) | 255u;
    }
    return bit;
}

/* ------------------------------------------------------------------ the adaptive probability map */
/* p' = the interpolated entry of 33 at stretch(p) in the row of the decision's kind; the nearer of the two
   entries learns the bit at rate 2^-APM_RATE. */
typedef struct {
    int32_t table[KINDS][33];
    int kind, entry;
} APM;

static void apm_init(APM *a) {
    for (int k = 0; k < KINDS; k++)
        for (int j = 0; j < 33; j++) a->table[k][j] = SQUASH[clip64((j - 16) * 128, -2047, 2047) + 2047] * 16;
}

static inline int apm_refine(APM *a, int p, int kind) {
    int s = STRETCH[p] + 2048, low = s >> 7, w = s & 127;
    a->kind = kind, a->entry = low + (w >> 6);
    return (a->table[kind][low] * (128 - w) + a->table[kind][low + 1] * w) >> 11;
}

static inline void apm_update(APM *a, int bit) {
    int32_t target = (bit << 16) + (bit << APM_RATE) - bit - bit, *entry = &a->table[a->kind][a->entry];
    *entry += (int32_t)floor_shift(target - *entry, APM_RATE);
}

/* ------------------------------------------------------------------ the predictor */
typedef struct {
    int shift, escape_bits, kind, p;
    uint32_t *tables;                    /* NUM_MODELS tables of 2^bits states (p << 10 | n) */
    Py_ssize_t table_size;
    int64_t weights[KINDS][NUM_MODELS + 1];
    Py_ssize_t slots[NUM_MODELS];
    int inputs[NUM_MODELS + 1];
    int mixed;                           /* the mixer's probability, before the APM */
    APM apm;
} Predictor;

static int table_bits(Py_ssize_t height, Py_ssize_t width) {
    int64_t pixels = (int64_t)height * width;
    int bits = 0;
    while (pixels >> bits) bits++;
    bits += 2;
    return bits < 12 ? 12 : (bits > 22 ? 22 : bits);
}

/* A new predictor (on the heap: its tables are some 80 kB besides the context tables), or NULL. */
static Predictor *predictor_new(Py_ssize_t height, Py_ssize_t width, int colours) {
    Predictor *pr = malloc(sizeof(Predictor));
    if (!pr) return NULL;
    int bits = table_bits(height, width);
    pr->shift = 32 - bits;
    pr->table_size = (Py_ssize_t)1 << bits;
    pr->tables = malloc(sizeof(uint32_t) * NUM_MODELS * pr->table_size);
    if (!pr->tables) { free(pr); return NULL; }
    for (Py_ssize_t k = 0; k < NUM_MODELS * pr->table_size; k++) pr->tables[k] = 1u << (PROB_BITS + 9);
    for (int k = 0; k < KINDS; k++)
        for (int m = 0; m <= NUM_MODELS; m++) pr->weights[k][m] = (1 << 16) / NUM_MODELS;
    int escape = 0;
    while ((colours - 1) >> escape) escape++;
    pr->escape_bits = escape < 1 ? 1 : escape;
    apm_init(&pr->apm);
    return pr;
}

static void predictor_free(Predictor *pr) {
    if (pr) free(pr->tables);
    free(pr);
}

static void contexts(const int *nb, uint32_t *hashes) {
    for (int m = 0; m < NUM_MODELS; m++) {
        uint32_t h = (uint32_t)m + 1u;
        if (m == PATTERN_MODEL) {
            for (int a = 0; a < CANDIDATES; a++)
                for (int b = 0; b < a; b++) h = hash32(h, nb[a] == nb[b]);
        } else {
            for (int r = 0; r < MODEL_SIZE[m]; r++) h = hash32(h, (uint32_t)nb[MODEL_READS[m][r]]);
        }
        hashes[m] = h;
    }
}

static inline int predict(Predictor *pr, const uint32_t *hashes, uint32_t decision, int kind) {
    int64_t total = 0;
    const int64_t *w = pr->weights[kind];
    for (int m = 0; m < NUM_MODELS; m++) {
        Py_ssize_t slot = (Py_ssize_t)((hash32(hashes[m], decision) * 0x2545F491u) >> pr->shift);
        pr->slots[m] = slot;
        int stretched = STRETCH[pr->tables[m * pr->table_size + slot] >> (PROB_BITS + 10 - 12)];
        pr->inputs[m] = stretched;
        total += w[m] * stretched;
    }
    pr->inputs[NUM_MODELS] = 256;
    total += w[NUM_MODELS] * 256;
    int p = SQUASH[clip64(floor_shift(total, 16), -2047, 2047) + 2047];
    pr->mixed = p < 1 ? 1 : (p > 4095 ? 4095 : p);
    pr->kind = kind;
    p = (pr->mixed + 3 * apm_refine(&pr->apm, pr->mixed, kind)) >> 2;
    pr->p = p < 1 ? 1 : (p > 4095 ? 4095 : p);
    return pr->p;
}

static inline void update(Predictor *pr, int bit) {
    apm_update(&pr->apm, bit);
    int64_t error = (int64_t)((bit << 12) - pr->mixed) * LEARNING_RATE;
    int64_t *w = pr->weights[pr->kind];
    for (int m = 0; m <= NUM_MODELS; m++)
        w[m] = clip64(w[m] + floor_shift(pr->inputs[m] * error, 10), -WEIGHT_LIMIT, WEIGHT_LIMIT);
    int64_t target = (int64_t)bit << PROB_BITS;
    for (int m = 0; m < NUM_MODELS; m++) {
        uint32_t *state = &pr->tables[m * pr->table_size + pr->slots[m]];
        int64_t n = *state & 1023u, p = *state >> 10;
        p += floor_shift((target - p) * RATE[n], 16);
        *state = (uint32_t)((p << 10) | (n + 1 < COUNT_LIMIT ? n + 1 : COUNT_LIMIT));
    }
}

/* Codes the pixels in raster order: `indices` read (encoder, c->in == NULL) or written (decoder).
   Returns 0, or -1 for an index beyond the palette while decoding. */
static int code_indices(int32_t *indices, Py_ssize_t height, Py_ssize_t width, int colours, Predictor *pr,
                        Coder *c) {
    int nb[NUM_NEIGHBOURS], seen[CANDIDATES];
    uint32_t hashes[NUM_MODELS];
    int decoding = c->in != NULL;
    for (Py_ssize_t i = 0; i < height; i++) {
        for (Py_ssize_t j = 0; j < width; j++) {
            for (int k = 0; k < NUM_NEIGHBOURS; k++) {
                Py_ssize_t ii = i + NEIGHBOURS[k][0], jj = j + NEIGHBOURS[k][1];
                nb[k] = ii >= 0 && jj >= 0 && jj < width ? indices[ii * width + jj] : colours;
            }
            contexts(nb, hashes);
            int value = decoding ? -1 : indices[i * width + j], found = 0, rank = 0;
            for (int a = 0; a < CANDIDATES && !found; a++) {
                int candidate = nb[a], repeated = candidate == colours;
                for (int r = 0; r < rank && !repeated; r++) repeated = seen[r] == candidate;
                if (repeated) continue;
                uint32_t mask = 0;
                for (int b = 0; b < CANDIDATES; b++) mask |= (uint32_t)(nb[b] == candidate) << b;
                int p = predict(pr, hashes, ((uint32_t)rank << 6) | mask, (rank << 6) | (int)mask);
                int bit = code_bit(c, decoding ? 0 : value == candidate, p);
                update(pr, bit);
                seen[rank++] = candidate;
                if (bit) value = candidate, found = 1;
            }
            if (!found) {
                uint32_t node = 1;
                for (int level = 0; level < pr->escape_bits; level++) {
                    int shift = pr->escape_bits - 1 - level;
                    int p = predict(pr, hashes, (1u << 16) | node, CANDIDATES * 64 + level);
                    int bit = code_bit(c, decoding ? 0 : (value >> shift) & 1, p);
                    update(pr, bit);
                    node = (node << 1) | (uint32_t)bit;
                }
                value = (int)(node - (1u << pr->escape_bits));
                if (decoding && value >= colours) return -1;
            }
            indices[i * width + j] = value;
        }
    }
    return 0;
}

static int check_sizes(Py_ssize_t height, Py_ssize_t width, int colours) {
    if (height < 1 || width < 1 || height > (1 << 28) / width) {
        PyErr_Format(PyExc_ValueError, "palette coder: an image of %zd x %zd pixels is out of range.", height,
                     width);
        return -1;
    }
    if (colours < 2 || colours > MAX_COLOURS) {
        PyErr_Format(PyExc_ValueError, "palette coder: colours must lie in [2, %d], got %d.", MAX_COLOURS,
                     colours);
        return -1;
    }
    return 0;
}

/* The arguments of both entry points, (buffer, height, width, colours), parsed and checked; -1 (with the
   buffer released) on an error. */
static int parse_args(PyObject *args, Py_buffer *view, Py_ssize_t *height, Py_ssize_t *width, int *colours) {
    if (!PyArg_ParseTuple(args, "y*nni", view, height, width, colours)) return -1;
    if (check_sizes(*height, *width, *colours) < 0) {
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *p_encode(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t height, width;
    int colours;
    if (parse_args(args, &view, &height, &width, &colours) < 0) return NULL;
    if (view.len != (Py_ssize_t)sizeof(int32_t) * height * width) {
        PyBuffer_Release(&view);
        return PyErr_Format(PyExc_ValueError, "palette coder: %zd bytes of indices for %zd x %zd pixels.",
                            view.len, height, width);
    }
    int32_t *indices = malloc(view.len);
    if (!indices) { PyBuffer_Release(&view); return PyErr_NoMemory(); }
    memcpy(indices, view.buf, view.len);
    PyBuffer_Release(&view);
    for (Py_ssize_t k = 0; k < height * width; k++)
        if (indices[k] < 0 || indices[k] >= colours) {
            int bad = indices[k];
            free(indices);
            return PyErr_Format(PyExc_ValueError, "palette coder: index %d outside [0, %d).", bad, colours);
        }
    Coder c = {0, 0xFFFFFFFFu, 0, NULL, 0, 0, NULL, 0, 0, 0};
    Predictor *pr = predictor_new(height, width, colours);
    if (!pr) { free(indices); return PyErr_NoMemory(); }
    Py_BEGIN_ALLOW_THREADS
    code_indices(indices, height, width, colours, pr, &c);
    for (int k = 3; k >= 0; k--) put_byte(&c, (uint8_t)(c.low >> (8 * k)));
    Py_END_ALLOW_THREADS
    free(indices);
    predictor_free(pr);
    if (c.failed) { free(c.out); return PyErr_NoMemory(); }
    PyObject *out = PyBytes_FromStringAndSize((const char *)c.out, c.out_size);
    free(c.out);
    return out;
}

static PyObject *p_decode(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t height, width;
    int colours;
    if (parse_args(args, &view, &height, &width, &colours) < 0) return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(int32_t) * height * width);
    Predictor *pr = out ? predictor_new(height, width, colours) : NULL;
    if (!pr) {
        PyBuffer_Release(&view);
        Py_XDECREF(out);
        return out ? PyErr_NoMemory() : NULL;
    }
    Coder c = {0, 0xFFFFFFFFu, 0, view.buf, view.len, 0, NULL, 0, 0, 0};
    int status;
    Py_BEGIN_ALLOW_THREADS
    for (int k = 0; k < 4; k++) c.x = (c.x << 8) | next_byte(&c);
    status = code_indices((int32_t *)PyBytes_AS_STRING(out), height, width, colours, pr, &c);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    predictor_free(pr);
    if (status < 0) {
        Py_DECREF(out);
        return PyErr_Format(PyExc_ValueError, "corrupted palette stream: a palette index beyond the palette.");
    }
    return out;
}

static PyMethodDef methods[] = {
    {"encode", p_encode, METH_VARARGS, "encode(indices int32 bytes, height, width, colours) -> the coder's bytes."},
    {"decode", p_decode, METH_VARARGS, "decode(data, height, width, colours) -> the int32 indices' bytes."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "palette_kernels",
                                    "The palette coder of ride_tf.codec.palette in C (the same bytes).", -1,
                                    methods};

PyMODINIT_FUNC PyInit_palette_kernels(void) {
    init_tables();
    return PyModule_Create(&module);
}
