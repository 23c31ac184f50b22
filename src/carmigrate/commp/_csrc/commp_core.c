/*
 * carmigrate commP core. See commp_core.h and docs/explanation/commp.md.
 *
 * Tree nodes are SHA-256 over exactly 64 bytes (left || right), so every
 * node costs two compressions: one over the data block and one over the
 * constant padding block (0x80, zeros, bit length 512). The padding block's
 * message schedule never changes, so its W[t] + K[t] words are computed
 * once by cm_init() from the SHA-256 definition and reused.
 *
 * Work is organised in slabs of 256 quads: a slab is fr32-expanded into a
 * 32 KiB buffer (1024 leaves) and reduced level by level in place, two
 * independent nodes at a time so the SHA units overlap two dependency
 * chains. Slab roots are combined with a stack of pending nodes, one per
 * level, and a subtree is finished with zero commitments.
 */
#include "commp_core.h"
#include "sha256_ni.h"

#include <stdlib.h>
#include <string.h>

#include <errno.h>

#if !defined(_WIN32)
#include <pthread.h>
#include <unistd.h>
#define CM_THREADS 1
#endif

#define SLAB_LOG2Q 8u                      /* 256 quads per slab */
#define SLAB_QUADS (1u << SLAB_LOG2Q)
#define SLAB_LEVEL (SLAB_LOG2Q + 2u)       /* height of a slab's root */
#define SLAB_BYTES (CM_QUAD_OUT * SLAB_QUADS) /* 32 KiB of leaves */

/* W[t] + K[t] of the padding block of a 64-byte message, set by cm_init. */
static uint32_t PADWK[64] __attribute__((aligned(16)));

/* Zero commitments Z_0 .. Z_CM_MAX_HEIGHT, set by cm_init. */
static uint8_t ZERO[CM_MAX_HEIGHT + 1][CM_NODE];

/* ------------------------------------------------------------------------ */
/* Byte order helpers                                                       */

static inline uint32_t ld32be(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
           (uint32_t)p[3];
}

static inline void st32be(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint64_t ld64le(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline void st64le(uint8_t *p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

/* ------------------------------------------------------------------------ */
/* fr32 (commp-spec.md section 2)                                           */

/* Leaf c of a quad is bits [254c, 254c + 254) of the quad read as one
 * little-endian integer. It starts in byte 31c + floor(...) = 0, 31, 63, 95
 * at bit 0, 6, 4, 2; each 64-bit output word takes 8 bytes from there plus
 * the top bits from the following byte. Byte 127 is never read. */
#define FR32_M 0x3fffffffffffffffULL
#define FR32_W(in, b, s, j) \
    ((ld64le((in) + (b) + 8 * (j)) >> (s)) | ((uint64_t)(in)[(b) + 8 * (j) + 8] << (64 - (s))))

static inline void fr32_quad(const uint8_t *in, uint8_t *out) {
    st64le(out + 0, ld64le(in + 0));
    st64le(out + 8, ld64le(in + 8));
    st64le(out + 16, ld64le(in + 16));
    st64le(out + 24, ld64le(in + 24) & FR32_M);

    st64le(out + 32, FR32_W(in, 31, 6, 0));
    st64le(out + 40, FR32_W(in, 31, 6, 1));
    st64le(out + 48, FR32_W(in, 31, 6, 2));
    st64le(out + 56, FR32_W(in, 31, 6, 3) & FR32_M);

    st64le(out + 64, FR32_W(in, 63, 4, 0));
    st64le(out + 72, FR32_W(in, 63, 4, 1));
    st64le(out + 80, FR32_W(in, 63, 4, 2));
    st64le(out + 88, FR32_W(in, 63, 4, 3) & FR32_M);

    st64le(out + 96, FR32_W(in, 95, 2, 0));
    st64le(out + 104, FR32_W(in, 95, 2, 1));
    st64le(out + 112, FR32_W(in, 95, 2, 2));
    st64le(out + 120, (ld64le(in + 119) >> 2) & FR32_M);
}

void cm_fr32_pad(const uint8_t *in, size_t nquads, uint8_t *out) {
    for (size_t q = 0; q < nquads; q++) fr32_quad(in + CM_QUAD_IN * q, out + CM_QUAD_OUT * q);
}

/* Expand len payload bytes (len <= 127 * nquads) into nquads quads of
 * leaves; the partial last quad and everything after the data are zero. */
static void expand_region(const uint8_t *in, size_t len, size_t nquads, uint8_t *out) {
    size_t full = len / CM_QUAD_IN;
    size_t rem = len % CM_QUAD_IN;
    cm_fr32_pad(in, full, out);
    size_t q = full;
    if (rem) {
        uint8_t tmp[CM_QUAD_IN];
        memset(tmp, 0, sizeof tmp);
        memcpy(tmp, in + CM_QUAD_IN * full, rem);
        fr32_quad(tmp, out + CM_QUAD_OUT * q);
        q++;
    }
    if (q < nquads) memset(out + CM_QUAD_OUT * q, 0, CM_QUAD_OUT * (nquads - q));
}

/* ------------------------------------------------------------------------ */
/* Portable SHA-256 nodes                                                   */

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))
#define CH(x, y, z) (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))

static void schedule(uint32_t w[64]) {
    for (int t = 16; t < 64; t++) w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];
}

