/*
 * carmigrate.commp._native: CPython glue for commp_core.c.
 *
 * Every hashing function releases the GIL while it works; the buffers it
 * reads stay exported (and so cannot be resized) until it returns. The
 * kernel is passed as a small integer from kernels(); the Python side
 * (carmigrate/commp/_native_engine.py) owns streaming and validation, and
 * the checks here only keep the C code memory-safe.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "commp_core.h"

static int check_kernel(int k) {
    if (!cm_kernel_available(k)) {
        PyErr_Format(PyExc_ValueError, "commP kernel %d is not available on this CPU", k);
        return 0;
    }
    return 1;
}

/* Number of quads that a subtree of height h holds, or 0 if h is invalid. */
static unsigned long long quads_of_height(unsigned h) {
    if (h < CM_MIN_HEIGHT || h > CM_MAX_HEIGHT) return 0;
    return 1ULL << (h - 2);
}

PyDoc_STRVAR(kernels_doc,
             "kernels() -> tuple[tuple[str, int], ...]\n\n"
             "The kernels this CPU can run, best first, as (name, id).");

static PyObject *py_kernels(PyObject *self, PyObject *unused) {
    static const int order[] = {CM_KERNEL_SHANI, CM_KERNEL_ARMV8, CM_KERNEL_PORTABLE};
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (!cm_kernel_available(order[i])) continue;
        PyObject *item = Py_BuildValue("(si)", cm_kernel_name(order[i]), order[i]);
        if (!item || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    PyObject *tuple = PyList_AsTuple(out);
    Py_DECREF(out);
    return tuple;
}

PyDoc_STRVAR(node_doc,
             "node(kernel, left, right) -> bytes\n\n"
             "SHA-256 of left || right (32 bytes each) with digest[31] &= 0x3f.");

static PyObject *py_node(PyObject *self, PyObject *args) {
    int k;
    Py_buffer left, right;
    if (!PyArg_ParseTuple(args, "iy*y*", &k, &left, &right)) return NULL;
    PyObject *res = NULL;
    if (!check_kernel(k)) goto done;
    if (left.len != CM_NODE || right.len != CM_NODE) {
        PyErr_SetString(PyExc_ValueError, "tree nodes are 32 bytes");
        goto done;
    }
    res = PyBytes_FromStringAndSize(NULL, CM_NODE);
    if (!res) goto done;
    cm_node(k, (const uint8_t *)left.buf, (const uint8_t *)right.buf,
            (uint8_t *)PyBytes_AS_STRING(res));
done:
    PyBuffer_Release(&left);
    PyBuffer_Release(&right);
    return res;
}

PyDoc_STRVAR(subtree_root_doc,
             "subtree_root(kernel, data, height) -> bytes\n\n"
             "Root of the subtree of the given height over data zero-padded to\n"
             "127 * 2**(height - 2) bytes. Releases the GIL.");

static PyObject *py_subtree_root(PyObject *self, PyObject *args) {
    int k;
    Py_buffer data;
    unsigned h;
    if (!PyArg_ParseTuple(args, "iy*I", &k, &data, &h)) return NULL;
    PyObject *res = NULL;
    if (!check_kernel(k)) goto done;
    unsigned long long q = quads_of_height(h);
    if (!q) {
        PyErr_Format(PyExc_ValueError, "height %u is outside [%d, %d]", h, CM_MIN_HEIGHT,
                     CM_MAX_HEIGHT);
        goto done;
    }
    if ((unsigned long long)data.len / CM_QUAD_IN > q ||
        ((unsigned long long)data.len / CM_QUAD_IN == q && data.len % CM_QUAD_IN)) {
        PyErr_Format(PyExc_ValueError, "%zd bytes do not fit in a subtree of height %u",
                     data.len, h);
        goto done;
    }
    res = PyBytes_FromStringAndSize(NULL, CM_NODE);
    if (!res) goto done;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cm_subtree_root(k, (const uint8_t *)data.buf, (size_t)data.len, h,
                         (uint8_t *)PyBytes_AS_STRING(res));
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_CLEAR(res);
        PyErr_NoMemory();
    }
done:
    PyBuffer_Release(&data);
    return res;
}

PyDoc_STRVAR(chunk_roots_doc,
             "chunk_roots(kernel, data, log2_quads, threads) -> bytes\n\n"
             "Roots (32 bytes each, in order) of the consecutive chunks of\n"
             "127 * 2**log2_quads bytes that make up data, hashed on up to\n"
             "`threads` threads. Releases the GIL.");

static PyObject *py_chunk_roots(PyObject *self, PyObject *args) {
    int k;
    Py_buffer data;
    unsigned log2q;
    int threads;
    if (!PyArg_ParseTuple(args, "iy*Ii", &k, &data, &log2q, &threads)) return NULL;
    PyObject *res = NULL;
    if (!check_kernel(k)) goto done;
    if (log2q > CM_MAX_HEIGHT - 2 || log2q > 40) {
        PyErr_Format(PyExc_ValueError, "chunk of 2**%u quads is too large", log2q);
        goto done;
    }
    size_t chunk = (size_t)CM_QUAD_IN << log2q;
    if ((size_t)data.len % chunk) {
        PyErr_Format(PyExc_ValueError, "%zd bytes are not a whole number of %zu-byte chunks",
                     data.len, chunk);
        goto done;
    }
    if (threads < 1) {
        PyErr_SetString(PyExc_ValueError, "threads must be at least 1");
        goto done;
    }
    size_t n = (size_t)data.len / chunk;
    res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(CM_NODE * n));
    if (!res) goto done;
    int rc = 0;
    if (n) {
        Py_BEGIN_ALLOW_THREADS
        rc = cm_chunk_roots(k, (const uint8_t *)data.buf, n, log2q, (unsigned)threads,
                            (uint8_t *)PyBytes_AS_STRING(res));
        Py_END_ALLOW_THREADS
    }
    if (rc != 0) {
        Py_CLEAR(res);
        PyErr_NoMemory();
    }
