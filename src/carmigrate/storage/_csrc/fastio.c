/*
 * carmigrate.storage._fastio: write a whole buffer to a file descriptor in
 * bounded pieces, giving Python's GIL up once rather than once per piece.
 *
 * LocalStore caps each write(2) at 32 KiB (large writes make the page cache
 * fill large folios, which was costly; see _local.py). From Python that is
 * one os.write, and one release and re-acquisition of the GIL, per 32 KiB:
 * with other threads busy in Python, each re-acquisition can wait for them.
 * Here the loop runs in C with the GIL released for all of it.
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

static PyMethodDef methods[] = {
    {"write_all", py_write_all, METH_VARARGS, write_all_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "carmigrate.storage._fastio",
    .m_doc = "Whole-buffer writes in bounded pieces with the GIL released once.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fastio(void) { return PyModule_Create(&module); }
