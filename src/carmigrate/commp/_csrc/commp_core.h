/*
 * carmigrate commP core: fr32 expansion and the sha2-256-trunc254 binary
 * tree (commp-spec.md sections 2-4), with SHA-256 written for three kernels:
 *
 *   CM_KERNEL_PORTABLE  plain C, any CPU
 *   CM_KERNEL_SHANI     x86-64 SHA extensions (SHA-NI), chosen with cpuid
 *   CM_KERNEL_ARMV8     ARMv8 SHA-2 instructions, chosen with getauxval
 *
 * Nothing here knows about Python; _native.c is the CPython glue.
 */
#ifndef CARMIGRATE_COMMP_CORE_H
#define CARMIGRATE_COMMP_CORE_H

#include <stddef.h>
#include <stdint.h>

#define CM_NODE 32          /* bytes in a tree node */
#define CM_QUAD_IN 127      /* payload bytes per quad */
#define CM_QUAD_OUT 128     /* fr32-padded bytes per quad (4 leaves) */
#define CM_MIN_HEIGHT 2     /* one quad: 4 leaves */
#define CM_MAX_HEIGHT 58    /* padded size 2^63 */

enum {
    CM_KERNEL_PORTABLE = 0,
    CM_KERNEL_SHANI = 1,
    CM_KERNEL_ARMV8 = 2,
    CM_KERNEL_COUNT = 3
};

/* Precompute constants (padding-block schedule, zero commitments). Call once
 * before anything else; not thread-safe itself. */
void cm_init(void);

/* Whether kernel k can run on this CPU (compiled in and detected at run time). */
int cm_kernel_available(int k);

/* Short name of kernel k ("portable", "shani", "armv8"). */
const char *cm_kernel_name(int k);

/* out = H(left || right): SHA-256 of 64 bytes with digest[31] &= 0x3f. */
void cm_node(int k, const uint8_t *left, const uint8_t *right, uint8_t *out);

/* Zero commitment of a level (0 <= level <= CM_MAX_HEIGHT), 32 bytes. */
const uint8_t *cm_zero(unsigned level);

/* Root of the subtree of height h (CM_MIN_HEIGHT <= h <= CM_MAX_HEIGHT) over
 * data[0..len) zero-padded to 127 * 2^(h-2) bytes; len must not exceed that.
 * Returns 0, or -1 if memory could not be allocated. */
int cm_subtree_root(int k, const uint8_t *data, size_t len, unsigned h, uint8_t *out);

/* Roots of nchunks consecutive aligned chunks of 127 * 2^log2q bytes each
 * (out receives 32 * nchunks bytes, chunk order), hashed on up to nthreads
 * threads. Returns 0, or -1 if memory could not be allocated. */
int cm_chunk_roots(int k, const uint8_t *data, size_t nchunks, unsigned log2q,
                   unsigned nthreads, uint8_t *out);

/* Read consecutive chunks of 127 * 2^log2q bytes from fd (sequential read()
 * calls under a lock, so pipes work) and hash each on the thread that read
 * it, on up to nthreads threads, stopping after max_chunks chunks, at end of
 * input, on an error or when a read is interrupted by a signal.
 *
 * On return *nchunks roots are in roots (32 bytes each, input order); the
 * bytes of a final incomplete chunk (end of input or interruption) are in
 * *tail (malloc'd, *tail_len bytes, NULL if none; the caller frees it).
 * Returns CM_FD_MORE (max_chunks reached), CM_FD_EOF, CM_FD_INTR, or
 * CM_FD_ERROR with *err set to the errno of the failed read; -1 if memory
 * could not be allocated (nothing was read then). */
enum { CM_FD_MORE = 0, CM_FD_EOF = 1, CM_FD_INTR = 2, CM_FD_ERROR = 3 };
int cm_fd_roots(int k, int fd, unsigned log2q, unsigned nthreads, size_t max_chunks,
                uint8_t *roots, size_t *nchunks, uint8_t **tail, size_t *tail_len,
                int *err);

/* fr32-expand nquads full quads: in has 127 * nquads bytes, out 128 * nquads. */
void cm_fr32_pad(const uint8_t *in, size_t nquads, uint8_t *out);

#endif
