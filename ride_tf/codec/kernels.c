/* ride_tf.codec.kernels: the integer model's coding arithmetic in C, for `ride_tf.codec.native`.
 *
 * Every function here computes exactly the integers of `ride_tf.codec.integer` (its NumPy and TensorFlow
 * arithmetic, the reference): the parts of the model after each matrix product (the spatial LSTM cell's
 * gates and lookups, the MCGSM's responses, gate, weights and means, each channel's cumulative table),
 * the rANS coder's steps, and the gathers of a line of pixels' inputs.  The matrix products themselves stay
 * in NumPy (BLAS): their float64 sums of integers are exact in any order (`quantize_linear`'s bound), and
 * their results come in here as float64 integers below 2^52, which convert to int64 exactly.
 *
 * Everything after the products is integer arithmetic: int64 (two's complement, no overflow: the bounds of
 * `ride_tf.codec.integer` keep every product below 2^62), floor divisions by powers of two written with
 * complements (so they do not rely on the sign behaviour of >>), and lookups clipped to their tables; or float64
 * where every value is an integer (or an integer times a power of two) below 2^53 and every operation is exact:
 * products of an integer below 2^31 with a 21-bit factor times a power of two, floor((x + b) s) with s a power
 * of two, the cumulative tables of `table_terms` (where `terms_are_exact` proves the bound for the model) and
 * the quotients of `normalise` and the cell's gates (corrected or proven exact where they are).  So the results
 * do not depend on the compiler, its flags or the CPU.
 *
 * A "line" of pixels is (i0 + p, j0 - slope p) for p = 0 .. n - 1: a wavefront of the decoder
 * (slope r + 1) or an anti-diagonal of the encoder's scan (slope 1).  The LSTM states live in ring buffers
 * ring[H + 1][S][U] per layer, S = r + 2 slots per row: pixel (i, j) keeps its state in ring[i + 1][j mod S];
 * ring row 0 (above the image) and every slot not yet written are zeros.  Its left neighbour's state is
 * ring[i + 1][(j - 1) mod S] and its upper neighbour's ring[i][j mod S]: in wavefront or diagonal order
 * row i - 1 has got no further than column j + r when pixel (i, j) is computed, so that slot still holds
 * (i - 1, j).
 *
 * The functions release the GIL while they compute.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* The hot loops are compiled three times: for AVX-512, for AVX2 + FMA and for the baseline, and the model's `isa`
   picks one (`usable_isa`): integer arithmetic and exact float64 sums, so all three give the same numbers. */
#define HAVE_X86_KERNELS 1
#define TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,tune=skylake-avx512")))
#define TARGET_AVX2 __attribute__((target("avx2,fma,tune=skylake")))
#endif
#ifndef _WIN32
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#define HAVE_THREADS 1
#endif
#ifdef __linux__
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#define HAVE_FUTEX 1
#endif
/* a function whose body is compiled into each instruction set's variant that calls it */
#define BODY static inline __attribute__((always_inline))

#define ARG_BITS 10
#define STATE_BITS 15
#define WEIGHT_BITS 20
#define CDF_BITS 24
#define MEAN_BITS 16
#define NUM_BINS 256
#define TOTAL ((1 << WEIGHT_BITS) + 256)
#define WORD_BITS 32
#define MAX_LAYERS 16
#define MAX_UNITS 4096
#define MAX_EXPERTS 1024        /* K 2^42 < 2^53: `normalise`'s sums are exact in float64 */
#define PAPER_MEMORY 64
#define MAX_BLOCKS 96

/* floor(x / 2^s) for 0 <= s <= 62 (`model` checks the width shifts), without relying on how >> treats negative
   numbers. */
BODY int64_t floor_shift(int64_t x, int64_t s) { return x >= 0 ? (x >> s) : ~((~x) >> s); }

BODY int64_t clip64(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : (x > hi ? hi : x); }

/* floor(x s) clipped to [lo, hi] (integers), x a float64 integer (< 2^52) and s a power of two: exact.  Clipped
   first (floor is monotone and the bounds are integers), then floored by truncation (no libm call). */
BODY int64_t rescale(double x, double s, double lo, double hi) {
    double y = x * s;
    if (y < lo) y = lo;
    if (y > hi) y = hi;
    int64_t t = (int64_t)y;
    return (double)t > y ? t - 1 : t;
}

/* floor(y) of a float64 below 2^62 in magnitude. */
BODY int64_t floor64(double y) {
    int64_t t = (int64_t)y;
    return (double)t > y ? t - 1 : t;
}

/* The instruction set this CPU runs, at most `wanted` (0 generic, 1 AVX2 + FMA, 2 AVX-512 F/DQ/BW/VL). */
static int usable_isa(int wanted) {
#ifdef HAVE_X86_KERNELS
    __builtin_cpu_init();
    if (wanted >= 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return 2;
    if (wanted >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    (void)wanted;
    return 0;
}

/* name(args) runs name_avx512, name_avx2 or name_generic by the model's instruction set: each variant is the same
   BODY compiled for its instruction set (`m` must be among the parameters). */
#ifdef HAVE_X86_KERNELS
#define VARIANTS(name, params, args)                                                                       \
    TARGET_AVX512 static void name##_avx512 params { name##_body args; }                                    \
    TARGET_AVX2 static void name##_avx2 params { name##_body args; }                                        \
    static void name##_generic params { name##_body args; }                                                \
    static void name params {                                                                              \
        if (m->isa == 2) name##_avx512 args;                                                               \
        else if (m->isa == 1) name##_avx2 args;                                                            \
        else name##_generic args;                                                                          \
    }
#else
#define VARIANTS(name, params, args) static void name params { name##_body args; }
#endif

/* ------------------------------------------------------------------ the model */
typedef struct {
    const int32_t *values;
    int64_t low, size;             /* T[i - low] for argument i; `size` entries */
} Table;

BODY int64_t look(const Table *t, int64_t index) { return t->values[clip64(index - t->low, 0, t->size - 1)]; }

typedef struct {
    double *bias, *scale;
    double low, high;
} Affine;

/* Products in 16-bit integers with 32-bit sums, where the weights allow it (`narrow_rows` checks each column's
   worst case; the derivation 2 of `ride_tf.codec.derive` sees to it for the rows that read the LSTM states):
   a pass takes the inputs of rows [r0, r1) (|x| <= the bound it was checked for) and weights of 16 bits, and
   adds scale times its sums.  Rows whose weights are too wide for one pass (the inputs c, whose weights carry the
   whitening) may take two: the weights' high halves V >> 13 (scale 2^13) and their low 13 bits.  Every sum is
   an exact integer, so the passes, the float64 products of the other rows and their order give the integers of
   a float64 product alone. */
#define SPLIT_BITS 13
#define MAX_PASSES 3
typedef struct {
    int16_t *w;                /* [k16 / 2, cols, 2]: pairs of rows interleaved, as the multiply-add pairs them */
    Py_ssize_t r0, r1, k16;    /* k16 = r1 - r0 rounded up to even (a zero row pads it) */
    double scale, bound;       /* the sums count scale times; the inputs' bound the weights were checked for */
} Pass16;

typedef struct {
    Pass16 pass[MAX_PASSES];
    int count;
} Narrow;

typedef struct {
    int channels, components, scales, experts, features, units, layers, paper, extended, reads_inputs;
    int radius, offsets_count, inputs, width_u;     /* P, P C, P C + P */
    int64_t *offsets;                               /* [P, 2] (di, dj) */
    double *input_mean;                             /* [P C] */
    Table tanh_t, sigmoid_t, exp_gate_t, exp_weight_t, phi_t;
    int64_t *table_memory;
    Affine layer[MAX_LAYERS];
    Affine responses, gate, means;
    double *gate_squares;                           /* [F, components], integers below 2^52 */
    double *logit_factor_scaled, *logit_offset;     /* [K] */
    int64_t *inverse_widths, *width_shifts;         /* [channels, K] */
    int64_t *regressions;                           /* [components, channels, channels] at 2^-16 */
    /* the cumulative tables in float64 (`table_terms`): s_k = inverse_width_k 2^-shift_k [channels, K], used when
       `exact_terms` (the bounds of `terms_are_exact` hold) */
    double *phi_slopes;
    int exact_terms;
    void *blocks[MAX_BLOCKS];
    int num_blocks;
    /* the products of whole images (`encode_image`, `decode_image`): weights padded to `padded` columns */
    int isa;                                        /* 0 generic C, 1 AVX2 + FMA, 2 AVX-512 */
    int has_weights, z_width, b_width;
    const double *layer_w[MAX_LAYERS];              /* [D_l, padded(5U)] */
    Py_ssize_t layer_rows[MAX_LAYERS];
    const double *mixture_w;                        /* [Z, padded(B)] */
    Narrow layer_narrow[MAX_LAYERS], mixture_narrow;     /* the products' passes in 16-bit integers */
} Model;

static int terms_are_exact(const Model *m);

static const char *CAPSULE = "ride_tf.codec.kernels.Model";

static void model_free(PyObject *capsule) {
    Model *m = (Model *)PyCapsule_GetPointer(capsule, CAPSULE);
    if (!m) return;
    for (int k = 0; k < m->num_blocks; k++) free(m->blocks[k]);
    free(m);
}

static Model *get_model(PyObject *capsule) { return (Model *)PyCapsule_GetPointer(capsule, CAPSULE); }

/* A contiguous buffer of `count` items of `kind` ('q': int64, 'd': float64, 'B': uint8, 'Q': uint64). */
static int get_buffer(PyObject *obj, Py_buffer *view, char kind, Py_ssize_t count, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError, "kernels: %s must be a C-contiguous%s array", name, writable ? " writable" : "");
        return -1;
    }
    char format = view->format ? view->format[0] : 'B';
    if (format == '<' || format == '=' || format == '@') format = view->format[1];
    int ok;
    switch (kind) {
        case 'q': ok = view->itemsize == 8 && (format == 'q' || format == 'l'); break;
        case 'Q': ok = view->itemsize == 8 && (format == 'Q' || format == 'L'); break;
        case 'd': ok = view->itemsize == 8 && format == 'd'; break;
        default: ok = view->itemsize == 1 && (format == 'B'); break;
    }
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "kernels: %s has the wrong dtype (format %s)", name, view->format);
        PyBuffer_Release(view);
        return -1;
    }
    if (count >= 0 && view->len / view->itemsize < count) {
        PyErr_Format(PyExc_ValueError, "kernels: %s holds %zd items, needs %zd", name, view->len / view->itemsize,
                     count);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* dict[key], or NULL with a KeyError naming it. */
static PyObject *get_item(PyObject *dict, const char *key) {
    PyObject *obj = PyDict_GetItemString(dict, key);
    if (!obj) PyErr_Format(PyExc_KeyError, "kernels.model: missing %s", key);
    return obj;
}

/* A copy of dict[key] (an array of `count` items of `kind`; count < 0: any length, stored in *length). */
static void *copy_item(Model *m, PyObject *dict, const char *key, char kind, Py_ssize_t count, Py_ssize_t *length) {
    PyObject *obj = get_item(dict, key);
    if (!obj) return NULL;
    Py_buffer view;
    if (get_buffer(obj, &view, kind, count, 0, key) < 0) return NULL;
    Py_ssize_t items = view.len / view.itemsize;
    if (count >= 0 && items != count) {
        PyErr_Format(PyExc_ValueError, "kernels.model: %s holds %zd items, expected %zd", key, items, count);
        PyBuffer_Release(&view);
        return NULL;
    }
    if (m->num_blocks >= MAX_BLOCKS) {
        PyErr_SetString(PyExc_ValueError, "kernels.model: too many arrays");
        PyBuffer_Release(&view);
        return NULL;
    }
    void *copy = malloc(view.len > 0 ? view.len : 1);
    if (!copy) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, view.buf, view.len);
    m->blocks[m->num_blocks++] = copy;
    if (length) *length = items;
    PyBuffer_Release(&view);
    return copy;
}

