/* XXH64 (Yann Collet's published algorithm), written out here as static inline
 * C so that the freestanding restorer and the C++ side hash identically. */
#ifndef THAW_XXH64_H
#define THAW_XXH64_H
#include <stdint.h>

#define THAW_P1 0x9E3779B185EBCA87ULL
#define THAW_P2 0xC2B2AE3D27D4EB4FULL
#define THAW_P3 0x165667B19E3779F9ULL
#define THAW_P4 0x85EBCA77C2B2AE63ULL
#define THAW_P5 0x27D4EB2F165667C5ULL

static inline uint64_t thaw_rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t thaw_rd64(const unsigned char* p) {
  uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return v;
}
static inline uint32_t thaw_rd32(const unsigned char* p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}
static inline uint64_t thaw_xxh_round(uint64_t acc, uint64_t in) {
  acc += in * THAW_P2;
  acc = thaw_rotl64(acc, 31);
  return acc * THAW_P1;
}
static inline uint64_t thaw_xxh_merge(uint64_t acc, uint64_t v) {
  acc ^= thaw_xxh_round(0, v);
  return acc * THAW_P1 + THAW_P4;
}

static inline uint64_t thaw_xxh64(const void* data, uint64_t len, uint64_t seed) {
  const unsigned char* p = (const unsigned char*)data;
  const unsigned char* end = p + len;
  uint64_t h;
  if (len >= 32) {
    uint64_t v1 = seed + THAW_P1 + THAW_P2, v2 = seed + THAW_P2, v3 = seed, v4 = seed - THAW_P1;
    const unsigned char* limit = end - 32;
    do {
      v1 = thaw_xxh_round(v1, thaw_rd64(p));
      v2 = thaw_xxh_round(v2, thaw_rd64(p + 8));
      v3 = thaw_xxh_round(v3, thaw_rd64(p + 16));
      v4 = thaw_xxh_round(v4, thaw_rd64(p + 24));
      p += 32;
    } while (p <= limit);
    h = thaw_rotl64(v1, 1) + thaw_rotl64(v2, 7) + thaw_rotl64(v3, 12) + thaw_rotl64(v4, 18);
    h = thaw_xxh_merge(h, v1);
    h = thaw_xxh_merge(h, v2);
    h = thaw_xxh_merge(h, v3);
    h = thaw_xxh_merge(h, v4);
  } else {
    h = seed + THAW_P5;
  }
  h += len;
  while (p + 8 <= end) {
    h ^= thaw_xxh_round(0, thaw_rd64(p));
    h = thaw_rotl64(h, 27) * THAW_P1 + THAW_P4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= (uint64_t)thaw_rd32(p) * THAW_P1;
    h = thaw_rotl64(h, 23) * THAW_P2 + THAW_P3;
    p += 4;
  }
  while (p < end) {
    h ^= (*p) * THAW_P5;
    h = thaw_rotl64(h, 11) * THAW_P1;
    p++;
  }
  h ^= h >> 33;
  h *= THAW_P2;
  h ^= h >> 29;
  h *= THAW_P3;
  h ^= h >> 32;
  return h;
}
#endif