/* 64 rounds with precomputed W[t] + K[t], then the feed-forward. */
static void rounds_wk(uint32_t st[8], const uint32_t wk[64]) {
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
    uint32_t e = st[4], f = st[5], g = st[6], h = st[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = h + BSIG1(e) + CH(e, f, g) + wk[t];
        uint32_t t2 = BSIG0(a) + MAJ(a, b, c);
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
    st[4] += e;
    st[5] += f;
    st[6] += g;
    st[7] += h;
}

/* out[0..32) = H(in[0..64)); out may alias in. */
static void portable_node1(const uint8_t *in, uint8_t *out) {
    uint32_t w[64];
    uint32_t st[8];
    for (int t = 0; t < 16; t++) w[t] = ld32be(in + 4 * t);
    schedule(w);
    for (int t = 0; t < 64; t++) w[t] += K256[t];
    memcpy(st, H0, sizeof st);
    rounds_wk(st, w);
    rounds_wk(st, PADWK);
    for (int i = 0; i < 8; i++) st32be(out + 4 * i, st[i]);
    out[31] &= 0x3f;
}

static void portable_pairs(uint8_t *buf, size_t nout) {
    for (size_t i = 0; i < nout; i++) portable_node1(buf + 2 * CM_NODE * i, buf + CM_NODE * i);
}

/* ------------------------------------------------------------------------ */
/* x86-64 SHA extensions                                                    */

#if defined(CM_HAVE_SHANI)
#define SHANI_PK(g) _mm_load_si128((const __m128i *)(PADWK + 4 * (g)))

/* Store the state as a big-endian digest and clear the top two bits. */
#define SHANI_STORE_NODE(p, s0, s1, bs) \
    do {                                \
        SHANI_STORE(p, s0, s1, bs);     \
        (p)[31] &= 0x3f;                \
    } while (0)

SHANI_TARGET static void shani_node1(const uint8_t *in, uint8_t *out) {
    const __m128i bs = SHANI_BSWAP;
    __m128i w0 = SHANI_LOAD(in, bs), w1 = SHANI_LOAD(in + 16, bs);
    __m128i w2 = SHANI_LOAD(in + 32, bs), w3 = SHANI_LOAD(in + 48, bs);
    __m128i s0 = SHANI_INIT0, s1 = SHANI_INIT1;

#define G1(g, w) SHANI_R4(s0, s1, _mm_add_epi32(w, SHANI_K(g)))
    G1(0, w0); G1(1, w1); G1(2, w2); G1(3, w3);
    SHANI_SCHED(w0, w1, w2, w3); G1(4, w0);
    SHANI_SCHED(w1, w2, w3, w0); G1(5, w1);
    SHANI_SCHED(w2, w3, w0, w1); G1(6, w2);
    SHANI_SCHED(w3, w0, w1, w2); G1(7, w3);
    SHANI_SCHED(w0, w1, w2, w3); G1(8, w0);
    SHANI_SCHED(w1, w2, w3, w0); G1(9, w1);
    SHANI_SCHED(w2, w3, w0, w1); G1(10, w2);
    SHANI_SCHED(w3, w0, w1, w2); G1(11, w3);
    SHANI_SCHED(w0, w1, w2, w3); G1(12, w0);
    SHANI_SCHED(w1, w2, w3, w0); G1(13, w1);
    SHANI_SCHED(w2, w3, w0, w1); G1(14, w2);
    SHANI_SCHED(w3, w0, w1, w2); G1(15, w3);
#undef G1
    s0 = _mm_add_epi32(s0, SHANI_INIT0);
    s1 = _mm_add_epi32(s1, SHANI_INIT1);

    const __m128i p0 = s0, p1 = s1;
    for (int g = 0; g < 16; g++) SHANI_R4(s0, s1, SHANI_PK(g));
    s0 = _mm_add_epi32(s0, p0);
    s1 = _mm_add_epi32(s1, p1);
    SHANI_STORE_NODE(out, s0, s1, bs);
}

/* Two independent nodes: out[0..32) = H(in[0..64)), out[32..64) = H(in[64..128)).
 * All input is loaded before anything is stored, so out may alias in. */
SHANI_TARGET static void shani_node2(const uint8_t *in, uint8_t *out) {
    const __m128i bs = SHANI_BSWAP;
    __m128i a0 = SHANI_LOAD(in, bs), a1 = SHANI_LOAD(in + 16, bs);
    __m128i a2 = SHANI_LOAD(in + 32, bs), a3 = SHANI_LOAD(in + 48, bs);
    __m128i b0 = SHANI_LOAD(in + 64, bs), b1 = SHANI_LOAD(in + 80, bs);
    __m128i b2 = SHANI_LOAD(in + 96, bs), b3 = SHANI_LOAD(in + 112, bs);
    __m128i sa0 = SHANI_INIT0, sa1 = SHANI_INIT1;
    __m128i sb0 = SHANI_INIT0, sb1 = SHANI_INIT1;

#define G2(g, wa, wb)                                         \
    do {                                                      \
        __m128i k_ = SHANI_K(g);                              \
        SHANI_R4(sa0, sa1, _mm_add_epi32(wa, k_));            \
        SHANI_R4(sb0, sb1, _mm_add_epi32(wb, k_));            \
    } while (0)
#define S2(x0, x1, x2, x3, y0, y1, y2, y3) \
    SHANI_SCHED(x0, x1, x2, x3);           \
    SHANI_SCHED(y0, y1, y2, y3)
    G2(0, a0, b0); G2(1, a1, b1); G2(2, a2, b2); G2(3, a3, b3);
    S2(a0, a1, a2, a3, b0, b1, b2, b3); G2(4, a0, b0);
    S2(a1, a2, a3, a0, b1, b2, b3, b0); G2(5, a1, b1);
    S2(a2, a3, a0, a1, b2, b3, b0, b1); G2(6, a2, b2);
    S2(a3, a0, a1, a2, b3, b0, b1, b2); G2(7, a3, b3);
    S2(a0, a1, a2, a3, b0, b1, b2, b3); G2(8, a0, b0);
    S2(a1, a2, a3, a0, b1, b2, b3, b0); G2(9, a1, b1);
    S2(a2, a3, a0, a1, b2, b3, b0, b1); G2(10, a2, b2);
    S2(a3, a0, a1, a2, b3, b0, b1, b2); G2(11, a3, b3);
    S2(a0, a1, a2, a3, b0, b1, b2, b3); G2(12, a0, b0);
    S2(a1, a2, a3, a0, b1, b2, b3, b0); G2(13, a1, b1);
    S2(a2, a3, a0, a1, b2, b3, b0, b1); G2(14, a2, b2);
    S2(a3, a0, a1, a2, b3, b0, b1, b2); G2(15, a3, b3);
#undef G2
#undef S2
    sa0 = _mm_add_epi32(sa0, SHANI_INIT0);
    sa1 = _mm_add_epi32(sa1, SHANI_INIT1);
    sb0 = _mm_add_epi32(sb0, SHANI_INIT0);
    sb1 = _mm_add_epi32(sb1, SHANI_INIT1);

    const __m128i pa0 = sa0, pa1 = sa1, pb0 = sb0, pb1 = sb1;
    for (int g = 0; g < 16; g++) {
        const __m128i k_ = SHANI_PK(g);
        SHANI_R4(sa0, sa1, k_);
        SHANI_R4(sb0, sb1, k_);
    }
    sa0 = _mm_add_epi32(sa0, pa0);
    sa1 = _mm_add_epi32(sa1, pa1);
    sb0 = _mm_add_epi32(sb0, pb0);
    sb1 = _mm_add_epi32(sb1, pb1);
    SHANI_STORE_NODE(out, sa0, sa1, bs);
    SHANI_STORE_NODE(out + 32, sb0, sb1, bs);
}

SHANI_TARGET static void shani_pairs(uint8_t *buf, size_t nout) {
    size_t i = 0;
    for (; i + 2 <= nout; i += 2) shani_node2(buf + 2 * CM_NODE * i, buf + CM_NODE * i);
    if (i < nout) shani_node1(buf + 2 * CM_NODE * i, buf + CM_NODE * i);
}

#endif /* x86 */

/* ------------------------------------------------------------------------ */
/* ARMv8 SHA-2 instructions                                                 */

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__ARM_FEATURE_SHA2) || defined(__ARM_FEATURE_CRYPTO) || !defined(__clang__))
#define CM_HAVE_ARMV8 1
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_SHA2
#define HWCAP_SHA2 (1 << 6)
#endif
#endif