static int get_int(PyObject *dict, const char *key, long *out) {
    PyObject *obj = get_item(dict, key);
    if (!obj) return -1;
    *out = PyLong_AsLong(obj);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int get_double(PyObject *dict, const char *key, double *out) {
    PyObject *obj = get_item(dict, key);
    if (!obj) return -1;
    *out = PyFloat_AsDouble(obj);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* A lookup table, stored as int32 (its values lie in [-2^31, 2^31): half the cache of int64), without the runs
   of equal values at its ends but one entry of each: T[clip(i - low, 0, size - 1)] is unchanged for every i, and
   the lookups touch fewer cache lines. */
static int get_table(Model *m, PyObject *dict, const char *name, const char *low_key, Table *t) {
    Py_ssize_t size;
    long low;
    const int64_t *wide = copy_item(m, dict, name, 'q', -1, &size);
    if (!wide || get_int(dict, low_key, &low) < 0) return -1;
    if (size < 1 || m->num_blocks >= MAX_BLOCKS) {
        PyErr_Format(PyExc_ValueError, "kernels.model: table %s is empty", name);
        return -1;
    }
    Py_ssize_t first = 0, last = size - 1;
    while (first < last && wide[first + 1] == wide[0]) first++;
    while (last > first && wide[last - 1] == wide[size - 1]) last--;
    wide += first;
    low += first;
    size = last - first + 1;
    int32_t *narrow = malloc(sizeof(int32_t) * size);
    if (!narrow) {
        PyErr_NoMemory();
        return -1;
    }
    m->blocks[m->num_blocks++] = narrow;
    for (Py_ssize_t k = 0; k < size; k++) {
        if (wide[k] < INT32_MIN || wide[k] > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "kernels.model: table %s has values beyond 32 bits", name);
            return -1;
        }
        narrow[k] = (int32_t)wide[k];
    }
    t->values = narrow;
    t->low = low;
    t->size = size;
    return 0;
}

static int get_affine(Model *m, PyObject *dict, const char *prefix, Py_ssize_t count, Affine *a) {
    char key[64];
    snprintf(key, sizeof key, "%s_bias", prefix);
    if (!(a->bias = copy_item(m, dict, key, 'd', count, NULL))) return -1;
    snprintf(key, sizeof key, "%s_scale", prefix);
    if (!(a->scale = copy_item(m, dict, key, 'd', count, NULL))) return -1;
    snprintf(key, sizeof key, "%s_low", prefix);
    if (get_double(dict, key, &a->low) < 0) return -1;
    snprintf(key, sizeof key, "%s_high", prefix);
    return get_double(dict, key, &a->high);
}

/* model(dict) -> capsule: the integer model's constants, copied (`ride_tf.codec.native.model_constants`). */
static PyObject *k_model(PyObject *self, PyObject *args) {
    PyObject *dict;
    if (!PyArg_ParseTuple(args, "O!", &PyDict_Type, &dict)) return NULL;
    Model *m = calloc(1, sizeof(Model));
    if (!m) return PyErr_NoMemory();
    long v;
#define INT_FIELD(field)                                      \
    if (get_int(dict, #field, &v) < 0) goto fail;             \
    m->field = (int)v;
    INT_FIELD(channels) INT_FIELD(components) INT_FIELD(scales) INT_FIELD(features) INT_FIELD(units)
    INT_FIELD(layers) INT_FIELD(paper) INT_FIELD(extended) INT_FIELD(reads_inputs) INT_FIELD(radius) INT_FIELD(isa)
#undef INT_FIELD
    m->isa = usable_isa(m->isa);
    m->experts = m->components * m->scales;
    if (m->channels < 1 || m->channels > 4 || m->components < 1 || m->scales < 1 || m->experts > MAX_EXPERTS ||
        m->features < 0 ||
        m->units < 0 || m->units > MAX_UNITS || m->layers < 0 || m->layers > MAX_LAYERS || m->radius < 0 || (m->layers > 0 && m->units < 1)) {
        PyErr_SetString(PyExc_ValueError, "kernels.model: sizes out of range");
        goto fail;
    }
    Py_ssize_t count;
    if (!(m->offsets = copy_item(m, dict, "offsets", 'q', -1, &count))) goto fail;
    m->offsets_count = (int)(count / 2);
    m->inputs = m->offsets_count * m->channels;
    m->width_u = m->inputs + m->offsets_count;
    if (!(m->input_mean = copy_item(m, dict, "input_mean", 'd', m->inputs, NULL))) goto fail;
    if (get_table(m, dict, "tanh", "tanh_low", &m->tanh_t) < 0 ||
        get_table(m, dict, "sigmoid", "sigmoid_low", &m->sigmoid_t) < 0 ||
        get_table(m, dict, "exp_gate", "exp_gate_low", &m->exp_gate_t) < 0 ||
        get_table(m, dict, "exp_weight", "exp_weight_low", &m->exp_weight_t) < 0 ||
        get_table(m, dict, "phi", "phi_low", &m->phi_t) < 0)
        goto fail;
    for (int l = 0; l < m->layers; l++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "layer%d", l);
        if (get_affine(m, dict, prefix, 5 * (Py_ssize_t)m->units, &m->layer[l]) < 0) goto fail;
    }
    if (get_affine(m, dict, "responses", m->features, &m->responses) < 0 ||
        get_affine(m, dict, "gate", m->components, &m->gate) < 0 ||
        get_affine(m, dict, "means", (Py_ssize_t)m->components * m->channels, &m->means) < 0)
        goto fail;
    if (!(m->gate_squares = copy_item(m, dict, "gate_squares", 'd', (Py_ssize_t)m->features * m->components, NULL)) ||
        !(m->logit_factor_scaled = copy_item(m, dict, "logit_factor_scaled", 'd', m->experts, NULL)) ||
        !(m->logit_offset = copy_item(m, dict, "logit_offset", 'd', m->experts, NULL)) ||
        !(m->inverse_widths = copy_item(m, dict, "inverse_widths", 'q', (Py_ssize_t)m->channels * m->experts, NULL)) ||
        !(m->width_shifts = copy_item(m, dict, "width_shifts", 'q', (Py_ssize_t)m->channels * m->experts, NULL)) ||
        !(m->regressions = copy_item(m, dict, "regressions", 'q',
                                     (Py_ssize_t)m->components * m->channels * m->channels, NULL)))
        goto fail;
    for (Py_ssize_t k = 0; k < (Py_ssize_t)m->channels * m->experts; k++)
        if (m->width_shifts[k] < 0 || m->width_shifts[k] > 62) {
            PyErr_SetString(PyExc_ValueError, "kernels.model: a width shift lies outside [0, 62]");
            goto fail;
        }
    if (m->num_blocks >= MAX_BLOCKS || !(m->phi_slopes = malloc(sizeof(double) * m->channels * m->experts + 8))) {
        PyErr_NoMemory();
        goto fail;
    }
    m->blocks[m->num_blocks++] = m->phi_slopes;
    for (Py_ssize_t k = 0; k < (Py_ssize_t)m->channels * m->experts; k++)
        m->phi_slopes[k] = ldexp((double)m->inverse_widths[k], -(int)m->width_shifts[k]);
    m->exact_terms = terms_are_exact(m);
    PyObject *capsule = PyCapsule_New(m, CAPSULE, model_free);
    if (capsule) return capsule;
fail:
    for (int k = 0; k < m->num_blocks; k++) free(m->blocks[k]);
    free(m);
    return NULL;
}

/* table_arithmetic(model) -> "float64" or "int64": how the kernels compute the cumulative tables (`table_terms`). */
static PyObject *k_table_arithmetic(PyObject *self, PyObject *args) {
    PyObject *capsule;
    if (!PyArg_ParseTuple(args, "O", &capsule)) return NULL;
    Model *m = get_model(capsule);
    if (!m) return NULL;
    return PyUnicode_FromString(m->exact_terms ? "float64" : "int64");
}

/* ------------------------------------------------------------------ lines of pixels */
typedef struct {
    Py_ssize_t i0, j0, slope, n;
} Line;

static int check_line(const Line *line, Py_ssize_t height, Py_ssize_t width) {
    if (line->n < 0 || line->slope < 0) goto bad;
    if (line->n == 0) return 0;
    Py_ssize_t i_last = line->i0 + line->n - 1, j_last = line->j0 - line->slope * (line->n - 1);
    if (line->i0 < 0 || i_last >= height || line->j0 >= width || j_last < 0) goto bad;
    return 0;
bad:
    PyErr_SetString(PyExc_ValueError, "kernels: the line of pixels leaves the image");
    return -1;
}

/* The rows of n pixels in a buffer of `items` items: pixel p's `width` items start at offset + p * ld. */
static int check_rows(Py_ssize_t items, Py_ssize_t n, Py_ssize_t ld, Py_ssize_t offset, Py_ssize_t width,
                      const char *name) {
    if (n == 0) return 0;
    if (offset < 0 || ld < 0 || (n > 1 && ld < width) || offset + (n - 1) * ld + width > items) {
        PyErr_Format(PyExc_ValueError, "kernels: the rows of %s lie outside its buffer", name);
        return -1;
    }
    return 0;
}

/* A writable float64 buffer holding the rows of n pixels (`check_rows`); released again when it does not. */
static int get_rows(PyObject *obj, Py_buffer *view, Py_ssize_t n, Py_ssize_t ld, Py_ssize_t offset, Py_ssize_t width,
                    const char *name) {
    if (get_buffer(obj, view, 'd', -1, 1, name) < 0) return -1;
    if (check_rows(view->len / 8, n, ld, offset, width, name) < 0) {
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Ring buffers of one layer: h and c, [H + 1, S, U] each. */
typedef struct {
    double *h, *c;
    Py_ssize_t slots, units;
} Ring;

static inline double *ring_at(double *base, const Ring *r, Py_ssize_t ring_row, Py_ssize_t col) {
    Py_ssize_t slot = ((col % r->slots) + r->slots) % r->slots;
    return base + (ring_row * r->slots + slot) * r->units;
}

/* centred inputs of pixel (i, j) of a uint8 image [H, W, C] into out: u = [c, e] (P C + P values), or c alone. */
static void centred_inputs_at(const Model *m, const uint8_t *image, Py_ssize_t width, Py_ssize_t i, Py_ssize_t j,
                              int only_centred, double *out) {
    int channels = m->channels, count = m->offsets_count;
    for (int p = 0; p < count; p++) {
        Py_ssize_t y = i + m->offsets[2 * p], x = j + m->offsets[2 * p + 1];
        int outside = y < 0 || x < 0 || x >= width;
        for (int ch = 0; ch < channels; ch++) {
            int k = p * channels + ch;
            out[k] = outside ? 0.0 : ((2.0 * image[(y * width + x) * channels + ch] + 1.0) * 8.0 - m->input_mean[k]);
        }
        if (!only_centred) out[m->inputs + p] = outside ? 1.0 : 0.0;
    }
}

/* inputs(model, image, height, width, (i0, j0, slope, n), only_centred, out, ld, offset): the centred inputs
   u = [c, e] (or c alone) of the line's pixels into out[offset + p ld ...] (float64). */
static PyObject *k_inputs(PyObject *self, PyObject *args) {
    PyObject *capsule, *image_obj, *out_obj;
    Py_ssize_t height, width, ld, offset;
    int only_centred;
    Line line;
    if (!PyArg_ParseTuple(args, "OOnn(nnnn)pOnn", &capsule, &image_obj, &height, &width, &line.i0, &line.j0,
                          &line.slope, &line.n, &only_centred, &out_obj, &ld, &offset))
        return NULL;
    Model *m = get_model(capsule);
    if (!m || check_line(&line, height, width) < 0) return NULL;
    Py_buffer image, out;
    if (get_buffer(image_obj, &image, 'B', height * width * m->channels, 0, "image") < 0) return NULL;
    if (get_rows(out_obj, &out, line.n, ld, offset, only_centred ? m->inputs : m->width_u, "out") < 0) {
        PyBuffer_Release(&image);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t p = 0; p < line.n; p++)
        centred_inputs_at(m, image.buf, width, line.i0 + p, line.j0 - line.slope * p, only_centred,
                          (double *)out.buf + offset + p * ld);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&image);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static int get_ring(PyObject *h_obj, PyObject *c_obj, Py_buffer *hv, Py_buffer *cv, Ring *ring, Py_ssize_t height,
                    Py_ssize_t slots, Py_ssize_t units) {
    Py_ssize_t count = (height + 1) * slots * units;
    if (slots < 2) {
        PyErr_SetString(PyExc_ValueError, "kernels: a ring needs at least 2 slots per row");
        return -1;
    }
    if (get_buffer(h_obj, hv, 'd', count, 1, "ring_h") < 0) return -1;
    if (get_buffer(c_obj, cv, 'd', count, 1, "ring_c") < 0) {
        PyBuffer_Release(hv);
        return -1;
    }
    ring->h = hv->buf;
    ring->c = cv->buf;
    ring->slots = slots;
    ring->units = units;
    return 0;
}

/* four lanes of int32 and of float64 (GCC's vector types: each instruction set's variant compiles them its way) */
typedef int32_t V4I __attribute__((vector_size(16)));
typedef double V4D __attribute__((vector_size(32)));

/* ------------------------------------------------------------------ the spatial LSTM cell */
/* out[u] = T[clip(index[u] - low, 0, last)] for u < n, int32 arguments (every argument of the cell fits: +-2^16):
   gathers where the instruction set has them. */
static void lookups_generic(const int32_t *restrict values, int32_t low, int32_t last, const int32_t *restrict index,
                            int32_t *restrict out, int n) {
    for (int u = 0; u < n; u++) {
        int32_t k = index[u] - low;
        out[u] = values[k < 0 ? 0 : (k > last ? last : k)];
    }
}

#ifdef HAVE_X86_KERNELS
TARGET_AVX2 static void lookups_avx2(const int32_t *restrict values, int32_t low, int32_t last,
                                     const int32_t *restrict index, int32_t *restrict out, int n) {
    __m256i lo = _mm256_set1_epi32(low), zero = _mm256_setzero_si256(), top = _mm256_set1_epi32(last);
    int u = 0;
    for (; u + 8 <= n; u += 8) {
        __m256i k = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(index + u)), lo);
        k = _mm256_min_epi32(_mm256_max_epi32(k, zero), top);
        _mm256_storeu_si256((__m256i *)(out + u), _mm256_i32gather_epi32((const int *)values, k, 4));
    }
    lookups_generic(values, low, last, index + u, out + u, n - u);
}

TARGET_AVX512 static void lookups_avx512(const int32_t *restrict values, int32_t low, int32_t last,
                                         const int32_t *restrict index, int32_t *restrict out, int n) {
    __m512i lo = _mm512_set1_epi32(low), zero = _mm512_setzero_si512(), top = _mm512_set1_epi32(last);
    int u = 0;
    for (; u + 16 <= n; u += 16) {
        __m512i k = _mm512_sub_epi32(_mm512_loadu_si512((const void *)(index + u)), lo);
        k = _mm512_min_epi32(_mm512_max_epi32(k, zero), top);
        _mm512_storeu_si512((void *)(out + u), _mm512_i32gather_epi32(k, (const void *)values, 4));
    }
    lookups_avx2(values, low, last, index + u, out + u, n - u);
}
#endif

BODY void lookups(const Model *m, const Table *t, const int32_t *restrict index, int32_t *restrict out, int n) {
    int32_t low = (int32_t)t->low, last = (int32_t)t->size - 1;
#ifdef HAVE_X86_KERNELS
    if (m->isa == 2) return lookups_avx512(t->values, low, last, index, out, n);
    if (m->isa == 1) return lookups_avx2(t->values, low, last, index, out, n);
#endif
    lookups_generic(t->values, low, last, index, out, n);
}

/* floor(y) of a float64 whose floor fits int32. */
BODY int32_t floor32(double y) {
    int32_t t = (int32_t)y;
    return t - ((double)t > y);
}

/* One pixel's cell: a the products x W [5 U] (float64 integers), the neighbours' memories; writes h, c.  In
   phases over the units, the lookups as gathers, the rest vectorised by the compiler in each instruction set's
   variant.  Every value fits int32 (pre-activations +-2^14, table values < 2^25, the tanh argument +-2^16),
   every double below is an integer or an exact quotient. */
/* int32 slots of cell_at's scratch */
#define CELL_WORK(units) (14 * (Py_ssize_t)(units) + 1)

BODY void cell_at_body(const Model *m, int layer, const double *restrict a, const double *restrict c_left,
                       const double *restrict c_up, double *restrict h, double *restrict c, int32_t *work) {
    const Affine *lin = &m->layer[layer];
    const int units = m->units;
    const double one = (double)((int64_t)1 << STATE_BITS);
    const double bound = m->paper ? one * PAPER_MEMORY : one;
    int32_t *pre = work, *restrict look = work + 5 * units, *restrict arg = work + 10 * units;
    const double low = lin->low, high = lin->high, *restrict bias = lin->bias, *restrict scale = lin->scale;
    for (int col = 0; col < 5 * units; col++) {
        double y = (a[col] + bias[col]) * scale[col];
        y = y < low ? low : (y > high ? high : y);       /* the bounds are +-2^14 */
        pre[col] = floor32(y);
    }
    int32_t *restrict g = look, *restrict o = look + units, *restrict gi = look + 2 * units;
    int32_t *restrict gl = look + 3 * units, *restrict gu = look + 4 * units;
    lookups(m, &m->tanh_t, pre, g, units);
    lookups(m, &m->sigmoid_t, pre + units, o, units);
    if (m->paper) {
        lookups(m, &m->sigmoid_t, pre + 2 * units, gi, 3 * units);           /* i, f_left, f_up */
    } else {
        /* e^(a - top) for a = a_i, a_l, a_u and 0, top = max(a_i, a_l, a_u, 0): arguments <= 0 */
        const int32_t *pi = pre + 2 * units, *pl = pre + 3 * units, *pu = pre + 4 * units;
        int32_t *restrict e = pre;            /* over the pre-activations, once they are read */
        for (int u = 0; u < units; u++) {
            int32_t top = pi[u] > pl[u] ? pi[u] : pl[u];
            top = pu[u] > top ? pu[u] : top;
            top = top > 0 ? top : 0;
            arg[u] = pi[u] - top;
            arg[units + u] = pl[u] - top;
            arg[2 * units + u] = pu[u] - top;
            arg[3 * units + u] = -top;
        }
        lookups(m, &m->exp_gate_t, arg, e, 4 * units);          /* e = [e_i, e_l, e_u, e_0] over pre's first 4U */
        /* floor(e 2^15 / total): e 2^15 <= 2^30 and total in [2^15, 2^17), so the float64 quotient is within 2^-38
           of the exact one, which lies at least 2^-17 from the next integer: truncation is exact.  Four units at a
           time in GCC's vector types (the compiler does not vectorise the plain loop). */
        int u = 0;
        for (; u + 4 <= units; u += 4) {
            V4I part[4];
            for (int k = 0; k < 4; k++) memcpy(&part[k], e + k * units + u, sizeof(V4I));
            V4D ei = __builtin_convertvector(part[0], V4D), el = __builtin_convertvector(part[1], V4D);
            V4D eu = __builtin_convertvector(part[2], V4D), total = ei + el + eu + __builtin_convertvector(part[3], V4D);
            V4I qi = __builtin_convertvector(ei * one / total, V4I), ql = __builtin_convertvector(el * one / total, V4I);
            V4I qu = __builtin_convertvector(eu * one / total, V4I);
            memcpy(gi + u, &qi, sizeof(V4I));
            memcpy(gl + u, &ql, sizeof(V4I));
            memcpy(gu + u, &qu, sizeof(V4I));
        }
        for (; u < units; u++) {
            double ei = e[u], el = e[units + u], eu = e[2 * units + u], total = ei + el + eu + e[3 * units + u];
            gi[u] = (int32_t)(ei * one / total);
            gl[u] = (int32_t)(el * one / total);
            gu[u] = (int32_t)(eu * one / total);
        }
    }
    const double down = 1.0 / (double)(1 << (2 * STATE_BITS - ARG_BITS));
    for (int u = 0; u < units; u++) {
        /* |memory| < 2^38 (paper cell: |c| <= 2^21): exact in float64, and so are the rescalings */
        double memory = (double)g[u] * gi[u] + c_left[u] * gl[u] + c_up[u] * gu[u];
        double cm = (double)floor32(memory * (1.0 / one));
        cm = cm < -bound ? -bound : (cm > bound ? bound : cm);
        c[u] = cm;
        arg[u] = floor32(cm * o[u] * down);
    }
    lookups(m, &m->tanh_t, arg, arg + units, units);
    for (int u = 0; u < units; u++) h[u] = (double)arg[units + u];
}

VARIANTS(cell_at, (const Model *m, int layer, const double *a, const double *c_left, const double *c_up, double *h,
                   double *c, int32_t *work), (m, layer, a, c_left, c_up, h, c, work))

/* cell(model, layer, a, lda, ring_h, ring_c, height, width, slots, (i0, j0, slope, n), out, ld, offset): the
   cell of the line's pixels from their products a [n, lda] (columns 0 .. 5U), reading the neighbours' memories
   from the ring and writing each pixel's (h, c) to it, and h to out[offset + p ld ...] unless out is None. */
static PyObject *k_cell(PyObject *self, PyObject *args) {
    PyObject *capsule, *a_obj, *h_obj, *c_obj, *out_obj;
    Py_ssize_t lda, height, width, slots, ld, offset;
    int layer;
    Line line;
    if (!PyArg_ParseTuple(args, "OiOnOOnnn(nnnn)Onn", &capsule, &layer, &a_obj, &lda, &h_obj, &c_obj, &height,
                          &width, &slots, &line.i0, &line.j0, &line.slope, &line.n, &out_obj, &ld, &offset))
        return NULL;
    Model *m = get_model(capsule);
    if (!m || check_line(&line, height, width) < 0) return NULL;
    Py_ssize_t units = m->units;
    if (layer < 0 || layer >= m->layers || lda < 5 * units) {
        PyErr_SetString(PyExc_ValueError, "kernels.cell: layer or columns out of range");
        return NULL;
    }
    Py_buffer av, hv, cv, out;
    Ring ring;
    int has_out = out_obj != Py_None;
    if (get_buffer(a_obj, &av, 'd', line.n * lda, 0, "a") < 0) return NULL;
    if (get_ring(h_obj, c_obj, &hv, &cv, &ring, height, slots, units) < 0) {
        PyBuffer_Release(&av);
        return NULL;
    }
    if (has_out && get_rows(out_obj, &out, line.n, ld, offset, units, "out") < 0) {
        PyBuffer_Release(&av);
        PyBuffer_Release(&hv);
        PyBuffer_Release(&cv);
        return NULL;
    }
    int32_t *work = malloc(sizeof(int32_t) * CELL_WORK(units));
    if (!work) {
        PyBuffer_Release(&av);
        PyBuffer_Release(&hv);
        PyBuffer_Release(&cv);
        if (has_out) PyBuffer_Release(&out);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t p = 0; p < line.n; p++) {
        Py_ssize_t i = line.i0 + p, j = line.j0 - line.slope * p;
        double *h = ring_at(ring.h, &ring, i + 1, j), *c = ring_at(ring.c, &ring, i + 1, j);
        cell_at(m, layer, (const double *)av.buf + p * lda, ring_at(ring.c, &ring, i + 1, j - 1),
                ring_at(ring.c, &ring, i, j), h, c, work);
        if (has_out) memcpy((double *)out.buf + offset + p * ld, h, units * sizeof(double));
    }
    Py_END_ALLOW_THREADS
    free(work);
    PyBuffer_Release(&av);
    PyBuffer_Release(&hv);
    PyBuffer_Release(&cv);
    if (has_out) PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ the MCGSM */
/* normalise raw [K] (>= 0, not all zero, < 2^42) to weights summing to 2^20, in place: w_k = floor(raw_k 2^20 /
   sum), the largest one taking what the floors left.  In float64 so that the compiler vectorises it: raw_k 2^20 and
   the sum (below 2^52 for at most MAX_EXPERTS experts) are exact, the floor of the rounded quotient is the exact
   floor or one above it, and the residual q sum - raw_k 2^20 (an integer no larger than the sum in magnitude) is
   exact in one fused multiply-add, so its sign corrects the quotient. */
BODY void normalise(int64_t *restrict w, int experts) {
    int64_t sum = 0;
    for (int k = 0; k < experts; k++) sum += w[k];
    const double d = (double)sum;
    for (int k = 0; k < experts; k++) {
        double n = (double)w[k] * (double)((int64_t)1 << WEIGHT_BITS);
        int64_t q = (int64_t)(n / d);                 /* truncation: the floor of a quotient >= 0 */
        w[k] = q - (fma((double)q, d, -n) > 0.0);
    }
    int64_t total = 0, best = -1;
    int argmax = 0;
    for (int k = 0; k < experts; k++) {
        total += w[k];
        if (w[k] > best) {
            best = w[k];
            argmax = k;
        }
    }
    w[argmax] += ((int64_t)1 << WEIGHT_BITS) - total;
}

/* float64 slots of mixture_at's scratch: [F] squares, [components] products, [K] gates */
#define MIXTURE_WORK(m) ((m)->features + (m)->components + (m)->experts + 1)

/* One pixel's gate logits [K] (at 2^-10, clipped to +-2^20) and the components' means [components, C] (at 2^-16,
   channels in coding order) from its products b [F + components + components C]. */
BODY void mixture_logits_body(const Model *m, const double *b, int64_t *logits, int64_t *means, double *scratch) {
    int features = m->features, components = m->components, scales = m->scales;
    double *squares = scratch, *acc = scratch + features;       /* [F], [components] (`MIXTURE_WORK`) */
    for (int f = 0; f < features; f++) {
        int64_t r = rescale(b[f] + m->responses.bias[f], m->responses.scale[f], m->responses.low,
                            m->responses.high);
        squares[f] = (double)((r * r) >> 20);        /* r^2 >= 0, below 2^40 */
    }
    /* the gate's products on the squared responses: float64 sums of integers whose absolute values add up to
       less than 2^52 (`quantize_linear`), exact in any order; 8 components at a time in registers, the even and
       odd features in separate sums so that the additions' latencies overlap */
    const double *gs = m->gate_squares;
    int comp = 0;
    for (; comp + 8 <= components; comp += 8) {
        V4D e0 = {0}, e1 = {0}, o0 = {0}, o1 = {0}, r0, r1;
        int f = 0;
        for (; f + 2 <= features; f += 2) {
            const double *even = gs + (Py_ssize_t)f * components + comp, *odd = even + components;
            memcpy(&r0, even, sizeof(V4D));
            memcpy(&r1, even + 4, sizeof(V4D));
            e0 += squares[f] * r0;
            e1 += squares[f] * r1;
            memcpy(&r0, odd, sizeof(V4D));
            memcpy(&r1, odd + 4, sizeof(V4D));
            o0 += squares[f + 1] * r0;
            o1 += squares[f + 1] * r1;
        }
        for (; f < features; f++) {
            memcpy(&r0, gs + (Py_ssize_t)f * components + comp, sizeof(V4D));
            memcpy(&r1, gs + (Py_ssize_t)f * components + comp + 4, sizeof(V4D));
            e0 += squares[f] * r0;
            e1 += squares[f] * r1;
        }
        memcpy(&r0, b + features + comp, sizeof(V4D));
        memcpy(&r1, b + features + comp + 4, sizeof(V4D));
        r0 += e0 + o0;
        r1 += e1 + o1;
        memcpy(acc + comp, &r0, sizeof(V4D));
        memcpy(acc + comp + 4, &r1, sizeof(V4D));
    }
    for (; comp < components; comp++) {
        double sum = b[features + comp];
        for (int f = 0; f < features; f++) sum += squares[f] * gs[(Py_ssize_t)f * components + comp];
        acc[comp] = sum;
    }
    double *gate = acc + components;            /* [K]: each expert's component's gate */
    for (int comp = 0; comp < components; comp++) {
        int64_t t = rescale(acc[comp] + m->gate.bias[comp], m->gate.scale[comp], m->gate.low, m->gate.high);
        for (int s = 0; s < scales; s++) gate[comp * scales + s] = (double)t;
    }
    for (int k = 0; k < m->experts; k++)
        /* |t| <= 2^30 and the factor < 2^21 times a power of two: the product is exact, below 2^52 */
        logits[k] = clip64(floor64(gate[k] * m->logit_factor_scaled[k]) + (int64_t)m->logit_offset[k],
                           -((int64_t)1 << 20), (int64_t)1 << 20);
    const double *mb = b + features + components;
    for (int q = 0; q < components * m->channels; q++)
        means[q] = rescale(mb[q] + m->means.bias[q], m->means.scale[q], m->means.low, m->means.high);
}

/* One pixel's mixture from its products b: weights [K] (sum 2^20) and the components' means [components, C]. */
BODY void mixture_at_body(const Model *m, const double *b, int64_t *weights, int64_t *means, double *scratch) {
    int experts = m->experts;
    int64_t *logits = weights;
    mixture_logits_body(m, b, logits, means, scratch);
    int64_t top = logits[0];
    for (int k = 1; k < experts; k++)
        if (logits[k] > top) top = logits[k];
    for (int k = 0; k < experts; k++) weights[k] = look(&m->exp_weight_t, logits[k] - top);
    normalise(weights, experts);
}

/* The cumulative tables in float64.  With s_k = inverse_width_k 2^-shift_k (exact: a power-of-two scaling) and
   offset_k = -mean_k s_k, PHI's argument floor((edge - mean_k) inverse_width_k / 2^shift_k) is floor(edge s_k +
   offset_k): both terms are multiples of 2^-shift_k, and when |edge - mean_k| inverse_width_k < 2^52 every
   product and sum here is exact, so the floor is the integer one.  F's sum of w_k PHI_k (w_k >= 0, summing to
   2^20, |PHI| < 2^31) is a sum of integers below 2^51: exact in any order.  So the vectorised tables give the
   int64 tables' integers (`cumulative`), in every instruction set. */

/* Whether the bounds above hold for every mean the model can give: the means' clip bound M, plus what each
   earlier channel's regression can add (|r| (2^16 + M) / 2^16 + 1), times the largest inverse width. */
static int terms_are_exact(const Model *m) {
    double bound_means = fmax(fabs(m->means.low), fabs(m->means.high)), edge = (double)((NUM_BINS - 1) << 8);
    for (int ch = 0; ch < m->channels; ch++)
        for (int comp = 0; comp < m->components; comp++) {
            double bound = bound_means;
            for (int e = 0; e < ch; e++) {
                double r = fabs((double)m->regressions[(comp * m->channels + ch) * m->channels + e]);
                bound += r * (65536.0 + bound_means) / 65536.0 + 1.0;
            }
            for (int s = 0; s < m->scales; s++) {
                double width = (double)m->inverse_widths[ch * m->experts + comp * m->scales + s];
                if ((edge + bound) * width >= 0x1p52) return 0;
            }
        }
    return 1;
}

/* The index into PHI's table of argument floor(edge slope + offset) (see above), clipped to the table: float64. */
BODY double phi_index(double edge, double slope, double offset, double low, double last) {
    double a = floor(edge * slope + offset) - low;
    return a < 0.0 ? 0.0 : (a > last ? last : a);
}

/* sum_k w_k PHI_k(edge) over the K experts, PHI_k's argument floor(edge slope_k + offset_k) (see above); each
   PHI_k(edge) also to keep [K] unless keep is NULL. */
static double phi_sum_generic(const double *w, const double *offset, const double *slope, double edge,
                              const int32_t *phi, double low, double last, int experts, int32_t *keep) {
    double acc = 0.0;
    for (int k = 0; k < experts; k++) {
        int32_t value = phi[(int32_t)phi_index(edge, slope[k], offset[k], low, last)];
        if (keep) keep[k] = value;
        acc += w[k] * (double)value;
    }
    return acc;
}

#ifdef HAVE_X86_KERNELS
/* PHI's table indices of 4 (AVX2) or 8 (AVX-512) experts at `edge` (`phi_index`). */
TARGET_AVX2 static inline __m128i phi_indices_avx2(__m256d edge, const double *slope, const double *offset, __m256d low,
                                                   __m256d last) {
    __m256d a = _mm256_floor_pd(_mm256_fmadd_pd(edge, _mm256_loadu_pd(slope), _mm256_loadu_pd(offset)));
    a = _mm256_min_pd(_mm256_max_pd(_mm256_sub_pd(a, low), _mm256_setzero_pd()), last);
    return _mm256_cvttpd_epi32(a);
}

TARGET_AVX512 static inline __m256i phi_indices_avx512(__m512d edge, const double *slope, const double *offset,
                                                       __m512d low, __m512d last) {
    __m512d a = _mm512_fmadd_pd(edge, _mm512_loadu_pd(slope), _mm512_loadu_pd(offset));
    a = _mm512_roundscale_pd(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    a = _mm512_min_pd(_mm512_max_pd(_mm512_sub_pd(a, low), _mm512_setzero_pd()), last);
    return _mm512_cvttpd_epi32(a);
}

TARGET_AVX2 static double phi_sum_avx2(const double *w, const double *offset, const double *slope, double edge,
                                       const int32_t *phi, double low, double last, int experts, int32_t *keep) {
    __m256d e = _mm256_set1_pd(edge), lo = _mm256_set1_pd(low), top = _mm256_set1_pd(last);
    __m256d acc0 = _mm256_setzero_pd(), acc1 = acc0;
    int k = 0;
    for (; k + 8 <= experts; k += 8) {          /* two accumulators: the gathers' latencies overlap */
        __m128i v0 = _mm_i32gather_epi32(phi, phi_indices_avx2(e, slope + k, offset + k, lo, top), 4);
        __m128i v1 = _mm_i32gather_epi32(phi, phi_indices_avx2(e, slope + k + 4, offset + k + 4, lo, top), 4);
        if (keep) {
            _mm_storeu_si128((__m128i *)(keep + k), v0);
            _mm_storeu_si128((__m128i *)(keep + k + 4), v1);
        }
        acc0 = _mm256_fmadd_pd(_mm256_loadu_pd(w + k), _mm256_cvtepi32_pd(v0), acc0);
        acc1 = _mm256_fmadd_pd(_mm256_loadu_pd(w + k + 4), _mm256_cvtepi32_pd(v1), acc1);
    }
    __m256d acc = _mm256_add_pd(acc0, acc1);
    __m128d half = _mm_add_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd(acc, 1));
    double sum = _mm_cvtsd_f64(_mm_add_sd(half, _mm_unpackhi_pd(half, half)));
    return sum + phi_sum_generic(w + k, offset + k, slope + k, edge, phi, low, last, experts - k,
                                 keep ? keep + k : NULL);
}

TARGET_AVX512 static double phi_sum_avx512(const double *w, const double *offset, const double *slope, double edge,
                                           const int32_t *phi, double low, double last, int experts, int32_t *keep) {
    __m512d e = _mm512_set1_pd(edge), lo = _mm512_set1_pd(low), top = _mm512_set1_pd(last);
    __m512d acc0 = _mm512_setzero_pd(), acc1 = acc0;
    int k = 0;
    for (; k + 16 <= experts; k += 16) {
        __m256i v0 = _mm256_i32gather_epi32(phi, phi_indices_avx512(e, slope + k, offset + k, lo, top), 4);
        __m256i v1 = _mm256_i32gather_epi32(phi, phi_indices_avx512(e, slope + k + 8, offset + k + 8, lo, top), 4);
        if (keep) {
            _mm256_storeu_si256((__m256i *)(keep + k), v0);
            _mm256_storeu_si256((__m256i *)(keep + k + 8), v1);
        }
        acc0 = _mm512_fmadd_pd(_mm512_loadu_pd(w + k), _mm512_cvtepi32_pd(v0), acc0);
        acc1 = _mm512_fmadd_pd(_mm512_loadu_pd(w + k + 8), _mm512_cvtepi32_pd(v1), acc1);
    }
    double sum = _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
    return sum + phi_sum_avx2(w + k, offset + k, slope + k, edge, phi, low, last, experts - k,
                              keep ? keep + k : NULL);
}
#endif

/* float64 slots of a channel's scratch: its terms [2K] (`table_terms`), then the int32 PHIs that its table
   evaluations keep for the weights' update [3][K] (`TERMS_KEEP`) */
#define TERMS_WORK(experts) (2 * (Py_ssize_t)(experts) + (3 * (Py_ssize_t)(experts) + 1) / 2 + 1)
#define TERMS_KEEP(m, terms) ((int32_t *)((terms) + 2 * (m)->experts))

/* One channel's terms of its cumulative table: the weights as float64 and offset_k = -mean_k s_k ([K] each). */
BODY void table_terms(const Model *m, int ch, const int64_t *w, const int64_t *mean, double *wd, double *offset) {
    const double *slope = m->phi_slopes + ch * m->experts;
    for (int k = 0; k < m->experts; k++) {
        wd[k] = (double)w[k];
        offset[k] = -(double)mean[k] * slope[k];
    }
}

/* F(b) of `cumulative` from the channel's terms (`table_terms`); for 0 < b < 256 each PHI_k(b) also to keep [K]
   unless keep is NULL. */
BODY int64_t cumulative_terms(const Model *m, int ch, const double *wd, const double *offset, int64_t b,
                              int32_t *keep) {
    if (b <= 0) return 0;
    if (b >= NUM_BINS) return TOTAL;
    const double *slope = m->phi_slopes + ch * m->experts;
    double edge = (double)(b << (MEAN_BITS - 8)), low = (double)m->phi_t.low, last = (double)(m->phi_t.size - 1);
    double sum;
#ifdef HAVE_X86_KERNELS
    if (m->isa == 2) sum = phi_sum_avx512(wd, offset, slope, edge, m->phi_t.values, low, last, m->experts, keep);
    else if (m->isa == 1) sum = phi_sum_avx2(wd, offset, slope, edge, m->phi_t.values, low, last, m->experts, keep);
    else
#endif
        sum = phi_sum_generic(wd, offset, slope, edge, m->phi_t.values, low, last, m->experts, keep);
    return ((int64_t)sum >> CDF_BITS) + b;
}

/* PHI of expert k of coded channel ch at the lower edge of bin b (0 and below: -inf, 256 and above: +inf). */
BODY int64_t expert_phi(const Model *m, int ch, int k, int64_t mean, int64_t b) {
    int64_t edge = b <= 0 ? -((int64_t)1 << 30) : (b >= NUM_BINS ? ((int64_t)1 << 30) : (b << (MEAN_BITS - 8)));
    int64_t index = floor_shift((edge - mean) * m->inverse_widths[ch * m->experts + k],
                                m->width_shifts[ch * m->experts + k]);
    return look(&m->phi_t, index);
}

/* F(b) = floor(sum_k w_k PHI_k(b) / 2^24) + b, F(0) = 0, F(256) = TOTAL. */
BODY int64_t cumulative(const Model *m, int ch, const int64_t *w, const int64_t *mean, int64_t b) {
    if (b <= 0) return 0;
    if (b >= NUM_BINS) return TOTAL;
    int64_t acc = 0;
    for (int k = 0; k < m->experts; k++) acc += w[k] * expert_phi(m, ch, k, mean[k], b);
    return (acc >> CDF_BITS) + b;
}

/* The experts' means of coded channel ch [K], given the earlier channels' values. */
BODY void channel_mean(const Model *m, int ch, const int64_t *means, const int64_t *values, int64_t *mean) {
    int channels = m->channels, scales = m->scales;
    for (int comp = 0; comp < m->components; comp++) {       /* the scales of a component share its mean */
        const int64_t *mu = means + comp * channels;
        int64_t value = mu[ch];
        for (int e = 0; e < ch; e++) {
            int64_t centre = (2 * values[e] + 1) * 128;
            value += floor_shift(m->regressions[(comp * channels + ch) * channels + e] * (centre - mu[e]), MEAN_BITS);
        }
        for (int s = 0; s < scales; s++) mean[comp * scales + s] = value;
    }
}

/* The weights after coded channel ch took `value`: w_k (floor((PHI_k(v + 1) - PHI_k(v)) / 16) + 1), normalised;
   the PHIs kept by the channel's float64 table evaluations at v and v + 1 (`table_at`) where the model has them
   and both edges are finite (phi_low and phi_high not NULL), else in int64. */
BODY void update_weights(const Model *m, int ch, int64_t *w, const int64_t *mean, int64_t value,
                         const int32_t *phi_low, const int32_t *phi_high) {
    if (m->exact_terms && value >= 1 && value + 1 < NUM_BINS && phi_low && phi_high) {
        for (int k = 0; k < m->experts; k++) {
            int32_t mass = phi_high[k] - phi_low[k];
            w[k] *= (mass >= 0 ? mass >> 4 : ~((~mass) >> 4)) + 1;
        }
    } else {
        for (int k = 0; k < m->experts; k++) {
            int64_t mass = expert_phi(m, ch, k, mean[k], value + 1) - expert_phi(m, ch, k, mean[k], value);
            w[k] *= (mass >> 4) + 1;
        }
    }
    normalise(w, m->experts);
}

/* F(b) from the channel's float64 terms [2K] (`table_terms`) when the model has them, else in int64; each
   expert's PHI_k(b) to keep [K] when F is a float64 sum (0 < b < 256) and keep is not NULL. */
BODY int64_t table_at(const Model *m, int ch, const int64_t *w, const int64_t *mean, const double *terms, int64_t b,
                      int32_t *keep) {
    return m->exact_terms ? cumulative_terms(m, ch, terms, terms + m->experts, b, keep) : cumulative(m, ch, w, mean, b);
}

/* The slots of `keep` [3][K] that neither F(lo)'s nor F(hi)'s PHIs occupy. */
BODY int free_keep(int used_a, int used_b) {
    int q = 0;
    while (q == used_a || q == used_b) q++;
    return q;
}

/* The bin b with F(b) <= slot < F(b + 1), searched outwards from `guess` (the result is unique: F rises); with
   keep [3][K] not NULL, *keep_low and *keep_high point to the PHIs of F(b) and F(b + 1) where they were sums
   (`table_at`), else they are NULL. */
BODY int64_t find_bin(const Model *m, int ch, const int64_t *w, const int64_t *mean, const double *terms,
                      int64_t slot, int64_t guess, int64_t *low, int64_t *high, int32_t *keep,
                      const int32_t **keep_low, const int32_t **keep_high) {
    const int experts = m->experts;
    int64_t lo, hi, f_lo, f_hi;                     /* F(lo) <= slot < F(hi) */
    int k_lo = -1, k_hi = -1;                       /* the slots of keep holding their PHIs */
#define EVALUATE(b, slot_out) (slot_out = free_keep(k_lo, k_hi), \
                               table_at(m, ch, w, mean, terms, (b), keep ? keep + slot_out * experts : NULL))
    int k;
    guess = clip64(guess, 0, NUM_BINS - 1);
    int64_t f = EVALUATE(guess, k);
    if (f <= slot) {
        lo = guess;
        f_lo = f;
        k_lo = k;
        int64_t step = 1;
        for (;;) {
            hi = lo + step > NUM_BINS ? NUM_BINS : lo + step;
            f_hi = EVALUATE(hi, k_hi);
            if (f_hi > slot) break;
            lo = hi;
            f_lo = f_hi;
            k_lo = k_hi;
            k_hi = -1;
            step *= 2;
        }
    } else {
        hi = guess;
        f_hi = f;
        k_hi = k;
        int64_t step = 1;
        for (;;) {
            lo = hi - step < 0 ? 0 : hi - step;
            f_lo = EVALUATE(lo, k_lo);
            if (f_lo <= slot) break;
            hi = lo;
            f_hi = f_lo;
            k_hi = k_lo;
            k_lo = -1;
            step *= 2;
        }
    }
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2, f_mid = EVALUATE(mid, k);
        if (f_mid <= slot) {
            lo = mid;
            f_lo = f_mid;
            k_lo = k;
        } else {
            hi = mid;
            f_hi = f_mid;
            k_hi = k;
        }
    }
#undef EVALUATE
    *low = f_lo;
    *high = f_hi;
    if (keep) {
        *keep_low = lo > 0 && lo < NUM_BINS ? keep + k_lo * experts : NULL;
        *keep_high = hi > 0 && hi < NUM_BINS ? keep + k_hi * experts : NULL;
    }
    return lo;
}

/* Where the search for the bin of `slot` starts (any start finds the same bin, a close one with fewer table
   evaluations): the mixture's mean plus a logistic's quantile of u = slot / TOTAL whose density at its centre is
   the mixture's at its mean, sum_k w_k phi(0) s_k / 4 per bin (expert k's standard deviation is 4 / s_k bins:
   PHI's argument counts 2^-10 standard deviations, a bin 2^8 edge units). */
BODY int64_t quantile_guess(const Model *m, int ch, const int64_t *w, const int64_t *mean, int64_t slot) {
    const double *slope = m->phi_slopes + ch * m->experts;
    V4D sum_centre = {0}, sum_peak = {0};           /* four partial sums each: a guess need not be exact */
    int k = 0;
    for (; k + 4 <= m->experts; k += 4) {
        V4D wk = {(double)w[k], (double)w[k + 1], (double)w[k + 2], (double)w[k + 3]}, sk;
        V4D mk = {(double)mean[k], (double)mean[k + 1], (double)mean[k + 2], (double)mean[k + 3]};
        memcpy(&sk, slope + k, sizeof(V4D));
        sum_centre += wk * mk;
        sum_peak += wk * sk;
    }
    double centre = sum_centre[0] + sum_centre[1] + sum_centre[2] + sum_centre[3];
    double peak = sum_peak[0] + sum_peak[1] + sum_peak[2] + sum_peak[3];
    for (; k < m->experts; k++) {
        centre += (double)w[k] * (double)mean[k];
        peak += (double)w[k] * slope[k];
    }
    centre *= 0x1p-28;                                      /* weights at 2^-20, means at 2^-8 of a bin */
    peak *= 0.3989422804014327 / 4.0 * 0x1p-20;
    double u = ((double)slot + 0.5) / (double)TOTAL, guess = centre;
    if (peak > 0.0) guess += log(u / (1.0 - u)) / (4.0 * peak);
    return guess > 0.0 ? (guess < NUM_BINS - 1 ? (int64_t)guess : NUM_BINS - 1) : 0;
}

VARIANTS(mixture_at, (const Model *m, const double *b, int64_t *weights, int64_t *means, double *scratch),
         (m, b, weights, means, scratch))

/* One pixel's (start, freq) of every channel from its products b, given its values (coding order: coded channel
   ch is pixel[order[ch]]); `weights`, `means`, `mean`, `values`, `scratch`: the scratch of `mixture_at`, `terms`
   [TERMS_WORK] that of `table_terms` and `update_weights`. */
BODY void pixel_intervals_body(const Model *m, const double *b, const uint8_t *pixel, const int64_t *order,
                               int64_t *start, int64_t *freq, int64_t *weights, int64_t *means, int64_t *mean,
                               int64_t *values, double *scratch, double *terms) {
    mixture_at_body(m, b, weights, means, scratch);
    for (int ch = 0; ch < m->channels; ch++) {
        int64_t value = pixel[order[ch]];
        values[ch] = value;
        channel_mean(m, ch, means, values, mean);
        if (m->exact_terms) table_terms(m, ch, weights, mean, terms, terms + m->experts);
        int32_t *keep = ch + 1 < m->channels ? TERMS_KEEP(m, terms) : NULL;      /* [2][K] */
        int64_t low = table_at(m, ch, weights, mean, terms, value, keep);
        start[ch] = low;
        freq[ch] = table_at(m, ch, weights, mean, terms, value + 1, keep ? keep + m->experts : NULL) - low;
        if (keep) update_weights(m, ch, weights, mean, value, keep, keep + m->experts);
    }
}

VARIANTS(pixel_intervals, (const Model *m, const double *b, const uint8_t *pixel, const int64_t *order, int64_t *start,
                           int64_t *freq, int64_t *weights, int64_t *means, int64_t *mean, int64_t *values,
                           double *scratch, double *terms),
         (m, b, pixel, order, start, freq, weights, means, mean, values, scratch, terms))

/* The decoder's step for coded channel ch of one pixel: its value from the slot of its lane, *f_lo and *f_hi
   its table's F(value) and F(value + 1); the pixel's weights updated for the next channel. */
BODY void pixel_search_body(const Model *m, int ch, const int64_t *means, int64_t *values, int64_t *weights,
                            int64_t *mean, double *terms, int64_t slot, int64_t *f_lo, int64_t *f_hi) {
    channel_mean(m, ch, means, values, mean);
    if (m->exact_terms) table_terms(m, ch, weights, mean, terms, terms + m->experts);
    int32_t *keep = ch + 1 < m->channels ? TERMS_KEEP(m, terms) : NULL;          /* [3][K] */
    const int32_t *keep_low = NULL, *keep_high = NULL;
    int64_t guess = quantile_guess(m, ch, weights, mean, slot);
    int64_t value = find_bin(m, ch, weights, mean, terms, slot, guess, f_lo, f_hi, keep, &keep_low, &keep_high);
    values[ch] = value;
    if (keep) update_weights(m, ch, weights, mean, value, keep_low, keep_high);
}

VARIANTS(pixel_search, (const Model *m, int ch, const int64_t *means, int64_t *values, int64_t *weights, int64_t *mean,
                        double *terms, int64_t slot, int64_t *f_lo, int64_t *f_hi),
         (m, ch, means, values, weights, mean, terms, slot, f_lo, f_hi))

/* What the fit of a per-image prior shift needs of one pixel of a one-channel model: its gate logits [K] and each
   expert's mass of its value, PHI_k(v + 1) - PHI_k(v) at 2^-24 ([K]). */
BODY void pixel_experts_body(const Model *m, const double *b, int64_t value, int64_t *logits, int64_t *masses,
                             int64_t *means, int64_t *mean, double *scratch) {
    mixture_logits_body(m, b, logits, means, scratch);
    channel_mean(m, 0, means, NULL, mean);
    for (int k = 0; k < m->experts; k++)
        masses[k] = expert_phi(m, 0, k, mean[k], value + 1) - expert_phi(m, 0, k, mean[k], value);
}

VARIANTS(pixel_experts, (const Model *m, const double *b, int64_t value, int64_t *logits, int64_t *masses,
                         int64_t *means, int64_t *mean, double *scratch),
         (m, b, value, logits, masses, means, mean, scratch))

static Py_ssize_t mixture_columns(const Model *m) {
    return m->features + m->components + (Py_ssize_t)m->components * m->channels;
}

/* mixture(model, b, ldb, n, weights_out [n, K], means_out [n, components, C]): the mixtures of n pixels from
   their products b [n, ldb] (`mixture_at`), for checking against the reference. */
static PyObject *k_mixture(PyObject *self, PyObject *args) {
    PyObject *capsule, *b_obj, *w_obj, *m_obj;
    Py_ssize_t ldb, n;
    if (!PyArg_ParseTuple(args, "OOnnOO", &capsule, &b_obj, &ldb, &n, &w_obj, &m_obj)) return NULL;
    Model *m = get_model(capsule);
    if (!m) return NULL;
    if (n < 0 || ldb < mixture_columns(m)) {
        PyErr_SetString(PyExc_ValueError, "kernels.mixture: sizes out of range");
        return NULL;
    }
    Py_buffer bv, wv, mv;
    if (get_buffer(b_obj, &bv, 'd', n * ldb, 0, "b") < 0) return NULL;
    if (get_buffer(w_obj, &wv, 'q', n * m->experts, 1, "weights") < 0) {
        PyBuffer_Release(&bv);
        return NULL;
    }
    if (get_buffer(m_obj, &mv, 'q', n * m->components * m->channels, 1, "means") < 0) {
        PyBuffer_Release(&bv);
        PyBuffer_Release(&wv);
        return NULL;
    }
    double *scratch = malloc(sizeof(double) * MIXTURE_WORK(m));
    if (!scratch) {
        PyBuffer_Release(&bv);
        PyBuffer_Release(&wv);
        PyBuffer_Release(&mv);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t p = 0; p < n; p++)
        mixture_at(m, (const double *)bv.buf + p * ldb, (int64_t *)wv.buf + p * m->experts,
                   (int64_t *)mv.buf + p * m->components * m->channels, scratch);
    Py_END_ALLOW_THREADS
    free(scratch);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&wv);
    PyBuffer_Release(&mv);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ rANS encoding */
/* rans_encode(lanes, start, freq, boundaries, num_lanes, total) -> bytes: `ride_tf.codec.rans.RansEncoder`'s
   stream for the steps boundaries[k] .. boundaries[k + 1] of the symbols (checked as there). */
/* One rANS encoding step of a lane's state x: a word out first if x would leave its range. */
static inline uint64_t rans_put(uint64_t x, uint64_t start, uint64_t freq, uint64_t total, uint32_t *words,
                                Py_ssize_t *count) {
    if (x >= (freq << (WORD_BITS + 8))) {
        words[(*count)++] = (uint32_t)(x & 0xFFFFFFFFu);
        x >>= WORD_BITS;
    }
    return (x / freq) * total + x % freq + start;
}

/* The stream's bytes: the lanes' final states (8 bytes each), then the words in the order the decoder reads
   them (the encoder's order reversed), little-endian. */
static PyObject *stream_bytes(const uint64_t *states, Py_ssize_t num_lanes, const uint32_t *words, Py_ssize_t count) {
    PyObject *result = PyBytes_FromStringAndSize(NULL, 8 * num_lanes + 4 * count);
    if (result) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        for (Py_ssize_t l = 0; l < num_lanes; l++)
            for (int byte = 0; byte < 8; byte++) *out++ = (unsigned char)(states[l] >> (8 * byte));
        for (Py_ssize_t q = count - 1; q >= 0; q--)
            for (int byte = 0; byte < 4; byte++) *out++ = (unsigned char)(words[q] >> (8 * byte));
    }
    return result;
}

