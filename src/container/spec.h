// What a container is made of, independent of how it is started (cold, by
// `thaw __init`, or restored, by a RestoreShell): both read the same Spec,
// so a restored worker sees the same mounts and hostname as a cold one.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "container/dev_shm_inodes.h"

namespace thaw::container {

struct Mount {
  std::string source;  // host directory ($THAW_HOME/volumes/<name>), or a local path
  std::string target;  // where the container sees it (created if missing)
  bool read_only = false;  // Volume.read_only(): mounted read-only
  // Image.add_local_file/dir: source is the user's file or directory, which
  // must exist (a Volume's directory is made when missing); a file is
  // bound over a file.
  bool local = false;
};

struct Spec {
  std::string id;        // unique per container; also its hostname
  std::vector<Mount> mounts;
  std::vector<std::string> cgroups;  // cgroup directories to join (may be empty)
  // The worker (cold start only): command, environment (KEY=VALUE), cwd.
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd = "/";
  // Host paths the container uses as the host has them ($THAW_HOME,
  // thaw's own files): any in the host's /dev/shm is bound again at its
  // path in the container's own /dev/shm, which would hide it.
  std::vector<std::string> host_paths;
  // A restored container: the files its snapshot's /dev/shm held
  // (dev_shm_files.h), copied into its own before the restore; "" for none.
  // Set by the restore shell, which holds them with the image it read.
  std::string dev_shm_from;
  // The same, open: a restore shell's, opened with the image it read (a
  // snapshot recreated since puts another image, with its own copy, at the
  // path). Used instead of the path when set; an fd, never sent.
  int dev_shm_fd = -1;
  SavedInodes dev_shm_inodes;  // their inode numbers, read with it; never sent
};

nlohmann::json to_json(const Spec& s);
Spec spec_from_json(const nlohmann::json& j);

}  // namespace thaw::container