#if defined(__ARM_FEATURE_SHA2) || defined(__ARM_FEATURE_CRYPTO)
#define ARMV8_TARGET
#else
#define ARMV8_TARGET __attribute__((target("+crypto")))
#endif

/* The state lives in two registers: s0 = (A, B, C, D), s1 = (E, F, G, H). */
#define ARMV8_R4(s0, s1, wk)                     \
    do {                                         \
        uint32x4_t t_ = s0;                      \
        s0 = vsha256hq_u32(s0, s1, (wk));        \
        s1 = vsha256h2q_u32(s1, t_, (wk));       \
    } while (0)
#define ARMV8_SCHED(w0, w1, w2, w3) w0 = vsha256su1q_u32(vsha256su0q_u32(w0, w1), w2, w3)
#define ARMV8_LOAD(p) vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p)))
#define ARMV8_STORE(p, s0, s1)                                   \
    do {                                                         \
        vst1q_u8((p), vrev32q_u8(vreinterpretq_u8_u32(s0)));     \
        vst1q_u8((p) + 16, vrev32q_u8(vreinterpretq_u8_u32(s1))); \
        (p)[31] &= 0x3f;                                         \
    } while (0)

ARMV8_TARGET static void armv8_node1(const uint8_t *in, uint8_t *out) {
    uint32x4_t w0 = ARMV8_LOAD(in), w1 = ARMV8_LOAD(in + 16);
    uint32x4_t w2 = ARMV8_LOAD(in + 32), w3 = ARMV8_LOAD(in + 48);
    const uint32x4_t i0 = vld1q_u32(H0), i1 = vld1q_u32(H0 + 4);
    uint32x4_t s0 = i0, s1 = i1;
#define G1(g, w) ARMV8_R4(s0, s1, vaddq_u32(w, vld1q_u32(K256 + 4 * (g))))
    G1(0, w0); G1(1, w1); G1(2, w2); G1(3, w3);
    ARMV8_SCHED(w0, w1, w2, w3); G1(4, w0);
    ARMV8_SCHED(w1, w2, w3, w0); G1(5, w1);
    ARMV8_SCHED(w2, w3, w0, w1); G1(6, w2);
    ARMV8_SCHED(w3, w0, w1, w2); G1(7, w3);
    ARMV8_SCHED(w0, w1, w2, w3); G1(8, w0);
    ARMV8_SCHED(w1, w2, w3, w0); G1(9, w1);
    ARMV8_SCHED(w2, w3, w0, w1); G1(10, w2);
    ARMV8_SCHED(w3, w0, w1, w2); G1(11, w3);
    ARMV8_SCHED(w0, w1, w2, w3); G1(12, w0);
    ARMV8_SCHED(w1, w2, w3, w0); G1(13, w1);
    ARMV8_SCHED(w2, w3, w0, w1); G1(14, w2);
    ARMV8_SCHED(w3, w0, w1, w2); G1(15, w3);
#undef G1
    s0 = vaddq_u32(s0, i0);
    s1 = vaddq_u32(s1, i1);
    const uint32x4_t p0 = s0, p1 = s1;
    for (int g = 0; g < 16; g++) ARMV8_R4(s0, s1, vld1q_u32(PADWK + 4 * g));
    s0 = vaddq_u32(s0, p0);
    s1 = vaddq_u32(s1, p1);
    ARMV8_STORE(out, s0, s1);
}

