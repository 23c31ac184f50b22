/*
 * carmigrate.cid._sha256: SHA-256 of many byte ranges of one buffer, two
 * message streams at a time.
 *
 * One SHA-256 is a chain of compressions, each waiting on the last, and the
 * x86 SHA instructions have a latency of several cycles: a single stream
 * leaves the SHA unit idle between them. Interleaving the rounds of two
 * independent messages fills those cycles. The ranges (a CAR's blocks, and
 * the whole CAR) are dealt to two lanes, each lane hashing its ranges one
 * after another; while both lanes have a block, both are compressed
 * together, then the lane with more left finishes alone.
 *
 * Only the x86 SHA extensions are used; available() says whether this CPU
 * has them, and the Python side falls back to hashlib when it does not.
 * The GIL is released while hashing; the buffer stays exported (and so
 * cannot be resized) until the call returns.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "sha256_ni.h"

typedef struct {
    const uint8_t *data;
    size_t len;
    uint8_t *out; /* 32 bytes */
} job_t;

#if defined(CM_HAVE_SHANI)

typedef struct {
    job_t *jobs;
    size_t count;   /* jobs in this lane */
    size_t next;    /* the job being hashed */
    size_t offset;  /* bytes of it already taken as whole blocks */
    int tail_count; /* padded final blocks built (1 or 2), 0 before */
    int tail_next;
    uint8_t tail[128];
} lane_t;

/* The lane's next 64-byte block, or NULL when all its jobs are done. *last
 * is set when the block is its job's final one. A returned tail block stays
 * valid until the next call on this lane. */
static const uint8_t *lane_block(lane_t *L, int *last) {
    if (L->next >= L->count) return NULL;
    const job_t *J = &L->jobs[L->next];
    if (L->tail_count == 0) {
        size_t rest = J->len - L->offset;
        if (rest >= 64) {
            /* padding always adds a block after a whole one */
            const uint8_t *block = J->data + L->offset;
            L->offset += 64;
            *last = 0;
            return block;
        }
        memset(L->tail, 0, sizeof L->tail);
        if (rest) memcpy(L->tail, J->data + L->offset, rest);
        L->tail[rest] = 0x80;
        L->tail_count = rest + 9 <= 64 ? 1 : 2;
        uint64_t bits = (uint64_t)J->len << 3;
        uint8_t *end = L->tail + 64 * L->tail_count - 8;
        for (int i = 0; i < 8; i++) end[i] = (uint8_t)(bits >> (56 - 8 * i));
        L->tail_next = 0;
    }
    *last = L->tail_next + 1 == L->tail_count;
    return L->tail + 64 * L->tail_next++;
}

/* Four schedule-and-round groups over w0..w3 (rotating), starting at group g. */
#define X1_GROUPS(g, s0, s1, w0, w1, w2, w3)                         \
    SHANI_SCHED(w0, w1, w2, w3);                                     \
    SHANI_R4(s0, s1, _mm_add_epi32(w0, SHANI_K(g)));                 \
    SHANI_SCHED(w1, w2, w3, w0);                                     \
    SHANI_R4(s0, s1, _mm_add_epi32(w1, SHANI_K((g) + 1)));           \
    SHANI_SCHED(w2, w3, w0, w1);                                     \
    SHANI_R4(s0, s1, _mm_add_epi32(w2, SHANI_K((g) + 2)));           \
    SHANI_SCHED(w3, w0, w1, w2);                                     \
    SHANI_R4(s0, s1, _mm_add_epi32(w3, SHANI_K((g) + 3)))

SHANI_TARGET static inline void compress1(__m128i *s0p, __m128i *s1p, const uint8_t *in) {
    const __m128i bs = SHANI_BSWAP;
    __m128i s0 = *s0p, s1 = *s1p;
    __m128i w0 = SHANI_LOAD(in, bs), w1 = SHANI_LOAD(in + 16, bs);
    __m128i w2 = SHANI_LOAD(in + 32, bs), w3 = SHANI_LOAD(in + 48, bs);
    SHANI_R4(s0, s1, _mm_add_epi32(w0, SHANI_K(0)));
    SHANI_R4(s0, s1, _mm_add_epi32(w1, SHANI_K(1)));
    SHANI_R4(s0, s1, _mm_add_epi32(w2, SHANI_K(2)));
    SHANI_R4(s0, s1, _mm_add_epi32(w3, SHANI_K(3)));
    for (int g = 4; g < 16; g += 4) {
        X1_GROUPS(g, s0, s1, w0, w1, w2, w3);
    }
    *s0p = _mm_add_epi32(s0, *s0p);
    *s1p = _mm_add_epi32(s1, *s1p);
}

