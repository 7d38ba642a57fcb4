/* _head: the engine's dense head run outside the TFLite interpreter, for EdgeModel's fast path.
 *
 * The forward pass is the firmware's (firmware_bridge/c/edgefdfa_head.c); this file binds it once to
 * the buffers a sample flows through:
 *
 *     sample  (n_sample)    the backbone interpreter's input buffer
 *     features              the backbone's output buffer (the sample itself when there is no backbone)
 *     output  (n_out)       head(features), softmaxed when the file ends in Softmax
 *
 * A sample is two calls of this Python extension module around the backbone's invoke: load(address,
 * x) takes x if it is a C-ordered float32 sample of the bound shape, copies it into the sample buffer
 * and checks it is finite; run(address) runs the head. Each is a
 * CPython call (a ctypes call costs about a microsecond more, on a sample that takes eight). The setup
 * calls (edgefdfa_bind and the struct's size) are plain C, which edgefdfa/native.py calls through
 * ctypes on the same shared library. The caller owns the edgefdfa_bound_head
 * (edgefdfa_bound_head_size() bytes), the layers array, the weights (read in place, so updates made
 * there are seen at the next run) and every buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "edgefdfa_head.h"

/* Beyond edgefdfa_head_status: the sample holds NaN or Inf (the caller says where), or load() was given
 * something other than a C-contiguous float32 buffer of the sample's shape (the caller checks it, says
 * what is wrong or makes it one). */
enum { EDGEFDFA_SAMPLE_NOT_FINITE = 16, EDGEFDFA_SAMPLE_NOT_A_BUFFER = 17, EDGEFDFA_MAX_DIMS = 8 };

typedef struct {
    const edgefdfa_layer *layers;
    size_t n_layers;
    float *sample; /* (n_sample): a sample of shape dims[0 .. ndim) */
    size_t n_sample;
    size_t ndim;
    Py_ssize_t dims[EDGEFDFA_MAX_DIMS];
    const float *features; /* (layers[0].n_in) */
    float *output;         /* (layers[n_layers - 1].n_out) */
    float *scratch;        /* (scratch_len): 2 * the widest layer */
    size_t scratch_len;
    int softmax;
} edgefdfa_bound_head;

size_t edgefdfa_bound_head_size(void) { return sizeof(edgefdfa_bound_head); }

/* Store the pointers and the sample's shape in *head; EDGEFDFA_HEAD_BAD_ARGUMENT if a pointer is NULL,
 * a size is zero or the sample has more than EDGEFDFA_MAX_DIMS dimensions. */
int edgefdfa_bind(edgefdfa_bound_head *head, const edgefdfa_layer *layers, size_t n_layers, float *sample,
                  size_t ndim, const int64_t *dims, const float *features, float *output, float *scratch,
                  size_t scratch_len, int softmax) {
    if (head == NULL || layers == NULL || n_layers == 0 || sample == NULL || dims == NULL || ndim > EDGEFDFA_MAX_DIMS ||
        features == NULL || output == NULL || scratch == NULL) {
        return EDGEFDFA_HEAD_BAD_ARGUMENT;
    }
    *head = (edgefdfa_bound_head){layers, n_layers, sample, 1, ndim, {0}, features, output, scratch, scratch_len,
                                  softmax};
    for (size_t d = 0; d < ndim; ++d) {
        if (dims[d] <= 0) return EDGEFDFA_HEAD_BAD_ARGUMENT;
        head->dims[d] = (Py_ssize_t)dims[d];
        head->n_sample *= (size_t)dims[d];
    }
    return EDGEFDFA_HEAD_OK;
}

/* Whether x holds NaN or Inf: exponent bits all set. Integer compares OR-ed, so it vectorizes (SSE2 too). */
static int not_finite(const float *x, size_t n) {
    int32_t found = 0;
    for (size_t i = 0; i < n; ++i) {
        uint32_t bits;
        memcpy(&bits, &x[i], sizeof bits);
        found |= (int32_t)(bits & 0x7fffffffu) > 0x7f7fffff;
    }
    return found != 0;
}

/* v = exp(v - max v) / sum: the max subtracted so no exp overflows. */
static void softmax(float *v, size_t n) {
    float largest = v[0], total = 0.0f;
    for (size_t j = 1; j < n; ++j) largest = v[j] > largest ? v[j] : largest;
    for (size_t j = 0; j < n; ++j) {
        v[j] = expf(v[j] - largest);
        total += v[j];
    }
    for (size_t j = 0; j < n; ++j) v[j] /= total;
}