ARMV8_TARGET static void armv8_node2(const uint8_t *in, uint8_t *out) {
    uint32x4_t a0 = ARMV8_LOAD(in), a1 = ARMV8_LOAD(in + 16);
    uint32x4_t a2 = ARMV8_LOAD(in + 32), a3 = ARMV8_LOAD(in + 48);
    uint32x4_t b0 = ARMV8_LOAD(in + 64), b1 = ARMV8_LOAD(in + 80);
    uint32x4_t b2 = ARMV8_LOAD(in + 96), b3 = ARMV8_LOAD(in + 112);
    const uint32x4_t i0 = vld1q_u32(H0), i1 = vld1q_u32(H0 + 4);
    uint32x4_t sa0 = i0, sa1 = i1, sb0 = i0, sb1 = i1;
#define G2(g, wa, wb)                                  \
    do {                                               \
        const uint32x4_t k_ = vld1q_u32(K256 + 4 * (g)); \
        ARMV8_R4(sa0, sa1, vaddq_u32(wa, k_));         \
        ARMV8_R4(sb0, sb1, vaddq_u32(wb, k_));         \
    } while (0)
#define S2(x0, x1, x2, x3, y0, y1, y2, y3) \
    ARMV8_SCHED(x0, x1, x2, x3);           \
    ARMV8_SCHED(y0, y1, y2, y3)
    G2(0, a0, b0); G2(1, a1, b1); G2(2, a2, b2); G2(3, a3, b3);
    S2(a0, a1, a2, a3, b0, b1, b2, b3); G2(4, a0, b0);
    S2(a1, a2, a3, a0, b1, b2, b3, b0); G2(5, a1, b1);
    S2(a2, a3, a0, a1, b2, b3, b0, b1); G2(6, a2, b2);
    S2(a3, a0, a1, a2, b3, b0, b1, b2); G2(7, a3, b3);
    S2(a0, a1, a2, a3, b0, b1, b2, b3); G2(8, a0, b0);
    S2(a1, a2, a3, a0, b1, b2, b3, b0); G2(9, a1, b1);
    S2(a2, a3, a0, a1, b2, b3, b0, b1); G2(10, a2, b2);
    S2(a3, a0, a1, a2, b3, b0, b1, b2); G2(11, a3, b3);
    S2(a0, a1, a2, a3, b0, b1, b2, b3); G2(12, a0, b0);
    S2(a1, a2, a3, a0, b1, b2, b3, b0); G2(13, a1, b1);
    S2(a2, a3, a0, a1, b2, b3, b0, b1); G2(14, a2, b2);
    S2(a3, a0, a1, a2, b3, b0, b1, b2); G2(15, a3, b3);
#undef G2
#undef S2
    sa0 = vaddq_u32(sa0, i0);
    sa1 = vaddq_u32(sa1, i1);
    sb0 = vaddq_u32(sb0, i0);
    sb1 = vaddq_u32(sb1, i1);
    const uint32x4_t pa0 = sa0, pa1 = sa1, pb0 = sb0, pb1 = sb1;
    for (int g = 0; g < 16; g++) {
        const uint32x4_t k_ = vld1q_u32(PADWK + 4 * g);
        ARMV8_R4(sa0, sa1, k_);
        ARMV8_R4(sb0, sb1, k_);
    }
    sa0 = vaddq_u32(sa0, pa0);
    sa1 = vaddq_u32(sa1, pa1);
    sb0 = vaddq_u32(sb0, pb0);
    sb1 = vaddq_u32(sb1, pb1);
    ARMV8_STORE(out, sa0, sa1);
    ARMV8_STORE(out + 32, sb0, sb1);
}

