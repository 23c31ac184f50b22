/*
 * carmigrate.storage._fastio: write a whole buffer to a file descriptor in
 * bounded pieces, giving Python's GIL up once rather than once per piece.
 *
 * LocalStore caps each write(2) at 32 KiB (large writes make the page cache
 * fill large folios, which was costly; see _local.py). From Python that is
 * one os.write, and one release and re-acquisition of the GIL, per 32 KiB:
 * with other threads busy in Python, each re-acquisition can wait for them.
 * Here the loop runs in C with the GIL released for all of it.
 *
 * suspects(): the key rules of validate_key over a list of ASCII keys in one
 * C loop, for the planner, which holds every key of a given listing to them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <unistd.h>

PyDoc_STRVAR(write_all_doc,
             "write_all(fd, data, piece) -> int\n\n"
             "Write all of data to fd, at most piece bytes per write(2), going on\n"
             "after short writes; the GIL is released while writing. An interrupted\n"
             "write runs the signal handlers, as os.write does, and is retried\n"
             "unless one raised.\n"
             "Returns len(data). Raises OSError with the errno of a failed write\n"
             "(bytes before it are written) and ValueError for piece < 1.");

static PyObject *py_write_all(PyObject *Py_UNUSED(self), PyObject *args) {
    int fd;
    Py_buffer view;
    Py_ssize_t piece;
    if (!PyArg_ParseTuple(args, "iy*n", &fd, &view, &piece)) return NULL;
    if (piece < 1) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "piece must be at least 1");
        return NULL;
    }
    const char *p = view.buf;
    Py_ssize_t left = view.len;
    int err = 0;
    while (left > 0) {
        ssize_t n;
        Py_BEGIN_ALLOW_THREADS
        do {
            n = write(fd, p, (size_t)(left < piece ? left : piece));
            if (n > 0) {
                p += n;
                left -= n;
            }
        } while (left > 0 && n > 0);
        if (n < 0) err = errno;
        Py_END_ALLOW_THREADS
        if (n < 0 && err == EINTR) {
            /* as os.write does (PEP 475): run the signal handlers, stop if
             * one raised, else go on */
            if (PyErr_CheckSignals() < 0) {
                PyBuffer_Release(&view);
                return NULL;
            }
            err = 0;
            continue;
        }
        if (n == 0 && left > 0) err = EIO; /* write(2) wrote nothing: never loop */
        break;
    }
    Py_ssize_t total = view.len;
    PyBuffer_Release(&view);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromSsize_t(total);
}

PyDoc_STRVAR(suspects_doc,
             "suspects(keys, max_length) -> list[int]\n\n"
             "Indices of the keys in the list that the fast check cannot clear:\n"
             "each other key is an ASCII str of 1 to max_length characters (no\n"
             "limit when max_length < 0) with no control character, no leading or\n"
             "trailing '/', and no empty, '.' or '..' segment, so validate_key\n"
             "accepts it. Non-ASCII keys and non-str items are always listed.");

/* Whether one ASCII key keeps every key rule (validate_key, ASCII case). */
static int ascii_key_ok(const unsigned char *p, Py_ssize_t n, Py_ssize_t max_length) {
    if (n == 0 || (max_length >= 0 && n > max_length)) return 0;
    if (p[0] == '/' || p[n - 1] == '/') return 0;
    Py_ssize_t seg = 0; /* start of the current segment */
    for (Py_ssize_t i = 0; i <= n; i++) {
        unsigned char c = i < n ? p[i] : '/';
        if (c == '/') {
            Py_ssize_t len = i - seg;
            if (len == 0) return 0;
            if (p[seg] == '.' && (len == 1 || (len == 2 && p[seg + 1] == '.'))) return 0;
            seg = i + 1;
        } else if (c < 0x20 || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static PyObject *py_suspects(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *keys;
    Py_ssize_t max_length;
    if (!PyArg_ParseTuple(args, "O!n", &PyList_Type, &keys, &max_length)) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        int ok = PyUnicode_Check(key) && PyUnicode_IS_ASCII(key) &&
                 ascii_key_ok(PyUnicode_1BYTE_DATA(key), PyUnicode_GET_LENGTH(key),
                              max_length);
        if (!ok) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(out, index) < 0) {
                Py_XDECREF(index);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(index);
        }
    }
    return out;
}

static PyMethodDef methods[] = {
    {"write_all", py_write_all, METH_VARARGS, write_all_doc},
    {"suspects", py_suspects, METH_VARARGS, suspects_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "carmigrate.storage._fastio",
    .m_doc = "Whole-buffer writes in bounded pieces with the GIL released once; "
             "the key rules over a list of keys.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fastio(void) { return PyModule_Create(&module); }
