// The interface every kind of open file implements (one .cpp per kind), and
// what they share: the probe of a live fd at checkpoint, and the objects
// created so far at restore (a pipe's two ends are one object).
#pragma once
#include <sys/stat.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "engine/context.h"

namespace thaw::engine {

struct FdProbe {
  pid_t pid = 0;                             // the process holding it (one of a tree's)
  int fd = -1;
  std::string link;                          // readlink /proc/PID/fd/N
  std::map<std::string, std::string> info;   // /proc/PID/fdinfo/N
  std::vector<std::string> extra;            // repeated fdinfo lines (epoll tfd: ...)
  struct stat st {};
  UniqueFd dup;                              // our own copy (pidfd_getfd)
  int flags = 0;                             // file status flags, without O_CLOEXEC
  bool cloexec = false;
  std::string where() const;                 // "fd 7 (/data/x.bin)"
  // A numeric fdinfo field; fails naming the field when it is missing or
  // not a number (the format differs between kernels).
  uint64_t info_number(const std::string& key, int base = 10) const;
};

// A unix socket pair one end of which is open: the other end waits for its
// description, which fills its queue and then finishes both ends.
struct PendingSocket {
  UniqueFd end;                      // the end not opened yet
  UniqueFd first;                    // a copy of the end opened first
  const nlohmann::json* first_f;     // that end's image entry
};

struct RestoreFiles {
  std::map<uint64_t, std::pair<UniqueFd, UniqueFd>> pipes;     // by inode: read, write end
  std::set<std::pair<uint64_t, bool>> pipe_ends_given;         // (inode, read end): its pipe2 description
  std::map<uint64_t, PendingSocket> sockets;                   // by the inode of the end waiting
  std::set<int> installed;                                    // image fds in place so far
};

struct FileKind {
  const char* name;
  bool (*match)(const FdProbe& p);
  nlohmann::json (*dump)(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>& all);
  // Returns a new fd of ours for the open file description.
  int (*open)(RestoreContext& r, RestoreFiles& rf, const nlohmann::json& f);
  // Image fds that must hold their files before this one is opened (an
  // epoll names the fds it watches); nullptr: none.
  std::vector<int> (*waits_for)(const nlohmann::json& f);
};

extern const FileKind kRegularFile, kPipe, kTcpListen, kTcpClosed, kUdp, kUnixSocket, kDropped, kEventfd, kEpoll, kTimerfd, kSignalfd, kInotify, kPidfd;

// A `udp` entry bound to a port the program chose (outside the kernel's
// ephemeral range), which a restore must have and cannot take elsewhere.
bool udp_port_of_its_own(const nlohmann::json& f);

// An "external" entry (a pipe or unix socket whose other end is outside the
// process) as a "dropped" one (dropped.cpp); fails for what cannot be
// dropped (a terminal). dropped_what says how it comes back, for notes.
nlohmann::json dropped_from_external(const nlohmann::json& external, int flags);
std::string dropped_what(const nlohmann::json& dropped);

bool link_is(const FdProbe& p, const char* prefix);
// "pipe:[123]" -> 123; 0 when the link holds no inode number.
uint64_t link_inode(const std::string& link);
nlohmann::json store_bytes(CheckpointContext& c, const std::string& data);
std::string load_bytes(RestoreContext& r, const nlohmann::json& j);

}  // namespace thaw::engine
