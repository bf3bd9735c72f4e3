#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace thaw {

// Whole-file read of small files (/proc entries); throws with the path.
std::string read_file(const std::string& path);
// Like read_file, but returns false instead of throwing when it cannot open.
bool try_read_file(const std::string& path, std::string* out);
void write_all(int fd, const void* data, size_t len, const std::string& what);
void pwrite_all(int fd, const void* data, size_t len, uint64_t off, const std::string& what);
void pread_all(int fd, void* data, size_t len, uint64_t off, const std::string& what);
std::vector<std::string> split(const std::string& s, char sep);
std::string trim(const std::string& s);
std::string to_hex(const void* data, size_t len);
std::vector<uint8_t> from_hex(const std::string& hex);
std::string hex64(uint64_t v);
uint64_t parse_hex64(const std::string& s);

}  // namespace thaw