ARMV8_TARGET static void armv8_pairs(uint8_t *buf, size_t nout) {
    size_t i = 0;
    for (; i + 2 <= nout; i += 2) armv8_node2(buf + 2 * CM_NODE * i, buf + CM_NODE * i);
    if (i < nout) armv8_node1(buf + 2 * CM_NODE * i, buf + CM_NODE * i);
}

static int detect_armv8(void) {
#if defined(__APPLE__)
    return 1; /* every Apple arm64 CPU has the SHA-2 instructions */
#elif defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
#else
    return 0;
#endif
}
#endif /* aarch64 */

/* ------------------------------------------------------------------------ */
/* Kernel table                                                             */

typedef void (*node_fn)(const uint8_t *in, uint8_t *out);
typedef void (*pairs_fn)(uint8_t *buf, size_t nout);

typedef struct {
    const char *name;
    node_fn node;   /* out[0..32) = H(in[0..64)) */
    pairs_fn pairs; /* buf node i := H(buf nodes 2i, 2i+1) for i < nout */
    int available;
} kernel_t;

static kernel_t KERNELS[CM_KERNEL_COUNT] = {
    {"portable", portable_node1, portable_pairs, 1},
#if defined(CM_HAVE_SHANI)
    {"shani", shani_node1, shani_pairs, 0},
#else
    {"shani", portable_node1, portable_pairs, 0},
#endif
#if defined(CM_HAVE_ARMV8)
    {"armv8", armv8_node1, armv8_pairs, 0},
#else
    {"armv8", portable_node1, portable_pairs, 0},
#endif
};

