// The interface every kind of open file implements (one .cpp per kind), and
// what they share: the probe of a live fd at checkpoint, and the objects
// created so far at restore (a pipe's two ends are one object).
#pragma once
#include <sys/stat.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "engine/context.h"

namespace thaw::engine {

struct FdProbe {
  int fd = -1;
  std::string link;                          // readlink /proc/PID/fd/N
  std::map<std::string, std::string> info;   // /proc/PID/fdinfo/N
  std::vector<std::string> extra;            // repeated fdinfo lines (epoll tfd: ...)
  struct stat st {};
  UniqueFd dup;                              // our own copy (pidfd_getfd)
  int flags = 0;                             // file status flags, without O_CLOEXEC
  std::string where() const;                 // "fd 7 (/data/x.bin)"
};

struct RestoreFiles {
  std::map<uint64_t, std::pair<UniqueFd, UniqueFd>> pipes;     // by inode: read, write end
  std::map<uint64_t, UniqueFd> sockets;                       // peer ends waiting for their fd
  std::map<int, int> installed;                               // image fd -> fd number now (for epoll)
};

struct FileKind {
  const char* name;
  bool (*match)(const FdProbe& p);
  nlohmann::json (*dump)(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>& all);
  // Returns a new fd of ours for the open file description.
  int (*open)(RestoreContext& r, RestoreFiles& rf, const nlohmann::json& f);
  bool late;  // opened once every other fd is in place (epoll refers to them)
};

extern const FileKind kRegularFile, kPipe, kUnixSocket, kEventfd, kEpoll, kTimerfd, kSignalfd;

bool link_is(const FdProbe& p, const char* prefix);
uint64_t link_inode(const std::string& link);  // "pipe:[123]" -> 123
nlohmann::json store_bytes(CheckpointContext& c, const std::string& data);
std::string load_bytes(RestoreContext& r, const nlohmann::json& j);

}  // namespace thaw::engine