done:
    PyBuffer_Release(&data);
    return res;
}

PyDoc_STRVAR(hash_fd_doc,
             "hash_fd(kernel, fd, log2_quads, threads, max_chunks) -> (roots, tail, eof)\n\n"
             "Read up to max_chunks chunks of 127 * 2**log2_quads bytes from fd and\n"
             "hash them on up to `threads` threads, the GIL released. Returns the\n"
             "roots of the whole chunks read (32 bytes each, in order), the bytes of\n"
             "an incomplete last chunk, and whether the end of input was reached.\n"
             "A read interrupted by a signal returns early (eof False); a failed\n"
             "read raises OSError after the roots so far are lost.");

static PyObject *py_hash_fd(PyObject *self, PyObject *args) {
    int k, fd, threads;
    unsigned log2q;
    Py_ssize_t max_chunks;
    if (!PyArg_ParseTuple(args, "iiIin", &k, &fd, &log2q, &threads, &max_chunks))
        return NULL;
    if (!check_kernel(k)) return NULL;
    if (log2q > CM_MAX_HEIGHT - 2 || log2q > 30) {
        PyErr_Format(PyExc_ValueError, "chunk of 2**%u quads is too large", log2q);
        return NULL;
    }
    if (threads < 1 || max_chunks < 1 || max_chunks > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "threads and max_chunks must be positive");
        return NULL;
    }
    PyObject *roots = PyBytes_FromStringAndSize(NULL, CM_NODE * max_chunks);
    if (!roots) return NULL;
    size_t n = 0, tail_len = 0;
    uint8_t *tail = NULL;
    int err = 0, rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cm_fd_roots(k, fd, log2q, (unsigned)threads, (size_t)max_chunks,
                     (uint8_t *)PyBytes_AS_STRING(roots), &n, &tail, &tail_len, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        Py_DECREF(roots);
        return PyErr_NoMemory();
    }
    if (rc == CM_FD_ERROR) {
        free(tail);
        Py_DECREF(roots);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (_PyBytes_Resize(&roots, (Py_ssize_t)(CM_NODE * n)) < 0) {
        free(tail);
        return NULL;
    }
    PyObject *tail_obj = PyBytes_FromStringAndSize((const char *)tail, (Py_ssize_t)tail_len);
    free(tail);
    if (!tail_obj) {
        Py_DECREF(roots);
        return NULL;
    }
    return Py_BuildValue("(NNO)", roots, tail_obj, rc == CM_FD_EOF ? Py_True : Py_False);
}

PyDoc_STRVAR(fr32_pad_doc,
             "fr32_pad(data) -> bytes\n\n"
             "fr32-expand whole quads (len(data) must be a multiple of 127).");

static PyObject *py_fr32_pad(PyObject *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    PyObject *res = NULL;
    if (data.len % CM_QUAD_IN) {
        PyErr_SetString(PyExc_ValueError, "fr32 padding needs whole 127-byte quads");
        goto done;
    }
    size_t nq = (size_t)data.len / CM_QUAD_IN;
    res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(CM_QUAD_OUT * nq));
    if (!res) goto done;
    Py_BEGIN_ALLOW_THREADS
    cm_fr32_pad((const uint8_t *)data.buf, nq, (uint8_t *)PyBytes_AS_STRING(res));
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&data);
    return res;
}

PyDoc_STRVAR(zero_commitment_doc,
             "zero_commitment(level) -> bytes\n\n"
             "The root of 2**level zero leaves, as the core computed it.");

static PyObject *py_zero_commitment(PyObject *self, PyObject *arg) {
    long level = PyLong_AsLong(arg);
    if (level == -1 && PyErr_Occurred()) return NULL;
    if (level < 0 || level > CM_MAX_HEIGHT) {
        PyErr_Format(PyExc_ValueError, "level %ld is outside [0, %d]", level, CM_MAX_HEIGHT);
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)cm_zero((unsigned)level), CM_NODE);
}

static PyMethodDef methods[] = {
    {"kernels", py_kernels, METH_NOARGS, kernels_doc},
    {"node", py_node, METH_VARARGS, node_doc},
    {"subtree_root", py_subtree_root, METH_VARARGS, subtree_root_doc},
    {"chunk_roots", py_chunk_roots, METH_VARARGS, chunk_roots_doc},
    {"hash_fd", py_hash_fd, METH_VARARGS, hash_fd_doc},
    {"fr32_pad", py_fr32_pad, METH_VARARGS, fr32_pad_doc},
    {"zero_commitment", py_zero_commitment, METH_O, zero_commitment_doc},
    {NULL, NULL, 0, NULL},
};

static int exec_module(PyObject *m) {
    if (PyModule_AddIntConstant(m, "MAX_HEIGHT", CM_MAX_HEIGHT) < 0) return -1;
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    "carmigrate.commp._native",
    "Compiled commP core (see carmigrate.commp).",
    0,
    methods,
    slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    cm_init();
    return PyModuleDef_Init(&moduledef);
}
