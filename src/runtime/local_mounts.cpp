#include "runtime/local_mounts.h"

#include "common/error.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

// Whether `path` is `dir` or lies under it.
bool under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

}  // namespace

std::vector<container::Mount> local_mounts(const FunctionDesc& fn, const std::vector<std::string>& host_paths) {
  std::vector<container::Mount> out;
  if (!fn.image.is_object()) return out;
  auto list = fn.image.find("local_mounts");
  if (list == fn.image.end() || !list->is_array()) return out;
  for (const auto& m : *list) {
    std::string kind = m.value("kind", ""), local = m.value("local", ""), remote = m.value("remote", "");
    std::string step = cat("Image.add_local_", kind, "(", local, ", ", remote, ")");
    if ((kind != "file" && kind != "dir") || local.empty() || local[0] != '/' || remote.size() < 2 || remote[0] != '/')
      fail(fn.name, ": ", step, ": not a local file or directory bound at an absolute path (the Image description is ",
           m.dump(), ")");
    for (const auto& needed : host_paths)
      if (!needed.empty() && under(needed, remote))
        fail(fn.name, ": ", step, ": binding it at ", remote, " would hide ", needed,
             ", which the container uses as the host has it (thaw's files, THAW_HOME or the app's directory); "
             "choose a remote_path outside it");
    container::Mount mount;
    mount.source = local;
    mount.target = remote;
    mount.read_only = true;
    mount.local = true;
    out.push_back(mount);
  }
  return out;
}

}  // namespace thaw::runtime
