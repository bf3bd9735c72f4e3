// thaw volume create NAME | list | ls NAME [PATH] | put NAME LOCAL [REMOTE] [--force]
//             | get NAME REMOTE [LOCAL] [--force] | rm NAME PATH [-r] | delete NAME
// A Volume is a directory of the store ($THAW_HOME/volumes/<name>), so
// these are file copies; the paths given are inside the volume, and none
// may lead out of it (through "..", or a symbolic link a container made).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <iterator>
#include <ctime>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "common/unique_fd.h"
#include "container/beneath.h"
#include "container/fsutil.h"
#include "runtime/store.h"

namespace thaw::cli {

namespace fs = std::filesystem;
using container::make_dirs_beneath;
using container::open_beneath;

namespace {

struct VolumeArgs {
  std::string name, a, b;
  bool force = false, recursive = false;
};

fs::path volume_root(const std::string& name, bool must_exist) {
  runtime::check_sdk_name("Volume", name);
  fs::path root = fs::path(runtime::Store::default_home()) / "volumes" / name;
  if (must_exist && !fs::is_directory(root))
    fail("no volume '", name, "' (`thaw volume list` lists them; `thaw volume create ", name, "` makes it)");
  return root;
}

// PATH inside the volume ("/" or "" is its root) as a relative path,
// "" for the root. Every file operation then resolves it from the
// volume's directory fd with no link followed (container/beneath.h): a
// container may swap a directory for a link at any moment.
std::string relative(const std::string& path) {
  std::string out;
  for (const auto& part : fs::path(path).relative_path()) {
    if (part == "..") fail("volume path '", path, "': '..' is not allowed");
    if (part.empty() || part == ".") continue;
    out += (out.empty() ? "" : "/") + part.string();
  }
  return out;
}

std::string dirname_of(const std::string& rel) {
  auto slash = rel.rfind('/');
  return slash == std::string::npos ? "" : rel.substr(0, slash);
}

std::string basename_of(const std::string& rel) { return rel.substr(rel.rfind('/') + 1); }

UniqueFd open_root(const fs::path& root) {
  UniqueFd fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) fail_errno("open volume directory ", root.string());
  return fd;
}

std::string when(int64_t t) {
  char buf[32];
  struct tm tm;
  time_t tt = static_cast<time_t>(t);
  gmtime_r(&tt, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string when(const fs::path& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0 ? when(st.st_mtim.tv_sec) : "";
}

// A file or a directory tree is copied; an existing destination file is an
// error unless --force. Links inside the volume are never followed, neither
// read nor written through, and links under a local directory are not
// copied either (a loop would nest without end): each is an error naming it.
int put(const VolumeArgs& v) {
  fs::path root = volume_root(v.name, true), local = v.a;
  if (!fs::exists(local)) fail("put: ", v.a, " does not exist");
  std::string remote = v.b.empty() ? "/" : v.b, rel = relative(remote);
  UniqueFd vol = open_root(root);
  std::string shown = cat("volume ", v.name, ": /", rel);
  // The local path itself may be a link of the user's: followed once.
  fs::path src = fs::canonical(local);
  std::string dir_rel, name;
  struct stat st;
  bool is_dir = rel.empty() || (::fstatat(vol.get(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode));
  if (remote.back() == '/' || is_dir) {  // "dir/" or an existing directory: into it, under the local name
    dir_rel = rel;
    name = fs::absolute(local).lexically_normal().filename().string();
    if (name.empty()) name = src.filename().string();
  } else {
    dir_rel = dirname_of(rel);
    name = basename_of(rel);
  }
  UniqueFd dir = make_dirs_beneath(vol.get(), dir_rel, shown);
  std::string dest = dir_rel.empty() ? name : dir_rel + "/" + name;
  container::copy_into(src.string(), dir.get(), name, v.force, cat("volume ", v.name, ": /", dest));
  std::printf("Uploaded %s to volume %s at /%s.\n", v.a.c_str(), v.name.c_str(), dest.c_str());
  return 0;
}

int get(const VolumeArgs& v) {
  fs::path root = volume_root(v.name, true);
  std::string rel = relative(v.a), shown = cat("volume ", v.name, ": /", rel);
  UniqueFd vol = open_root(root);
  if (v.b == "-") {  // to stdout
    UniqueFd in = open_beneath(vol.get(), rel, O_RDONLY | O_NONBLOCK, shown);
    struct stat st;
    if (::fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode))
      fail("get: ", v.a, " is not a file; only a file can go to stdout");
    char buf[1 << 16];
    for (ssize_t n; (n = ::read(in.get(), buf, sizeof buf)) != 0;) {
      if (n < 0) fail_errno("get: read ", shown);
      if (std::fwrite(buf, 1, static_cast<size_t>(n), stdout) != static_cast<size_t>(n))
        fail_errno("get: write to stdout");
    }
    return std::fflush(stdout) == 0 ? 0 : 1;
  }
  UniqueFd dir = open_beneath(vol.get(), dirname_of(rel), O_PATH | O_DIRECTORY, shown);
  std::string name = rel.empty() ? "." : basename_of(rel);
  struct stat st;
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    fail("get: volume ", v.name, " has no ", v.a, " (`thaw volume ls ", v.name, "`)");
  fs::path dest = v.b.empty() ? fs::path(".") : fs::path(v.b);
  if (fs::is_directory(dest)) dest /= rel.empty() ? v.name : name;
  container::copy_out_of(dir.get(), name, dest.string(), v.force, shown);
  std::printf("Downloaded %s of volume %s to %s.\n", v.a.c_str(), v.name.c_str(), dest.c_str());
  return 0;
}

int list_files(const VolumeArgs& v) {
  fs::path root = volume_root(v.name, true);
  std::string rel = relative(v.a);
  UniqueFd vol = open_root(root);
  UniqueFd dir;
  try {
    dir = open_beneath(vol.get(), rel, O_RDONLY | O_DIRECTORY, cat("volume ", v.name, ": /", rel));
  } catch (const Error& e) {
    fail("volume ", v.name, " has no directory ", v.a.empty() ? "/" : v.a, " (", e.what(), ")");
  }
  std::printf("%-48s %-5s %-22s %s\n", "PATH", "TYPE", "MODIFIED", "SIZE");
  for (const auto& e : container::list_beneath(dir.get())) {
    const char* type = e.type == 'd' ? "dir" : e.type == 'l' ? "link" : "file";
    std::string size = e.type == 'f' ? std::to_string(e.size) : "-";
    std::printf("%-48s %-5s %-22s %s\n", ("/" + (rel.empty() ? e.name : rel + "/" + e.name)).c_str(), type,
                when(e.mtime).c_str(), size.c_str());
  }
  return 0;
}

int remove_path(const VolumeArgs& v) {
  fs::path root = volume_root(v.name, true);
  std::string rel = relative(v.a);
  if (rel.empty()) fail("rm: give a path in the volume (`thaw volume delete ", v.name, "` removes it all)");
  UniqueFd vol = open_root(root);
  UniqueFd dir = open_beneath(vol.get(), dirname_of(rel), O_PATH | O_DIRECTORY, cat("volume ", v.name, ": /", rel));
  std::string name = basename_of(rel);
  struct stat st;
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) fail("rm: volume ", v.name, " has no ", v.a);
  if (S_ISDIR(st.st_mode) && !v.recursive) fail("rm: ", v.a, " is a directory: add -r to remove it and what it holds");
  container::remove_beneath(dir.get(), name);
  std::printf("Removed %s from volume %s.\n", v.a.c_str(), v.name.c_str());
  return 0;
}

}  // namespace

Command add_volume(CLI::App& app) {
  auto* sub = app.add_subcommand("volume", "Volumes: directories of the store that functions mount");
  sub->require_subcommand(1);
  auto v = std::make_shared<VolumeArgs>();
  auto* create = sub->add_subcommand("create", "Make an empty volume");
  create->add_option("name", v->name, "the volume")->required();
  auto* list = sub->add_subcommand("list", "List the volumes");
  auto* ls = sub->add_subcommand("ls", "List the files in a volume's directory");
  ls->add_option("name", v->name, "the volume")->required();
  ls->add_option("path", v->a, "a directory in it (default /)");
  auto* put_cmd = sub->add_subcommand("put", "Copy a local file or directory into a volume");
  put_cmd->add_option("name", v->name, "the volume")->required();
  put_cmd->add_option("local", v->a, "the local file or directory")->required();
  put_cmd->add_option("remote", v->b, "where in the volume (default /; a path ending in / is a directory)");
  put_cmd->add_flag("--force,-f", v->force, "overwrite files that exist");
  auto* get_cmd = sub->add_subcommand("get", "Copy a file or directory out of a volume");
  get_cmd->add_option("name", v->name, "the volume")->required();
  get_cmd->add_option("remote", v->a, "the path in the volume")->required();
  get_cmd->add_option("local", v->b, "where to (default .; - for stdout)");
  get_cmd->add_flag("--force,-f", v->force, "overwrite files that exist");
  auto* rm = sub->add_subcommand("rm", "Remove a file (or, with -r, a directory) from a volume");
  rm->add_option("name", v->name, "the volume")->required();
  rm->add_option("path", v->a, "the path in the volume")->required();
  rm->add_flag("--recursive,-r", v->recursive, "remove a directory and what it holds");
  auto* del = sub->add_subcommand("delete", "Delete a volume and everything in it");
  del->add_option("name", v->name, "the volume")->required();
  return {sub, [=] {
            if (create->parsed()) {
              fs::path root = volume_root(v->name, false);
              if (fs::exists(root)) fail("volume '", v->name, "' exists already");
              container::mkdir_p(root.string());
              std::printf("Created volume %s.\n", v->name.c_str());
            } else if (list->parsed()) {
              std::printf("%-40s %-22s %s\n", "NAME", "MODIFIED", "SIZE");
              fs::path dir = fs::path(runtime::Store::default_home()) / "volumes";
              for (const auto& n : container::list_dir(dir.string()))
                if (fs::is_directory(dir / n))
                  std::printf("%-40s %-22s %.1f MiB\n", n.c_str(), when(dir / n).c_str(),
                              double(container::tree_bytes((dir / n).string())) / (1 << 20));
            } else if (ls->parsed()) {
              return list_files(*v);
            } else if (put_cmd->parsed()) {
              return put(*v);
            } else if (get_cmd->parsed()) {
              return get(*v);
            } else if (rm->parsed()) {
              return remove_path(*v);
            } else if (del->parsed()) {
              fs::path root = volume_root(v->name, true);
              UniqueFd volumes = open_root(root.parent_path());
              container::remove_beneath(volumes.get(), v->name);
              std::printf("Deleted volume %s.\n", v->name.c_str());
            }
            return 0;
          }};
}

}  // namespace thaw::cli
