// SHA-256 (FIPS 180-4), for snapshot keys and code hashes. Small and
// dependency-free; tested against the standard vectors in tests/runtime.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace thaw::runtime {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t len);
  void update(const std::string& s) { update(s.data(), s.size()); }
  // The digest as 64 lowercase hex digits; the object is spent afterwards.
  std::string hex();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const std::string& data);

}  // namespace thaw::runtime
