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
// For pipes that carry one status line: the first line that arrives on fd
// within timeout_ms (< 0: no limit), without its newline; whatever came
// after it is dropped. Empty at end of file, and on a timeout with
// *timed_out set.
std::string read_line(int fd, int timeout_ms, bool* timed_out = nullptr);
// The line and a newline in one write, errors ignored: for a status line to
// a reader that may be gone.
void write_line(int fd, const std::string& line);
std::vector<std::string> split(const std::string& s, char sep);
std::string trim(const std::string& s);
std::string to_hex(const void* data, size_t len);
// `bytes` bytes from the kernel's random source, as hex.
std::string random_hex(size_t bytes);
std::vector<uint8_t> from_hex(const std::string& hex);
std::string hex64(uint64_t v);
uint64_t parse_hex64(const std::string& s);

}  // namespace thaw
