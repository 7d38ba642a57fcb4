/* _head: the learner's dense head in C, on its weights in place (edgefdfa/native.py wraps it).
 *
 * One type, Head, binds the firmware's code to a learner's buffers once:
 *   - the forward pass (firmware_bridge/c/edgefdfa_head.c) for predictions: load(x) copies a sample
 *     into the input row and checks it; raw() / probabilities() write the output arrays;
 *   - the learning step (firmware_bridge/c/edgefdfa_learn.c), after learning(...) bound the rule's
 *     buffers: learn(label, lr) takes one SGD step at batch 1 on the input row.
 * The weights are the learner's flat parameter array (W0 b0 W1 b1 ..., W row-major (n_out, n_in)),
 * read and written in place; the Head holds every buffer it points into until it is freed. Status
 * codes are the C enums', exported as module constants. copy_sample(dst, src) is a backbone's sample
 * copy and check in one call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "edgefdfa_head.h"
#include "edgefdfa_learn.h"

/* Beyond the C statuses: a sample holds NaN or Inf, or is not a C-contiguous float32 buffer of the
 * bound shape (the caller checks it, says what is wrong or makes it one). */
enum { SAMPLE_NOT_FINITE = 16, SAMPLE_NOT_A_BUFFER = 17, EDGEFDFA_MAX_WIDTHS = 65 };

typedef struct {
    PyObject_HEAD
    edgefdfa_layer *layers;
    size_t n_layers;
    Py_buffer params, x, raw, proba;       /* held while the Head lives */
    Py_buffer feedback, u, target, ranges; /* bound by learning() / track(); obj NULL when not */
    Py_buffer output;                      /* learn()'s output before its update, bound by learning() */
    float *scratch;                        /* 2 * the widest layer: edgefdfa_head_forward's */
    size_t scratch_len;
    float *workspace;                      /* EDGEFDFA_LEARN_WORKSPACE_LEN: edgefdfa_learn_step's */
    size_t workspace_len;
    int learns;
    edgefdfa_learn_config config;
    edgefdfa_learn_result result;
} HeadObject;

/* A buffer format that is one native float32. */
static int is_float32(const char *format) {
    return format != NULL && (!strcmp(format, "f") || !strcmp(format, "<f") || !strcmp(format, "=f"));
}

/* Take a writable C-contiguous float32 buffer of n values from obj into view; else a ValueError naming it. */
static int take(PyObject *obj, Py_buffer *view, Py_ssize_t n, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) != 0) return -1;
    if (!is_float32(view->format) || view->len != n * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "_head.Head: %s must be %zd float32 values", name, n);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Whether x holds NaN or Inf: exponent bits all set. Integer compares OR-ed, so it vectorizes. */
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

