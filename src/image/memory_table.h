// memory.bin: the image's mappings and their page runs as a flat binary
// table. A torch process has thousands of mappings; as JSON they were 95% of
// the manifest and most of the time a restore spent reading the image.
#pragma once
#include <string>
#include <vector>

#include "image/schema.h"

namespace thaw::image {

constexpr const char* kMemoryName = "memory.bin";

std::string encode_memory_table(const std::vector<Vma>& vmas);
// Checks every count, offset and enum against the data; `what` names the
// file in errors.
std::vector<Vma> decode_memory_table(const std::string& data, const std::string& what);

}  // namespace thaw::image
