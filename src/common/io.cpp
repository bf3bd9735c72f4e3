#include "common/io.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include <cstdio>

#include "common/error.h"
#include "common/unique_fd.h"

namespace thaw {

bool try_read_file(const std::string& path, std::string* out) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  out->clear();
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) break;
    out->append(buf, n);
  }
  return true;
}

std::string read_file(const std::string& path) {
  std::string s;
  if (!try_read_file(path, &s)) fail_errno("read ", path);
  return s;
}

void write_all(int fd, const void* data, size_t len, const std::string& what) {
  auto p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno("write ", what);
    }
    p += n;
    len -= n;
  }
}

void pwrite_all(int fd, const void* data, size_t len, uint64_t off, const std::string& what) {
  auto p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::pwrite(fd, p, len, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno("write ", what);
    }
    p += n;
    len -= n;
    off += n;
  }
}

void pread_all(int fd, void* data, size_t len, uint64_t off, const std::string& what) {
  auto p = static_cast<char*>(data);
  while (len > 0) {
    ssize_t n = ::pread(fd, p, len, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno("read ", what);
    }
    if (n == 0) fail("read ", what, ": unexpected end of file");
    p += n;
    len -= n;
    off += n;
  }
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t pos = s.find(sep, start);
    if (pos == std::string::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::string read_line(int fd, int timeout_ms, bool* timed_out) {
  if (timed_out) *timed_out = false;
  std::string s;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  while (s.find('\n') == std::string::npos) {
    int wait = -1;
    if (timeout_ms >= 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      wait = static_cast<int>(std::max<int64_t>(left.count(), 0));
    }
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, wait);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0 && timed_out) *timed_out = true;
    if (r <= 0) return {};
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return {};
    s.append(buf, n);
  }
  return s.substr(0, s.find('\n'));
}

void write_line(int fd, const std::string& line) {
  std::string l = line + "\n";
  ssize_t ignored = ::write(fd, l.data(), l.size());
  (void)ignored;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

std::string to_hex(const void* data, size_t len) {
  static const char* digits = "0123456789abcdef";
  auto p = static_cast<const uint8_t*>(data);
  std::string out(len * 2, '0');
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  return out;
}

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno("getrandom");
    got += size_t(n);
  }
  return to_hex(raw.data(), raw.size());
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  fail("invalid hex digit '", c, "'");
}

std::vector<uint8_t> from_hex(const std::string& hex) {
  if (hex.size() % 2) fail("hex string of odd length");
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); i++)
    out[i] = static_cast<uint8_t>(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
  return out;
}

std::string hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

uint64_t parse_hex64(const std::string& s) {
  size_t pos = 0;
  unsigned long long v = std::stoull(s, &pos, 16);
  if (pos != s.size()) fail("invalid hex number '", s, "'");
  return v;
}

}  // namespace thaw
