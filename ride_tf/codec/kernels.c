/* ride_tf.codec.kernels: the integer model's coding arithmetic in C, for `ride_tf.codec.native`.
 *
 * Every function here computes exactly the integers of `ride_tf.codec.integer` (its NumPy and TensorFlow
 * arithmetic, the reference): the parts of the model after each matrix product (the spatial LSTM cell's
 * gates and lookups, the MCGSM's responses, gate, weights and means, each channel's cumulative table),
 * the rANS coder's steps, and the gathers of a line of pixels' inputs.  The matrix products themselves stay
 * in NumPy (BLAS): their float64 sums of integers are exact in any order (`quantize_linear`'s bound), and
 * their results come in here as float64 integers below 2^52, which convert to int64 exactly.
 *
 * Everything after the products is int64 arithmetic (two's complement, no overflow: the bounds of
 * `ride_tf.codec.integer` keep every product below 2^62), floor divisions by powers of two written with
 * complements (so they do not rely on the sign behaviour of >>), and lookups clipped to their tables; the
 * only floating point is a product of an integer below 2^31 with a 21-bit factor times a power of two
 * (exact in float64) and floor((x + b) s) with s a power of two (exact).  So the results do not depend on the
 * compiler, its flags or the CPU.
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
#define PAPER_MEMORY 64

/* floor(x / 2^s) for 0 <= s <= 62 (`model` checks the width shifts), without relying on how >> treats negative
   numbers. */
static inline int64_t floor_shift(int64_t x, int64_t s) { return x >= 0 ? (x >> s) : ~((~x) >> s); }

static inline int64_t clip64(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : (x > hi ? hi : x); }

/* floor(n / d) for 0 <= n < 2^62, d > 0 and a quotient below 2^40 (the gates' 2^15, the weights' 2^20): the
   float64 quotient is then within 2^-10 of n / d, so its truncation is the exact quotient or one off, and one
   integer comparison corrects it; several times faster than an int64 division. */
static inline int64_t floor_div(int64_t n, int64_t d) {
    int64_t q = (int64_t)((double)n / (double)d);
    if (q * d > n) q--;
    else if ((q + 1) * d <= n) q++;
    return q;
}

/* floor(x s) clipped to [lo, hi] (integers), x a float64 integer (< 2^52) and s a power of two: exact.  Clipped
   first (floor is monotone and the bounds are integers), then floored by truncation (no libm call). */
static inline int64_t rescale(double x, double s, double lo, double hi) {
    double y = x * s;
    if (y < lo) y = lo;
    if (y > hi) y = hi;
    int64_t t = (int64_t)y;
    return (double)t > y ? t - 1 : t;
}

/* floor(y) of a float64 below 2^62 in magnitude. */
static inline int64_t floor64(double y) {
    int64_t t = (int64_t)y;
    return (double)t > y ? t - 1 : t;
}

/* ------------------------------------------------------------------ the model */
typedef struct {
    const int32_t *values;
    int64_t low, size;             /* T[i - low] for argument i; `size` entries */
} Table;

static inline int64_t look(const Table *t, int64_t index) { return t->values[clip64(index - t->low, 0, t->size - 1)]; }

