// SQLite's WAL files: a connection to a database in WAL mode holds the
// database, its write-ahead log (DB-wal, an fd) and its index (DB-shm, an
// fd and a shared mapping) open. They belong to every process using the
// database, found by name: when the last connection closes, SQLite merges
// the log into the database and deletes both; the next connection makes
// them anew. A restore must then not insist on the files of the
// checkpoint — refusing would fail every restore after the first restored
// copy that closed its database — but follow their paths as SQLite does:
// the files there now are used, and files gone are made again, the log
// empty and the index zeroed, which SQLite reads as an index to rebuild
// from the log (what it does after a crash). Nothing is lost: the log was
// merged into the database before it was deleted.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/error.h"
#include "common/unique_fd.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

namespace {

bool holds_regular_file(const nlohmann::json& entries, const std::string& path) {
  if (!entries.is_array()) return false;
  for (const auto& f : entries)
    if (f.value("kind", "") == "file" && f.value("path", "") == path && S_ISREG(f.value("mode", 0u))) return true;
  return false;
}

// Makes `path` (gone) as SQLite would: owned by its database's owner,
// `size` bytes of zeros. Another process may make it first: then that one
// is used. A restore that fails later leaves it: another connection may
// have opened it meanwhile, and removing it could lose its commits, while
// SQLite rebuilds a zeroed index by itself.
void make_sidecar(const std::string& path, const std::string& database, unsigned mode, uint64_t size) {
  struct stat db;
  if (::stat(database.c_str(), &db) != 0) fail_errno("database ", database, " is gone");
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode & 0777));
  if (!fd) {
    if (errno == EEXIST) return;
    fail_errno("make it again");
  }
  if (::fchown(fd.get(), db.st_uid, db.st_gid) != 0 || ::fchmod(fd.get(), mode & 0777) != 0)
    fail_errno("give it its database's owner");
  if (size && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) fail_errno("size it");
}

// The mode its fd entry recorded (SQLite holds the index open too).
unsigned recorded_mode(const image::Manifest& m, const nlohmann::json& pool, const std::string& path) {
  for (const nlohmann::json* entries : {&m.files, &pool})
    if (entries->is_array())
      for (const auto& f : *entries)
        if (f.value("kind", "") == "file" && f.value("path", "") == path) return f.value("mode", 0644u);
  return 0644;
}

}  // namespace

bool sqlite_wal_file(const image::Manifest& m, const nlohmann::json& pool, const std::string& path) {
  for (const char* suffix : {"-wal", "-shm"}) {
    size_t n = std::char_traits<char>::length(suffix);
    if (path.size() > n && path.compare(path.size() - n, n, suffix) == 0) {
      std::string database = path.substr(0, path.size() - n);
      return holds_regular_file(m.files, database) || holds_regular_file(pool, database);
    }
  }
  return false;
}

void make_sqlite_wal_files(const image::Manifest& m, const nlohmann::json& pool) {
  // The index: its mapped extent at least (beyond the end of a file, a
  // shared mapping faults with SIGBUS).
  for (size_t i = 0; i < m.mapped_files.size(); i++) {
    const auto& f = m.mapped_files[i];
    if (!sqlite_wal_file(m, pool, f.path)) continue;
    uint64_t extent = 0;
    for (const auto& v : m.vmas)
      if (v.kind == "file" && v.file == static_cast<int>(i)) extent = std::max(extent, v.pgoff + (v.end - v.start));
    with_context(cat("SQLite's ", f.path), [&] {
      struct stat st;
      if (::stat(f.path.c_str(), &st) == 0) {
        // Another process's, smaller than this one mapped: grown with
        // zeros, as SQLite grows it.
        if (uint64_t(st.st_size) < extent) {
          UniqueFd fd(::open(f.path.c_str(), O_RDWR | O_CLOEXEC));
          if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(extent)) != 0) fail_errno("grow it to ", extent, " bytes");
        }
        return;
      }
      if (errno != ENOENT) fail_errno("stat");
      make_sidecar(f.path, f.path.substr(0, f.path.size() - 4), recorded_mode(m, pool, f.path), extent);
    });
  }
  // The log (and an index only held open): empty.
  for (const nlohmann::json* entries : {&m.files, &pool}) {
    if (!entries->is_array()) continue;
    for (const auto& f : *entries) {
      std::string path = f.value("path", "");
      if (f.value("kind", "") != "file" || !sqlite_wal_file(m, pool, path)) continue;
      with_context(cat("SQLite's ", path), [&] {
        struct stat st;
        if (::stat(path.c_str(), &st) == 0) return;
        if (errno != ENOENT) fail_errno("stat");
        make_sidecar(path, path.substr(0, path.size() - 4), f.value("mode", 0644u), 0);
      });
    }
  }
}

}  // namespace thaw::engine
