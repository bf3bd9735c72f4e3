/* XXH3-64 with seed 0 and the default secret (Yann Collet's published
 * algorithm, xxHash 0.8), written out here as static inline C so that the
 * freestanding restorer and the C++ side hash page data identically.
 *
 * Page data is hashed in 64 KiB blocks on every checkpoint and restore;
 * XXH64 (xxh64.h) ran at ~7 GB/s on one core here and took half of an eager
 * restore. The long-input loop below uses SSE2, which every x86-64 CPU has,
 * and runs several times faster. Other architectures take the scalar loop,
 * which gives the same hash (THAW_XXH3_SCALAR forces it, for the tests). */
#ifndef THAW_XXH3_H
#define THAW_XXH3_H
#include <stdint.h>
#if defined(__SSE2__) && !defined(THAW_XXH3_SCALAR)
#define THAW_XXH3_SSE2 1
#include <emmintrin.h>
#endif

#include "common/xxh64.h"

#define THAW_XXH3_SECRET_SIZE 192
#define THAW_XXH3_STRIPE 64
#define THAW_XXH3_STRIPES_PER_BLOCK ((THAW_XXH3_SECRET_SIZE - THAW_XXH3_STRIPE) / 8)
#define THAW_P32_1 0x9E3779B1U
#define THAW_P32_2 0x85EBCA77U
#define THAW_P32_3 0xC2B2AE3DU
#define THAW_PMX1 0x165667919E3779F9ULL
#define THAW_PMX2 0x9FB21C651E98DF25ULL

static const unsigned char thaw_xxh3_secret[THAW_XXH3_SECRET_SIZE] __attribute__((aligned(64))) = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

static inline uint64_t thaw_fold64(uint64_t a, uint64_t b) {
  __uint128_t p = (__uint128_t)a * b;
  return (uint64_t)p ^ (uint64_t)(p >> 64);
}
static inline uint64_t thaw_xxh64_avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= THAW_P2;
  h ^= h >> 29;
  h *= THAW_P3;
  return h ^ (h >> 32);
}
static inline uint64_t thaw_xxh3_avalanche(uint64_t h) {
  h ^= h >> 37;
  h *= THAW_PMX1;
  return h ^ (h >> 32);
}
static inline uint64_t thaw_xxh3_mix16(const unsigned char* p, const unsigned char* s) {
  return thaw_fold64(thaw_rd64(p) ^ thaw_rd64(s), thaw_rd64(p + 8) ^ thaw_rd64(s + 8));
}

static inline uint64_t thaw_xxh3_upto16(const unsigned char* p, uint64_t len) {
  const unsigned char* s = thaw_xxh3_secret;
  if (len > 8) {
    uint64_t lo = thaw_rd64(p) ^ (thaw_rd64(s + 24) ^ thaw_rd64(s + 32));
    uint64_t hi = thaw_rd64(p + len - 8) ^ (thaw_rd64(s + 40) ^ thaw_rd64(s + 48));
    return thaw_xxh3_avalanche(len + __builtin_bswap64(lo) + hi + thaw_fold64(lo, hi));
  }
  if (len >= 4) {
    uint64_t in = thaw_rd32(p + len - 4) + ((uint64_t)thaw_rd32(p) << 32);
    uint64_t h = in ^ (thaw_rd64(s + 8) ^ thaw_rd64(s + 16));
    h ^= thaw_rotl64(h, 49) ^ thaw_rotl64(h, 24);
    h *= THAW_PMX2;
    h ^= (h >> 35) + len;
    h *= THAW_PMX2;
    return h ^ (h >> 28);
  }
  if (len > 0) {
    uint32_t c = ((uint32_t)p[0] << 16) | ((uint32_t)p[len >> 1] << 24) | p[len - 1] | ((uint32_t)len << 8);
    return thaw_xxh64_avalanche(c ^ (uint64_t)(thaw_rd32(s) ^ thaw_rd32(s + 4)));
  }
  return thaw_xxh64_avalanche(thaw_rd64(s + 56) ^ thaw_rd64(s + 64));
}

