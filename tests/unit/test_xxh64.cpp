// Our XXH64 must hash exactly like the reference implementation: images
// written by one thaw are verified by another (and by the restorer blob).
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "common/xxh64.h"

namespace {
uint64_t h(const std::string& s) { return thaw_xxh64(s.data(), s.size(), 0); }
}  // namespace

TEST(Xxh64, MatchesReferenceVectors) {
  EXPECT_EQ(h(""), 0xef46db3751d8e999ull);
  EXPECT_EQ(h("a"), 0xd24ec4f1a98c6e5bull);
  EXPECT_EQ(h("abc"), 0x44bc2cf5ad770999ull);
  EXPECT_EQ(h("Nobody inspects the spammish repetition"), 0xfbcea83c8a378bf1ull);
  EXPECT_EQ(h("0123456789012345678901234567890123456789"), 0xca6fc80cbde1a931ull);
}

TEST(Xxh64, DetectsOneFlippedBit) {
  std::string page(4096, 'x');
  uint64_t before = h(page);
  page[1234] ^= 1;
  EXPECT_NE(before, h(page));
}