/* Run the head on the features into the output: EDGEFDFA_HEAD_OK or edgefdfa_head_forward's failure. */
int edgefdfa_run(const edgefdfa_bound_head *head) {
    edgefdfa_head_status status = edgefdfa_head_forward(head->layers, head->n_layers, head->features, head->output,
                                                        head->scratch, head->scratch_len);
    if (status == EDGEFDFA_HEAD_OK && head->softmax) softmax(head->output, head->layers[head->n_layers - 1].n_out);
    return (int)status;
}

/* The edgefdfa_bound_head at a Python int address; NULL with an exception set if there is none. */
static edgefdfa_bound_head *head_at(PyObject *address) {
    edgefdfa_bound_head *head = PyLong_AsVoidPtr(address);
    if (head == NULL && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "_head: a NULL head");
    return head;
}

/* A buffer format that is one native little-endian float32. */
static int is_float32(const char *format) {
    return format != NULL && (!strcmp(format, "f") || !strcmp(format, "<f") || !strcmp(format, "=f"));
}

/* Whether a buffer is a C-contiguous float32 sample of the bound shape. */
static int is_sample(const edgefdfa_bound_head *head, const Py_buffer *view) {
    if ((size_t)view->ndim != head->ndim || !is_float32(view->format)) return 0;
    for (size_t d = 0; d < head->ndim; ++d) {
        if (view->shape[d] != head->dims[d]) return 0;
    }
    return 1;
}

/* _head.load(address, sample) -> int: copy the sample into the bound sample buffer (the backbone's
 * input) and check it: 0, EDGEFDFA_SAMPLE_NOT_FINITE or EDGEFDFA_SAMPLE_NOT_A_BUFFER (nothing copied:
 * not a C-contiguous float32 buffer of the sample's shape). */
static PyObject *py_load(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_head.load(address, sample) takes 2 arguments");
        return NULL;
    }
    edgefdfa_bound_head *head = head_at(args[0]);
    if (head == NULL) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyErr_Clear();
        return PyLong_FromLong(EDGEFDFA_SAMPLE_NOT_A_BUFFER);
    }
    int fits = is_sample(head, &view);
    if (fits) memcpy(head->sample, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (!fits) return PyLong_FromLong(EDGEFDFA_SAMPLE_NOT_A_BUFFER);
    return PyLong_FromLong(not_finite(head->sample, head->n_sample) ? EDGEFDFA_SAMPLE_NOT_FINITE : 0);
}

/* _head.copy_sample(dst, src) -> int: copy src into dst, both C-contiguous float32 buffers of one
 * shape (dst writable), and check it: 0, EDGEFDFA_SAMPLE_NOT_FINITE, or EDGEFDFA_SAMPLE_NOT_A_BUFFER
 * (nothing copied: src is not such a buffer of dst's shape). A backbone takes its sample this way. */
static PyObject *py_copy_sample(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_head.copy_sample(dst, src) takes 2 arguments");
        return NULL;
    }
    Py_buffer dst, src;
    if (PyObject_GetBuffer(args[0], &dst, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) != 0) return NULL;
    if (PyObject_GetBuffer(args[1], &src, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyErr_Clear();
        PyBuffer_Release(&dst);
        return PyLong_FromLong(EDGEFDFA_SAMPLE_NOT_A_BUFFER);
    }
    int fits = is_float32(dst.format) && is_float32(src.format) && src.ndim == dst.ndim && src.len == dst.len;
    for (int d = 0; fits && d < src.ndim; ++d) fits = src.shape[d] == dst.shape[d];
    int status = EDGEFDFA_SAMPLE_NOT_A_BUFFER;
    if (fits) {
        memcpy(dst.buf, src.buf, (size_t)src.len);
        status = not_finite(dst.buf, (size_t)dst.len / sizeof(float)) ? EDGEFDFA_SAMPLE_NOT_FINITE : 0;
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return PyLong_FromLong(status);
}

/* _head.run(address) -> int: edgefdfa_run on the edgefdfa_bound_head at that address. */
static PyObject *py_run(PyObject *module, PyObject *address) {
    (void)module;
    const edgefdfa_bound_head *head = head_at(address);
    return head == NULL ? NULL : PyLong_FromLong(edgefdfa_run(head));
}

static PyMethodDef methods[] = {
    {"load", (PyCFunction)(void (*)(void))py_load, METH_FASTCALL,
     "load(address, sample) -> status: copy the sample into the bound buffer and check it is finite."},
    {"run", py_run, METH_O, "run(address) -> status: run the bound head on the bound features."},
    {"copy_sample", (PyCFunction)(void (*)(void))py_copy_sample, METH_FASTCALL,
     "copy_sample(dst, src) -> status: copy a float32 sample of dst's shape into dst and check it is finite."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_head", "edgefdfa's compiled head (edgefdfa/native.py)",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__head(void) { return PyModule_Create(&module); }
