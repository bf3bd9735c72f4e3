#include "runtime/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "common/error.h"
#include "common/io.h"
#include "container/fsutil.h"

namespace thaw::runtime {

using container::mkdir_p;
using nlohmann::json;

namespace {

// Whether the locked file is still the one at `path`: a holder that removed
// it (a snapshot's lock goes with the snapshot) leaves a waiter locking a
// file no one else will open again; that waiter must lock the new one.
bool still_at(int fd, const std::string& path) {
  struct stat held, now;
  return ::fstat(fd, &held) == 0 && held.st_nlink > 0 && ::stat(path.c_str(), &now) == 0 &&
         held.st_dev == now.st_dev && held.st_ino == now.st_ino;
}

}  // namespace

FileLock::FileLock(const std::string& path) {
  for (;;) {
    fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!fd_) fail_errno("open lock ", path);
    while (::flock(fd_.get(), LOCK_EX) != 0)
      if (errno != EINTR) fail_errno("lock ", path);
    if (still_at(fd_.get(), path)) return;
  }
}

std::optional<FileLock> FileLock::try_lock(const std::string& path) {
  FileLock l;
  for (;;) {
    l.fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!l.fd_) fail_errno("open lock ", path);
    while (::flock(l.fd_.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) return std::nullopt;
      if (errno != EINTR) fail_errno("lock ", path);
    }
    if (still_at(l.fd_.get(), path)) return l;
  }
}

void check_name(const std::string& what, const std::string& name) {
  bool ok = !name.empty() && name[0] != '.' && name.size() <= 128 &&
            std::all_of(name.begin(), name.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'; });
  if (!ok) fail(what, " name '", name, "' is not valid: use letters, digits, '.', '_' and '-'");
}

void check_sdk_name(const std::string& what, const std::string& name) {
  check_name(what, name);
  if (!std::isalnum(static_cast<unsigned char>(name[0])) || name.size() > 64)
    fail(what, " name '", name, "' is not valid: start with a letter or digit, at most 64 characters");
}

Store::Store(std::string home) : home_(std::move(home)) {
  with_context("thaw store " + home_, [&] {
    mkdir_p(home_ + "/apps");
    mkdir_p(home_ + "/snapshots");
    mkdir_p(home_ + "/volumes");
  });
}

std::string Store::default_home() {
  const char* h = std::getenv("THAW_HOME");
  return h && *h ? h : "/var/lib/thaw";
}

std::vector<std::string> Store::apps() const { return container::list_dir(home_ + "/apps"); }

std::string Store::version_dir(const std::string& app, int version) const {
  return cat(home_, "/apps/", app, "/v", version);
}

std::optional<int> Store::current_version(const std::string& app) const {
  std::string s;
  if (!try_read_file(cat(home_, "/apps/", app, "/current"), &s)) return std::nullopt;
  int v = std::atoi(trim(s).c_str());
  if (v <= 0) return std::nullopt;
  return v;
}

std::vector<int> Store::versions(const std::string& app) const {
  std::vector<int> out;
  for (const auto& n : container::list_dir(cat(home_, "/apps/", app)))
    if (n.size() > 1 && n[0] == 'v' && std::all_of(n.begin() + 1, n.end(), ::isdigit)) out.push_back(std::atoi(n.c_str() + 1));
  std::sort(out.begin(), out.end());
  return out;
}

int Store::next_version(const std::string& app) const {
  auto v = versions(app);
  return v.empty() ? 1 : v.back() + 1;
}

void Store::set_current(const std::string& app, int version) {
  container::write_file_atomic(cat(home_, "/apps/", app, "/current"), cat(version, "\n"));
}

void Store::stop_app(const std::string& app) {
  std::string p = cat(home_, "/apps/", app, "/current");
  if (::unlink(p.c_str()) != 0 && errno != ENOENT) fail_errno("remove ", p);
}

json Store::read_version(const std::string& app, int version) const {
  std::string p = version_dir(app, version) + "/app.json";
  try {
    return json::parse(read_file(p));
  } catch (const json::exception& e) {
    fail(p, ": ", e.what());
  }
}

void Store::write_version(const std::string& app, int version, const json& j) {
  mkdir_p(version_dir(app, version));
  // It holds the values of the app's secrets (resolved at deploy): root's only.
  container::write_file_atomic(version_dir(app, version) + "/app.json", j.dump(2) + "\n", 0600);
}

FileLock Store::lock_app(const std::string& app) {
  mkdir_p(cat(home_, "/apps/", app));
  return FileLock(cat(home_, "/apps/", app, "/.lock"));
}

FileLock Store::mark_deploying(const std::string& app, int version) {
  mkdir_p(version_dir(app, version));
  return FileLock(version_dir(app, version) + "/.deploying");
}

bool Store::deploying(const std::string& app, int version) const {
  std::string path = version_dir(app, version) + "/.deploying";
  return container::exists(path) && !FileLock::try_lock(path);
}

std::vector<std::string> Store::snapshot_keys() const {
  std::vector<std::string> out;
  for (const auto& n : container::list_dir(home_ + "/snapshots"))
    if (n[0] != '.' && container::is_dir(home_ + "/snapshots/" + n)) out.push_back(n);  // not one being removed
  return out;
}

std::string Store::snapshot_dir(const std::string& key) const { return cat(home_, "/snapshots/", key); }

bool Store::has_image(const std::string& key) const {
  return container::exists(snapshot_image(key) + "/thaw-image.json");
}

std::optional<json> Store::read_meta(const std::string& key) const {
  std::string s;
  if (!try_read_file(snapshot_dir(key) + "/meta.json", &s)) return std::nullopt;
  try {
    return json::parse(s);
  } catch (const json::exception&) {
    return std::nullopt;  // unreadable meta: as if the snapshot were new
  }
}

void Store::write_meta(const std::string& key, const json& meta) {
  mkdir_p(snapshot_dir(key));
  container::write_file_atomic(snapshot_dir(key) + "/meta.json", meta.dump(2) + "\n");
}

void Store::remove_snapshot(const std::string& key) {
  // Out of the way first, in one step: what is written into the directory
  // meanwhile (a call marking it used) cannot leave half of it in place.
  std::string gone = cat(home_, "/snapshots/.removing.", key, ".", ::getpid(), ".", random_hex(4));
  std::string dir = snapshot_dir(key);
  if (::rename(dir.c_str(), gone.c_str()) == 0) dir = gone;
  container::remove_tree(dir);
  ::unlink((snapshot_dir(key) + ".lock").c_str());
}

FileLock Store::lock_snapshot(const std::string& key) { return FileLock(snapshot_dir(key) + ".lock"); }

std::string Store::volume_dir(const std::string& name) {
  check_name("Volume", name);
  std::string d = cat(home_, "/volumes/", name);
  mkdir_p(d);
  return d;
}

}  // namespace thaw::runtime