static PyObject *k_rans_encode(PyObject *self, PyObject *args) {
    PyObject *lanes_obj, *start_obj, *freq_obj, *bounds_obj;
    Py_ssize_t num_lanes, total;
    if (!PyArg_ParseTuple(args, "OOOOnn", &lanes_obj, &start_obj, &freq_obj, &bounds_obj, &num_lanes, &total))
        return NULL;
    if (num_lanes < 1 || num_lanes > (1 << 20) || total < 2 || total > (1 << 21)) {
        PyErr_SetString(PyExc_ValueError, "rANS: num_lanes or total out of range");
        return NULL;
    }
    Py_buffer lv, sv, fv, bv;
    if (get_buffer(lanes_obj, &lv, 'q', -1, 0, "lanes") < 0) return NULL;
    Py_ssize_t n = lv.len / 8;
    if (get_buffer(start_obj, &sv, 'q', n, 0, "start") < 0) goto r_l;
    if (get_buffer(freq_obj, &fv, 'q', n, 0, "freq") < 0) goto r_s;
    if (get_buffer(bounds_obj, &bv, 'q', -1, 0, "boundaries") < 0) goto r_f;
    const int64_t *lanes = lv.buf, *start = sv.buf, *freq = fv.buf, *bounds = bv.buf;
    Py_ssize_t num_steps = bv.len / 8 - 1;
    if (num_steps < 0 || bounds[0] != 0 || bounds[num_steps] != n) {
        PyErr_SetString(PyExc_ValueError, "rANS: boundaries must rise from 0 to the number of symbols.");
        goto r_b;
    }
    for (Py_ssize_t k = 0; k < num_steps; k++)
        if (bounds[k + 1] < bounds[k]) {
            PyErr_SetString(PyExc_ValueError, "rANS: boundaries must rise from 0 to the number of symbols.");
            goto r_b;
        }
    for (Py_ssize_t q = 0; q < n; q++) {
        if (lanes[q] < 0 || lanes[q] >= num_lanes) {
            PyErr_SetString(PyExc_ValueError, "rANS: a step needs distinct lanes in [0, num_lanes).");
            goto r_b;
        }
        if (freq[q] < 1 || start[q] < 0 || start[q] + freq[q] > total) {
            PyErr_Format(PyExc_ValueError, "rANS: symbols need freq >= 1 and 0 <= start < start + freq <= %zd.", total);
            goto r_b;
        }
    }
    uint64_t *states = malloc(sizeof(uint64_t) * num_lanes);
    int64_t *seen = malloc(sizeof(int64_t) * num_lanes);
    uint32_t *words = malloc(sizeof(uint32_t) * (n + 1));
    Py_ssize_t *order = malloc(sizeof(Py_ssize_t) * (n + 1));
    if (!states || !seen || !words || !order) {
        free(states);
        free(seen);
        free(words);
        free(order);
        PyErr_NoMemory();
        goto r_b;
    }
    int duplicate = 0;
    Py_ssize_t count = 0;
    const uint64_t low_state = (uint64_t)total << 8, big_total = (uint64_t)total;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t l = 0; l < num_lanes; l++) {
        states[l] = low_state;
        seen[l] = -1;
    }
    for (Py_ssize_t k = num_steps - 1; k >= 0 && !duplicate; k--) {
        Py_ssize_t a = bounds[k], b = bounds[k + 1], m = b - a;
        /* the step's symbols in decreasing lane order (insertion sort; steps are short) */
        for (Py_ssize_t q = 0; q < m; q++) {
            Py_ssize_t item = a + q, pos = q;
            if (seen[lanes[item]] == k) duplicate = 1;
            seen[lanes[item]] = k;
            while (pos > 0 && lanes[order[pos - 1]] < lanes[item]) {
                order[pos] = order[pos - 1];
                pos--;
            }
            order[pos] = item;
        }
        if (duplicate) break;
        for (Py_ssize_t q = 0; q < m; q++) {
            Py_ssize_t item = order[q];
            states[lanes[item]] = rans_put(states[lanes[item]], (uint64_t)start[item], (uint64_t)freq[item],
                                           big_total, words, &count);
        }
    }
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (duplicate)
        PyErr_SetString(PyExc_ValueError, "rANS: a step needs distinct lanes in [0, num_lanes).");
    else
        result = stream_bytes(states, num_lanes, words, count);
    free(states);
    free(seen);
    free(words);
    free(order);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&fv);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&lv);
    return result;
