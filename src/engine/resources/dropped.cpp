// Pipes and unix sockets whose other end a process outside the target holds,
// recorded by a checkpoint that drops such connections
// (CheckpointOptions::drop_outside) instead of leaving them "external" for
// the restoring side to give, which it could not: a function's container
// has its stdio and its channel, nothing else of the snapshot's world.
// Each comes back as if that other process had closed its end: a read end or
// stream socket reads EOF, a write end or stream socket fails with EPIPE (and
// SIGPIPE, as it would), a datagram socket that sent to a named socket
// connects to that name again where something is bound there (a syslog
// daemon's socket), else fails its sends (ECONNREFUSED, then ENOTCONN) and
// waits forever in a read. What a program sees when the process it talked to
// ends, which it must handle anyway. The name is the one the peer bound, as
// its mount namespace and directory saw it (/run/systemd/journal/dev-log
// for /dev/log): where the restore's see another file, it connects there or
// nowhere. Data queued for reading is lost with the connection (noted).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/file_kinds.h"

namespace thaw::engine {

using nlohmann::json;

json dropped_from_external(const json& external, int flags) {
  json f{{"kind", "dropped"}, {"desc", external.value("desc", std::string())}, {"flags", flags}};
  if (external.contains("pipe_end")) {
    f["pipe_end"] = external["pipe_end"];
  } else if (external.contains("socket_type")) {
    f["socket_type"] = external["socket_type"];
    if (external.contains("peer_name")) f["peer_name"] = external["peer_name"];
  } else {
    fail("a terminal, which only the restoring side can give; not supported in a checkpoint that drops "
         "connections to other processes");
  }
  return f;
}

std::string dropped_what(const json& f) {
  if (f.contains("pipe_end"))
    return f["pipe_end"] == "r" ? "a pipe another process wrote to: restored as one whose writer closed it (EOF)"
                                : "a pipe to another process: restored as one whose reader closed it (EPIPE)";
  if (f["socket_type"] == SOCK_DGRAM) {
    if (f.contains("peer_name")) {
      auto raw = from_hex(f["peer_name"].get<std::string>());
      std::string name(raw.begin(), raw.end());
      if (!name.empty() && name[0] == '\0') name[0] = '@';
      return cat("a datagram socket sending to ", name.c_str(), ": restored connected to that name again where a "
                 "socket is bound there, else as one whose peer closed (its sends fail)");
    }
    return "a datagram socket connected to another process's: restored as one whose peer closed (its sends fail)";
  }
  return "a socket connected to another process: restored as one that process closed (EOF)";
}

namespace {

bool match(const FdProbe&) { return false; }  // made only from "external" entries (files.cpp)

json dump(CheckpointContext&, FdProbe&, const std::vector<FdProbe>&) { fail("not probed"); }

int set_flags(UniqueFd fd, int flags) {
  if (::fcntl(fd.get(), F_SETFL, flags) != 0) fail_errno("set flags");
  return fd.release();
}

int open_dropped(RestoreContext&, RestoreFiles&, const json& f) {
  int flags = f.at("flags");
  if (f.contains("pipe_end")) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) fail_errno("pipe");
    bool read_end = f["pipe_end"] == "r";
    UniqueFd keep(p[read_end ? 0 : 1]), gone(p[read_end ? 1 : 0]);
    return set_flags(std::move(keep), flags);
  }
  int type = f.at("socket_type");
  if (f.contains("peer_name")) {
    auto name = from_hex(f["peer_name"].get<std::string>());
    UniqueFd s(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (!s) fail_errno("socket");
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (name.size() <= sizeof a.sun_path) {
      std::memcpy(a.sun_path, name.data(), name.size());
      // Nothing bound there now: as below, a socket whose peer has gone.
      if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a),
                    static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size())) == 0)
        return set_flags(std::move(s), flags);
    }
  }
  int sp[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sp) != 0) fail_errno("socketpair");
  UniqueFd keep(sp[0]), gone(sp[1]);
  return set_flags(std::move(keep), flags);
}

}  // namespace

const FileKind kDropped{"dropped", match, dump, open_dropped, nullptr};

}  // namespace thaw::engine