static void head_dealloc(HeadObject *self) {
    Py_buffer *views[] = {&self->params, &self->x, &self->raw, &self->proba,
                          &self->feedback, &self->u, &self->target, &self->ranges, &self->output};
    for (size_t i = 0; i < sizeof views / sizeof views[0]; ++i) PyBuffer_Release(views[i]);
    PyMem_Free(self->layers);
    PyMem_Free(self->scratch);
    PyMem_Free(self->workspace);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Head(activations: bytes, sizes: tuple of widths, params, x, raw, probabilities): the layers, each
 * with its edgefdfa_activation code, pointed into params; x the input row, raw and probabilities the
 * (K,) outputs. Every array a writable C-ordered float32 one of its size. */
static int head_init(HeadObject *self, PyObject *args, PyObject *kwargs) {
    const char *codes;
    Py_ssize_t n_codes;
    PyObject *sizes, *params, *x, *raw, *proba;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0) {
        PyErr_SetString(PyExc_TypeError, "_head.Head takes no keyword arguments");
        return -1;
    }
    if (self->layers != NULL) {
        PyErr_SetString(PyExc_TypeError, "_head.Head is bound once");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "y#O!OOOO", &codes, &n_codes, &PyTuple_Type, &sizes, &params, &x, &raw, &proba)) {
        return -1;
    }
    if (n_codes < 1 || PyTuple_GET_SIZE(sizes) != n_codes + 1) {
        PyErr_SetString(PyExc_ValueError, "_head.Head: one activation per layer, one more width than layers");
        return -1;
    }
    size_t n_layers = (size_t)n_codes, widest = 0;
    Py_ssize_t n_params = 0;
    uint32_t width[EDGEFDFA_MAX_WIDTHS];
    if (n_layers + 1 > EDGEFDFA_MAX_WIDTHS) {
        PyErr_SetString(PyExc_ValueError, "_head.Head: too many layers");
        return -1;
    }
    for (size_t l = 0; l <= n_layers; ++l) {
        long n = PyLong_AsLong(PyTuple_GET_ITEM(sizes, (Py_ssize_t)l));
        if (n == -1 && PyErr_Occurred()) return -1;
        if (n < 1 || n > (long)UINT32_MAX / 2) {
            PyErr_SetString(PyExc_ValueError, "_head.Head: widths must be positive");
            return -1;
        }
        width[l] = (uint32_t)n;
        if (l > 0) {
            n_params += (Py_ssize_t)width[l] * (Py_ssize_t)width[l - 1] + (Py_ssize_t)width[l];
            if (width[l] > widest) widest = width[l];
        }
    }
    for (size_t l = 0; l < n_layers; ++l) {
        if ((unsigned char)codes[l] > EDGEFDFA_SIGMOID) {
            PyErr_Format(PyExc_ValueError, "_head.Head: activation code %d is not an edgefdfa_activation",
                         (int)(unsigned char)codes[l]);
            return -1;
        }
    }
    if (take(params, &self->params, n_params, "params") || take(x, &self->x, width[0], "x") ||
        take(raw, &self->raw, width[n_layers], "raw") || take(proba, &self->proba, width[n_layers], "probabilities")) {
        return -1;
    }
    self->layers = PyMem_Calloc(n_layers, sizeof(edgefdfa_layer));
    self->scratch_len = 2 * widest;
    self->scratch = PyMem_Calloc(self->scratch_len, sizeof(float));
    if (self->layers == NULL || self->scratch == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->n_layers = n_layers;
    float *at = self->params.buf;
    for (size_t l = 0; l < n_layers; ++l) {
        edgefdfa_layer *layer = &self->layers[l];
        layer->n_in = width[l];
        layer->n_out = width[l + 1];
        layer->w_f32 = layer->w_learn = at;
        at += (size_t)layer->n_out * layer->n_in;
        layer->bias = layer->bias_learn = at;
        at += layer->n_out;
        layer->activation = (uint8_t)codes[l];
    }
    return 0;
}

/* Head.load(sample) -> status: copy the sample into x if it is a C-contiguous float32 buffer of x's
 * size and one dimension, and check it: 0, SAMPLE_NOT_FINITE or SAMPLE_NOT_A_BUFFER (nothing copied). */
