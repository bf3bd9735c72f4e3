// thaw volume create NAME | list | ls NAME [PATH] | put NAME LOCAL [REMOTE] [--force]
//             | get NAME REMOTE [LOCAL] [--force] | rm NAME PATH [-r] | delete NAME
// A Volume is a directory of the store ($THAW_HOME/volumes/<name>), so
// these are file copies; the paths given are inside the volume, and none
// may lead out of it (through "..", or a symbolic link a container made).
#include <sys/stat.h>

#include <cstdio>
#include <iterator>
#include <ctime>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "container/fsutil.h"
#include "runtime/store.h"

namespace thaw::cli {

namespace fs = std::filesystem;

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

// PATH inside the volume ("/" or "" is its root). Every part that exists
// must be a directory or a file, not a link (a container may have made it
// point anywhere): the result stays inside. `final_link` lets the last part
// be a link itself (to remove it).
fs::path inside(const fs::path& root, const std::string& path, bool final_link = false) {
  fs::path out = root;
  fs::path rel = fs::path(path).relative_path();
  for (auto it = rel.begin(); it != rel.end(); ++it) {
    const auto& part = *it;
    if (part == "..") fail("volume path '", path, "': '..' is not allowed");
    if (part.empty() || part == ".") continue;
    out /= part;
    bool last = std::next(it) == rel.end();
    if (fs::is_symlink(fs::symlink_status(out)) && !(final_link && last))
      fail("volume path '", path, "': ", out.string(), " is a symbolic link, which thaw volume does not follow");
  }
  return out;
}

std::string when(const fs::path& p) {
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) return "";
  char buf[32];
  struct tm tm;
  gmtime_r(&st.st_mtim.tv_sec, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Copies a file or a directory tree; an existing destination file is an
// error unless force. Links inside the volume are never followed, neither
// read nor written through (a container may have made them point
// anywhere), and links under a local directory are not copied either (a
// loop would nest without end): each is an error naming it.
void copy_in(const fs::path& from, const fs::path& to, bool force, bool into_volume) {
  auto fst = fs::symlink_status(from), tst = fs::symlink_status(to);
  if (fs::is_symlink(fst)) fail(from.string(), " is a symbolic link, which thaw volume does not copy");
  if (into_volume && fs::is_symlink(tst))
    fail(to.string(), " is a symbolic link, which thaw volume does not write through");
  if (fs::is_directory(fst)) {
    if (!fs::exists(tst)) fs::create_directory(to);
    else if (!fs::is_directory(fs::status(to))) fail(to.string(), " exists and is not a directory");
    for (const auto& e : fs::directory_iterator(from)) copy_in(e.path(), to / e.path().filename(), force, into_volume);
    return;
  }
  if (!fs::is_regular_file(fst)) fail(from.string(), ": not a regular file or a directory; not copied");
  if (fs::exists(tst) && !force) fail(to.string(), " exists: add --force to overwrite it");
  fs::copy_file(from, to, fs::copy_options::overwrite_existing);
}

int put(const VolumeArgs& v) {
  fs::path root = volume_root(v.name, true), local = v.a;
  if (!fs::exists(local)) fail("put: ", v.a, " does not exist");
  std::string remote = v.b.empty() ? "/" : v.b;
  fs::path dest = inside(root, remote);
  // "dir/" or an existing directory: into it, under the local name.
  if (remote.back() == '/' || fs::is_directory(fs::symlink_status(dest)))
    dest /= fs::absolute(local).lexically_normal().filename();
  fs::create_directories(dest.parent_path());  // below a checked path: what it makes is no link
  // The local path itself may be a link of the user's: followed once.
  copy_in(fs::canonical(local), dest, v.force, true);
  std::printf("Uploaded %s to volume %s at /%s.\n", v.a.c_str(), v.name.c_str(),
              dest.lexically_relative(root).c_str());
  return 0;
}

int get(const VolumeArgs& v) {
  fs::path root = volume_root(v.name, true), src = inside(root, v.a);
  if (!fs::exists(src)) fail("get: volume ", v.name, " has no ", v.a, " (`thaw volume ls ", v.name, "`)");
  if (v.b == "-") {  // to stdout
    if (!fs::is_regular_file(src)) fail("get: ", v.a, " is not a file; only a file can go to stdout");
    std::unique_ptr<FILE, int (*)(FILE*)> in(std::fopen(src.c_str(), "rb"), &std::fclose);
    if (!in) fail_errno("get: open ", src.string());
    char buf[1 << 16];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, in.get())) > 0;)
      if (std::fwrite(buf, 1, n, stdout) != n) fail_errno("get: write to stdout");
    return std::fflush(stdout) == 0 ? 0 : 1;
  }
  fs::path dest = v.b.empty() ? fs::path(".") : fs::path(v.b);
  if (fs::is_directory(dest)) dest /= src.filename().empty() ? fs::path(v.name) : src.filename();
  copy_in(src, dest, v.force, false);
  std::printf("Downloaded %s of volume %s to %s.\n", v.a.c_str(), v.name.c_str(), dest.c_str());
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
              fs::path root = volume_root(v->name, true), p = inside(root, v->a);
              if (!fs::is_directory(p)) fail("volume ", v->name, " has no directory ", v->a.empty() ? "/" : v->a);
              std::printf("%-48s %-5s %-22s %s\n", "PATH", "TYPE", "MODIFIED", "SIZE");
              for (const auto& n : container::list_dir(p.string())) {
                auto st = fs::symlink_status(p / n);
                const char* type = fs::is_directory(st) ? "dir" : fs::is_symlink(st) ? "link" : "file";
                std::string size = fs::is_regular_file(st) ? std::to_string(fs::file_size(p / n)) : "-";
                std::printf("%-48s %-5s %-22s %s\n", ("/" + (p / n).lexically_relative(root).string()).c_str(),
                            type, when(p / n).c_str(), size.c_str());
              }
            } else if (put_cmd->parsed()) {
              return put(*v);
            } else if (get_cmd->parsed()) {
              return get(*v);
            } else if (rm->parsed()) {
              fs::path root = volume_root(v->name, true), p = inside(root, v->a, true);
              if (p == root) fail("rm: give a path in the volume (`thaw volume delete ", v->name, "` removes it all)");
              if (!fs::exists(fs::symlink_status(p))) fail("rm: volume ", v->name, " has no ", v->a);
              if (fs::is_directory(fs::symlink_status(p)) && !v->recursive)
                fail("rm: ", v->a, " is a directory: add -r to remove it and what it holds");
              container::remove_tree(p.string());
              std::printf("Removed %s from volume %s.\n", v->a.c_str(), v->name.c_str());
            } else if (del->parsed()) {
              fs::path root = volume_root(v->name, true);
              container::remove_tree(root.string());
              std::printf("Deleted volume %s.\n", v->name.c_str());
            }
            return 0;
          }};
}

}  // namespace thaw::cli