typedef struct {
    double *bias, *scale;
    double low, high;
} Affine;

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
    void *blocks[64];
    int num_blocks;
} Model;

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
    if (m->num_blocks >= 64) {
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

/* A lookup table, stored as int32 (its values lie in [-2^31, 2^31): half the cache of int64). */
static int get_table(Model *m, PyObject *dict, const char *name, const char *low_key, Table *t) {
    Py_ssize_t size;
    long low;
    const int64_t *wide = copy_item(m, dict, name, 'q', -1, &size);
    if (!wide || get_int(dict, low_key, &low) < 0) return -1;
    if (size < 1 || m->num_blocks >= 64) {
        PyErr_Format(PyExc_ValueError, "kernels.model: table %s is empty", name);
        return -1;
    }
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
    INT_FIELD(layers) INT_FIELD(paper) INT_FIELD(extended) INT_FIELD(reads_inputs) INT_FIELD(radius)
#undef INT_FIELD
    m->experts = m->components * m->scales;
    if (m->channels < 1 || m->channels > 4 || m->components < 1 || m->scales < 1 || m->features < 0 ||
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
    PyObject *capsule = PyCapsule_New(m, CAPSULE, model_free);
    if (capsule) return capsule;
fail:
    for (int k = 0; k < m->num_blocks; k++) free(m->blocks[k]);
    free(m);
    return NULL;
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

/* states(model, ring_h, ring_c, height, width, slots, (i0, j0, slope, n), out, ld, offset): the neighbours'
   states [h_left, h_up] (and [c_left, c_up] for extended cells) of the line's pixels into out. */
static PyObject *k_states(PyObject *self, PyObject *args) {
    PyObject *capsule, *h_obj, *c_obj, *out_obj;
    Py_ssize_t height, width, slots, ld, offset;
    Line line;
    if (!PyArg_ParseTuple(args, "OOOnnn(nnnn)Onn", &capsule, &h_obj, &c_obj, &height, &width, &slots, &line.i0,
                          &line.j0, &line.slope, &line.n, &out_obj, &ld, &offset))
        return NULL;
    Model *m = get_model(capsule);
    if (!m || check_line(&line, height, width) < 0) return NULL;
    Py_ssize_t units = m->units, parts = m->extended ? 4 : 2;
    Py_buffer hv, cv, out;
    Ring ring;
    if (get_ring(h_obj, c_obj, &hv, &cv, &ring, height, slots, units) < 0) return NULL;
    if (get_rows(out_obj, &out, line.n, ld, offset, parts * units, "out") < 0) {
        PyBuffer_Release(&hv);
        PyBuffer_Release(&cv);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t p = 0; p < line.n; p++) {
        Py_ssize_t i = line.i0 + p, j = line.j0 - line.slope * p;
        double *row = (double *)out.buf + offset + p * ld;
        memcpy(row, ring_at(ring.h, &ring, i + 1, j - 1), units * sizeof(double));
        memcpy(row + units, ring_at(ring.h, &ring, i, j), units * sizeof(double));
        if (m->extended) {
            memcpy(row + 2 * units, ring_at(ring.c, &ring, i + 1, j - 1), units * sizeof(double));
            memcpy(row + 3 * units, ring_at(ring.c, &ring, i, j), units * sizeof(double));
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&hv);
    PyBuffer_Release(&cv);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ the spatial LSTM cell */
/* One pixel's cell: a the products x W [5 U] (float64 integers), the neighbours' memories; writes h, c. */
static void cell_at(const Model *m, int layer, const double *a, const double *c_left, const double *c_up, double *h,
                    double *c, int32_t *work) {
    const Affine *lin = &m->layer[layer];
    const int units = m->units;
    const double one = (double)((int64_t)1 << STATE_BITS);
    const double bound = m->paper ? one * PAPER_MEMORY : one;
    /* In phases over the units, so that the compiler vectorises all but the lookups.  Every value fits int32
       (pre-activations +-2^14, table values < 2^25), every double below is an integer or an exact quotient. */
    int32_t *pre = work, *gate = work + 5 * units, *e = work + 10 * units;     /* `work`: 14 U int32 */
    for (int col = 0; col < 5 * units; col++) {
        double y = (a[col] + lin->bias[col]) * lin->scale[col];
        y = y < lin->low ? lin->low : (y > lin->high ? lin->high : y);       /* the bounds are +-2^14 */
        int32_t t = (int32_t)y;
        pre[col] = t - ((double)t > y);
    }
    const int32_t *pg = pre, *po = pre + units, *pi = pre + 2 * units, *pl = pre + 3 * units, *pu = pre + 4 * units;
    int32_t *g = gate, *o = gate + units, *gi = gate + 2 * units, *gl = gate + 3 * units, *gu = gate + 4 * units;
    for (int u = 0; u < units; u++) {
        g[u] = (int32_t)look(&m->tanh_t, pg[u]);
        o[u] = (int32_t)look(&m->sigmoid_t, po[u]);
    }
    if (m->paper) {
        for (int u = 0; u < units; u++) {
            gi[u] = (int32_t)look(&m->sigmoid_t, pi[u]);
            gl[u] = (int32_t)look(&m->sigmoid_t, pl[u]);
            gu[u] = (int32_t)look(&m->sigmoid_t, pu[u]);
        }
    } else {
        int32_t *ei = e, *el = e + units, *eu = e + 2 * units, *e0 = e + 3 * units;
        for (int u = 0; u < units; u++) {
            int32_t top = pi[u] > pl[u] ? pi[u] : pl[u];
            top = pu[u] > top ? pu[u] : top;
            top = top > 0 ? top : 0;
            ei[u] = (int32_t)look(&m->exp_gate_t, pi[u] - top);
            el[u] = (int32_t)look(&m->exp_gate_t, pl[u] - top);
            eu[u] = (int32_t)look(&m->exp_gate_t, pu[u] - top);
            e0[u] = (int32_t)look(&m->exp_gate_t, -top);
        }
        for (int u = 0; u < units; u++) {
            /* floor(e 2^15 / total): e 2^15 <= 2^30 and total in [2^15, 2^17), so the float64 quotient is within
               2^-38 of the exact one, which lies at least 2^-17 from the next integer: truncation is exact */
            double total = (double)ei[u] + el[u] + eu[u] + e0[u];
            gi[u] = (int32_t)(ei[u] * one / total);
            gl[u] = (int32_t)(el[u] * one / total);
            gu[u] = (int32_t)(eu[u] * one / total);
        }
    }
    for (int u = 0; u < units; u++) {
        /* |memory| < 2^38 (paper cell: |c| <= 2^21): exact in float64, and so are the rescalings */
        double memory = (double)g[u] * gi[u] + c_left[u] * gl[u] + c_up[u] * gu[u];
        double cm = (double)floor64(memory * (1.0 / one));
        cm = cm < -bound ? -bound : (cm > bound ? bound : cm);
        c[u] = cm;
        h[u] = (double)look(&m->tanh_t, floor64(cm * o[u] * (1.0 / (double)(1 << (2 * STATE_BITS - ARG_BITS)))));
    }
}

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
    int32_t *work = malloc(sizeof(int32_t) * (14 * units + 1));
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
/* normalise raw [K] (>= 0, not all zero, < 2^42) to weights summing to 2^20, in place. */
static void normalise(int64_t *w, int experts) {
    int64_t sum = 0;
    for (int k = 0; k < experts; k++) sum += w[k];
    int64_t total = 0, best = -1;
    int argmax = 0;
    for (int k = 0; k < experts; k++) {
        w[k] = floor_div(w[k] << WEIGHT_BITS, sum);
        total += w[k];
        if (w[k] > best) {
            best = w[k];
            argmax = k;
        }
    }
    w[argmax] += ((int64_t)1 << WEIGHT_BITS) - total;
}

/* One pixel's mixture from b, its products [F + components + components C]: weights [K] (sum 2^20) and the
   components' means [components, C] (at 2^-16, channels in coding order). */
static void mixture_at(const Model *m, const double *b, int64_t *weights, int64_t *means, double *scratch) {
    int features = m->features, components = m->components, scales = m->scales, experts = m->experts;
    double *squares = scratch, *acc = scratch + features;       /* [F], [components] */
    int64_t *logits = weights;
    for (int f = 0; f < features; f++) {
        int64_t r = rescale(b[f] + m->responses.bias[f], m->responses.scale[f], m->responses.low,
                            m->responses.high);
        squares[f] = (double)((r * r) >> 20);        /* r^2 >= 0, below 2^40 */
    }
    /* the gate's products on the squared responses: float64 sums of integers whose absolute values add up to
       less than 2^52 (`quantize_linear`), exact in any order */
    for (int comp = 0; comp < components; comp++) acc[comp] = b[features + comp];
    for (int f = 0; f < features; f++) {
        const double *row = m->gate_squares + (Py_ssize_t)f * components;
        for (int comp = 0; comp < components; comp++) acc[comp] += squares[f] * row[comp];
    }
    for (int comp = 0; comp < components; comp++) {
        int64_t t = rescale(acc[comp] + m->gate.bias[comp], m->gate.scale[comp], m->gate.low, m->gate.high);
        for (int s = 0; s < scales; s++) {
            int k = comp * scales + s;
            /* |t| <= 2^30 and the factor < 2^21 times a power of two: the product is exact, below 2^52 */
            logits[k] = clip64(floor64((double)t * m->logit_factor_scaled[k]) + (int64_t)m->logit_offset[k],
                               -((int64_t)1 << 20), (int64_t)1 << 20);
        }
    }
    int64_t top = logits[0];
    for (int k = 1; k < experts; k++)
        if (logits[k] > top) top = logits[k];
    for (int k = 0; k < experts; k++) weights[k] = look(&m->exp_weight_t, logits[k] - top);
    normalise(weights, experts);
    const double *mb = b + features + components;
    for (int q = 0; q < components * m->channels; q++)
        means[q] = rescale(mb[q] + m->means.bias[q], m->means.scale[q], m->means.low, m->means.high);
}

/* PHI of expert k of coded channel ch at the lower edge of bin b (0 and below: -inf, 256 and above: +inf). */
static inline int64_t expert_phi(const Model *m, int ch, int k, int64_t mean, int64_t b) {
    int64_t edge = b <= 0 ? -((int64_t)1 << 30) : (b >= NUM_BINS ? ((int64_t)1 << 30) : (b << (MEAN_BITS - 8)));
    int64_t index = floor_shift((edge - mean) * m->inverse_widths[ch * m->experts + k],
                                m->width_shifts[ch * m->experts + k]);
    return look(&m->phi_t, index);
}

/* F(b) = floor(sum_k w_k PHI_k(b) / 2^24) + b, F(0) = 0, F(256) = TOTAL. */
static int64_t cumulative(const Model *m, int ch, const int64_t *w, const int64_t *mean, int64_t b) {
    if (b <= 0) return 0;
    if (b >= NUM_BINS) return TOTAL;
    int64_t acc = 0;
    for (int k = 0; k < m->experts; k++) acc += w[k] * expert_phi(m, ch, k, mean[k], b);
    return (acc >> CDF_BITS) + b;
}

/* The experts' means of coded channel ch [K], given the earlier channels' values. */
static void channel_mean(const Model *m, int ch, const int64_t *means, const int64_t *values, int64_t *mean) {
    int channels = m->channels;
    for (int k = 0; k < m->experts; k++) {
        int comp = k / m->scales;
        const int64_t *mu = means + comp * channels;
        int64_t value = mu[ch];
        for (int e = 0; e < ch; e++) {
            int64_t centre = (2 * values[e] + 1) * 128;
            value += floor_shift(m->regressions[(comp * channels + ch) * channels + e] * (centre - mu[e]), MEAN_BITS);
        }
        mean[k] = value;
    }
}

/* The weights after coded channel ch took `value`: w_k (floor((PHI_k(v + 1) - PHI_k(v)) / 16) + 1), normalised. */
static void update_weights(const Model *m, int ch, int64_t *w, const int64_t *mean, int64_t value) {
    for (int k = 0; k < m->experts; k++) {
        int64_t mass = expert_phi(m, ch, k, mean[k], value + 1) - expert_phi(m, ch, k, mean[k], value);
        w[k] *= (mass >> 4) + 1;
    }
    normalise(w, m->experts);
}

/* The bin b with F(b) <= slot < F(b + 1), searched outwards from `guess` (the result is unique: F rises). */
static int64_t find_bin(const Model *m, int ch, const int64_t *w, const int64_t *mean, int64_t slot, int64_t guess,
                        int64_t *low, int64_t *high) {
    int64_t lo, hi, f_lo, f_hi;                     /* F(lo) <= slot < F(hi) */
    guess = clip64(guess, 0, NUM_BINS - 1);
    int64_t f = cumulative(m, ch, w, mean, guess);
    if (f <= slot) {
        lo = guess;
        f_lo = f;
        int64_t step = 1;
        for (;;) {
            hi = lo + step > NUM_BINS ? NUM_BINS : lo + step;
            f_hi = cumulative(m, ch, w, mean, hi);
            if (f_hi > slot) break;
            lo = hi;
            f_lo = f_hi;
            step *= 2;
        }
    } else {
        hi = guess;
        f_hi = f;
        int64_t step = 1;
        for (;;) {
            lo = hi - step < 0 ? 0 : hi - step;
            f_lo = cumulative(m, ch, w, mean, lo);
            if (f_lo <= slot) break;
            hi = lo;
            f_hi = f_lo;
            step *= 2;
        }
    }
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2, f_mid = cumulative(m, ch, w, mean, mid);
        if (f_mid <= slot) {
            lo = mid;
            f_lo = f_mid;
        } else {
            hi = mid;
            f_hi = f_mid;
        }
    }
    *low = f_lo;
    *high = f_hi;
    return lo;
}

/* The bin of the mixture's mean: floor(sum_k w_k mean_k / 2^28) (the mean at 2^-8). */
static inline int64_t mean_bin(const Model *m, const int64_t *w, const int64_t *mean) {
    int64_t acc = 0;
    for (int k = 0; k < m->experts; k++) acc += w[k] * mean[k];
    return floor_shift(acc, WEIGHT_BITS + MEAN_BITS - 8);
}

typedef struct {
    int64_t *weights, *means, *mean, *values;
    double *scratch;                                /* `mixture_at`'s [F + components] */
} Scratch;

static int scratch_alloc(const Model *m, Scratch *s, Py_ssize_t n) {
    s->weights = malloc(sizeof(int64_t) * (n * m->experts + 1));
    s->means = malloc(sizeof(int64_t) * (n * m->components * m->channels + 1));
    s->mean = malloc(sizeof(int64_t) * (m->experts + 1));
    s->scratch = malloc(sizeof(double) * (m->features + m->components + 1));
    s->values = malloc(sizeof(int64_t) * (n * m->channels + 1));
    if (!s->weights || !s->means || !s->mean || !s->scratch || !s->values) return -1;
    return 0;
}

static void scratch_free(Scratch *s) {
    free(s->weights);
    free(s->means);
    free(s->mean);
    free(s->scratch);
    free(s->values);
}

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
    double *scratch = malloc(sizeof(double) * (m->features + m->components + 1));
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

/* intervals(model, b, ldb, n, known [n, C] uint8 (coding order), start_out [n, C], freq_out [n, C]): each
   value's (start, freq) = (F(v), F(v + 1) - F(v)) given the earlier channels (teacher forcing). */
static PyObject *k_intervals(PyObject *self, PyObject *args) {
    PyObject *capsule, *b_obj, *known_obj, *s_obj, *f_obj;
    Py_ssize_t ldb, n;
    if (!PyArg_ParseTuple(args, "OOnnOOO", &capsule, &b_obj, &ldb, &n, &known_obj, &s_obj, &f_obj)) return NULL;
    Model *m = get_model(capsule);
    if (!m) return NULL;
    if (n < 0 || ldb < mixture_columns(m)) {
        PyErr_SetString(PyExc_ValueError, "kernels.intervals: sizes out of range");
        return NULL;
    }
    int channels = m->channels;
    Py_buffer bv, kv, sv, fv;
    if (get_buffer(b_obj, &bv, 'd', n * ldb, 0, "b") < 0) return NULL;
    if (get_buffer(known_obj, &kv, 'B', n * channels, 0, "known") < 0) {
        PyBuffer_Release(&bv);
        return NULL;
    }
    if (get_buffer(s_obj, &sv, 'q', n * channels, 1, "start") < 0) {
        PyBuffer_Release(&bv);
        PyBuffer_Release(&kv);
        return NULL;
    }
    if (get_buffer(f_obj, &fv, 'q', n * channels, 1, "freq") < 0) {
        PyBuffer_Release(&bv);
        PyBuffer_Release(&kv);
        PyBuffer_Release(&sv);
        return NULL;
    }
    Scratch s;
    int failed = scratch_alloc(m, &s, 1) < 0;
    if (!failed) {
        Py_BEGIN_ALLOW_THREADS
        const uint8_t *known = kv.buf;
        int64_t *start = sv.buf, *freq = fv.buf;
        for (Py_ssize_t p = 0; p < n; p++) {
            mixture_at(m, (const double *)bv.buf + p * ldb, s.weights, s.means, s.scratch);
            for (int ch = 0; ch < channels; ch++) {
                int64_t value = known[p * channels + ch];
                s.values[ch] = value;
                channel_mean(m, ch, s.means, s.values, s.mean);
                int64_t low = cumulative(m, ch, s.weights, s.mean, value);
                start[p * channels + ch] = low;
                freq[p * channels + ch] = cumulative(m, ch, s.weights, s.mean, value + 1) - low;
                if (ch + 1 < channels) update_weights(m, ch, s.weights, s.mean, value);
            }
        }
        Py_END_ALLOW_THREADS
    }
    scratch_free(&s);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&kv);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&fv);
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* decode(model, b, ldb, image, height, width, (i0, j0, slope, n), lanes, states, words, position, natural):
   the values of a wavefront's pixels from their products b [n, ldb] and the rANS stream, written into the
   image [H, W, C] (channel `natural[c]` for coded channel c).  Order: channel by channel, within a channel in
   rounds of `lanes` consecutive pixels, pixel (i, j) on lane i mod lanes; in a round every lane's symbol is
   decoded, then the lanes that fell below L read a word each, in increasing lane order.  Returns the new
   position in `words`, or -1 when the stream does not decode (too few words). */
static PyObject *k_decode(PyObject *self, PyObject *args) {
    PyObject *capsule, *b_obj, *image_obj, *states_obj, *words_obj, *natural_obj;
    Py_ssize_t ldb, height, width, lanes, position;
    Line line;
    if (!PyArg_ParseTuple(args, "OOnOnn(nnnn)nOOnO", &capsule, &b_obj, &ldb, &image_obj, &height, &width, &line.i0,
                          &line.j0, &line.slope, &line.n, &lanes, &states_obj, &words_obj, &position, &natural_obj))
        return NULL;
    Model *m = get_model(capsule);
    if (!m || check_line(&line, height, width) < 0) return NULL;
    int channels = m->channels;
    Py_ssize_t n = line.n;
    if (ldb < mixture_columns(m) || lanes < 1 || lanes > 4096 || position < 0) {
        PyErr_SetString(PyExc_ValueError, "kernels.decode: sizes out of range");
        return NULL;
    }
    Py_buffer bv, iv, sv, wv, nv;
    if (get_buffer(b_obj, &bv, 'd', n * ldb, 0, "b") < 0) return NULL;
    if (get_buffer(image_obj, &iv, 'B', height * width * channels, 1, "image") < 0) goto release_b;
    if (get_buffer(states_obj, &sv, 'Q', lanes, 1, "states") < 0) goto release_i;
    if (get_buffer(words_obj, &wv, 'Q', -1, 0, "words") < 0) goto release_s;
    if (get_buffer(natural_obj, &nv, 'q', channels, 0, "natural") < 0) goto release_w;
    const int64_t *natural = nv.buf;
    for (int c = 0; c < channels; c++)
        if (natural[c] < 0 || natural[c] >= channels) {
            PyErr_SetString(PyExc_ValueError, "kernels.decode: natural channel out of range");
            goto release_n;
        }
    Scratch s;
    if (scratch_alloc(m, &s, n) < 0) {
        scratch_free(&s);
        PyErr_NoMemory();
        goto release_n;
    }
    Py_ssize_t num_words = wv.len / 8;
    int error = 0;
    Py_BEGIN_ALLOW_THREADS
    uint64_t *states = sv.buf;
    const uint64_t *words = wv.buf;
    uint8_t *image = iv.buf;
    const uint64_t low_state = (uint64_t)TOTAL << 8;
    double *mixture_scratch = s.scratch;
    for (Py_ssize_t p = 0; p < n; p++)
        mixture_at(m, (const double *)bv.buf + p * ldb, s.weights + p * m->experts,
                   s.means + p * m->components * channels, mixture_scratch);
    int64_t *mean = s.mean;
    for (int ch = 0; ch < channels && !error; ch++) {
        for (Py_ssize_t a = 0; a < n && !error; a += lanes) {
            Py_ssize_t b_end = a + lanes < n ? a + lanes : n;
            for (Py_ssize_t p = a; p < b_end; p++) {
                Py_ssize_t i = line.i0 + p;
                Py_ssize_t lane = i % lanes;
                int64_t *w = s.weights + p * m->experts;
                int64_t *values = s.values + p * channels;
                channel_mean(m, ch, s.means + p * m->components * channels, values, mean);
                uint64_t x = states[lane];
                int64_t slot = (int64_t)(x % TOTAL), f_lo, f_hi;
                int64_t value = find_bin(m, ch, w, mean, slot, mean_bin(m, w, mean), &f_lo, &f_hi);
                states[lane] = (uint64_t)(f_hi - f_lo) * (x / TOTAL) + (uint64_t)(slot - f_lo);
                values[ch] = value;
                if (ch + 1 < channels) update_weights(m, ch, w, mean, value);
            }
            /* the round's lanes are (i0 + a .. i0 + b_end - 1) mod lanes: distinct; read in increasing lane order */
            Py_ssize_t count = b_end - a, first = a;
            for (Py_ssize_t q = a; q < b_end; q++)
                if ((line.i0 + q) % lanes < (line.i0 + first) % lanes) first = q;
            for (Py_ssize_t k = 0; k < count; k++) {
                Py_ssize_t q = a + ((first - a) + k) % count;
                Py_ssize_t lane = (line.i0 + q) % lanes;
                if (states[lane] < low_state) {
                    if (position >= num_words) {
                        error = 1;
                        break;
                    }
                    states[lane] = (states[lane] << WORD_BITS) | (words[position++] & 0xFFFFFFFFu);
                }
            }
        }
    }
    if (!error)
        for (Py_ssize_t p = 0; p < n; p++) {
            Py_ssize_t i = line.i0 + p, j = line.j0 - line.slope * p;
            for (int c = 0; c < channels; c++) image[(i * width + j) * channels + natural[c]] = (uint8_t)s.values[p * channels + c];
        }
    Py_END_ALLOW_THREADS
    scratch_free(&s);
    PyBuffer_Release(&nv);
    PyBuffer_Release(&wv);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&iv);
    PyBuffer_Release(&bv);
    return PyLong_FromSsize_t(error ? -1 : position);
release_n:
    PyBuffer_Release(&nv);
release_w:
    PyBuffer_Release(&wv);
release_s:
    PyBuffer_Release(&sv);
release_i:
    PyBuffer_Release(&iv);
release_b:
    PyBuffer_Release(&bv);
    return NULL;
}

/* ------------------------------------------------------------------ rANS encoding */
/* rans_encode(lanes, start, freq, boundaries, num_lanes, total) -> bytes: `ride_tf.codec.rans.RansEncoder`'s
   stream for the steps boundaries[k] .. boundaries[k + 1] of the symbols (checked as there). */
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
            uint64_t x = states[lanes[item]], f = (uint64_t)freq[item];
            if (x >= (f << (WORD_BITS + 8))) {
                words[count++] = (uint32_t)(x & 0xFFFFFFFFu);
                x >>= WORD_BITS;
            }
            states[lanes[item]] = (x / f) * big_total + x % f + (uint64_t)start[item];
        }
    }
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (duplicate)
        PyErr_SetString(PyExc_ValueError, "rANS: a step needs distinct lanes in [0, num_lanes).");
    else {
        result = PyBytes_FromStringAndSize(NULL, 8 * num_lanes + 4 * count);
        if (result) {
            unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
            for (Py_ssize_t l = 0; l < num_lanes; l++)
                for (int byte = 0; byte < 8; byte++) *out++ = (unsigned char)(states[l] >> (8 * byte));
            for (Py_ssize_t q = count - 1; q >= 0; q--)          /* the words reversed, little-endian */
                for (int byte = 0; byte < 4; byte++) *out++ = (unsigned char)(words[q] >> (8 * byte));
        }
    }
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

static PyMethodDef methods[] = {
    {"model", k_model, METH_VARARGS, "model(dict) -> the integer model's constants (a capsule)."},
    {"inputs", k_inputs, METH_VARARGS, "Centred inputs u = [c, e] of a line of pixels."},
    {"states", k_states, METH_VARARGS, "The neighbours' LSTM states of a line of pixels, from the ring buffers."},
    {"cell", k_cell, METH_VARARGS, "The spatial LSTM cell of a line of pixels from their products."},
    {"mixture", k_mixture, METH_VARARGS, "The MCGSM's weights and means of pixels from their products."},
    {"intervals", k_intervals, METH_VARARGS, "Each known value's (start, freq)."},
    {"decode", k_decode, METH_VARARGS, "Decode the values of a wavefront's pixels."},
    {"rans_encode", k_rans_encode, METH_VARARGS, "The interleaved rANS stream of steps of symbols."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "kernels",
                                    "The integer model's coding arithmetic in C (see ride_tf.codec.native).", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_kernels(void) { return PyModule_Create(&module); }
