// The working set kept beside an image: which 64 KiB blocks of pages.img
// restored processes touched first, in the order they touched them. A lazy
// restore copies these before anything else and without waiting for the
// process to pause (engine/pager.h), so the process finds most of what it
// needs already there instead of faulting on it block by block.
//
// The file is advice, written after the image was published (by the
// restores themselves): it is not covered by the image's checksums but by
// its own, and is tied to the image's memory table. A file that is missing,
// torn, stale or damaged is ignored, never an error; the pager copies every
// page anyway, so the worst a wrong list can do is order the copy badly.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace thaw::image {

constexpr const char* kWorkingSetName = "working-set";

// The pages.img offsets of the blocks, in order; empty if there is no
// usable file for the image whose memory_id() is `memory_id`. Offsets are
// checked to be block starts inside `pages_bytes`.
std::vector<uint64_t> load_working_set(const std::string& image_dir, uint64_t memory_id, uint64_t pages_bytes);

// Replaces the file (written under a temporary name, then renamed).
// Returns false, with nothing changed, where it cannot be written (a
// read-only image directory, say).
bool store_working_set(const std::string& image_dir, uint64_t memory_id, const std::vector<uint64_t>& offsets);

}  // namespace thaw::image