/* The same for two independent states and blocks, rounds interleaved. */
SHANI_TARGET static inline void compress2(__m128i *a0p, __m128i *a1p, const uint8_t *pa,
                                          __m128i *b0p, __m128i *b1p, const uint8_t *pb) {
    const __m128i bs = SHANI_BSWAP;
    __m128i a0 = *a0p, a1 = *a1p, b0 = *b0p, b1 = *b1p;
    __m128i x0 = SHANI_LOAD(pa, bs), x1 = SHANI_LOAD(pa + 16, bs);
    __m128i x2 = SHANI_LOAD(pa + 32, bs), x3 = SHANI_LOAD(pa + 48, bs);
    __m128i y0 = SHANI_LOAD(pb, bs), y1 = SHANI_LOAD(pb + 16, bs);
    __m128i y2 = SHANI_LOAD(pb + 32, bs), y3 = SHANI_LOAD(pb + 48, bs);
#define R2(g, x, y)                                       \
    do {                                                  \
        const __m128i k_ = SHANI_K(g);                    \
        SHANI_R4(a0, a1, _mm_add_epi32(x, k_));           \
        SHANI_R4(b0, b1, _mm_add_epi32(y, k_));           \
    } while (0)
    R2(0, x0, y0);
    R2(1, x1, y1);
    R2(2, x2, y2);
    R2(3, x3, y3);
    for (int g = 4; g < 16; g += 4) {
        SHANI_SCHED(x0, x1, x2, x3);
        SHANI_SCHED(y0, y1, y2, y3);
        R2(g, x0, y0);
        SHANI_SCHED(x1, x2, x3, x0);
        SHANI_SCHED(y1, y2, y3, y0);
        R2(g + 1, x1, y1);
        SHANI_SCHED(x2, x3, x0, x1);
        SHANI_SCHED(y2, y3, y0, y1);
        R2(g + 2, x2, y2);
        SHANI_SCHED(x3, x0, x1, x2);
        SHANI_SCHED(y3, y0, y1, y2);
        R2(g + 3, x3, y3);
    }
#undef R2
    *a0p = _mm_add_epi32(a0, *a0p);
    *a1p = _mm_add_epi32(a1, *a1p);
    *b0p = _mm_add_epi32(b0, *b0p);
    *b1p = _mm_add_epi32(b1, *b1p);
}

/* Write the lane's digest, move it to its next job and reset the state. */
SHANI_TARGET static inline void finish(lane_t *L, __m128i *s0, __m128i *s1) {
    const __m128i bs = SHANI_BSWAP;
    SHANI_STORE(L->jobs[L->next].out, *s0, *s1, bs);
    L->next++;
    L->offset = 0;
    L->tail_count = 0;
    *s0 = SHANI_INIT0;
    *s1 = SHANI_INIT1;
}

SHANI_TARGET static void run_one(lane_t *L, __m128i s0, __m128i s1) {
    const uint8_t *block;
    int last;
    while ((block = lane_block(L, &last)) != NULL) {
        compress1(&s0, &s1, block);
        if (last) finish(L, &s0, &s1);
    }
}

SHANI_TARGET static void run_two(lane_t *A, lane_t *B) {
    __m128i a0 = SHANI_INIT0, a1 = SHANI_INIT1;
    __m128i b0 = SHANI_INIT0, b1 = SHANI_INIT1;
    for (;;) {
        int la, lb;
        const uint8_t *pa = lane_block(A, &la);
        if (pa == NULL) {
            run_one(B, b0, b1);
            return;
        }
        const uint8_t *pb = lane_block(B, &lb);
        if (pb == NULL) {
            compress1(&a0, &a1, pa);
            if (la) finish(A, &a0, &a1);
            run_one(A, a0, a1);
            return;
        }
        compress2(&a0, &a1, pa, &b0, &b1, pb);
        if (la) finish(A, &a0, &a1);
        if (lb) finish(B, &b0, &b1);
    }
}