r_b:
    PyBuffer_Release(&bv);
r_f:
    PyBuffer_Release(&fv);
r_s:
    PyBuffer_Release(&sv);
r_l:
    PyBuffer_Release(&lv);
    return NULL;
}

/* rans_encode_fronts(start int64 [H W C], freq int64 [H W C], height, width, channels, radius, lanes, total):
   the stream of `rans_encode` for the values of an image in the coding order of `ride_tf.codec.coding.steps`
   (front by front, t = (r + 1) i + j; channel by channel; rounds of `lanes` pixels of the front in increasing
   row, one step each, lane i mod lanes), without building that order: start and freq in image order, value
   (i W + j) C + c.  A step's symbols go in decreasing lane order, as there. */
static PyObject *k_rans_encode_fronts(PyObject *self, PyObject *args) {
    PyObject *start_obj, *freq_obj;
    Py_ssize_t height, width, channels, r, num_lanes, total;
    if (!PyArg_ParseTuple(args, "OOnnnnnn", &start_obj, &freq_obj, &height, &width, &channels, &r, &num_lanes,
                          &total))
        return NULL;
    if (height < 1 || width < 1 || channels < 1 || r < 1 || num_lanes < 1 || num_lanes > (1 << 20) || total < 2 ||
        total > (1 << 21)) {
        PyErr_SetString(PyExc_ValueError, "rANS: sizes, radius, num_lanes or total out of range");
        return NULL;
    }
    Py_ssize_t n = height * width * channels;
    Py_buffer sv, fv;
    if (get_buffer(start_obj, &sv, 'q', n, 0, "start") < 0) return NULL;
    if (get_buffer(freq_obj, &fv, 'q', n, 0, "freq") < 0) {
        PyBuffer_Release(&sv);
        return NULL;
    }
    const int64_t *start = sv.buf, *freq = fv.buf;
    for (Py_ssize_t q = 0; q < n; q++)
        if (freq[q] < 1 || start[q] < 0 || start[q] + freq[q] > total) {
            PyErr_Format(PyExc_ValueError, "rANS: symbols need freq >= 1 and 0 <= start < start + freq <= %zd.", total);
            PyBuffer_Release(&fv);
            PyBuffer_Release(&sv);
            return NULL;
        }
    uint64_t *states = malloc(sizeof(uint64_t) * num_lanes);
    uint32_t *words = malloc(sizeof(uint32_t) * (n + 1));
    if (!states || !words) {
        free(states);
        free(words);
        PyBuffer_Release(&fv);
        PyBuffer_Release(&sv);
        return PyErr_NoMemory();
    }
    Py_ssize_t count = 0, fronts = (r + 1) * (height - 1) + width;
    const uint64_t big_total = (uint64_t)total;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t l = 0; l < num_lanes; l++) states[l] = big_total << 8;
    for (Py_ssize_t t = fronts - 1; t >= 0; t--) {
        Py_ssize_t i_lo = t > width - 1 ? (t - width + 1 + r) / (r + 1) : 0;      /* `geometry.front_rows` */
        Py_ssize_t i_hi = t / (r + 1) < height - 1 ? t / (r + 1) : height - 1, m = i_hi - i_lo + 1;
        if (m <= 0) continue;
        for (Py_ssize_t c = channels - 1; c >= 0; c--)
            for (Py_ssize_t a = (m - 1) / num_lanes * num_lanes; a >= 0; a -= num_lanes) {
                /* the round's lanes rise from (i_lo + a) mod lanes and wrap once at most: the pixels before the
                   wrap hold the larger lanes, so those go first, each part from its end */
                Py_ssize_t size = m - a < num_lanes ? m - a : num_lanes, first_lane = (i_lo + a) % num_lanes;
                Py_ssize_t before = first_lane + size > num_lanes ? num_lanes - first_lane : size;
                for (Py_ssize_t k = 0; k < size; k++) {
                    Py_ssize_t p = a + (k < before ? before - 1 - k : size - 1 - (k - before));
                    Py_ssize_t i = i_lo + p, j = t - (r + 1) * i, v = (i * width + j) * channels + c;
                    Py_ssize_t lane = i % num_lanes;
                    states[lane] = rans_put(states[lane], (uint64_t)start[v], (uint64_t)freq[v], big_total, words,
                                            &count);
                }
            }
    }
    Py_END_ALLOW_THREADS
    PyObject *result = stream_bytes(states, num_lanes, words, count);
    free(states);
    free(words);
    PyBuffer_Release(&fv);
    PyBuffer_Release(&sv);
    return result;
}