void cm_init(void) {
    uint32_t w[64];
    memset(w, 0, sizeof w);
    w[0] = 0x80000000u; /* the 0x80 byte right after the 64 message bytes */
    w[15] = 512;        /* message length in bits */
    schedule(w);
    for (int t = 0; t < 64; t++) PADWK[t] = w[t] + K256[t];

    uint8_t msg[2 * CM_NODE];
    memset(ZERO[0], 0, CM_NODE);
    for (int l = 0; l < CM_MAX_HEIGHT; l++) {
        memcpy(msg, ZERO[l], CM_NODE);
        memcpy(msg + CM_NODE, ZERO[l], CM_NODE);
        portable_node1(msg, ZERO[l + 1]);
    }
#if defined(CM_HAVE_SHANI)
    KERNELS[CM_KERNEL_SHANI].available = detect_shani();
#endif
#if defined(CM_HAVE_ARMV8)
    KERNELS[CM_KERNEL_ARMV8].available = detect_armv8();
#endif
}

int cm_kernel_available(int k) { return k >= 0 && k < CM_KERNEL_COUNT && KERNELS[k].available; }

const char *cm_kernel_name(int k) {
    return (k >= 0 && k < CM_KERNEL_COUNT) ? KERNELS[k].name : "unknown";
}

const uint8_t *cm_zero(unsigned level) { return ZERO[level]; }

void cm_node(int k, const uint8_t *left, const uint8_t *right, uint8_t *out) {
    uint8_t msg[2 * CM_NODE];
    memcpy(msg, left, CM_NODE);
    memcpy(msg + CM_NODE, right, CM_NODE);
    KERNELS[k].node(msg, out);
}

/* ------------------------------------------------------------------------ */
/* Trees                                                                    */

typedef struct {
    uint8_t node[CM_MAX_HEIGHT + 1][CM_NODE];
    uint64_t have; /* bit l set: node[l] holds a pending left node of level l */
} stack_t_;

/* Add a node of the given level to the right of everything pushed so far. */
static void stack_push(const kernel_t *K, stack_t_ *s, unsigned level, const uint8_t *node) {
    uint8_t msg[2 * CM_NODE];
    memcpy(msg + CM_NODE, node, CM_NODE);
    while (s->have >> level & 1u) {
        memcpy(msg, s->node[level], CM_NODE);
        K->node(msg, msg + CM_NODE);
        s->have &= ~((uint64_t)1 << level);
        level++;
    }
    memcpy(s->node[level], msg + CM_NODE, CM_NODE);
    s->have |= (uint64_t)1 << level;
}

/* Root of height h from the pending nodes at levels >= from; missing right
 * subtrees are zero commitments (commp-spec.md section 3). */
static void stack_fold(const kernel_t *K, const stack_t_ *s, unsigned from, unsigned h,
                       uint8_t *out) {
    uint8_t msg[2 * CM_NODE];
    uint8_t acc[CM_NODE];
    int has_acc = 0;
    for (unsigned l = from; l < h; l++) {
        if (s->have >> l & 1u) {
            memcpy(msg, s->node[l], CM_NODE);
            memcpy(msg + CM_NODE, has_acc ? acc : ZERO[l], CM_NODE);
        } else if (has_acc) {
            memcpy(msg, acc, CM_NODE);
            memcpy(msg + CM_NODE, ZERO[l], CM_NODE);
        } else {
            continue;
        }
        K->node(msg, acc);
        has_acc = 1;
    }
    if (has_acc)
        memcpy(out, acc, CM_NODE);
    else if (s->have >> h & 1u)
        memcpy(out, s->node[h], CM_NODE);
    else
        memcpy(out, ZERO[h], CM_NODE);
}

/* Reduce 2^levels nodes in buf to one, in place. */
static void reduce(const kernel_t *K, uint8_t *buf, unsigned levels) {
    for (size_t n = (size_t)1 << levels; n > 1; n >>= 1) K->pairs(buf, n >> 1);
}