static inline uint64_t thaw_xxh3_upto240(const unsigned char* p, uint64_t len) {
  const unsigned char* s = thaw_xxh3_secret;
  uint64_t acc = len * THAW_P1;
  if (len <= 128) {
    /* pair i (16 bytes from each end) counts when len > 32 * i */
    for (uint64_t i = 0; i < 4 && 32 * i < len; i++)
      acc += thaw_xxh3_mix16(p + 16 * i, s + 32 * i) + thaw_xxh3_mix16(p + len - 16 * (i + 1), s + 32 * i + 16);
    return thaw_xxh3_avalanche(acc);
  }
  uint64_t rounds = len / 16;
  for (uint64_t i = 0; i < 8; i++) acc += thaw_xxh3_mix16(p + 16 * i, s + 16 * i);
  acc = thaw_xxh3_avalanche(acc);
  for (uint64_t i = 8; i < rounds; i++) acc += thaw_xxh3_mix16(p + 16 * i, s + 16 * (i - 8) + 3);
  acc += thaw_xxh3_mix16(p + len - 16, s + 136 - 17);
  return thaw_xxh3_avalanche(acc);
}

/* The long-input loop works on eight 64-bit accumulators, 64-byte stripe
 * by stripe, scrambling them after each 1 KiB block. Each instruction set
 * below gives the same two steps; thaw_xxh3_long drives them through
 * pointers, called once per block, so that the AVX2 pair can live in
 * functions of their own target. */
typedef void (*thaw_xxh3_accumulate_fn)(uint64_t* acc, const unsigned char* p, const unsigned char* s,
                                         uint64_t stripes);
typedef void (*thaw_xxh3_scramble_fn)(uint64_t* acc, const unsigned char* s);

static inline void thaw_xxh3_accumulate_scalar(uint64_t* acc, const unsigned char* p, const unsigned char* s,
                                        uint64_t stripes) {
  for (uint64_t n = 0; n < stripes; n++, p += THAW_XXH3_STRIPE, s += 8)
    for (int i = 0; i < 8; i++) {
      uint64_t d = thaw_rd64(p + 8 * i), dk = d ^ thaw_rd64(s + 8 * i);
      acc[i ^ 1] += d;
      acc[i] += (dk & 0xFFFFFFFFULL) * (dk >> 32);
    }
}

static inline void thaw_xxh3_scramble_scalar(uint64_t* acc, const unsigned char* s) {
  for (int i = 0; i < 8; i++) {
    uint64_t v = acc[i];
    v ^= v >> 47;
    v ^= thaw_rd64(s + 8 * i);
    acc[i] = v * THAW_P32_1;
  }
}

#if THAW_XXH3_SSE2
static inline void thaw_xxh3_accumulate_sse2(uint64_t* acc, const unsigned char* p, const unsigned char* s,
                                      uint64_t stripes) {
  __m128i a[4];
  for (int i = 0; i < 4; i++) a[i] = _mm_loadu_si128((const __m128i*)acc + i);
  for (uint64_t n = 0; n < stripes; n++, p += THAW_XXH3_STRIPE, s += 8)
    for (int i = 0; i < 4; i++) {
      __m128i d = _mm_loadu_si128((const __m128i*)p + i);
      __m128i dk = _mm_xor_si128(d, _mm_loadu_si128((const __m128i*)s + i));
      __m128i prod = _mm_mul_epu32(dk, _mm_shuffle_epi32(dk, _MM_SHUFFLE(0, 3, 0, 1)));
      a[i] = _mm_add_epi64(prod, _mm_add_epi64(a[i], _mm_shuffle_epi32(d, _MM_SHUFFLE(1, 0, 3, 2))));
    }
  for (int i = 0; i < 4; i++) _mm_storeu_si128((__m128i*)acc + i, a[i]);
}
#endif

#if defined(__x86_64__)
/* AVX2 doubles the width again (3x XXH64 on this project's machines); the
 * caller checks the CPU, see thaw_xxh3_avx2. */