/* ------------------------------------------------------------------ whole images, on several threads */
/* The products of whole images are computed here too (no BLAS), so that one C call codes a whole image and
 * its threads meet at barriers instead of returning to Python between lines.  The weights are copied once,
 * padded with zero columns to a multiple of 16 (`set_weights`).  Every product is a float64 sum of integers whose
 * absolute values add up to less than 2^52, so every partial sum, in any order, fused multiply-adds included, is
 * exact: the AVX-512, AVX2 and generic kernels give the same integers (`ride_tf.codec.native` can choose one,
 * for the tests). */
#define PAD 16
#define BLOCK_ROWS 128          /* pixels per block of a thread's part of a line (bounds the scratch), a multiple of 8 */

static inline Py_ssize_t padded(Py_ssize_t n) { return (n + PAD - 1) / PAD * PAD; }

/* out[p, 0:cols] = x[p, 0:k] @ w[k, cols] for p < n (add: out += the product); cols a multiple of 16, w row-major
   [k, cols]. */
static void gemm_generic(const double *x, Py_ssize_t ldx, const double *w, Py_ssize_t k, Py_ssize_t cols,
                         double *out, Py_ssize_t ldo, Py_ssize_t n, int add) {
    for (Py_ssize_t p = 0; p < n; p++) {
        double *o = out + p * ldo;
        const double *xp = x + p * ldx;
        if (!add)
            for (Py_ssize_t c = 0; c < cols; c++) o[c] = 0.0;
        for (Py_ssize_t q = 0; q < k; q++) {
            double v = xp[q];
            if (v == 0.0) continue;
            const double *wq = w + q * cols;
            for (Py_ssize_t c = 0; c < cols; c++) o[c] += v * wq[c];
        }
    }
}

#ifdef HAVE_X86_KERNELS

TARGET_AVX2 static void gemm_avx2(const double *x, Py_ssize_t ldx, const double *w,
                                                           Py_ssize_t k, Py_ssize_t cols, double *out,
                                                           Py_ssize_t ldo, Py_ssize_t n, int add) {
    Py_ssize_t p = 0;
    for (; p + 4 <= n; p += 4) {
        const double *x0 = x + p * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
        for (Py_ssize_t c = 0; c < cols; c += 8) {
            __m256d a00 = _mm256_setzero_pd(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
                    a31 = a00;
            if (add) {
                double *o = out + p * ldo + c;
                a00 = _mm256_loadu_pd(o); a01 = _mm256_loadu_pd(o + 4);
                a10 = _mm256_loadu_pd(o + ldo); a11 = _mm256_loadu_pd(o + ldo + 4);
                a20 = _mm256_loadu_pd(o + 2 * ldo); a21 = _mm256_loadu_pd(o + 2 * ldo + 4);
                a30 = _mm256_loadu_pd(o + 3 * ldo); a31 = _mm256_loadu_pd(o + 3 * ldo + 4);
            }
            for (Py_ssize_t q = 0; q < k; q++) {
                __m256d w0 = _mm256_loadu_pd(w + q * cols + c), w1 = _mm256_loadu_pd(w + q * cols + c + 4);
                __m256d b0 = _mm256_broadcast_sd(x0 + q), b1 = _mm256_broadcast_sd(x1 + q);
                __m256d b2 = _mm256_broadcast_sd(x2 + q), b3 = _mm256_broadcast_sd(x3 + q);
                a00 = _mm256_fmadd_pd(b0, w0, a00); a01 = _mm256_fmadd_pd(b0, w1, a01);
                a10 = _mm256_fmadd_pd(b1, w0, a10); a11 = _mm256_fmadd_pd(b1, w1, a11);
                a20 = _mm256_fmadd_pd(b2, w0, a20); a21 = _mm256_fmadd_pd(b2, w1, a21);
                a30 = _mm256_fmadd_pd(b3, w0, a30); a31 = _mm256_fmadd_pd(b3, w1, a31);
            }
            double *o = out + p * ldo + c;
            _mm256_storeu_pd(o, a00); _mm256_storeu_pd(o + 4, a01);
            _mm256_storeu_pd(o + ldo, a10); _mm256_storeu_pd(o + ldo + 4, a11);
            _mm256_storeu_pd(o + 2 * ldo, a20); _mm256_storeu_pd(o + 2 * ldo + 4, a21);
            _mm256_storeu_pd(o + 3 * ldo, a30); _mm256_storeu_pd(o + 3 * ldo + 4, a31);
        }
    }
    for (; p < n; p++) {
        const double *x0 = x + p * ldx;
        for (Py_ssize_t c = 0; c < cols; c += 8) {
            __m256d a0 = _mm256_setzero_pd(), a1 = a0;
            if (add) {
                a0 = _mm256_loadu_pd(out + p * ldo + c);
                a1 = _mm256_loadu_pd(out + p * ldo + c + 4);
            }
            for (Py_ssize_t q = 0; q < k; q++) {
                __m256d b0 = _mm256_broadcast_sd(x0 + q);
                a0 = _mm256_fmadd_pd(b0, _mm256_loadu_pd(w + q * cols + c), a0);
                a1 = _mm256_fmadd_pd(b0, _mm256_loadu_pd(w + q * cols + c + 4), a1);
            }
            _mm256_storeu_pd(out + p * ldo + c, a0);
            _mm256_storeu_pd(out + p * ldo + c + 4, a1);
        }
    }
}

TARGET_AVX512 static void gemm_avx512(const double *x, Py_ssize_t ldx, const double *w, Py_ssize_t k, Py_ssize_t cols,
                                      double *out, Py_ssize_t ldo, Py_ssize_t n, int add) {
    /* 8 rows x 16 columns of accumulators (16 of the 32 registers): each pair of weight rows loaded from the
       cache serves 8 pixels */
    Py_ssize_t p = 0;
    for (; p + 8 <= n; p += 8) {
        const double *xr = x + p * ldx;
        for (Py_ssize_t c = 0; c < cols; c += 16) {
            __m512d a0[8], a1[8];
            for (int r = 0; r < 8; r++) {
                a0[r] = add ? _mm512_loadu_pd(out + (p + r) * ldo + c) : _mm512_setzero_pd();
                a1[r] = add ? _mm512_loadu_pd(out + (p + r) * ldo + c + 8) : _mm512_setzero_pd();
            }
            for (Py_ssize_t q = 0; q < k; q++) {
                __m512d w0 = _mm512_loadu_pd(w + q * cols + c), w1 = _mm512_loadu_pd(w + q * cols + c + 8);
                for (int r = 0; r < 8; r++) {
                    __m512d b = _mm512_set1_pd(xr[r * ldx + q]);
                    a0[r] = _mm512_fmadd_pd(b, w0, a0[r]);
                    a1[r] = _mm512_fmadd_pd(b, w1, a1[r]);
                }
            }
            for (int r = 0; r < 8; r++) {
                _mm512_storeu_pd(out + (p + r) * ldo + c, a0[r]);
                _mm512_storeu_pd(out + (p + r) * ldo + c + 8, a1[r]);
            }
        }
    }
    for (; p < n; p++) {
        const double *x0 = x + p * ldx;
        for (Py_ssize_t c = 0; c < cols; c += 16) {
            __m512d a0 = _mm512_setzero_pd(), a1 = a0;
            if (add) {
                a0 = _mm512_loadu_pd(out + p * ldo + c);
                a1 = _mm512_loadu_pd(out + p * ldo + c + 8);
            }
            for (Py_ssize_t q = 0; q < k; q++) {
                __m512d b0 = _mm512_set1_pd(x0[q]);
                a0 = _mm512_fmadd_pd(b0, _mm512_loadu_pd(w + q * cols + c), a0);
                a1 = _mm512_fmadd_pd(b0, _mm512_loadu_pd(w + q * cols + c + 8), a1);
            }
            _mm512_storeu_pd(out + p * ldo + c, a0);
            _mm512_storeu_pd(out + p * ldo + c + 8, a1);
        }
    }
}
#endif

static void gemm(const Model *m, const double *x, Py_ssize_t ldx, const double *w, Py_ssize_t k, Py_ssize_t cols,
                 double *out, Py_ssize_t ldo, Py_ssize_t n, int add) {
#ifdef HAVE_X86_KERNELS
    if (m->isa == 2) return gemm_avx512(x, ldx, w, k, cols, out, ldo, n, add);
    if (m->isa == 1) return gemm_avx2(x, ldx, w, k, cols, out, ldo, n, add);
#endif
    gemm_generic(x, ldx, w, k, cols, out, ldo, n, add);
}

/* ---- narrow products: 16-bit integers, 32-bit sums (see `Narrow`) */

/* out[p, 0:cols] (+)= scale (x[p, 0:k] @ V) for p < n (scale a power of two): x int16 [n, ldx], V the pairs
   [k / 2, cols, 2] (k even, cols a multiple of 16).  Every partial sum of a column is bounded by its worst case
   (< 2^31): the int32 sums are exact. */
static void gemm16_generic(const int16_t *x, Py_ssize_t ldx, const int16_t *w, Py_ssize_t k, Py_ssize_t cols,
                           double scale, double *out, Py_ssize_t ldo, Py_ssize_t n, int add) {
    for (Py_ssize_t p = 0; p < n; p++) {
        const int16_t *xp = x + p * ldx;
        for (Py_ssize_t c = 0; c < cols; c += 16) {
            int32_t acc[16] = {0};
            for (Py_ssize_t r = 0; r < k / 2; r++) {
                int32_t x0 = xp[2 * r], x1 = xp[2 * r + 1];
                const int16_t *wr = w + (r * cols + c) * 2;
                for (int t = 0; t < 16; t++) acc[t] += x0 * wr[2 * t] + x1 * wr[2 * t + 1];
            }
            double *o = out + p * ldo + c;
            for (int t = 0; t < 16; t++) o[t] = (add ? o[t] : 0.0) + scale * (double)acc[t];
        }
    }
}

#ifdef HAVE_X86_KERNELS
BODY int32_t pair_at(const int16_t *x) {
    int32_t v;
    memcpy(&v, x, sizeof v);
    return v;
}

/* Each multiply-add takes a pair of rows: R pixels x 16 columns of int32 accumulators, R = 4 (AVX2) or 8
   (AVX-512), the last n mod R pixels one at a time. */
#define GEMM16_BODY(VEC, SET1, LOAD, MAC, ZERO, STORE_ROW, R, LANES)                                    \
    int rows;                                                                                              \
    for (Py_ssize_t p0 = 0; p0 < n; p0 += rows) {                                                          \
        rows = n - p0 >= R ? R : 1;                                                                        \
        for (Py_ssize_t c = 0; c < cols; c += 16) {                                                        \
            VEC a[R][16 / LANES];                                                                          \
            for (int r = 0; r < R; r++)                                                                    \
                for (int h = 0; h < 16 / LANES; h++) a[r][h] = ZERO;                                       \
            if (rows == R) {                                                                               \
                for (Py_ssize_t q = 0; q < k / 2; q++) {                                                   \
                    const int16_t *wq = w + (q * cols + c) * 2;                                            \
                    VEC wv[16 / LANES];                                                                    \
                    for (int h = 0; h < 16 / LANES; h++) wv[h] = LOAD(wq + 2 * LANES * h);                 \
                    for (int r = 0; r < R; r++) {                                                          \
                        VEC b = SET1(pair_at(x + (p0 + r) * ldx + 2 * q));                                 \
                        for (int h = 0; h < 16 / LANES; h++) a[r][h] = MAC(a[r][h], b, wv[h]);             \
                    }                                                                                      \
                }                                                                                          \
            } else {                                                                                       \
                for (Py_ssize_t q = 0; q < k / 2; q++) {                                                   \
                    const int16_t *wq = w + (q * cols + c) * 2;                                            \
                    VEC b = SET1(pair_at(x + p0 * ldx + 2 * q));                                           \
                    for (int h = 0; h < 16 / LANES; h++) a[0][h] = MAC(a[0][h], b, LOAD(wq + 2 * LANES * h)); \
                }                                                                                          \
            }                                                                                              \
            for (int r = 0; r < rows; r++)                                                                 \
                for (int h = 0; h < 16 / LANES; h++) STORE_ROW(out + (p0 + r) * ldo + c + LANES * h, a[r][h]); \
        }                                                                                                  \
    }

/* o[0:8] (+)= the 8 int32 of v, as float64 */
#define STORE8_AVX2(o, v)                                                                                  \
    do {                                                                                                   \
        __m256d lo = _mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(v)), _mm256_set1_pd(scale));         \
        __m256d hi = _mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(v, 1)), _mm256_set1_pd(scale));    \
        if (add) {                                                                                         \
            lo = _mm256_add_pd(lo, _mm256_loadu_pd(o));                                                    \
            hi = _mm256_add_pd(hi, _mm256_loadu_pd((o) + 4));                                              \
        }                                                                                                  \
        _mm256_storeu_pd(o, lo);                                                                           \
        _mm256_storeu_pd((o) + 4, hi);                                                                     \
    } while (0)
#define STORE16_AVX512(o, v)                                                                               \
    do {                                                                                                   \
        __m512d lo = _mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(v)), _mm512_set1_pd(scale));         \
        __m512d hi = _mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(v, 1)), _mm512_set1_pd(scale));    \
        if (add) {                                                                                         \
            lo = _mm512_add_pd(lo, _mm512_loadu_pd(o));                                                   \
            hi = _mm512_add_pd(hi, _mm512_loadu_pd((o) + 8));                                              \
        }                                                                                                  \
        _mm512_storeu_pd(o, lo);                                                                           \
        _mm512_storeu_pd((o) + 8, hi);                                                                     \
    } while (0)
#define LOAD_AVX2(ptr) _mm256_loadu_si256((const __m256i *)(ptr))
/* acc + the pairs' products b w (wrapping int32 sums, exact within the checked bounds) */
#define MAC_AVX2(acc, b, w) _mm256_add_epi32(acc, _mm256_madd_epi16(b, w))
#define MAC_AVX512(acc, b, w) _mm512_add_epi32(acc, _mm512_madd_epi16(b, w))
#define LOAD_AVX512(ptr) _mm512_loadu_si512((const void *)(ptr))

TARGET_AVX2 static void gemm16_avx2(const int16_t *x, Py_ssize_t ldx, const int16_t *w, Py_ssize_t k,
                                    Py_ssize_t cols, double scale, double *out, Py_ssize_t ldo, Py_ssize_t n, int add) {
    GEMM16_BODY(__m256i, _mm256_set1_epi32, LOAD_AVX2, MAC_AVX2, _mm256_setzero_si256(),
                STORE8_AVX2, 4, 8)
}

TARGET_AVX512 static void gemm16_avx512(const int16_t *x, Py_ssize_t ldx, const int16_t *w, Py_ssize_t k,
                                        Py_ssize_t cols, double scale, double *out, Py_ssize_t ldo, Py_ssize_t n,
                                        int add) {
    GEMM16_BODY(__m512i, _mm512_set1_epi32, LOAD_AVX512, MAC_AVX512, _mm512_setzero_si512(),
                STORE16_AVX512, 8, 16)
}

#endif

static void gemm16(const Model *m, const int16_t *x, Py_ssize_t ldx, const int16_t *w, Py_ssize_t k, Py_ssize_t cols,
                   double scale, double *out, Py_ssize_t ldo, Py_ssize_t n, int add) {
#ifdef HAVE_X86_KERNELS
    if (m->isa == 2) return gemm16_avx512(x, ldx, w, k, cols, scale, out, ldo, n, add);
    if (m->isa == 1) return gemm16_avx2(x, ldx, w, k, cols, scale, out, ldo, n, add);
#endif
    gemm16_generic(x, ldx, w, k, cols, scale, out, ldo, n, add);
}

/* out[p] = x[p, 0:k] @ w for p < n (w [k, cols] float64, holding integers), the same integers as `gemm` alone:
   the rows of `nr`'s passes in 16-bit integers (`x16` their scratch; an input of 2^15, tanh's saturation, is
   packed as 2^15 - 1 and its row added once more), the rows [s0, s1) (the outside-the-image indicators, zero
   inside the image) row by row where x is not zero, the rest in float64.  The passes' rows and [s0, s1) are
   disjoint. */