static void subtree_root_ws(const kernel_t *K, const uint8_t *data, size_t len, unsigned h,
                            uint8_t *out, uint8_t *ws) {
    if (h <= SLAB_LEVEL) {
        expand_region(data, len, (size_t)1 << (h - 2), ws);
        reduce(K, ws, h);
        memcpy(out, ws, CM_NODE);
        return;
    }
    stack_t_ s;
    s.have = 0;
    const size_t slab_in = (size_t)CM_QUAD_IN * SLAB_QUADS;
    for (size_t off = 0; off < len; off += slab_in) {
        size_t n = len - off < slab_in ? len - off : slab_in;
        expand_region(data + off, n, SLAB_QUADS, ws);
        reduce(K, ws, SLAB_LEVEL);
        stack_push(K, &s, SLAB_LEVEL, ws);
    }
    stack_fold(K, &s, SLAB_LEVEL, h, out);
}

static uint8_t *alloc_ws(void) {
    void *p = NULL;
#if defined(_WIN32)
    p = malloc(SLAB_BYTES);
#else
    if (posix_memalign(&p, 64, SLAB_BYTES) != 0) p = NULL;
#endif
    return (uint8_t *)p;
}

int cm_subtree_root(int k, const uint8_t *data, size_t len, unsigned h, uint8_t *out) {
    uint8_t *ws = alloc_ws();
    if (!ws) return -1;
    subtree_root_ws(&KERNELS[k], data, len, h, out, ws);
    free(ws);
    return 0;
}

typedef struct {
    const kernel_t *K;
    const uint8_t *data;
    size_t nchunks;
    size_t chunk_bytes;
    unsigned h;
    uint8_t *out;
    size_t next; /* next chunk to claim (atomic) */
} job_t;

typedef struct {
    job_t *job;
    uint8_t *ws;
} worker_t;

static void *worker_run(void *arg) {
    worker_t *w = (worker_t *)arg;
    job_t *j = w->job;
    for (;;) {
#if defined(CM_THREADS)
        size_t i = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
#else
        size_t i = j->next++;
#endif
        if (i >= j->nchunks) break;
        subtree_root_ws(j->K, j->data + i * j->chunk_bytes, j->chunk_bytes, j->h,
                        j->out + (size_t)CM_NODE * i, w->ws);
    }
    return NULL;
}

#define CM_MAX_THREADS 256

int cm_chunk_roots(int k, const uint8_t *data, size_t nchunks, unsigned log2q,
                   unsigned nthreads, uint8_t *out) {
    job_t job = {&KERNELS[k], data, nchunks, (size_t)CM_QUAD_IN << log2q, log2q + 2, out, 0};
    if (nthreads < 1) nthreads = 1;
    if (nthreads > CM_MAX_THREADS) nthreads = CM_MAX_THREADS;
    if ((size_t)nthreads > nchunks) nthreads = nchunks ? (unsigned)nchunks : 1;
#if !defined(CM_THREADS)
    nthreads = 1;
#endif
    worker_t workers[CM_MAX_THREADS];
    for (unsigned t = 0; t < nthreads; t++) {
        workers[t].job = &job;
        workers[t].ws = alloc_ws();
        if (!workers[t].ws) {
            for (unsigned u = 0; u < t; u++) free(workers[u].ws);
            return -1;
        }
    }
#if defined(CM_THREADS)
    pthread_t tids[CM_MAX_THREADS];
    int started[CM_MAX_THREADS];
    for (unsigned t = 1; t < nthreads; t++)
        started[t] = pthread_create(&tids[t], NULL, worker_run, &workers[t]) == 0;
    worker_run(&workers[0]); /* the calling thread works too */
    for (unsigned t = 1; t < nthreads; t++)
        if (started[t]) pthread_join(tids[t], NULL);
#else
    worker_run(&workers[0]);
#endif
    for (unsigned t = 0; t < nthreads; t++) free(workers[t].ws);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Hashing straight from a file descriptor                                  */

#if defined(CM_THREADS)
typedef struct {
    const kernel_t *K;
    int fd;
    size_t chunk;
    unsigned h;
    size_t max_chunks;
    uint8_t *roots;
    pthread_mutex_t lock;
    size_t next;  /* chunks claimed so far (under lock) */
    int status;   /* CM_FD_MORE while reading goes on (under lock) */
    int err;
    uint8_t *tail;
    size_t tail_len;
} fdjob_t;

typedef struct {
    fdjob_t *job;
    uint8_t *chunk; /* one chunk of payload */
    uint8_t *ws;    /* slab workspace */
} fdworker_t;

static void *fdworker_run(void *arg) {
    fdworker_t *w = (fdworker_t *)arg;
    fdjob_t *j = w->job;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        if (j->status != CM_FD_MORE || j->next >= j->max_chunks) {
            pthread_mutex_unlock(&j->lock);
            break;
        }
        size_t idx = j->next++;
        size_t filled = 0;
        while (filled < j->chunk) {
            ssize_t r = read(j->fd, w->chunk + filled, j->chunk - filled);
            if (r > 0) {
                filled += (size_t)r;
            } else if (r == 0) {
                j->status = CM_FD_EOF;
                break;
            } else if (errno == EINTR) {
                j->status = CM_FD_INTR;
                break;
            } else {
                j->err = errno;
                j->status = CM_FD_ERROR;
                break;
            }
        }
        if (filled < j->chunk) {
            /* the last, incomplete chunk: hand its bytes back, unhashed */
            j->next = idx;
            if (filled) {
                j->tail = (uint8_t *)malloc(filled);
                if (j->tail) {
                    memcpy(j->tail, w->chunk, filled);
                    j->tail_len = filled;
                } else {
                    j->err = ENOMEM;
                    j->status = CM_FD_ERROR;
                }
            }
            pthread_mutex_unlock(&j->lock);
            break;
        }
        pthread_mutex_unlock(&j->lock);
        subtree_root_ws(j->K, w->chunk, j->chunk, j->h, j->roots + (size_t)CM_NODE * idx,
                        w->ws);
    }
    return NULL;
}