static PyObject *head_load(HeadObject *self, PyObject *sample) {
    Py_buffer view;
    if (PyObject_GetBuffer(sample, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyErr_Clear();
        return PyLong_FromLong(SAMPLE_NOT_A_BUFFER);
    }
    int fits = view.ndim == 1 && is_float32(view.format) && view.len == self->x.len;
    if (fits) memcpy(self->x.buf, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (!fits) return PyLong_FromLong(SAMPLE_NOT_A_BUFFER);
    return PyLong_FromLong(not_finite(self->x.buf, (size_t)self->x.len / sizeof(float)) ? SAMPLE_NOT_FINITE : 0);
}

static int forward(HeadObject *self, float *out) {
    return (int)edgefdfa_head_forward(self->layers, self->n_layers, self->x.buf, out, self->scratch,
                                      self->scratch_len);
}

/* Head.raw() -> status: the head on x into raw. */
static PyObject *head_raw(HeadObject *self, PyObject *unused) {
    (void)unused;
    return PyLong_FromLong(forward(self, self->raw.buf));
}

/* Head.probabilities() -> status: the head on x, softmaxed, into probabilities. */
static PyObject *head_probabilities(HeadObject *self, PyObject *unused) {
    (void)unused;
    int status = forward(self, self->proba.buf);
    if (status == EDGEFDFA_HEAD_OK) softmax(self->proba.buf, (size_t)self->proba.len / sizeof(float));
    return PyLong_FromLong(status);
}

/* Take obj into view as n float32 values, or leave view empty for None (allowed when n == 0). */
static int take_optional(PyObject *obj, Py_buffer *view, Py_ssize_t n, const char *name) {
    if (obj == Py_None) {
        if (n == 0) return 0;
        PyErr_Format(PyExc_ValueError, "_head.Head: this rule needs %s", name);
        return -1;
    }
    return take(obj, view, n, name);
}

/* Head.learning(rule, loss, alpha, sigma, max_sumsq, feedback, u, target, output): bind what learn()
 * uses. feedback: B (K x the hidden widths) for FDFA and DFA with hidden layers, else None; u: the
 * hidden widths' perturbations for FDFA, else None; target: (K,) for mse, else None; output: (K,),
 * where learn() writes the raw output of its forward pass (before the update). */
static PyObject *head_learning(HeadObject *self, PyObject *args) {
    int rule, loss;
    float alpha, sigma, max_sumsq;
    PyObject *feedback, *u, *target, *output;
    if (!PyArg_ParseTuple(args, "iifffOOOO", &rule, &loss, &alpha, &sigma, &max_sumsq, &feedback, &u, &target,
                          &output)) {
        return NULL;
    }
    if (rule < EDGEFDFA_RULE_FDFA || rule > EDGEFDFA_RULE_BP || loss < EDGEFDFA_LOSS_CE || loss > EDGEFDFA_LOSS_MSE) {
        PyErr_SetString(PyExc_ValueError, "_head.Head.learning: not an edgefdfa_rule / edgefdfa_loss");
        return NULL;
    }
    if (self->learns) {
        PyErr_SetString(PyExc_TypeError, "_head.Head.learning is bound once");
        return NULL;
    }
    size_t hidden = 0, sum_out = 0;
    for (size_t l = 0; l < self->n_layers; ++l) {
        sum_out += self->layers[l].n_out;
        if (l + 1 < self->n_layers) hidden += self->layers[l].n_out;
    }
    size_t n_classes = self->layers[self->n_layers - 1].n_out;
    Py_ssize_t n_feedback = rule == EDGEFDFA_RULE_BP ? 0 : (Py_ssize_t)EDGEFDFA_LEARN_FEEDBACK_LEN(n_classes, hidden);
    Py_ssize_t n_u = rule == EDGEFDFA_RULE_FDFA ? (Py_ssize_t)EDGEFDFA_LEARN_U_LEN(hidden) : 0;
    Py_ssize_t n_target = loss == EDGEFDFA_LOSS_MSE ? (Py_ssize_t)n_classes : 0;
    if (take_optional(feedback, &self->feedback, n_feedback, "feedback") || take_optional(u, &self->u, n_u, "u") ||
        take_optional(target, &self->target, n_target, "target") ||
        take(output, &self->output, (Py_ssize_t)n_classes, "output")) {
        PyBuffer_Release(&self->feedback);
        PyBuffer_Release(&self->u);
        PyBuffer_Release(&self->target);
        return NULL;
    }
    self->workspace_len = EDGEFDFA_LEARN_WORKSPACE_LEN(sum_out, n_classes);
    self->workspace = PyMem_Calloc(self->workspace_len, sizeof(float));
    if (self->workspace == NULL) return PyErr_NoMemory();
    self->config = (edgefdfa_learn_config){(uint8_t)rule, (uint8_t)loss, 0.0f, alpha, sigma, max_sumsq};
    self->learns = 1;
    Py_RETURN_NONE;
}

/* Head.track(ranges): from now on learn() widens ranges (L x 4 float32) on every applied step. */
static PyObject *head_track(HeadObject *self, PyObject *ranges) {
    PyBuffer_Release(&self->ranges);
    if (take(ranges, &self->ranges, (Py_ssize_t)(4 * self->n_layers), "ranges")) return NULL;
    Py_RETURN_NONE;
}

/* Head.learn(label, lr) -> status: one edgefdfa_learn_step on x (label: the class for ce, ignored for
 * mse, whose target is the bound one); output gets the raw output before the update. loss, step_sumsq and
 * feedback_sumsq hold the step's values. */
static PyObject *head_learn(HeadObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_head.Head.learn(label, lr) takes 2 arguments");
        return NULL;
    }
    if (!self->learns) {
        PyErr_SetString(PyExc_TypeError, "_head.Head.learn before learning()");
        return NULL;
    }
    unsigned long label = PyLong_AsUnsignedLong(args[0]);
    if (label == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    double lr = PyFloat_AsDouble(args[1]);
    if (lr == -1.0 && PyErr_Occurred()) return NULL;
    self->config.lr = (float)lr;
    edgefdfa_learn_status status = edgefdfa_learn_step(
        &self->config, self->layers, self->n_layers, self->feedback.buf, self->x.buf,
        label > UINT32_MAX ? UINT32_MAX : (uint32_t)label, self->target.buf, self->u.buf, self->output.buf,
        self->ranges.buf, self->workspace, self->workspace_len, &self->result);
    return PyLong_FromLong((long)status);
}

static PyMethodDef head_methods[] = {
    {"load", (PyCFunction)head_load, METH_O,
     "load(sample) -> status: copy a float32 sample into x and check it is finite."},
    {"raw", (PyCFunction)head_raw, METH_NOARGS, "raw() -> status: the head on x into raw."},
    {"probabilities", (PyCFunction)head_probabilities, METH_NOARGS,
     "probabilities() -> status: the head on x, softmaxed, into probabilities."},
    {"learning", (PyCFunction)head_learning, METH_VARARGS,
     "learning(rule, loss, alpha, sigma, max_sumsq, feedback, u, target, output): bind what learn() uses."},
    {"track", (PyCFunction)head_track, METH_O, "track(ranges): learn() widens these (L, 4) ranges."},
    {"learn", (PyCFunction)(void (*)(void))head_learn, METH_FASTCALL,
     "learn(label, lr) -> status: one SGD step on x (edgefdfa_learn_step)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef head_members[] = {
    {"loss", T_FLOAT, offsetof(HeadObject, result.loss), READONLY, "the last learn()'s loss, before its update"},
    {"step_sumsq", T_FLOAT, offsetof(HeadObject, result.step_sumsq), READONLY, "the last learn()'s |gradient|^2"},
    {"feedback_sumsq", T_FLOAT, offsetof(HeadObject, result.feedback_sumsq), READONLY,
     "the last learn()'s bound on |feedback change|^2 (FDFA)"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject HeadType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "edgefdfa._head.Head",
    .tp_doc = "A dense head bound to a learner's weights and buffers: the firmware's forward pass and learning step.",
    .tp_basicsize = sizeof(HeadObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)head_init,
    .tp_dealloc = (destructor)head_dealloc,
    .tp_methods = head_methods,
    .tp_members = head_members,
};

/* copy_sample(dst, src) -> status: copy src into dst, both C-contiguous float32 buffers of one shape
 * (dst writable), and check it: 0, SAMPLE_NOT_FINITE, or SAMPLE_NOT_A_BUFFER (nothing copied: src is
 * not such a buffer of dst's shape). A backbone takes its sample this way. */
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
        return PyLong_FromLong(SAMPLE_NOT_A_BUFFER);
    }
    int fits = is_float32(dst.format) && is_float32(src.format) && src.ndim == dst.ndim && src.len == dst.len;
    for (int d = 0; fits && d < src.ndim; ++d) fits = src.shape[d] == dst.shape[d];
    int status = SAMPLE_NOT_A_BUFFER;
    if (fits) {
        memcpy(dst.buf, src.buf, (size_t)src.len);
        status = not_finite(dst.buf, (size_t)dst.len / sizeof(float)) ? SAMPLE_NOT_FINITE : 0;
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return PyLong_FromLong(status);
}

/* dequantize(dst, codes, table) -> None: dst[i] = table[codes[i]] for the n 8-bit codes (int8 or uint8,
 * read as unsigned) of an integer backbone output, into the n float32 features; table holds the real
 * value of each of the 256 codes. One C call where NumPy's take costs a microsecond of dispatch. */
static PyObject *py_dequantize(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_head.dequantize(dst, codes, table) takes 3 arguments");
        return NULL;
    }
    Py_buffer dst, codes, table;
    if (PyObject_GetBuffer(args[0], &dst, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) != 0) return NULL;
    if (PyObject_GetBuffer(args[1], &codes, PyBUF_C_CONTIGUOUS) != 0) {
        PyBuffer_Release(&dst);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &table, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyBuffer_Release(&codes);
        PyBuffer_Release(&dst);
        return NULL;
    }
    int fits = is_float32(dst.format) && is_float32(table.format) && codes.itemsize == 1 &&
               dst.len == codes.len * (Py_ssize_t)sizeof(float) && table.len == 256 * (Py_ssize_t)sizeof(float);
    if (fits) {
        float *out = dst.buf;
        const uint8_t *in = codes.buf;
        const float *real = table.buf;
        for (Py_ssize_t i = 0; i < codes.len; ++i) out[i] = real[in[i]];
    }
    PyBuffer_Release(&table);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&dst);
    if (!fits) {
        PyErr_SetString(PyExc_ValueError, "_head.dequantize: dst (n,) float32, codes (n,) 8-bit, table (256,) float32");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"copy_sample", (PyCFunction)(void (*)(void))py_copy_sample, METH_FASTCALL,
     "copy_sample(dst, src) -> status: copy a float32 sample of dst's shape into dst and check it is finite."},
    {"dequantize", (PyCFunction)(void (*)(void))py_dequantize, METH_FASTCALL,
     "dequantize(dst, codes, table) -> None: dst[i] = table[codes[i]], 8-bit codes read as unsigned."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_head", "edgefdfa's compiled head (edgefdfa/native.py)",
                                    -1, module_methods, NULL, NULL, NULL, NULL};

#define CONSTANT(name, value) {name, (long)(value)}

PyMODINIT_FUNC PyInit__head(void) {
    static const struct {
        const char *name;
        long value;
    } constants[] = {
        CONSTANT("SAMPLE_NOT_FINITE", SAMPLE_NOT_FINITE),
        CONSTANT("SAMPLE_NOT_A_BUFFER", SAMPLE_NOT_A_BUFFER),
        CONSTANT("IDENTITY", EDGEFDFA_IDENTITY),
        CONSTANT("RELU", EDGEFDFA_RELU),
        CONSTANT("TANH", EDGEFDFA_TANH),
        CONSTANT("SIGMOID", EDGEFDFA_SIGMOID),
        CONSTANT("RULE_FDFA", EDGEFDFA_RULE_FDFA),
        CONSTANT("RULE_DFA", EDGEFDFA_RULE_DFA),
        CONSTANT("RULE_BP", EDGEFDFA_RULE_BP),
        CONSTANT("LOSS_CE", EDGEFDFA_LOSS_CE),
        CONSTANT("LOSS_MSE", EDGEFDFA_LOSS_MSE),
        CONSTANT("LEARN_OK", EDGEFDFA_LEARN_OK),
        CONSTANT("LEARN_BAD_ARGUMENT", EDGEFDFA_LEARN_BAD_ARGUMENT),
        CONSTANT("LEARN_BAD_ACTIVATION", EDGEFDFA_LEARN_BAD_ACTIVATION),
        CONSTANT("LEARN_BAD_RULE", EDGEFDFA_LEARN_BAD_RULE),
        CONSTANT("LEARN_BAD_LABEL", EDGEFDFA_LEARN_BAD_LABEL),
        CONSTANT("LEARN_WORKSPACE_TOO_SMALL", EDGEFDFA_LEARN_WORKSPACE_TOO_SMALL),
        CONSTANT("LEARN_DIVERGED_LOSS", EDGEFDFA_LEARN_DIVERGED_LOSS),
        CONSTANT("LEARN_DIVERGED_STEP", EDGEFDFA_LEARN_DIVERGED_STEP),
        CONSTANT("LEARN_DIVERGED_FEEDBACK", EDGEFDFA_LEARN_DIVERGED_FEEDBACK),
    };
    if (PyType_Ready(&HeadType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; ++i) {
        if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0) goto fail;
    }
    Py_INCREF(&HeadType);
    if (PyModule_AddObject(m, "Head", (PyObject *)&HeadType) < 0) {
        Py_DECREF(&HeadType);
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