BODY void products_body(const Model *m, const double *x, Py_ssize_t ldx, const double *w, Py_ssize_t k,
                        Py_ssize_t cols, const Narrow *nr, Py_ssize_t s0, Py_ssize_t s1, int16_t *x16, double *out,
                        Py_ssize_t ldo, Py_ssize_t n) {
    /* the float64 rows: [0, k) less the passes' rows and [s0, s1), in order */
    Py_ssize_t skip[MAX_PASSES + 1][2];
    int count = 0;
    for (int i = 0; i < nr->count; i++) {
        skip[count][0] = nr->pass[i].r0;
        skip[count++][1] = nr->pass[i].r1;
    }
    if (s1 > s0) {
        skip[count][0] = s0;
        skip[count++][1] = s1;
    }
    int add = 0;
    Py_ssize_t from = 0;
    while (from < k) {
        Py_ssize_t to = k, next = k;      /* the next skipped range at or after `from` */
        for (int i = 0; i < count; i++)
            if (skip[i][1] > from && skip[i][0] < to) {
                to = skip[i][0] > from ? skip[i][0] : from;
                next = skip[i][1];
            }
        if (to > from) gemm(m, x + from, ldx, w + from * cols, to - from, cols, out, ldo, n, add++);
        from = to == k ? k : next;
    }
    for (int i = 0; i < nr->count; i++) {
        const Pass16 *ps = &nr->pass[i];
        Py_ssize_t r0 = ps->r0, r1 = ps->r1, k16 = ps->k16;
        int saturated = 0;
        for (Py_ssize_t p = 0; p < n; p++) {
            const double *xp = x + p * ldx + r0;
            int16_t *yp = x16 + p * k16;
            for (Py_ssize_t q = 0; q < r1 - r0; q++) {     /* inputs are integers in [-2^15, 2^15] */
                int32_t v = (int32_t)xp[q];
                saturated |= v > 32767;
                yp[q] = (int16_t)(v > 32767 ? 32767 : v);
            }
            if (k16 > r1 - r0) yp[k16 - 1] = 0;
        }
        gemm16(m, x16, k16, ps->w, k16, cols, ps->scale, out, ldo, n, add++);
        if (saturated)
            for (Py_ssize_t p = 0; p < n; p++)
                for (Py_ssize_t q = 0; q < r1 - r0; q++)
                    if (x[p * ldx + r0 + q] > 32767.0) {
                        const int16_t *wq = ps->w + (q / 2) * cols * 2 + q % 2;
                        double *o = out + p * ldo;
                        for (Py_ssize_t c = 0; c < cols; c++) o[c] += ps->scale * wq[2 * c];
                    }
    }
    if (!add)
        for (Py_ssize_t p = 0; p < n; p++) memset(out + p * ldo, 0, cols * sizeof(double));
    for (Py_ssize_t p = 0; p < n; p++)
        for (Py_ssize_t q = s0; q < s1; q++) {
            double v = x[p * ldx + q];
            if (v == 0.0) continue;
            const double *wq = w + q * cols;
            double *o = out + p * ldo;
            for (Py_ssize_t c = 0; c < cols; c++) o[c] += v * wq[c];
        }
}

VARIANTS(products, (const Model *m, const double *x, Py_ssize_t ldx, const double *w, Py_ssize_t k, Py_ssize_t cols,
                   const Narrow *nr, Py_ssize_t s0, Py_ssize_t s1, int16_t *x16, double *out, Py_ssize_t ldo,
                   Py_ssize_t n),
         (m, x, ldx, w, k, cols, nr, s0, s1, x16, out, ldo, n))

/* A pass of rows [r0, r1) of w [k, cols] with weights V_rc = (w_rc >> shift) (shift > 0: the low `shift` bits,
   low = 1), added to `nr`. */
static int add_pass(Model *m, const double *w, Py_ssize_t cols, Py_ssize_t r0, Py_ssize_t r1, int shift, int low,
                    double bound, Narrow *nr) {
    Py_ssize_t k16 = (r1 - r0 + 1) / 2 * 2;
    int16_t *copy = calloc(k16 * cols + 1, sizeof(int16_t));
    if (!copy || m->num_blocks >= MAX_BLOCKS) {
        free(copy);
        PyErr_NoMemory();
        return -1;
    }
    m->blocks[m->num_blocks++] = copy;
    for (Py_ssize_t r = r0; r < r1; r++)
        for (Py_ssize_t c = 0; c < cols; c++) {
            int64_t v = (int64_t)w[r * cols + c], high = floor_shift(v, shift);
            copy[((r - r0) / 2 * cols + c) * 2 + (r - r0) % 2] = (int16_t)(low ? v - high * ((int64_t)1 << shift) : high);
        }
    Pass16 *ps = &nr->pass[nr->count++];
    ps->w = copy;
    ps->r0 = r0;
    ps->r1 = r1;
    ps->k16 = k16;
    ps->scale = low ? 1.0 : (double)((int64_t)1 << shift);
    ps->bound = bound;
    return 0;
}

/* Add to `nr` the passes of rows [r0, r1) of w [k, cols] (float64 integers) for inputs |x| <= bound (<= 2^15):
   one pass where every weight fits 16 bits and every column's worst case sum_r bound |V_rc| is below 2^31, else
   two (high halves and low 13 bits) where each half's worst case is, else none (the rows stay float64).
   -1 with MemoryError. */
static int narrow_rows(Model *m, const double *w, Py_ssize_t cols, Py_ssize_t r0, Py_ssize_t r1, double bound,
                       Narrow *nr) {
    if (r1 <= r0 || bound > 32768.0 || nr->count + 2 > MAX_PASSES) return 0;
    int one = 1, two = 1;
    for (Py_ssize_t c = 0; c < cols && (one || two); c++) {
        double worst = 0.0, worst_high = 0.0, worst_low = 0.0;     /* exact: sums of integers below 2^53 */
        for (Py_ssize_t r = r0; r < r1; r++) {
            double v = w[r * cols + c];
            if (!(fabs(v) < 4503599627370496.0) || v != floor(v)) return 0;      /* 2^52 */
            int64_t high = floor_shift((int64_t)v, SPLIT_BITS);
            worst += bound * fabs(v);
            worst_high += bound * (double)llabs(high);
            worst_low += bound * (double)((int64_t)v - high * (1 << SPLIT_BITS));
            one &= fabs(v) <= 32767.0;
            two &= llabs(high) <= 32767;
        }
        one &= worst < 2147483648.0;
        two &= worst_high < 2147483648.0 && worst_low < 2147483648.0;
    }
    if (one) return add_pass(m, w, cols, r0, r1, 0, 0, bound, nr);
    if (two && (add_pass(m, w, cols, r0, r1, SPLIT_BITS, 0, bound, nr) < 0 ||
                add_pass(m, w, cols, r0, r1, SPLIT_BITS, 1, bound, nr) < 0))
        return -1;
    return 0;
}

/* The bound of the inputs c: |(2k + 1) 2^3 - mean| for 8-bit values k, or 0 outside the image. */
static double input_bound(const Model *m) {
    double bound = 0.0;
    for (int k = 0; k < m->inputs; k++) {
        double a = fabs(8.0 - m->input_mean[k]), b = fabs(4088.0 - m->input_mean[k]);
        bound = fmax(bound, fmax(a, b));
    }
    return bound;
}

/* set_weights(model, layer_weights (a sequence of float64 [D_l, 5U]), mixture_weights float64 [Z, B]) -> the
   model's instruction set (0 generic, 1 AVX2, 2 AVX-512): the products' weights, copied padded, for
   `encode_image` and `decode_image`. */
static PyObject *k_set_weights(PyObject *self, PyObject *args) {
    PyObject *capsule, *layers_obj, *mixture_obj;
    if (!PyArg_ParseTuple(args, "OOO", &capsule, &layers_obj, &mixture_obj)) return NULL;
    Model *m = get_model(capsule);
    if (!m) return NULL;
    if (m->has_weights) {
        PyErr_SetString(PyExc_ValueError, "kernels.set_weights: the weights are set already");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(layers_obj, "kernels.set_weights: layer_weights must be a sequence");
    if (!seq) return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != m->layers) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "kernels.set_weights: one weight matrix per layer is needed");
        return NULL;
    }
    Py_ssize_t units = m->units, parts = m->extended ? 4 : 2, five = 5 * units;
    double c_bound = input_bound(m);        /* the bound of the inputs c, for their passes */
    for (int l = 0; l < m->layers; l++) {
        Py_ssize_t rows = (l == 0 ? m->width_u : units) + parts * units;
        Py_buffer view;
        if (get_buffer(PySequence_Fast_GET_ITEM(seq, l), &view, 'd', rows * five, 0, "layer_weights") < 0) {
            Py_DECREF(seq);
            return NULL;
        }
        double *copy = calloc(rows * padded(five) + 1, sizeof(double));
        if (!copy || m->num_blocks >= MAX_BLOCKS) {
            free(copy);
            PyBuffer_Release(&view);
            Py_DECREF(seq);
            return PyErr_NoMemory();
        }
        m->blocks[m->num_blocks++] = copy;
        for (Py_ssize_t r = 0; r < rows; r++)
            memcpy(copy + r * padded(five), (const double *)view.buf + r * five, five * sizeof(double));
        m->layer_w[l] = copy;
        m->layer_rows[l] = rows;
        PyBuffer_Release(&view);
        /* the states h: [h_left, h_up] after the first layer's [c, e], [h_below, h_left, h_up] above it */
        Py_ssize_t r0 = l == 0 ? m->width_u : 0, r1 = l == 0 ? m->width_u + 2 * units : 3 * units;
        memset(&m->layer_narrow[l], 0, sizeof(Narrow));
        if (narrow_rows(m, copy, padded(five), r0, r1, 32768.0, &m->layer_narrow[l]) < 0 ||
            (l == 0 && narrow_rows(m, copy, padded(five), 0, m->inputs, c_bound, &m->layer_narrow[l]) < 0)) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    Py_ssize_t z = (m->layers ? units : 0) + (m->reads_inputs ? m->width_u : m->inputs);
    Py_ssize_t b = m->features + m->components + (Py_ssize_t)m->components * m->channels;
    Py_buffer view;
    if (get_buffer(mixture_obj, &view, 'd', z * b, 0, "mixture_weights") < 0) return NULL;
    if (view.len / 8 != z * b) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "kernels.set_weights: mixture_weights has the wrong size");
        return NULL;
    }
    double *copy = calloc(z * padded(b) + 1, sizeof(double));
    if (!copy || m->num_blocks >= MAX_BLOCKS) {
        free(copy);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    m->blocks[m->num_blocks++] = copy;
    for (Py_ssize_t r = 0; r < z; r++)
        memcpy(copy + r * padded(b), (const double *)view.buf + r * b, b * sizeof(double));
    PyBuffer_Release(&view);
    m->mixture_w = copy;
    /* z = [h, c, (e)]: h in [0, U), c in [U, U + P C) (U = 0 without LSTM) */
    Py_ssize_t column = m->layers ? units : 0;
    memset(&m->mixture_narrow, 0, sizeof(Narrow));
    if (narrow_rows(m, copy, padded(b), 0, column, 32768.0, &m->mixture_narrow) < 0 ||
        narrow_rows(m, copy, padded(b), column, column + m->inputs, c_bound, &m->mixture_narrow) < 0)
        return NULL;
    m->z_width = (int)z;
    m->b_width = (int)b;
    m->has_weights = 1;
    return PyLong_FromLong(m->isa);
}

/* ---- threads */
#define MAX_THREADS 256

typedef struct {
    int count;
#ifdef HAVE_THREADS
    atomic_int arrived, phase, sleepers;
#endif
} Barrier;

/* A waiting thread spins this many times (a fraction of a millisecond), yielding its core every YIELD_EVERY-th time,
   then sleeps.  Spinning only a few microseconds, a 2-thread decode of a 512 x 512 image slept and woke 60,000 times
   (a tenth of its time); spinning long without yielding, two such decodes at once on 2 cores ran 6 times slower
   than one after the other (a spinning thread kept the core of the thread it waited for):
   benchmarks/bench_decode_threads.py. */
#define SPINS 16384
#define YIELD_EVERY 64

/* One turn of a thread's wait for another's write: a pause, and every YIELD_EVERY-th turn its core. */
static inline void relax(int spin) {
#ifdef HAVE_THREADS
    if (spin % YIELD_EVERY == 0) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
    else __builtin_ia32_pause();
#endif
#else
    (void)spin;
#endif
}

/* Wait until all `count` threads have arrived: spin a while (the others are usually microseconds behind), yielding
   now and then so that other runnable threads get the core, then sleep on a futex (Linux) or yield (elsewhere). */
static void barrier_wait(Barrier *b) {
#ifdef HAVE_THREADS
    if (b->count <= 1) return;
    int phase = atomic_load_explicit(&b->phase, memory_order_acquire);
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == b->count - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->phase, 1, memory_order_acq_rel);
#ifdef HAVE_FUTEX
        if (atomic_load_explicit(&b->sleepers, memory_order_acquire))
            syscall(SYS_futex, (int *)&b->phase, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#endif
        return;
    }
    for (int spin = 1; spin <= SPINS; spin++) {
        if (atomic_load_explicit(&b->phase, memory_order_acquire) != phase) return;
        relax(spin);
    }
#ifdef HAVE_FUTEX
    atomic_fetch_add_explicit(&b->sleepers, 1, memory_order_acq_rel);
    while (atomic_load_explicit(&b->phase, memory_order_acquire) == phase)
        syscall(SYS_futex, (int *)&b->phase, FUTEX_WAIT_PRIVATE, phase, NULL, NULL, 0);
    atomic_fetch_sub_explicit(&b->sleepers, 1, memory_order_acq_rel);
#else
    while (atomic_load_explicit(&b->phase, memory_order_acquire) == phase) sched_yield();
#endif
#else
    (void)b;
#endif
}

/* Per-thread scratch of a block of up to BLOCK_ROWS pixels. */
typedef struct {
    double *x[MAX_LAYERS];      /* the layers' product inputs */
    int16_t *x16;               /* the narrow rows of a product's inputs (`products`) */
    double *a;                  /* [BLOCK_ROWS, padded(5U)] */
    double *z, *b;              /* [BLOCK_ROWS, Z], [BLOCK_ROWS, padded(B)] */
    double *mix;                /* mixture_at's scratch */
    int32_t *work;              /* cell_at's */
    int64_t *weights, *means, *mean, *values;       /* one pixel's (encoder) */
    double *terms;              /* a channel's float64 table terms [2K] (`table_terms`), then int32 PHIs [3][K] */
} Work;

static void work_free(Work *w, int layers) {
    for (int l = 0; l < layers; l++) free(w->x[l]);
    free(w->x16);
    free(w->a);
    free(w->z);
    free(w->b);
    free(w->mix);
    free(w->work);
    free(w->weights);
    free(w->means);
    free(w->mean);
    free(w->values);
    free(w->terms);
}

static int work_alloc(const Model *m, Work *w) {
    memset(w, 0, sizeof *w);
    Py_ssize_t units = m->units, parts = m->extended ? 4 : 2;
    int ok = 1;
    for (int l = 0; l < m->layers; l++)
        ok &= (w->x[l] = calloc(BLOCK_ROWS * ((l == 0 ? m->width_u : units) + parts * units) + 1,
                                sizeof(double))) != NULL;
    ok &= (w->a = malloc(sizeof(double) * BLOCK_ROWS * padded(5 * units) + 8)) != NULL;
    ok &= (w->x16 = calloc(BLOCK_ROWS * ((units > m->inputs ? 3 * units : 3 * m->inputs) + 2) + 1,
                           sizeof(int16_t))) != NULL;
    ok &= (w->z = calloc(BLOCK_ROWS * (Py_ssize_t)m->z_width + 1, sizeof(double))) != NULL;
    ok &= (w->b = malloc(sizeof(double) * BLOCK_ROWS * padded(m->b_width) + 8)) != NULL;
    ok &= (w->mix = malloc(sizeof(double) * MIXTURE_WORK(m))) != NULL;
    ok &= (w->work = malloc(sizeof(int32_t) * CELL_WORK(units))) != NULL;
    ok &= (w->weights = malloc(sizeof(int64_t) * (m->experts + 1))) != NULL;
    ok &= (w->means = malloc(sizeof(int64_t) * (m->components * m->channels + 1))) != NULL;
    ok &= (w->mean = malloc(sizeof(int64_t) * (m->experts + 1))) != NULL;
    ok &= (w->values = malloc(sizeof(int64_t) * (m->channels + 1))) != NULL;
    ok &= (w->terms = malloc(sizeof(double) * TERMS_WORK(m->experts))) != NULL;
    if (!ok) work_free(w, m->layers);
    return ok ? 0 : -1;
}

/* The rows [*s0, *s1) of product `product`'s inputs (0 .. L - 1 the LSTM layers, L the mixture) that hold the
   outside-the-image indicators e: the first layer's x = [c, e, h_left, h_up, ...], the mixture's z = [h, c, e]
   (none where the mixture reads [h, c]). */
static void indicator_rows(const Model *m, int product, Py_ssize_t *s0, Py_ssize_t *s1) {
    Py_ssize_t column = m->layers ? m->units : 0;
    *s0 = *s1 = 0;
    if (product == 0 && m->layers) {
        *s0 = m->inputs;
        *s1 = m->width_u;
    } else if (product == m->layers && m->reads_inputs) {
        *s0 = column + m->inputs;
        *s1 = column + m->width_u;
    }
}

/* The row of pixel p of a line: i0 + p, or rows[p] for a line's pixels picked by row (each at column
   j0 - slope (row - i0), on the line). */
static inline Py_ssize_t line_row(const Line *line, const Py_ssize_t *rows, Py_ssize_t p) {
    return rows ? rows[p] : line->i0 + p;
}

/* The products b [n, padded(B)] of a block of a line's pixels (n <= BLOCK_ROWS; `rows` NULL: the line's first n,
   else those of these rows): the LSTM layers (states from and to the rings), then z = [h, u] (or [h, c], [u]) and
   z @ mixture_weights. */