int cm_fd_roots(int k, int fd, unsigned log2q, unsigned nthreads, size_t max_chunks,
                uint8_t *roots, size_t *nchunks, uint8_t **tail, size_t *tail_len,
                int *err) {
    fdjob_t job;
    memset(&job, 0, sizeof job);
    job.K = &KERNELS[k];
    job.fd = fd;
    job.chunk = (size_t)CM_QUAD_IN << log2q;
    job.h = log2q + 2;
    job.max_chunks = max_chunks;
    job.roots = roots;
    job.status = CM_FD_MORE;
    if (nthreads < 1) nthreads = 1;
    if (nthreads > CM_MAX_THREADS) nthreads = CM_MAX_THREADS;
    if ((size_t)nthreads > max_chunks) nthreads = max_chunks ? (unsigned)max_chunks : 1;

    fdworker_t workers[CM_MAX_THREADS];
    for (unsigned t = 0; t < nthreads; t++) {
        workers[t].job = &job;
        workers[t].ws = alloc_ws();
        workers[t].chunk = (uint8_t *)malloc(job.chunk);
        if (!workers[t].ws || !workers[t].chunk) {
            for (unsigned u = 0; u <= t; u++) {
                free(workers[u].ws);
                free(workers[u].chunk);
            }
            return -1;
        }
    }
    if (pthread_mutex_init(&job.lock, NULL) != 0) {
        for (unsigned t = 0; t < nthreads; t++) {
            free(workers[t].ws);
            free(workers[t].chunk);
        }
        return -1;
    }
    pthread_t tids[CM_MAX_THREADS];
    int started[CM_MAX_THREADS];
    for (unsigned t = 1; t < nthreads; t++)
        started[t] = pthread_create(&tids[t], NULL, fdworker_run, &workers[t]) == 0;
    fdworker_run(&workers[0]);
    for (unsigned t = 1; t < nthreads; t++)
        if (started[t]) pthread_join(tids[t], NULL);
    pthread_mutex_destroy(&job.lock);
    for (unsigned t = 0; t < nthreads; t++) {
        free(workers[t].ws);
        free(workers[t].chunk);
    }
    *nchunks = job.next;
    *tail = job.tail;
    *tail_len = job.tail_len;
    *err = job.err;
    return job.status;
}
#else
int cm_fd_roots(int k, int fd, unsigned log2q, unsigned nthreads, size_t max_chunks,
                uint8_t *roots, size_t *nchunks, uint8_t **tail, size_t *tail_len,
                int *err) {
    (void)k; (void)fd; (void)log2q; (void)nthreads; (void)max_chunks; (void)roots;
    *nchunks = 0;
    *tail = NULL;
    *tail_len = 0;
    *err = ENOSYS;
    return CM_FD_ERROR;
}
#endif