static int longer_first(const void *a, const void *b) {
    size_t x = ((const job_t *)a)->len, y = ((const job_t *)b)->len;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Deal the jobs to two lanes, longest first, each to the lane with fewer
 * bytes so far, and hash them. Reorders jobs; lanes must have room for
 * 2 * n jobs. */
static void hash_jobs(job_t *jobs, size_t n, job_t *lanes) {
    qsort(jobs, n, sizeof *jobs, longer_first);
    lane_t A = {0}, B = {0};
    A.jobs = lanes;
    B.jobs = lanes + n;
    size_t bytes_a = 0, bytes_b = 0;
    for (size_t i = 0; i < n; i++) {
        if (bytes_a <= bytes_b) {
            A.jobs[A.count++] = jobs[i];
            bytes_a += jobs[i].len;
        } else {
            B.jobs[B.count++] = jobs[i];
            bytes_b += jobs[i].len;
        }
    }
    run_two(&A, &B);
}

static int shani_ok = -1;

#endif /* CM_HAVE_SHANI */

static int have_shani(void) {
#if defined(CM_HAVE_SHANI)
    if (shani_ok < 0) shani_ok = detect_shani();
    return shani_ok;
#else
    return 0;
#endif
}

PyDoc_STRVAR(available_doc,
             "available() -> bool\n\n"
             "Whether this CPU has the SHA instructions sha256_ranges() needs.");

static PyObject *py_available(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(unused)) {
    return PyBool_FromLong(have_shani());
}

PyDoc_STRVAR(ranges_doc,
             "sha256_ranges(data, ranges) -> bytes\n\n"
             "SHA-256 of each (start, length) range of data, as 32-byte digests\n"
             "concatenated in the order given. Raises ValueError for a range\n"
             "outside data and RuntimeError where available() is false.");

static PyObject *py_sha256_ranges(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer view;
    PyObject *ranges;
    if (!PyArg_ParseTuple(args, "y*O", &view, &ranges)) return NULL;
    PyObject *seq = NULL, *out = NULL;
    job_t *jobs = NULL;
    if (!have_shani()) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU has no SHA instructions");
        goto done;
    }
    /* a tuple of our own, so that nothing can change its length meanwhile */
    seq = PySequence_Tuple(ranges);
    if (!seq) goto done;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    out = PyBytes_FromStringAndSize(NULL, 32 * n);
    if (!out || n == 0) goto done;
    jobs = PyMem_Malloc(sizeof(job_t) * 3 * (size_t)n);
    if (!jobs) {
        PyErr_NoMemory();
        Py_CLEAR(out);
        goto done;
    }
    uint8_t *digests = (uint8_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        /* A tuple of our own: converting its items may run Python code
         * (__index__), which must not be able to free what we read. */
        PyObject *pair = PySequence_Tuple(PyTuple_GET_ITEM(seq, i));
        Py_ssize_t start = -1, length = -1;
        if (pair && PyTuple_GET_SIZE(pair) != 2) {
            PyErr_Format(PyExc_ValueError, "range %zd is not a (start, length) pair", i);
        } else if (pair) {
            start = PyNumber_AsSsize_t(PyTuple_GET_ITEM(pair, 0), PyExc_OverflowError);
            if (!(start == -1 && PyErr_Occurred()))
                length = PyNumber_AsSsize_t(PyTuple_GET_ITEM(pair, 1), PyExc_OverflowError);
        }
        Py_XDECREF(pair);
        if (PyErr_Occurred()) {
            Py_CLEAR(out);
            goto done;
        }
        if (start < 0 || length < 0 || start > view.len || length > view.len - start) {
            PyErr_Format(PyExc_ValueError,
                         "range %zd (start %zd, length %zd) is outside the %zd-byte buffer", i,
                         start, length, view.len);
            Py_CLEAR(out);
            goto done;
        }
        jobs[i].data = (const uint8_t *)view.buf + start;
        jobs[i].len = (size_t)length;
        jobs[i].out = digests + 32 * i;
    }
#if defined(CM_HAVE_SHANI)
    Py_BEGIN_ALLOW_THREADS
    hash_jobs(jobs, (size_t)n, jobs + n);
    Py_END_ALLOW_THREADS
#endif
done:
    PyMem_Free(jobs);
    Py_XDECREF(seq);
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"available", py_available, METH_NOARGS, available_doc},
    {"sha256_ranges", py_sha256_ranges, METH_VARARGS, ranges_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "carmigrate.cid._sha256",
    "SHA-256 of many ranges of a buffer, two streams at a time (x86 SHA extensions).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__sha256(void) { return PyModule_Create(&module); }