static void block_products(const Model *m, Work *w, Ring *rings, const uint8_t *image, Py_ssize_t height,
                           Py_ssize_t width, const Line *line, const Py_ssize_t *rows) {
    Py_ssize_t units = m->units, parts = m->extended ? 4 : 2, n = line->n, five = padded(5 * units);
    Py_ssize_t zw = m->z_width;
    /* the products of whole blocks of 8 rows (the scratch holds BLOCK_ROWS rows, a multiple of 8): the kernels'
       loops for single rows are several times slower, and the extra rows' results are not read */
    Py_ssize_t whole = (n + 7) / 8 * 8;
    for (int l = 0; l < m->layers; l++) {
        Ring *ring = &rings[l];
        Py_ssize_t inputs = l == 0 ? m->width_u : units, ldx = inputs + parts * units;
        double *x = w->x[l];
        for (Py_ssize_t p = 0; p < n; p++) {
            Py_ssize_t i = line_row(line, rows, p), j = line->j0 - line->slope * (i - line->i0);
            double *row = x + p * ldx;
            if (l == 0) centred_inputs_at(m, image, width, i, j, 0, row);
            double *states = row + inputs;
            memcpy(states, ring_at(ring->h, ring, i + 1, j - 1), units * sizeof(double));
            memcpy(states + units, ring_at(ring->h, ring, i, j), units * sizeof(double));
            if (m->extended) {
                memcpy(states + 2 * units, ring_at(ring->c, ring, i + 1, j - 1), units * sizeof(double));
                memcpy(states + 3 * units, ring_at(ring->c, ring, i, j), units * sizeof(double));
            }
        }
        Py_ssize_t s0, s1;
        indicator_rows(m, l, &s0, &s1);
        products(m, x, ldx, m->layer_w[l], ldx, five, &m->layer_narrow[l], s0, s1, w->x16, w->a, five, whole);
        int top = l == m->layers - 1;
        for (Py_ssize_t p = 0; p < n; p++) {
            Py_ssize_t i = line_row(line, rows, p), j = line->j0 - line->slope * (i - line->i0);
            double *h = ring_at(ring->h, ring, i + 1, j), *c = ring_at(ring->c, ring, i + 1, j);
            cell_at(m, l, w->a + p * five, ring_at(ring->c, ring, i + 1, j - 1), ring_at(ring->c, ring, i, j), h, c,
                    w->work);
            double *next = top ? w->z + p * zw : w->x[l + 1] + p * (units + parts * units);
            memcpy(next, h, units * sizeof(double));
        }
    }
    Py_ssize_t column = m->layers ? units : 0, ldx = m->width_u + parts * units;
    for (Py_ssize_t p = 0; p < n; p++) {
        Py_ssize_t i = line_row(line, rows, p);
        if (m->layers && m->reads_inputs)        /* the first layer's inputs, [c, e], the first columns of its x */
            memcpy(w->z + p * zw + column, w->x[0] + p * ldx, m->width_u * sizeof(double));
        else
            centred_inputs_at(m, image, width, i, line->j0 - line->slope * (i - line->i0), !m->reads_inputs,
                              w->z + p * zw + column);
    }
    Py_ssize_t e0, e1;
    indicator_rows(m, m->layers, &e0, &e1);
    products(m, w->z, zw, m->mixture_w, zw, padded(m->b_width), &m->mixture_narrow, e0, e1, w->x16, w->b,
             padded(m->b_width), whole);
}

/* The part [first, last) of n items that thread `tid` of `count` takes (contiguous, balanced). */
static inline void share(Py_ssize_t n, int tid, int count, Py_ssize_t *first, Py_ssize_t *last) {
    *first = n * tid / count;
    *last = n * (tid + 1) / count;
}

/* Rows per block of a front whose LSTM and mixtures one thread computes (a multiple of 8, at most BLOCK_ROWS). */
#define CLAIM_ROWS 16

/* ---- memory in whole cache lines */
#ifdef HAVE_THREADS
typedef atomic_llong Counter;
#else
typedef long long Counter;
#endif
#define LINE_BYTES 64
#define LANE_STRIDE (LINE_BYTES / 8)

/* A thread's sequence of blocks: those claimed so far, over every front, on a cache line of its own
   (`lines_alloc`). */
typedef struct {
    Counter claimed;
    char pad[LINE_BYTES - sizeof(Counter)];
} Queue;

/* count items of `size` bytes, rounded up to whole cache lines */
static inline Py_ssize_t in_lines(Py_ssize_t count, Py_ssize_t size) {
    Py_ssize_t per_line = LINE_BYTES / size;
    return (count + per_line - 1) / per_line * per_line;
}

/* Zeroed memory starting on a cache line: `raw` is what to free. */
static void *lines_alloc(size_t bytes, void **raw) {
    *raw = calloc(bytes + LINE_BYTES, 1);
    if (!*raw) return NULL;
    return (void *)(((uintptr_t)*raw + LINE_BYTES - 1) & ~(uintptr_t)(LINE_BYTES - 1));
}

typedef struct {
    const Model *m;
    const uint8_t *image;
    uint8_t *out_image;
    Py_ssize_t height, width;
    Ring *rings;
    int threads;
    Barrier barrier;
    Work work[MAX_THREADS];
    /* encoding */
    const int64_t *order;
    int64_t *start, *freq;
    /* the experts of sampled pixels (rows i with i mod stride == 0), instead of the tables */
    Py_ssize_t stride;
    int64_t *logits, *masses;
    /* decoding */
    Py_ssize_t lanes, num_words, position;
    const uint64_t *words;
    const int64_t *natural;
    /* Each pixel's, lane's and thread's records below start on a cache line of their own (`lines_alloc`): a line
       written by two threads would pass between their cores at every write */
    int64_t *front_weights, *front_means, *front_values;   /* [front, K], [front, components C], [front, C] */
    Py_ssize_t weights_stride, means_stride, values_stride; /* their pixels' strides (int64) */
    uint64_t *lane_states;      /* [lanes, LANE_STRIDE]: each lane's rANS state */
    Queue *queues;              /* [threads]: each thread's blocks of its rows, claimed by it or by threads that are
                                   done with theirs */
    Counter *done;              /* [threads, most_blocks]: the number + 1 of the block last computed there */
    Py_ssize_t most_blocks;     /* a thread's blocks in a front, at most */
    Py_ssize_t *rows;           /* [threads, 2, longest]: each thread's list of its rows, and of a victim's */
    uint8_t *marked;            /* [2, threads, marks_stride]: the lanes of a round whose state needs a word, each
                                   thread's marks (those of its lanes, by the lane's place in the round) apart */
    Py_ssize_t marks_stride;
    int error;
} Job;

/* Encoding: thread `tid`'s share of every anti-diagonal, its LSTM, mixtures and each value's (start, freq). */
static void encode_worker(Job *job, int tid) {
    const Model *m = job->m;
    Work *w = &job->work[tid];
    int channels = m->channels;
    Py_ssize_t height = job->height, width = job->width, bw = padded(m->b_width);
    for (Py_ssize_t d = 0; d < height + width - 1; d++) {
        Py_ssize_t i_first = d - width + 1 > 0 ? d - width + 1 : 0;
        Py_ssize_t n = (height - 1 < d ? height - 1 : d) - i_first + 1, first, last;
        share(n, tid, job->threads, &first, &last);
        for (Py_ssize_t a = first; a < last; a += BLOCK_ROWS) {
            Line line = {i_first + a, d - i_first - a, 1, last - a < BLOCK_ROWS ? last - a : BLOCK_ROWS};
            block_products(m, w, job->rings, job->image, height, width, &line, NULL);
            for (Py_ssize_t p = 0; p < line.n; p++) {
                Py_ssize_t i = line.i0 + p, j = line.j0 - p, at = (i * width + j) * channels;
                if (job->logits == NULL)
                    pixel_intervals(m, w->b + p * bw, job->image + at, job->order, job->start + at, job->freq + at,
                                    w->weights, w->means, w->mean, w->values, w->mix, w->terms);
                else if (i % job->stride == 0) {
                    Py_ssize_t row = ((i / job->stride) * width + j) * m->experts;
                    pixel_experts(m, w->b + p * bw, job->image[at], job->logits + row, job->masses + row, w->means,
                                  w->mean, w->mix);
                }
            }
        }
        barrier_wait(&job->barrier);
    }
}

/* The next unclaimed block below `end` of a queue, or `end` if none is left. */
static long long claim_block(Queue *queue, long long end) {
#ifdef HAVE_THREADS
    long long k = atomic_load_explicit(&queue->claimed, memory_order_relaxed);
    while (k < end && !atomic_compare_exchange_weak_explicit(&queue->claimed, &k, k + 1, memory_order_relaxed,
                                                             memory_order_relaxed)) {}
    return k < end ? k : end;
#else
    return queue->claimed < end ? queue->claimed++ : end;
#endif
}

static inline void counter_store(Counter *c, long long value) {
#ifdef HAVE_THREADS
    atomic_store_explicit(c, value, memory_order_release);
#else
    *c = value;
#endif
}

static inline long long counter_load(Counter *c) {
#ifdef HAVE_THREADS
    return atomic_load_explicit(c, memory_order_acquire);
#else
    return *c;
#endif
}

/* The number of rows of a front (i_lo .. i_lo + n - 1) whose lanes thread `k` owns, and those rows in `rows`
   unless NULL: with `spread`, those with (row mod lanes) mod threads = k, else every row for thread 0. */
static Py_ssize_t owned_rows(Py_ssize_t i_lo, Py_ssize_t n, Py_ssize_t lanes, int threads, int spread, int k,
                             Py_ssize_t *rows) {
    if (!spread) {
        if (rows && k == 0)
            for (Py_ssize_t p = 0; p < n; p++) rows[p] = i_lo + p;
        return k == 0 ? n : 0;
    }
    Py_ssize_t count = 0;
    for (Py_ssize_t i = i_lo; i < i_lo + n; i++)
        if ((int)((i % lanes) % threads) == k) {
            if (rows) rows[count] = i;
            count++;
        }
    return count;
}

/* The LSTM and mixtures of block b (CLAIM_ROWS of the rows `rows`, of `count`) of front t, into the front's
   records. */
static void products_of_block(Job *job, Work *w, Py_ssize_t t, Py_ssize_t i_lo, const Py_ssize_t *rows,
                              Py_ssize_t count, long long b) {
    const Model *m = job->m;
    Py_ssize_t first = b * CLAIM_ROWS, size = count - first < CLAIM_ROWS ? count - first : CLAIM_ROWS;
    Py_ssize_t bw = padded(m->b_width), r = m->radius;
    Line line = {rows[first], t - (r + 1) * rows[first], r + 1, size};
    block_products(m, w, job->rings, job->out_image, job->height, job->width, &line, rows + first);
    for (Py_ssize_t k = 0; k < size; k++) {
        Py_ssize_t q = rows[first + k] - i_lo;
        mixture_at(m, w->b + k * bw, job->front_weights + q * job->weights_stride,
                   job->front_means + q * job->means_stride, w->mix);
    }
}

/* Decoding: per wavefront, thread `tid` computes the LSTM and mixtures of its lanes' pixels and of blocks of
   other threads' that they have not begun, then finds the values of its pixels of each round of pixels on distinct
   lanes (from the lanes' slots) and reads the words of its lanes, each thread keeping the stream's position.
   Every thread sees an error (too few words) at the same round and leaves there; thread 0 records it. */
static void decode_worker(Job *job, int tid) {
    const Model *m = job->m;
    Work *w = &job->work[tid];
    int channels = m->channels, threads = job->threads;
    Py_ssize_t height = job->height, width = job->width, r = m->radius, lanes = job->lanes;
    const uint64_t low_state = (uint64_t)TOTAL << 8;
    Py_ssize_t fronts = (r + 1) * (height - 1) + width, position = job->position;
    Py_ssize_t longest = (width + r) / (r + 1) < height ? (width + r) / (r + 1) : height;
    Py_ssize_t *mine = job->rows + 2 * tid * longest, *theirs = mine + longest;
    long long before[MAX_THREADS] = {0};    /* each queue's blocks in the fronts before this one (every thread's) */
    /* With at least 2 T lanes, thread k owns the lanes l with l mod T = k for the whole image: it computes the LSTM
       and mixtures of their pixels, finds their values and reads their words, and the threads meet once per
       round.  With fewer lanes, thread 0 owns every lane. */
    int spread = threads > 1 && lanes >= 2 * threads, parity = 0;      /* parity: the next round's set of marks */
#define LANE_OWNER(lane) (spread ? (int)((lane) % threads) : 0)
    for (Py_ssize_t t = 0; t < fronts; t++) {
        Py_ssize_t i_lo = t > width - 1 ? (t - width + 1 + r) / (r + 1) : 0;     /* `geometry.front_rows` */
        Py_ssize_t i_hi = t / (r + 1) < height - 1 ? t / (r + 1) : height - 1, n = i_hi - i_lo + 1;
        if (n <= 0) continue;                 /* images narrower than r + 1 columns: fronts without pixels */
        /* The LSTM and mixtures of the pixels of this thread's lanes, in blocks of CLAIM_ROWS rows from its queue;
           then blocks that other threads have not yet claimed from theirs (a thread that the machine slows down
           computes fewer); then wait for those of its own blocks that others took.  The front's neighbours lie in
           earlier fronts, which the last round's barrier has shown to every thread. */
        Py_ssize_t count = owned_rows(i_lo, n, lanes, threads, spread, tid, mine);
        long long blocks = (count + CLAIM_ROWS - 1) / CLAIM_ROWS, b;
        Counter *done = job->done + tid * job->most_blocks;
        while ((b = claim_block(&job->queues[tid], before[tid] + blocks) - before[tid]) < blocks) {
            products_of_block(job, w, t, i_lo, mine, count, b);
            counter_store(&done[b], before[tid] + b + 1);
        }
        for (int v = 1; v < threads; v++) {
            int k = (tid + v) % threads;
            Py_ssize_t their_count = owned_rows(i_lo, n, lanes, threads, spread, k, NULL);
            long long their_blocks = (their_count + CLAIM_ROWS - 1) / CLAIM_ROWS;
            if (counter_load(&job->queues[k].claimed) < before[k] + their_blocks) {     /* some left to take */
                owned_rows(i_lo, n, lanes, threads, spread, k, theirs);
                while ((b = claim_block(&job->queues[k], before[k] + their_blocks) - before[k]) < their_blocks) {
                    products_of_block(job, w, t, i_lo, theirs, their_count, b);
                    counter_store(&job->done[k * job->most_blocks + b], before[k] + b + 1);
                }
            }
            before[k] += their_blocks;
        }
        for (b = 0; b < blocks; b++)
            for (int spin = 1; counter_load(&done[b]) != before[tid] + b + 1; spin++)
                relax(spin);
        before[tid] += blocks;
        /* the front's values, channel by channel and round by round of pixels on distinct lanes: each lane's owner
           finds its pixel's value from the lane's slot and marks the lane if its state fell below the bound; after
           one barrier every thread counts the marked lanes in increasing lane order (the order in which the encoder
           wrote their words) and reads the words of its own lanes.  The owner of a pixel writes its values to the
           image before the barrier of its last channel's round. */
        for (int ch = 0; ch < channels; ch++) {
            for (Py_ssize_t a = 0; a < n; a += lanes) {
                Py_ssize_t end = a + lanes < n ? a + lanes : n, size = end - a, used = 0;
                /* two sets of marks, one per round parity; this thread's own at `own_marks` */
                const uint8_t *marked = job->marked + parity * threads * job->marks_stride;
                uint8_t *own_marks = job->marked + (parity * threads + tid) * job->marks_stride;
                parity ^= 1;
                for (Py_ssize_t p = a; p < end; p++) {
                    Py_ssize_t lane = (i_lo + p) % lanes;
                    if (LANE_OWNER(lane) != tid) continue;
                    int64_t *values = job->front_values + p * job->values_stride, f_lo, f_hi;
                    uint64_t x = job->lane_states[lane * LANE_STRIDE];
                    int64_t slot = (int64_t)(x % TOTAL);
                    pixel_search(m, ch, job->front_means + p * job->means_stride, values,
                                 job->front_weights + p * job->weights_stride, w->mean,
                                 w->terms, slot, &f_lo, &f_hi);
                    x = (uint64_t)(f_hi - f_lo) * (x / TOTAL) + (uint64_t)(slot - f_lo);
                    job->lane_states[lane * LANE_STRIDE] = x;
                    own_marks[p - a] = x < low_state;
                    if (ch == channels - 1) {
                        Py_ssize_t i = i_lo + p, j = t - (r + 1) * i;
                        for (int c = 0; c < channels; c++)
                            job->out_image[(i * width + j) * channels + job->natural[c]] = (uint8_t)values[c];
                    }
                }
                barrier_wait(&job->barrier);
                /* the round's lanes are (i_lo + a .. i_lo + end - 1) mod lanes, distinct: from the smallest */
                Py_ssize_t first_lane = (i_lo + a) % lanes, start = first_lane + size > lanes ? lanes - first_lane : 0;
                for (Py_ssize_t k = 0; k < size; k++) {
                    Py_ssize_t q = (start + k) % size, lane = (i_lo + a + q) % lanes;
                    int owner = LANE_OWNER(lane);
                    if (!marked[owner * job->marks_stride + q]) continue;
                    uint64_t *state = job->lane_states + lane * LANE_STRIDE;
                    if (owner == tid && position + used < job->num_words)
                        *state = (*state << WORD_BITS) | (job->words[position + used] & 0xFFFFFFFFu);
                    used++;
                }
                position += used;
                if (position > job->num_words) {     /* every thread sees it at the same round */
                    if (tid == 0) job->error = 1;
                    return;
                }
            }
        }
    }
#undef LANE_OWNER
    if (tid == 0) job->position = position;
}

typedef struct {
    Job *job;
    int tid, decode;
#ifdef HAVE_THREADS
    atomic_int *gate;           /* 0 until every thread is started, then 1 */
#endif
} Start;

#ifdef HAVE_THREADS
static void *thread_main(void *arg) {
    Start *s = arg;
    while (atomic_load_explicit(s->gate, memory_order_acquire) == 0) sched_yield();
    if (s->decode) decode_worker(s->job, s->tid);
    else encode_worker(s->job, s->tid);
    return NULL;
}
#endif

/* Run the workers on up to job->threads threads, the caller's thread being thread 0.  The threads wait at a
   gate until all are started, so that if one cannot be started the job runs on those that were (job->threads
   is set first): the results do not depend on the number of threads. */
