/*
 * SHA-256 constants and x86 SHA extension (SHA-NI) building blocks shared by
 * carmigrate's compiled modules (the commP core and the multi-range SHA-256
 * of carmigrate.cid). Header-only: everything is static, so each module
 * gets its own copy and none exports a symbol.
 */
#ifndef CARMIGRATE_SHA256_NI_H
#define CARMIGRATE_SHA256_NI_H

#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* SHA-256 constants (FIPS 180-4 section 4.2.2 and 5.3.3)                   */

static const uint32_t K256[64] __attribute__((aligned(16), unused)) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static const uint32_t H0[8] __attribute__((aligned(16), unused)) = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* ------------------------------------------------------------------------ */
/* x86 SHA extensions                                                       */

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CM_HAVE_SHANI 1
#include <cpuid.h>
#include <immintrin.h>

#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* The state lives in two registers: s0 = (F, E, B, A) and s1 = (H, G, D, C)
 * in lanes 0..3, the layout sha256rnds2 works on. */
#define SHANI_INIT0 _mm_set_epi32(0x6a09e667, (int)0xbb67ae85, 0x510e527f, (int)0x9b05688c)
#define SHANI_INIT1 _mm_set_epi32(0x3c6ef372, (int)0xa54ff53a, 0x1f83d9ab, 0x5be0cd19)
#define SHANI_BSWAP _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL)

/* Four rounds with the message words plus constants in wk. */
#define SHANI_R4(s0, s1, wk)                              \
    do {                                                  \
        __m128i t_ = (wk);                                \
        s1 = _mm_sha256rnds2_epu32(s1, s0, t_);           \
        t_ = _mm_shuffle_epi32(t_, 0x0E);                 \
        s0 = _mm_sha256rnds2_epu32(s0, s1, t_);           \
    } while (0)

/* w0 := the next four schedule words, from W_{g-4}, W_{g-3}, W_{g-2}, W_{g-1}. */
#define SHANI_SCHED(w0, w1, w2, w3)                                                    \
    w0 = _mm_sha256msg2_epu32(                                                         \
        _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4)), w3)

#define SHANI_K(g) _mm_load_si128((const __m128i *)(K256 + 4 * (g)))

#define SHANI_LOAD(p, bs) _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p)), bs)

/* Store the state as a big-endian SHA-256 digest (32 bytes at p). */
#define SHANI_STORE(p, s0, s1, bs)                                          \
    do {                                                                    \
        __m128i t_ = _mm_shuffle_epi32(s0, 0x1B); /* A B E F */             \
        __m128i u_ = _mm_shuffle_epi32(s1, 0xB1); /* G H C D */             \
        __m128i lo_ = _mm_blend_epi16(t_, u_, 0xF0); /* A B C D */          \
        __m128i hi_ = _mm_alignr_epi8(u_, t_, 8);    /* E F G H */          \
        _mm_storeu_si128((__m128i *)(p), _mm_shuffle_epi8(lo_, bs));        \
        _mm_storeu_si128((__m128i *)((p) + 16), _mm_shuffle_epi8(hi_, bs)); \
    } while (0)

__attribute__((unused)) static int detect_shani(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & (1u << 19)) || !(c & (1u << 9))) return 0; /* SSE4.1, SSSE3 */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 29)) != 0; /* SHA */
}
#endif /* x86 */

#endif