#include <immintrin.h>
__attribute__((target("avx2"))) static inline void thaw_xxh3_accumulate_avx2(uint64_t* acc, const unsigned char* p,
                                                                    const unsigned char* s, uint64_t stripes) {
  __m256i a0 = _mm256_loadu_si256((const __m256i*)acc), a1 = _mm256_loadu_si256((const __m256i*)acc + 1);
  for (uint64_t n = 0; n < stripes; n++, p += THAW_XXH3_STRIPE, s += 8) {
    __m256i d0 = _mm256_loadu_si256((const __m256i*)p), d1 = _mm256_loadu_si256((const __m256i*)p + 1);
    __m256i k0 = _mm256_xor_si256(d0, _mm256_loadu_si256((const __m256i*)s));
    __m256i k1 = _mm256_xor_si256(d1, _mm256_loadu_si256((const __m256i*)s + 1));
    a0 = _mm256_add_epi64(_mm256_mul_epu32(k0, _mm256_shuffle_epi32(k0, _MM_SHUFFLE(0, 3, 0, 1))),
                          _mm256_add_epi64(a0, _mm256_shuffle_epi32(d0, _MM_SHUFFLE(1, 0, 3, 2))));
    a1 = _mm256_add_epi64(_mm256_mul_epu32(k1, _mm256_shuffle_epi32(k1, _MM_SHUFFLE(0, 3, 0, 1))),
                          _mm256_add_epi64(a1, _mm256_shuffle_epi32(d1, _MM_SHUFFLE(1, 0, 3, 2))));
  }
  _mm256_storeu_si256((__m256i*)acc, a0);
  _mm256_storeu_si256((__m256i*)acc + 1, a1);
}
#endif

static inline uint64_t thaw_xxh3_long(const unsigned char* p, uint64_t len, thaw_xxh3_accumulate_fn accumulate,
                                      thaw_xxh3_scramble_fn scramble) {
  const unsigned char* s = thaw_xxh3_secret;
  uint64_t acc[8] = {THAW_P32_3, THAW_P1, THAW_P2, THAW_P3, THAW_P4, THAW_P32_2, THAW_P5, THAW_P32_1};
  const uint64_t block = THAW_XXH3_STRIPE * THAW_XXH3_STRIPES_PER_BLOCK;
  const unsigned char* scramble_key = s + THAW_XXH3_SECRET_SIZE - THAW_XXH3_STRIPE;
  uint64_t blocks = (len - 1) / block;
  for (uint64_t b = 0; b < blocks; b++) {
    accumulate(acc, p + b * block, s, THAW_XXH3_STRIPES_PER_BLOCK);
    scramble(acc, scramble_key);
  }
  accumulate(acc, p + blocks * block, s, ((len - 1) - block * blocks) / THAW_XXH3_STRIPE);
  accumulate(acc, p + len - THAW_XXH3_STRIPE, scramble_key - 7, 1);
  uint64_t h = len * THAW_P1;
  for (int i = 0; i < 4; i++)
    h += thaw_fold64(acc[2 * i] ^ thaw_rd64(s + 11 + 16 * i), acc[2 * i + 1] ^ thaw_rd64(s + 11 + 16 * i + 8));
  return thaw_xxh3_avalanche(h);
}

static inline uint64_t thaw_xxh3_with(const void* data, uint64_t len, thaw_xxh3_accumulate_fn accumulate) {
  const unsigned char* p = (const unsigned char*)data;
  if (len <= 16) return thaw_xxh3_upto16(p, len);
  if (len <= 240) return thaw_xxh3_upto240(p, len);
  return thaw_xxh3_long(p, len, accumulate, thaw_xxh3_scramble_scalar);
}

/* With what this compiler may assume of any CPU it targets. */
static inline uint64_t thaw_xxh3(const void* data, uint64_t len) {
#if THAW_XXH3_SSE2
  return thaw_xxh3_with(data, len, thaw_xxh3_accumulate_sse2);
#else
  return thaw_xxh3_with(data, len, thaw_xxh3_accumulate_scalar);
#endif
}

#if defined(__x86_64__)
/* Only where the CPU and kernel have AVX2 (__builtin_cpu_supports("avx2")). */
static inline uint64_t thaw_xxh3_avx2(const void* data, uint64_t len) {
  return thaw_xxh3_with(data, len, thaw_xxh3_accumulate_avx2);
}
#endif
#endif