static void run_job(Job *job, int decode) {
    int started = 1;
#ifdef HAVE_THREADS
    pthread_t ids[MAX_THREADS];
    Start starts[MAX_THREADS];
    atomic_int gate;
    atomic_init(&gate, 0);
    for (int k = 1; k < job->threads; k++) {
        starts[k] = (Start){job, k, decode, &gate};
        if (pthread_create(&ids[k], NULL, thread_main, &starts[k]) != 0) break;
        started++;
    }
    job->threads = started;
    job->barrier.count = started;
    atomic_init(&job->barrier.arrived, 0);
    atomic_init(&job->barrier.phase, 0);
    atomic_init(&job->barrier.sleepers, 0);
    atomic_store_explicit(&gate, 1, memory_order_release);
#else
    job->threads = 1;
    job->barrier.count = 1;
#endif
    if (decode) decode_worker(job, 0);
    else encode_worker(job, 0);
#ifdef HAVE_THREADS
    for (int k = 1; k < started; k++) pthread_join(ids[k], NULL);
#endif
}

/* A job's rings and per-thread scratch; -1 if out of memory (everything freed). */
static int job_alloc(Job *job, const Model *m, Py_ssize_t height, Py_ssize_t slots, int threads) {
    job->m = m;
    job->threads = threads < 1 ? 1 : (threads > MAX_THREADS ? MAX_THREADS : threads);
    job->rings = calloc(m->layers + 1, sizeof(Ring));
    int ok = job->rings != NULL, made = 0;
    for (int l = 0; ok && l < m->layers; l++) {
        Ring *ring = &job->rings[l];
        ring->slots = slots;
        ring->units = m->units;
        ring->h = calloc((height + 1) * slots * m->units + 1, sizeof(double));
        ring->c = calloc((height + 1) * slots * m->units + 1, sizeof(double));
        ok = ring->h && ring->c;
    }
    for (; ok && made < job->threads; made++)
        ok = work_alloc(m, &job->work[made]) == 0;
    if (!ok) {
        if (made > 0 && job->rings) made--;      /* the last work_alloc freed its own */
        for (int k = 0; k < made; k++) work_free(&job->work[k], m->layers);
        for (int l = 0; job->rings && l < m->layers; l++) {
            free(job->rings[l].h);
            free(job->rings[l].c);
        }
        free(job->rings);
        return -1;
    }
    return 0;
}

static void job_free(Job *job, int threads_allocated) {
    for (int k = 0; k < threads_allocated; k++) work_free(&job->work[k], job->m->layers);
    for (int l = 0; l < job->m->layers; l++) {
        free(job->rings[l].h);
        free(job->rings[l].c);
    }
    free(job->rings);
}

/* encode_image(model, image uint8 [H, W, C], height, width, order int64 [C], start_out int64 [H W C],
   freq_out int64 [H W C], threads): every value's (start, freq) given the known earlier values (teacher
   forcing), channels in coding order (coded channel c is image channel order[c]). */
static PyObject *k_encode_image(PyObject *self, PyObject *args) {
    PyObject *capsule, *image_obj, *order_obj, *s_obj, *f_obj;
    Py_ssize_t height, width;
    int threads;
    if (!PyArg_ParseTuple(args, "OOnnOOOi", &capsule, &image_obj, &height, &width, &order_obj, &s_obj, &f_obj,
                          &threads))
        return NULL;
    Model *m = get_model(capsule);
    if (!m) return NULL;
    if (!m->has_weights || height < 1 || width < 1) {
        PyErr_SetString(PyExc_ValueError, "kernels.encode_image: no weights set, or an empty image");
        return NULL;
    }
    Py_ssize_t count = height * width * m->channels;
    Py_buffer iv, ov, sv, fv;
    if (get_buffer(image_obj, &iv, 'B', count, 0, "image") < 0) return NULL;
    if (get_buffer(order_obj, &ov, 'q', m->channels, 0, "order") < 0) goto r_i;
    if (get_buffer(s_obj, &sv, 'q', count, 1, "start") < 0) goto r_o;
    if (get_buffer(f_obj, &fv, 'q', count, 1, "freq") < 0) goto r_s;
    for (int c = 0; c < m->channels; c++)
        if (((const int64_t *)ov.buf)[c] < 0 || ((const int64_t *)ov.buf)[c] >= m->channels) {
            PyErr_SetString(PyExc_ValueError, "kernels.encode_image: order out of range");
            goto r_f;
        }
    Job *job = calloc(1, sizeof(Job));
    if (!job || job_alloc(job, m, height, 2, threads) < 0) {
        free(job);
        PyErr_NoMemory();
        goto r_f;
    }
    int allocated = job->threads;
    job->image = iv.buf;
    job->height = height;
    job->width = width;
    job->order = ov.buf;
    job->start = sv.buf;
    job->freq = fv.buf;
    Py_BEGIN_ALLOW_THREADS
    run_job(job, 0);
    Py_END_ALLOW_THREADS
    job_free(job, allocated);
    free(job);
    PyBuffer_Release(&fv);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&ov);
    PyBuffer_Release(&iv);
    Py_RETURN_NONE;
r_f:
    PyBuffer_Release(&fv);
r_s:
    PyBuffer_Release(&sv);
r_o:
    PyBuffer_Release(&ov);
r_i:
    PyBuffer_Release(&iv);
    return NULL;
}

/* experts_image(model, image uint8 [H, W, 1], height, width, stride, logits_out int64 [S, K], masses_out int64 [S, K],
   threads), S = ceil(H / stride) W: the gate logits and each expert's mass of the value of the pixels of every
   stride-th row (row-major), given the image (teacher forcing), for a one-channel model. */
static PyObject *k_experts_image(PyObject *self, PyObject *args) {
    PyObject *capsule, *image_obj, *l_obj, *m_obj;
    Py_ssize_t height, width, stride;
    int threads;
    if (!PyArg_ParseTuple(args, "OOnnnOOi", &capsule, &image_obj, &height, &width, &stride, &l_obj, &m_obj, &threads))
        return NULL;
    Model *m = get_model(capsule);
    if (!m) return NULL;
    if (!m->has_weights || m->channels != 1 || height < 1 || width < 1 || stride < 1) {
        PyErr_SetString(PyExc_ValueError, "kernels.experts_image: a one-channel model with weights, and sizes >= 1");
        return NULL;
    }
    Py_ssize_t count = ((height + stride - 1) / stride) * width * m->experts;
    int64_t zero = 0;
    Py_buffer iv, lv, mv;
    if (get_buffer(image_obj, &iv, 'B', height * width, 0, "image") < 0) return NULL;
    if (get_buffer(l_obj, &lv, 'q', count, 1, "logits") < 0) {
        PyBuffer_Release(&iv);
        return NULL;
    }
    if (get_buffer(m_obj, &mv, 'q', count, 1, "masses") < 0) {
        PyBuffer_Release(&lv);
        PyBuffer_Release(&iv);
        return NULL;
    }
    Job *job = calloc(1, sizeof(Job));
    if (!job || job_alloc(job, m, height, 2, threads) < 0) {
        free(job);
        PyBuffer_Release(&mv);
        PyBuffer_Release(&lv);
        PyBuffer_Release(&iv);
        return PyErr_NoMemory();
    }
    int allocated = job->threads;
    job->image = iv.buf;
    job->height = height;
    job->width = width;
    job->order = &zero;
    job->stride = stride;
    job->logits = lv.buf;
    job->masses = mv.buf;
    Py_BEGIN_ALLOW_THREADS
    run_job(job, 0);
    Py_END_ALLOW_THREADS
    job_free(job, allocated);
    free(job);
    PyBuffer_Release(&mv);
    PyBuffer_Release(&lv);
    PyBuffer_Release(&iv);
    Py_RETURN_NONE;
}

/* decode_image(model, image_out uint8 [H, W, C], height, width, lanes, states uint64 [lanes], words uint64 [...],
   position, natural int64 [C], threads) -> the position after the last word read, or -1 if the stream ran out
   of words (truncated, or decoded with other tables).  `states` holds the lanes' final states afterwards; the
   pixels are those of `ride_tf.codec.coding.decode`, whatever the number of threads. */
static PyObject *k_decode_image(PyObject *self, PyObject *args) {
    PyObject *capsule, *image_obj, *states_obj, *words_obj, *natural_obj;
    Py_ssize_t height, width, lanes, position;
    int threads;
    if (!PyArg_ParseTuple(args, "OOnnnOOnOi", &capsule, &image_obj, &height, &width, &lanes, &states_obj,
                          &words_obj, &position, &natural_obj, &threads))
        return NULL;
    Model *m = get_model(capsule);
    if (!m) return NULL;
    if (!m->has_weights || height < 1 || width < 1 || lanes < 1 || lanes > 4096 || position < 0) {
        PyErr_SetString(PyExc_ValueError, "kernels.decode_image: no weights set, or sizes out of range");
        return NULL;
    }
    int channels = m->channels;
    Py_ssize_t r = m->radius, longest = (width + r) / (r + 1) < height ? (width + r) / (r + 1) : height;
    Py_buffer iv, sv, wv, nv;
    if (get_buffer(image_obj, &iv, 'B', height * width * channels, 1, "image") < 0) return NULL;
    if (get_buffer(states_obj, &sv, 'Q', lanes, 1, "states") < 0) goto r_i;
    if (get_buffer(words_obj, &wv, 'Q', -1, 0, "words") < 0) goto r_s;
    if (get_buffer(natural_obj, &nv, 'q', channels, 0, "natural") < 0) goto r_w;
    for (int c = 0; c < channels; c++)
        if (((const int64_t *)nv.buf)[c] < 0 || ((const int64_t *)nv.buf)[c] >= channels) {
            PyErr_SetString(PyExc_ValueError, "kernels.decode_image: natural channel out of range");
            goto r_n;
        }
    Job *job = calloc(1, sizeof(Job));
    if (!job || job_alloc(job, m, height, r + 2, threads) < 0) {
        free(job);
        PyErr_NoMemory();
        goto r_n;
    }
    int allocated = job->threads;
    void *raw[7];
    job->queues = lines_alloc(sizeof(Queue) * allocated, &raw[6]);
    job->most_blocks = (longest + CLAIM_ROWS - 1) / CLAIM_ROWS;
    job->done = lines_alloc(sizeof(Counter) * allocated * job->most_blocks, &raw[5]);
    job->rows = malloc(sizeof(Py_ssize_t) * 2 * allocated * longest);
    job->weights_stride = in_lines(m->experts, 8);
    job->means_stride = in_lines((Py_ssize_t)m->components * channels, 8);
    job->values_stride = in_lines(channels, 8);
    job->marks_stride = in_lines(lanes, 1);
    job->front_weights = lines_alloc(sizeof(int64_t) * longest * job->weights_stride, &raw[0]);
    job->front_means = lines_alloc(sizeof(int64_t) * longest * job->means_stride, &raw[1]);
    job->front_values = lines_alloc(sizeof(int64_t) * longest * job->values_stride, &raw[2]);
    job->lane_states = lines_alloc(sizeof(uint64_t) * lanes * LANE_STRIDE, &raw[3]);
    job->marked = lines_alloc((size_t)2 * allocated * job->marks_stride, &raw[4]);
    if (!job->front_weights || !job->front_means || !job->front_values || !job->lane_states || !job->marked ||
        !job->done || !job->rows || !job->queues) {
        for (int k = 0; k < 7; k++) free(raw[k]);
        free(job->rows);
        job_free(job, allocated);
        free(job);
        PyErr_NoMemory();
        goto r_n;
    }
    job->out_image = iv.buf;
    job->height = height;
    job->width = width;
    job->lanes = lanes;
    for (Py_ssize_t l = 0; l < lanes; l++) job->lane_states[l * LANE_STRIDE] = ((const uint64_t *)sv.buf)[l];
    job->words = wv.buf;
    job->num_words = wv.len / 8;
    job->position = position;
    job->natural = nv.buf;
    Py_BEGIN_ALLOW_THREADS
    run_job(job, 1);
    Py_END_ALLOW_THREADS
    Py_ssize_t result = job->error ? -1 : job->position;
    for (Py_ssize_t l = 0; l < lanes; l++) ((uint64_t *)sv.buf)[l] = job->lane_states[l * LANE_STRIDE];
    for (int k = 0; k < 7; k++) free(raw[k]);
    free(job->rows);
    job_free(job, allocated);
    free(job);
    PyBuffer_Release(&nv);
    PyBuffer_Release(&wv);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&iv);
    return PyLong_FromSsize_t(result);
r_n:
    PyBuffer_Release(&nv);
r_w:
    PyBuffer_Release(&wv);
r_s:
    PyBuffer_Release(&sv);
r_i:
    PyBuffer_Release(&iv);
    return NULL;
}

/* products(model, product, x float64 [n, D], n, out float64 [n, cols]): out = x @ W of product `product` (0 .. L - 1
   the LSTM layers, D their rows, cols 5U; L the mixture, D = Z, cols = B) as `encode_image` computes it, its
   16-bit passes included; the inputs of a pass's rows must be integers within the pass's bound. */
static PyObject *k_products(PyObject *self, PyObject *args) {
    PyObject *capsule, *x_obj, *out_obj;
    int product;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OiOnO", &capsule, &product, &x_obj, &n, &out_obj)) return NULL;
    Model *m = get_model(capsule);
    if (!m) return NULL;
    if (!m->has_weights || product < 0 || product > m->layers || n < 0) {
        PyErr_SetString(PyExc_ValueError, "kernels.products: the weights are not set, or the product or n is out of "
                                          "range");
        return NULL;
    }
    int top = product == m->layers;
    Py_ssize_t k = top ? m->z_width : m->layer_rows[product], cols = top ? m->b_width : 5 * (Py_ssize_t)m->units;
    const double *w = top ? m->mixture_w : m->layer_w[product];
    const Narrow *nr = top ? &m->mixture_narrow : &m->layer_narrow[product];
    Py_buffer xv, ov;
    if (get_buffer(x_obj, &xv, 'd', n * k, 0, "x") < 0) return NULL;
    if (get_buffer(out_obj, &ov, 'd', n * cols, 1, "out") < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    const double *x = xv.buf;
    for (int i = 0; i < nr->count; i++)
        for (Py_ssize_t p = 0; p < n; p++)
            for (Py_ssize_t q = nr->pass[i].r0; q < nr->pass[i].r1; q++) {
                double v = x[p * k + q];
                if (!(fabs(v) <= nr->pass[i].bound) || v != floor(v)) {
                    PyBuffer_Release(&xv);
                    PyBuffer_Release(&ov);
                    PyErr_Format(PyExc_ValueError, "kernels.products: x[%zd, %zd] is not an integer within the bound of "
                                 "its 16-bit pass", p, q);
                    return NULL;
                }
            }
    Py_ssize_t width = padded(cols), k16 = 2;
    for (int i = 0; i < nr->count; i++) k16 = nr->pass[i].k16 > k16 ? nr->pass[i].k16 : k16;
    double *out = malloc(sizeof(double) * (n * width + 1));
    int16_t *x16 = malloc(sizeof(int16_t) * (n * k16 + 1));
    if (!out || !x16) {
        free(out);
        free(x16);
        PyBuffer_Release(&xv);
        PyBuffer_Release(&ov);
        return PyErr_NoMemory();
    }
    Py_ssize_t s0, s1;
    indicator_rows(m, product, &s0, &s1);
    products(m, x, k, w, k, width, nr, s0, s1, x16, out, width, n);
    for (Py_ssize_t p = 0; p < n; p++) memcpy((double *)ov.buf + p * cols, out + p * width, cols * sizeof(double));
    free(out);
    free(x16);
    PyBuffer_Release(&xv);
    PyBuffer_Release(&ov);
    Py_RETURN_NONE;
}

/* passes(model) -> [(product, first_row, end_row, scale), ...]: the products' passes in 16-bit integers (product
   0 .. L - 1 the LSTM layers, L the mixture), after `set_weights`. */
static PyObject *k_passes(PyObject *self, PyObject *args) {
    PyObject *capsule;
    if (!PyArg_ParseTuple(args, "O", &capsule)) return NULL;
    Model *m = get_model(capsule);
    if (!m) return NULL;
    if (!m->has_weights) {
        PyErr_SetString(PyExc_ValueError, "kernels.passes: the weights are not set");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    for (int l = 0; out && l <= m->layers; l++) {
        const Narrow *nr = l < m->layers ? &m->layer_narrow[l] : &m->mixture_narrow;
        for (int i = 0; i < nr->count; i++) {
            PyObject *item = Py_BuildValue("(innd)", l, nr->pass[i].r0, nr->pass[i].r1, nr->pass[i].scale);
            if (!item || PyList_Append(out, item) < 0) {
                Py_XDECREF(item);
                Py_CLEAR(out);
                break;
            }
            Py_DECREF(item);
        }
    }
    return out;
}

static PyMethodDef methods[] = {
    {"model", k_model, METH_VARARGS, "model(dict) -> the integer model's constants (a capsule)."},
    {"table_arithmetic", k_table_arithmetic, METH_VARARGS, "How the cumulative tables are computed: float64 or int64."},
    {"inputs", k_inputs, METH_VARARGS, "Centred inputs u = [c, e] of a line of pixels."},
    {"cell", k_cell, METH_VARARGS, "The spatial LSTM cell of a line of pixels from their products."},
    {"mixture", k_mixture, METH_VARARGS, "The MCGSM's weights and means of pixels from their products."},
    {"rans_encode", k_rans_encode, METH_VARARGS, "The interleaved rANS stream of steps of symbols."},
    {"rans_encode_fronts", k_rans_encode_fronts, METH_VARARGS,
     "The interleaved rANS stream of an image's values in the coding order, built on the way."},
    {"set_weights", k_set_weights, METH_VARARGS, "The products' weights, for encode_image and decode_image."},
    {"passes", k_passes, METH_VARARGS, "The products' passes in 16-bit integers: (product, first, end, scale)."},
    {"products", k_products, METH_VARARGS, "x @ W of a layer or the mixture, as encode_image computes it."},
    {"encode_image", k_encode_image, METH_VARARGS, "Every value's (start, freq) of a whole image, on threads."},
    {"decode_image", k_decode_image, METH_VARARGS, "Decode a whole image's rANS stream, on threads."},
    {"experts_image", k_experts_image, METH_VARARGS, "Gate logits and expert masses of sampled pixels, on threads."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "kernels",
                                    "The integer model's coding arithmetic in C (see ride_tf.codec.native).", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_kernels(void) { return PyModule_Create(&module); }
