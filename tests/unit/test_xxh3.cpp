// Our XXH3 must hash exactly like xxHash's own: images written by one thaw
// are verified by another and by the restorer blob, and a hash that differs
// only for some lengths would reject good images.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/xxh3.h"

uint64_t thaw_xxh3_scalar_for_test(const void* data, uint64_t len);

namespace {
std::vector<unsigned char> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(gen());
  return v;
}
}  // namespace

TEST(Xxh3, MatchesXxhashForEveryShortLength) {
  auto data = random_bytes(4200, 1);
  // Every length through several long-input blocks, at two alignments.
  for (size_t off : {0, 3})
    for (size_t len = 0; len + off <= data.size(); len++) {
      uint64_t want = XXH3_64bits(data.data() + off, len);
      ASSERT_EQ(thaw_xxh3(data.data() + off, len), want) << "len " << len << " off " << off;
      ASSERT_EQ(thaw_xxh3_scalar_for_test(data.data() + off, len), want) << "scalar, len " << len;
    }
}

TEST(Xxh3, MatchesXxhashForPageSizes) {
  auto data = random_bytes((1 << 20) + 4096, 2);
  for (size_t len : {4096, 8192, 65536, 65536 - 4096, 1 << 20})
    EXPECT_EQ(thaw_xxh3(data.data(), len), XXH3_64bits(data.data(), len)) << "len " << len;
}

TEST(Xxh3, DetectsOneFlippedBit) {
  std::vector<unsigned char> page(65536, 'x');
  uint64_t before = thaw_xxh3(page.data(), page.size());
  for (size_t at : {0, 1234, 40000, 65535}) {
    page[at] ^= 1;
    EXPECT_NE(before, thaw_xxh3(page.data(), page.size())) << "bit at " << at;
    page[at] ^= 1;
  }
  EXPECT_EQ(before, thaw_xxh3(page.data(), page.size()));
}

TEST(Xxh3, Avx2MatchesXxhash) {
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "this CPU has no AVX2";
  auto data = random_bytes(4200, 3);
  for (size_t off : {0, 5})
    for (size_t len = 0; len + off <= data.size(); len++)
      ASSERT_EQ(thaw_xxh3_avx2(data.data() + off, len), XXH3_64bits(data.data() + off, len)) << "len " << len;
}
