// Unix sockets the process holds both ends of (socket pairs), with the data
// queued in each direction, each end's shutdown state, buffer sizes and peek
// offset; also unnamed unix sockets that are unconnected or whose peer has
// closed, and unconnected unix sockets bound to an abstract name or to a
// path, listening or not (the CUDA driver keeps one, @cuda-uvmfd-…, through
// its own checkpoint; Python's multiprocessing listens on pymp-*/listener-*).
// A socket bound to a path is bound there again at restore, its file given
// the mode and owner it had; a stale file left there by a process that
// ended is replaced, a live socket there fails the restore. A connection a
// listener accepted is a pair like the others when both its ends are in the
// image, named again. A unix socket whose peer is outside the process is
// "external" (the caller hands a replacement), except a named one (an
// accepted connection: nothing could name a replacement). TCP and UDP
// sockets have kinds of their own (tcp_listen.cpp, tcp_conn.cpp, udp.cpp).
// Every other socket — raw, ICMP, netlink — is refused by name.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/openat2.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>

#include "common/error.h"
#include "common/io.h"
#include "engine/engine.h"
#include "engine/resources/file_kinds.h"
#include "engine/resources/inet.h"
#include "engine/resources/resources.h"
#include "proc/procfs.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

bool match(const FdProbe& p) { return link_is(p, "socket:"); }

// ---------------------------------------------------------------- checkpoint

constexpr int kRcvShutdown = 1, kSendShutdown = 2;  // the kernel's sk_shutdown bits

struct UnixInfo {
  uint32_t peer = 0;      // inode of the peer, 0 if none (or it has closed)
  uint8_t state = 0;      // TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN
  uint8_t shutdown = 0;   // kRcvShutdown | kSendShutdown
  std::string name;
  uint32_t rqueue = 0, wqueue = 0;  // a listener's waiting connections and backlog
  // The file a socket bound to a path was bound at (its inode and the
  // kernel's dev_t of its filesystem); absent for any other socket.
  bool has_vfs = false;
  uint32_t vfs_ino = 0, vfs_dev = 0;
};

UnixInfo unix_diag(uint64_t ino) {
  UniqueFd nl(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!nl) fail_errno("open sock_diag");
  struct {
    nlmsghdr nlh;
    unix_diag_req req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST;
  msg.req.sdiag_family = AF_UNIX;
  msg.req.udiag_states = ~0u;
  msg.req.udiag_ino = static_cast<uint32_t>(ino);
  msg.req.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN | UDIAG_SHOW_VFS;
  msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0u;
  if (::send(nl.get(), &msg, sizeof msg, 0) != sizeof msg) fail_errno("query sock_diag");
  alignas(nlmsghdr) char buf[8192];
  ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
  if (n < 0) fail_errno("read sock_diag");
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (!NLMSG_OK(h, n) || h->nlmsg_type == NLMSG_ERROR)
    fail("sock_diag knows no unix socket ", ino, " (is the process in another network namespace?)");
  auto* m = static_cast<unix_diag_msg*>(NLMSG_DATA(h));
  UnixInfo info;
  info.state = m->udiag_state;
  bool has_shutdown = false;
  int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
  for (auto* a = reinterpret_cast<rtattr*>(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == UNIX_DIAG_PEER) std::memcpy(&info.peer, RTA_DATA(a), 4);
    if (a->rta_type == UNIX_DIAG_NAME) info.name.assign(static_cast<char*>(RTA_DATA(a)), RTA_PAYLOAD(a));
    if (a->rta_type == UNIX_DIAG_RQLEN && RTA_PAYLOAD(a) >= sizeof(unix_diag_rqlen)) {
      auto* q = static_cast<unix_diag_rqlen*>(RTA_DATA(a));
      info.rqueue = q->udiag_rqueue;
      info.wqueue = q->udiag_wqueue;
    }
    if (a->rta_type == UNIX_DIAG_VFS && RTA_PAYLOAD(a) >= sizeof(unix_diag_vfs)) {
      auto* v = static_cast<unix_diag_vfs*>(RTA_DATA(a));
      info.has_vfs = true;
      info.vfs_ino = v->udiag_vfs_ino;
      info.vfs_dev = v->udiag_vfs_dev;
    }
    if (a->rta_type == UNIX_DIAG_SHUTDOWN) {
      info.shutdown = *static_cast<uint8_t*>(RTA_DATA(a));
      has_shutdown = true;
    }
  }
  // Without it a half-closed pair would come back open (kernels before 3.12).
  if (!has_shutdown) fail("sock_diag does not report the shutdown state of unix socket ", ino);
  return info;
}

int sockopt(int fd, int opt, const char* what) {
  int v = 0;
  socklen_t l = sizeof v;
  if (::getsockopt(fd, SOL_SOCKET, opt, &v, &l) != 0) fail_errno("read ", what);
  return v;
}

std::string inet_name(int fd, int type) {
  return cat(type == SOCK_STREAM ? "TCP " : type == SOCK_DGRAM ? "UDP " : "IP ", inet::local_address(fd));
}

std::string family_name(int family) {
  switch (family) {
    case AF_NETLINK: return "netlink";
    case AF_PACKET: return "packet";
    case AF_VSOCK: return "vsock";
    case AF_ALG: return "AF_ALG";
    case AF_BLUETOOTH: return "Bluetooth";
    case AF_XDP: return "XDP";
    default: return cat("address family ", family);
  }
}

// The peek offset belongs to the target's socket: whatever the walk through
// the queue below does to it is undone.
class PeekOffset {
 public:
  explicit PeekOffset(int fd) : fd_(fd), saved_(sockopt(fd, SO_PEEK_OFF, "peek offset")) {}
  ~PeekOffset() { ::setsockopt(fd_, SOL_SOCKET, SO_PEEK_OFF, &saved_, sizeof saved_); }
  PeekOffset(const PeekOffset&) = delete;
  PeekOffset& operator=(const PeekOffset&) = delete;
  void set(int off) {
    if (::setsockopt(fd_, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) != 0) fail_errno("set peek offset");
  }

 private:
  int fd_;
  int saved_;
};

// Fails when a peeked message carried fds; file descriptors in flight
// cannot be put back. Peeking installs them (and a pidfd, with SO_PASSPIDFD)
// in our fd table: they are closed again.
void refuse_passed_fds(msghdr& mh) {
  constexpr int kScmPidfd = 4;  // newer than our headers
  bool fds = false;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || (cm->cmsg_type != SCM_RIGHTS && cm->cmsg_type != kScmPidfd)) continue;
    fds = fds || cm->cmsg_type == SCM_RIGHTS;
    size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    auto* p = reinterpret_cast<int*>(CMSG_DATA(cm));
    for (size_t i = 0; i < n; i++) ::close(p[i]);
  }
  if (fds)
    fail("a queued message carries file descriptors (SCM_RIGHTS); fds in flight are not supported (", kPassingState,
         " until its receiver reads it: checkpoint again then)");
  if (mh.msg_flags & MSG_CTRUNC) fail("a queued message carries more control data than thaw can read");
}

// A pending socket error (a peer that closed with data unread, or that
// connected elsewhere) would be consumed by the first peek below, and cannot
// be set again: poll shows it without consuming it.
void refuse_pending_error(int fd) {
  pollfd pfd{fd, 0, 0};
  if (::poll(&pfd, 1, 0) < 0) fail_errno("poll");
  if (pfd.revents & POLLERR)
    fail("unix socket has a pending error (its peer closed with data unread, or went away); not supported");
}

// One MSG_PEEK into buf; the length, or -1 when the queue holds nothing more.
ssize_t peek(int fd, char* buf, size_t len, int flags = 0) {
  iovec iov{buf, len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253) + CMSG_SPACE(sizeof(ucred)) + 256];
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | flags);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
  if (n < 0) fail_errno("peek at the receive queue");
  refuse_passed_fds(mh);
  return n;
}

// A stream's bytes, in one piece (boundaries between sends mean nothing).
json peek_stream(CheckpointContext& c, int fd) {
  PeekOffset off(fd);
  off.set(0);
  std::string data, buf(1 << 18, '\0');
  for (;;) {
    ssize_t n = peek(fd, buf.data(), buf.size());
    if (n <= 0) break;  // all read, or the peer shut down its side
    data.append(buf.data(), n);
  }
  json msgs = json::array();
  if (!data.empty()) msgs.push_back(store_bytes(c, data));
  return msgs;
}

// The next datagram whole, or false at the end of the queue. Its length is
// asked first (MSG_TRUNC with no room: the peek offset does not move), then
// it is read; an empty datagram is seen once only, so it is not read twice.
bool peek_datagram(int fd, std::string& out) {
  ssize_t len = peek(fd, nullptr, 0, MSG_TRUNC);
  if (len < 0) return false;
  out.assign(len, '\0');
  if (len == 0) return true;
  ssize_t n = peek(fd, out.data(), out.size());
  if (n != len) fail("datagram of ", len, " bytes changed while peeking at it");
  return true;
}

// Datagrams one by one, boundaries and empty ones kept. The head is peeked
// with no offset (an empty head that was peeked before is only seen that
// way); the rest by walking the peek offset past it. A SOCK_SEQPACKET socket
// whose peer shut down writing reports the end of its queue as an empty
// message: there an empty message ends the walk (check_all_seen notices
// if it was a real one).
json peek_datagrams(CheckpointContext& c, int fd, bool empty_ends, std::vector<size_t>& sizes) {
  PeekOffset off(fd);
  off.set(-1);
  json msgs = json::array();
  std::string d;
  for (bool head = true; peek_datagram(fd, d); head = false) {
    if (empty_ends && d.empty()) break;
    msgs.push_back(store_bytes(c, d));
    sizes.push_back(d.size());
    if (head) off.set(static_cast<int>(d.size()));
  }
  return msgs;
}

// What the kernel charges a sender for queued datagrams of these sizes,
// measured on a pair of our own (the charge per datagram depends only on its
// size, on one kernel).
int charged_for(int type, const std::vector<size_t>& sizes) {
  int sv[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) != 0) fail_errno("socketpair");
  UniqueFd a(sv[0]), b(sv[1]);
  int wide = 128 << 20;
  if (::setsockopt(a.get(), SOL_SOCKET, SO_SNDBUFFORCE, &wide, sizeof wide) != 0)
    ::setsockopt(a.get(), SOL_SOCKET, SO_SNDBUF, &wide, sizeof wide);
  std::string zeros;
  for (size_t n : sizes) {
    zeros.resize(n);
    if (::send(a.get(), zeros.data(), n, MSG_DONTWAIT) != static_cast<ssize_t>(n))
      fail_errno("measure the cost of a ", n, "-byte datagram");
  }
  int outq = 0;
  if (::ioctl(a.get(), SIOCOUTQ, &outq) != 0) fail_errno("SIOCOUTQ");
  return outq;
}

// An empty datagram is shown to a peek at an offset only once: one that an
// earlier checkpoint peeked at is skipped by the walk above. The peer is
// still charged for it, so the walk must account for all the peer has queued.
void check_all_seen(int type, const std::vector<size_t>& sizes, const FdProbe& peer) {
  int queued = 0;
  if (::ioctl(peer.dup.get(), SIOCOUTQ, &queued) != 0) fail_errno(peer.where(), ": SIOCOUTQ");
  int seen = charged_for(type, sizes);
  if (queued > seen)
    fail("its queue holds messages that cannot be read back (", queued - seen,
         " bytes charged to the peer are unaccounted for: empty messages a peek no longer shows, "
         "after an earlier checkpoint peeked at them or behind a shutdown, or messages the peer "
         "sent to other sockets); not supported");
}

// Abstract names start with (and may hold, or end in) NULs: shown with '@',
// as ss shows them.
std::string shown_name(std::string name) {
  if (name.empty() || name[0] != '\0') {
    name.resize(std::strlen(name.c_str()));
    return name;
  }
  while (name.size() > 1 && name.back() == '\0') name.pop_back();
  std::replace(name.begin(), name.end(), '\0', '@');
  return name;
}

// What to do about a connected unix socket bound to a path: a connection
// its listener accepted. Python's multiprocessing listens on one
// (<tmp>/pymp-*/listener-*) in any process that hands a file descriptor to
// another process it did not start (its resource sharer; torch DataLoader
// workers do for every batch they send): the listener comes back, a
// connection it accepted lives only while it hands one fd over.
std::string connected_advice(const std::string& path) {
  std::string dir = path.substr(0, path.rfind('/'));
  if (dir.substr(dir.rfind('/') + 1).rfind("pymp-", 0) == 0 && path.substr(path.rfind('/') + 1).rfind("listener-", 0) == 0)
    return cat("it is a connection to the listener of Python multiprocessing's resource sharer, which lasts while "
               "it hands a file descriptor to another process (torch DataLoader workers do for each batch): ",
               kPassingState, ", checkpoint again once that is done");
  return "close the connection before the checkpoint (the listener itself is supported)";
}

// Whether `st`, lstat'ed in a directory on device `dir_dev`, is the file a
// socket was bound at: sock_diag's inode and device (the kernel's dev_t,
// 12 bits of major and 20 of minor). That device is the filesystem the
// socket was bound through, which stat shows for the file itself, but in
// an overlay whose layers are on different filesystems only for its
// directories (a file shows the device of its layer).
bool is_bound_file(const struct stat& st, dev_t dir_dev, uint32_t vfs_ino, uint32_t vfs_dev) {
  dev_t dev = makedev(vfs_dev >> 20, vfs_dev & 0xfffff);
  return S_ISSOCK(st.st_mode) && st.st_ino == vfs_ino && (st.st_dev == dev || dir_dev == dev);
}

// A socket bound to a path: its name, as the process gave it to bind, and
// its file as the process sees it (through its root: another mount
// namespace's /tmp is its own). A file that is no longer the one the
// socket was bound at (removed, or replaced by another socket's) is
// recorded as unlinked: a restore binds the name again (getsockname still
// shows it) and removes the file at once. A relative name was resolved
// from the working directory the process had when it bound, which nothing
// records: it is taken to be the one it has now only where that leads to
// the socket's file (bind and chdir back, or never moved).
json path_file(const FdProbe& p, const UnixInfo& u, const std::string& name) {
  std::string path = name;
  json b;
  if (name[0] != '/') {
    std::string cwd = proc::read_link(cat("/proc/", p.pid, "/cwd"));
    path = cat(cwd == "/" ? "" : cwd, "/", name);
    b["cwd"] = cwd;
  }
  b["path"] = path;
  std::string dir = path.substr(0, path.rfind('/'));
  // Resolved in the process's root: through /proc/<pid>/root as a path an
  // absolute symbolic link (/var/run -> /run) would lead to thaw's own
  // directory, not to the one mounted in the process's mount namespace.
  UniqueFd root(::open(cat("/proc/", p.pid, "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) fail_errno("open the root of process ", p.pid);
  auto stat_in_root = [&](const std::string& at, uint64_t flags, struct stat* st) {
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC | flags;
    how.resolve = RESOLVE_IN_ROOT;
    UniqueFd fd(static_cast<int>(::syscall(SYS_openat2, root.get(), at.c_str(), &how, sizeof how)));
    if (!fd && errno == ENOSYS)  // before Linux 5.6: as a path, as it was
      fd.reset(::open(cat("/proc/", p.pid, "/root", at).c_str(), static_cast<int>(how.flags)));
    return fd && ::fstat(fd.get(), st) == 0;
  };
  struct stat st, ds;
  bool has_dir = stat_in_root(dir.empty() ? "/" : dir, O_DIRECTORY, &ds);
  bool here = u.has_vfs && stat_in_root(path, O_NOFOLLOW, &st) &&
              is_bound_file(st, has_dir ? ds.st_dev : st.st_dev, u.vfs_ino, u.vfs_dev);
  if (!here && name[0] != '/')
    fail("unix socket bound to the relative path ", name, ", which the working directory the process has now (",
         b["cwd"].get<std::string>(), ") does not lead to: it changed directory since it bound it, or the file was "
         "removed; not supported (bind it to an absolute path)");
  b["unlinked"] = !here;
  if (here) {
    b["mode"] = st.st_mode & 07777;
    b["uid"] = st.st_uid;
    b["gid"] = st.st_gid;
  }
  if (has_dir)
    b["dir"] = {{"mode", ds.st_mode & 07777}, {"uid", ds.st_uid}, {"gid", ds.st_gid}};
  return b;
}

json dump(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>& all) {
  int fd = p.dup.get();
  int family = sockopt(fd, SO_DOMAIN, "address family"), type = sockopt(fd, SO_TYPE, "socket type");
  if (family == AF_INET || family == AF_INET6) {
    // TCP and UDP have kinds of their own (tcp_listen.cpp, tcp_conn.cpp,
    // udp.cpp); these are the others.
    std::string name = inet_name(fd, type);
    int proto = sockopt(fd, SO_PROTOCOL, "protocol");
    std::string what = type == SOCK_RAW                                     ? "raw IP sockets"
                       : proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6 ? "ICMP (ping) sockets"
                       : proto == IPPROTO_UDPLITE                          ? "UDP-Lite sockets"
                                                                           : cat("sockets of IP protocol ", proto);
    fail(name, ": ", what, " are not supported (TCP and UDP sockets are)");
  }
  if (family != AF_UNIX) fail(family_name(family), " sockets are not supported");
  uint64_t ino = link_inode(p.link);
  UnixInfo u = unix_diag(ino);
  const FdProbe* peer = nullptr;
  if (u.peer != 0)
    for (const auto& o : all)
      if (link_is(o, "socket:") && link_inode(o.link) == u.peer) peer = &o;
  json bound;
  bool connected = u.peer != 0 || (u.state != TCP_CLOSE && u.state != TCP_LISTEN);
  if (!u.name.empty() && connected) {
    // Named and connected: the accepted end of a connection (accept gives
    // it its listener's name), or a client that bound a name of its own.
    // Both ends in the image make a pair like any other, named again.
    std::string shown = shown_name(u.name);
    if (u.peer != 0 && !peer)
      fail("unix socket bound to ", shown, " is connected to a process outside the checkpoint (a connection its "
           "listener accepted, or a client that bound a name); connections between processes of the checkpoint "
           "are supported: ", u.name[0] != '\0' ? connected_advice(shown) : "close the connection before the checkpoint");
    if (u.name[0] == '\0')
      c.notes.push_back(cat(p.where(), ": a connection on the abstract name ", shown, " comes back without its name "
                            "(getsockname shows none): that name belongs to its listener"));
  } else if (!u.name.empty()) {
    std::string shown = shown_name(u.name);
    bool path = u.name[0] != '\0';
    if (u.state == TCP_LISTEN && u.rqueue != 0)
      fail("listening unix socket ", shown, " has ", u.rqueue, " connection(s) waiting to be accepted; not "
           "supported (", kPassingState, " while its process accepts them: checkpoint again then)");
    bound = {{"name", to_hex(u.name.data(), u.name.size())}, {"listen", u.state == TCP_LISTEN}, {"backlog", u.wqueue}};
    if (path) bound.update(path_file(p, u, shown));
  }
  json f{{"flags", p.flags}, {"ino", ino}, {"type", type}, {"shutdown", u.shutdown}};
  if (!bound.is_null()) f["bound"] = bound;
  if (connected && !u.name.empty()) f["name"] = to_hex(u.name.data(), u.name.size());
  if (u.peer != 0) {
    if (!peer) {
      // What a checkpoint that drops outside connections (dropped.cpp)
      // needs to make one like it: the type, and where a datagram socket
      // sends (it can connect there again).
      json ext{{"kind", "external"}, {"desc", p.link}, {"socket_type", type}};
      if (type == SOCK_DGRAM) {
        std::string to;
        try {
          to = unix_diag(u.peer).name;
        } catch (const Error&) {
          // In another network namespace: no address to connect to again.
        }
        if (!to.empty()) ext["peer_name"] = to_hex(to.data(), to.size());
      }
      return ext;
    }
    // A pair is what restore makes: a datagram peer that connected elsewhere since is not one.
    if (unix_diag(u.peer).peer != ino)
      fail("unix socket connected to socket:[", u.peer, "], which is connected to another socket; not supported");
    f["peer"] = u.peer;
  } else if (u.state == TCP_ESTABLISHED) {
    f["peer_closed"] = true;
  } else if (u.state != TCP_CLOSE && !(u.state == TCP_LISTEN && !bound.is_null())) {
    fail("unix socket in state ", int(u.state), " without a peer is not supported");
  }
  refuse_pending_error(fd);
  f["sndbuf"] = sockopt(fd, SO_SNDBUF, "send buffer size");
  f["rcvbuf"] = sockopt(fd, SO_RCVBUF, "receive buffer size");
  f["passcred"] = sockopt(fd, SO_PASSCRED, "SO_PASSCRED") != 0;
  f["peek_off"] = sockopt(fd, SO_PEEK_OFF, "peek offset");
  if (u.state == TCP_LISTEN || (type != SOCK_DGRAM && u.state == TCP_CLOSE && !peer)) {
    // A listener holds connections, not data; a stream or seqpacket socket
    // never connected has no queue (and refuses a peek with EINVAL).
    f["queue"] = json::array();
  } else if (type == SOCK_STREAM) {
    f["queue"] = peek_stream(c, fd);
  } else {
    std::vector<size_t> sizes;
    bool empty_ends = type == SOCK_SEQPACKET && (u.shutdown & kRcvShutdown);
    f["queue"] = peek_datagrams(c, fd, empty_ends, sizes);
    if (peer) check_all_seen(type, sizes, *peer);
  }
  // Their senders are gone or outside: nothing could send it again.
  if (!bound.is_null() && !f["queue"].empty())
    fail("unix socket bound to ", shown_name(u.name), " has unread data queued; not supported");
  return f;
}

// ------------------------------------------------------------------ restore

std::string name_of(const json& f) { return cat("socket:[", f["ino"].get<uint64_t>(), "]"); }

void set_buffer(int fd, int force_opt, int opt, int bytes, const char* what) {
  // The kernel doubles what it is given (and reports the doubled value).
  int v = bytes / 2;
  if (::setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof v) == 0) return;
  if (::setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v) != 0) fail_errno("set ", what, " to ", bytes);
}

// What `f`'s end had not read yet was sent by its peer: `sender` sends it
// again. The sender's buffer may have been larger than it is now: it is
// opened wide for the time being (finish() sets the recorded size).
void requeue(RestoreContext& r, int sender, const json& f) {
  if (f["queue"].empty()) return;
  set_buffer(sender, SO_SNDBUFFORCE, SO_SNDBUF, 256 << 20, "send buffer");
  bool stream = f["type"] == SOCK_STREAM;
  for (const auto& m : f["queue"]) {
    std::string data = load_bytes(r, m);
    size_t done = 0;
    do {
      ssize_t n = ::send(sender, data.data() + done, data.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) fail_errno(name_of(f), ": requeue ", data.size() - done, " bytes");
      if (!stream && size_t(n) != data.size()) fail(name_of(f), ": datagram of ", data.size(), " bytes cut short");
      done += n;
    } while (done < data.size());
  }
}

// The state that must come after the queues are full: a shut-down end takes
// no more data.
void finish(int fd, const json& f) {
  std::string name = name_of(f);
  set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, f["sndbuf"], "send buffer");
  set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, f["rcvbuf"], "receive buffer");
  int passcred = f["passcred"].get<bool>() ? 1 : 0;
  if (passcred && ::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &passcred, sizeof passcred) != 0)
    fail_errno(name, ": set SO_PASSCRED");
  int off = f["peek_off"];
  if (off >= 0 && ::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off) != 0)
    fail_errno(name, ": set peek offset");
  int bits = f["shutdown"];
  int how = bits == (kRcvShutdown | kSendShutdown) ? SHUT_RDWR : bits == kSendShutdown ? SHUT_WR : SHUT_RD;
  if (bits && ::shutdown(fd, how) != 0) fail_errno(name, ": shut down");
}

std::pair<UniqueFd, UniqueFd> new_pair(const json& f) {
  int sv[2];
  if (::socketpair(AF_UNIX, f["type"].get<int>() | SOCK_CLOEXEC, 0, sv) != 0) fail_errno(name_of(f), ": socketpair");
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

std::string bound_name(const json& f, const std::string& hex) {
  if (hex.size() % 2 || hex.find_first_not_of("0123456789abcdef") != std::string::npos)
    fail(name_of(f), ": malformed bound name '", hex, "' in the image");
  auto bytes = from_hex(hex);
  return std::string(bytes.begin(), bytes.end());
}

// A connected socket's own name: its listener's (accept gives a connection
// the name of the socket it was accepted on) or one it bound itself. It is
// bound again where nobody can reach it or be disturbed: in a child whose
// root is an empty tmpfs mounted nowhere (fsmount). The socket keeps the
// name (getsockname, and its peer's getpeername, show it) and the process's
// filesystem is not touched: the listener restored at that path keeps its
// file. An abstract name is left out (it would take the listener's; dump
// noted it).
void name_connected(int fd, const json& f) {
  if (!f.contains("name")) return;
  std::string name = bound_name(f, f["name"].get<std::string>());
  if (name.empty() || name[0] == '\0') return;
  // Bound without the NUL the kernel reports after a path (past sun_path
  // for one of all 108 bytes), as bind_path does.
  std::string given = name.substr(0, name.find('\0'));
  if (given.size() > sizeof(sockaddr_un::sun_path)) fail(name_of(f), ": bound name of ", given.size(), " bytes");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, given.data(), given.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + given.size());
  std::vector<std::string> dirs;  // its directories, made in the tmpfs
  for (size_t i = given.find('/', 1); i != std::string::npos; i = given.find('/', i + 1)) dirs.push_back(given.substr(0, i));
  int sv[2];
  if (::pipe2(sv, O_CLOEXEC) != 0) fail_errno(name_of(f), ": pipe");
  UniqueFd answer(sv[0]), tell(sv[1]);
  // Only system calls in the child: a runtime opens a template copy's files
  // in a process with other threads.
  pid_t kid = ::fork();
  if (kid < 0) fail_errno(name_of(f), ": fork to bind its name ", given);
  if (kid == 0) {
    // System calls, not glibc's wrappers (2.36): the static build runs on
    // machines with an older glibc (build-static.sh).
    int err = 0, mnt = -1;
    int fs = static_cast<int>(::syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC));
    if (fs < 0 || ::syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "size", "64k", 0) != 0 ||
        ::syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0 ||
        (mnt = static_cast<int>(::syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                                          MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC))) < 0 ||
        ::fchdir(mnt) != 0 || ::chroot(".") != 0)
      err = errno;
    for (const auto& d : dirs)
      if (!err && ::mkdir(d.c_str(), 0700) != 0 && errno != EEXIST) err = errno;
    if (!err && ::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0) err = errno;
    (void)!::write(tell.get(), &err, sizeof err);
    ::_exit(0);
  }
  tell.reset();
  int err = EPIPE;
  ssize_t n;
  do n = ::read(answer.get(), &err, sizeof err);
  while (n < 0 && errno == EINTR);
  ::waitpid(kid, nullptr, 0);
  if (n != sizeof err) err = ECHILD;
  if (err != 0) {
    errno = err;
    fail_errno(name_of(f), ": name the connection ", given, " again");
  }
}

// The second end of a pair: both queues get filled before either end is
// shut down.
UniqueFd open_second_end(RestoreContext& r, PendingSocket&& pending, const json& f) {
  UniqueFd self = std::move(pending.end);
  name_connected(self.get(), f);
  requeue(r, pending.first.get(), f);
  finish(pending.first.get(), *pending.first_f);
  finish(self.get(), f);
  return self;
}

UniqueFd open_first_end(RestoreContext& r, RestoreFiles& rf, const json& f) {
  auto [self, other] = new_pair(f);
  name_connected(self.get(), f);
  requeue(r, other.get(), f);
  UniqueFd copy(::fcntl(self.get(), F_DUPFD_CLOEXEC, 0));
  if (!copy) fail_errno(name_of(f), ": copy");
  rf.sockets[f["peer"].get<uint64_t>()] = PendingSocket{std::move(other), std::move(copy), &f};
  return std::move(self);
}

// A socket whose peer closed: a pair whose other end closes once the data
// it sent is queued (the kernel then marks this end the same way).
UniqueFd open_orphan(RestoreContext& r, const json& f) {
  auto [self, other] = new_pair(f);
  name_connected(self.get(), f);
  requeue(r, other.get(), f);
  other.reset();
  finish(self.get(), f);
  return std::move(self);
}

UniqueFd open_unconnected(const json& f) {
  UniqueFd self(::socket(AF_UNIX, f["type"].get<int>() | SOCK_CLOEXEC, 0));
  if (!self) fail_errno(name_of(f), ": socket");
  finish(self.get(), f);
  return self;
}

// The CUDA driver names its socket after the process's pid namespace and
// pid: "\0cuda-uvmfd-<pid ns inode>-<pid>". Another restore of the same
// image may hold the old name (abstract names are per network namespace,
// and restores share the host's); this process has a pid namespace of its
// own, so the name the driver would give it here is free.
std::optional<std::string> cuda_name_here(const std::string& name) {
  static const std::string kPrefix = std::string(1, '\0') + "cuda-uvmfd-";
  if (name.rfind(kPrefix, 0) != 0) return std::nullopt;
  struct stat st;
  if (::stat("/proc/self/ns/pid", &st) != 0) return std::nullopt;
  return cat(kPrefix, st.st_ino, "-", ::getpid());
}

bool bind_name(int fd, const std::string& name) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, name.data(), name.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  return ::bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0;
}

// bind_name from directory `dir` (none: from here), for a relative name;
// the working directory is put back (restore_process_early sets the
// process's own later).
bool bind_from(int fd, const std::string& name, const std::string& dir) {
  if (dir.empty()) return bind_name(fd, name);
  UniqueFd here(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!here) fail_errno("open the working directory");
  if (::chdir(dir.c_str()) != 0) fail_errno("change to ", dir, ", the directory its name is relative to");
  bool ok = bind_name(fd, name);
  int err = errno;
  if (::fchdir(here.get()) != 0) fail_errno("change back to the working directory");
  errno = err;
  return ok;
}

// What a restore made in the filesystem for one socket, removed again if
// opening that socket fails. A later failure is thaw's to clean up: it
// removes what the status pipe's "M" lines name (report_made).
struct MadeHere {
  std::optional<std::string> file, dir;
  ~MadeHere() {
    if (file) ::unlink(file->c_str());
    if (dir) ::rmdir(dir->c_str());
  }
  void keep() { file.reset(), dir.reset(); }
};

// Whether no socket is bound at the socket file `base` of directory `dir`
// any more (its process ended without removing it). A datagram connect
// asks the kernel without disturbing whoever is there: it is refused
// (ECONNREFUSED) only when no socket holds the file, whereas a stream
// connect is also refused by a stream socket bound there that does not
// listen; a socket of another type answers EPROTOTYPE, one connected
// elsewhere EPERM. Asked from the directory: the whole path may not fit in
// sun_path (a relative name's, or one of all 108 bytes), nor may
// /proc/self/fd/N/base.
bool stale_socket_file(int dir, const std::string& base) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!probe) fail_errno("socket");
  sockaddr_un a{};
  if (base.size() > sizeof a.sun_path) fail("socket file name too long to probe: ", base);
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, base.data(), base.size());
  UniqueFd here(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!here) fail_errno("open the working directory");
  if (::fchdir(dir) != 0) fail_errno("change to the socket file's directory");
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + base.size());
  bool stale = ::connect(probe.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 && errno == ECONNREFUSED;
  if (::fchdir(here.get()) != 0) fail_errno("change back to the working directory");
  return stale;
}

// The directory a socket's file goes in, open. One that is gone is made
// again, only the last component: multiprocessing removes its
// <tmp>/pymp-* directory (mkdtemp's, 0700) when the original exits,
// before its restore; its owner and mode are given through its fd. One
// there is refused if another user could replace the socket in it with
// one of their own and take its clients: a directory of anyone but root
// and the directory's owner at the checkpoint (anyone can put one in /tmp
// in place of a removed pymp-* directory); or if a symbolic link on the
// way, not root's, leads to a directory not its owner's.
UniqueFd socket_dir(const RestoreContext& r, const std::string& what, const std::string& dir, const json& b,
                    MadeHere& made) {
  json d = b.value("dir", json{{"mode", 0700}});
  auto trusted = [&](uid_t uid) { return uid == 0 || !d.contains("uid") || uid == d["uid"].get<uid_t>(); };
  // Symbolic links on the way that are not root's: each must lead to a
  // directory of its owner's, where they could have bound the socket (or
  // made its directory) themselves; one that leads to root's or another
  // user's would have root do it where whoever owns the link chooses.
  std::vector<std::pair<std::string, uid_t>> links;
  for (size_t i = 1; i <= dir.size(); i++) {
    struct stat ls;
    std::string at = dir.substr(0, i);
    if ((i == dir.size() || dir[i] == '/') && ::lstat(at.c_str(), &ls) == 0 && S_ISLNK(ls.st_mode) && ls.st_uid != 0)
      links.push_back({at, ls.st_uid});
  }
  auto check_links = [&](const std::string& to, uid_t owner) {
    for (const auto& [at, uid] : links) {
      if (owner == uid) continue;
      std::string target;
      try {
        target = proc::read_link(at);
      } catch (const Error&) {
        target = "?";
      }
      fail(what, ": its directory ", dir, " is reached through ", at, ", a symbolic link of uid ", uid, " (to ",
           target, "), to ", to, ", a directory of uid ", owner, "'s: not followed, whoever owns the link would "
           "choose where the socket goes; remove it and restore again");
    }
  };
  struct stat st;
  bool made_here = false;
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) fail_errno(what, ": stat its directory ", dir);
    std::string parent = dir.substr(0, dir.rfind('/'));
    if (parent.empty()) parent = "/";
    if (!links.empty() && ::stat(parent.c_str(), &st) == 0) check_links(parent, st.st_uid);
    made_here = ::mkdir(dir.c_str(), 0700) == 0;
    // Another restore of the image, or another process of this one's
    // tree, may have made it meanwhile: then it is theirs, there like any.
    if (!made_here && errno != EEXIST)
      fail_errno(what, ": make its directory ", dir, " again (it is gone; thaw makes only the last component "
                 "of the path again)");
    if (!made_here && ::lstat(dir.c_str(), &st) != 0) fail_errno(what, ": stat its directory ", dir);
  }
  if (made_here) {
    made.dir = dir;
    report_made(r, dir);
    // Root's until it is given its owner: nobody else can have put another
    // in its place in a sticky directory such as /tmp. What is done to it
    // then is done through its fd.
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) fail_errno(what, ": open its directory ", dir, ", just made again");
    if (::fchmod(fd.get(), d["mode"].get<mode_t>()) != 0) fail_errno(what, ": give its directory ", dir, " its mode again");
    if (d.contains("uid") && ::fchown(fd.get(), d["uid"].get<uid_t>(), d["gid"].get<gid_t>()) != 0)
      fail_errno(what, ": give its directory ", dir, " its owner again");
    return fd;
  }
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) fail_errno(what, ": open its directory ", dir);
  if (::fstat(fd.get(), &st) != 0) fail_errno(what, ": stat its directory ", dir);
  check_links(dir, st.st_uid);
  if (!trusted(st.st_uid))
    fail(what, ": its directory ", dir, " is uid ", st.st_uid, "'s, not uid ", d["uid"].get<uid_t>(),
         "'s as at the checkpoint: whoever owns it could replace the socket with one of their own; not bound "
         "there (remove it, or give it its owner again, and restore again)");
  return fd;
}

// Two restores of one image that both found the socket file stale would
// both remove it, the second the first's own new file: both would succeed,
// the first unreachable at its path. The directory is locked (flock) from
// the check to the bind, until its fd closes. Nothing else holds such a
// lock for long (a restore lets go at once), nor makes a restore wait for
// good.
void lock_dir(int dir, const std::string& what, const std::string& path) {
  constexpr int kTries = 500, kPauseUs = 10'000;  // 5 s
  for (int i = 0;; i++) {
    if (::flock(dir, LOCK_EX | LOCK_NB) == 0) return;
    if (errno != EWOULDBLOCK && errno != EINTR) fail_errno(what, ": lock its directory ", path);
    if (i == kTries)
      fail(what, ": its directory ", path, " is locked (flock) by another process, for ", kTries * kPauseUs / 1'000'000,
           " s now (a restore binding a socket there lets go at once); restore again once it lets go");
    ::usleep(kPauseUs);
  }
}

// The file the bind of `sock` just made as `base` in `dir`, open
// (O_PATH): its owner and mode are given through it, never through its
// name, which the directory's owner could have turned into a link to
// another file meanwhile.
UniqueFd bound_file(int sock, int dir, const std::string& base, const std::string& what) {
  struct stat ss, st, ds;
  if (::fstat(sock, &ss) != 0) fail_errno(what, ": stat the socket");
  UnixInfo u = with_context(what, [&] { return unix_diag(ss.st_ino); });
  UniqueFd file(::openat(dir, base.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!file || ::fstat(file.get(), &st) != 0 || ::fstat(dir, &ds) != 0 || !u.has_vfs ||
      !is_bound_file(st, ds.st_dev, u.vfs_ino, u.vfs_dev))
    fail(what, ": the file its bind made is not there any more (replaced or removed at once)");
  return file;
}

// Bound at its path again. restore_files runs in the restored process's
// mount namespace, where the path leads where it led for the original. A
// socket file there is taken over only if it is stale; a live socket there
// (the original, or another restore) fails the restore, as a TCP port in
// use does. A directory that is gone is made again (socket_dir).
void bind_path(const RestoreContext& r, int fd, const json& f, const std::string& name, MadeHere& made) {
  const json& b = f["bound"];
  std::string path = b["path"].get<std::string>();
  std::string what = cat("unix socket bound to ", path);  // after "fd 3 (socket:[123]): "
  // A relative name is bound from the directory it was bound from.
  std::string cwd = b.value("cwd", std::string());
  // The kernel reports a path with the NUL it ends it with, past sun_path
  // for one of all 108 bytes: bound again without it.
  std::string given = name.substr(0, name.find('\0'));
  if (path.empty() || path[0] != '/' || given.size() > sizeof(sockaddr_un::sun_path) || given.empty() ||
      (given[0] == '/' ? given != path : cwd.empty() || cat(cwd == "/" ? "" : cwd, "/", given) != path))
    fail(what, ": its bound name in the image is not its path");
  bool unlinked = b["unlinked"].get<bool>();
  std::string dir = path.substr(0, path.rfind('/')), base = path.substr(path.rfind('/') + 1);
  UniqueFd dirfd = socket_dir(r, what, dir.empty() ? "/" : dir, b, made);
  lock_dir(dirfd.get(), what, dir.empty() ? "/" : dir);
  struct stat st;
  if (::fstatat(dirfd.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    std::string why = unlinked ? " (the original's own file there had been removed or replaced before the checkpoint, "
                                 "but its name must be free to be bound again)"
                               : "";
    if (!S_ISSOCK(st.st_mode))
      fail(what, ": what is there now is not a socket", why, "; move it away and restore again");
    if (!with_context(cat(what, ": probe its file"), [&] { return stale_socket_file(dirfd.get(), base); }))
      fail(what, ": ", std::strerror(EADDRINUSE), ": another socket is bound there and in use (the original still "
           "running, or another restore of this image?)", why, "; stop it, or restore once it is gone");
    // The file the original left when it ended: nobody answers there.
    if (::unlinkat(dirfd.get(), base.c_str(), 0) != 0 && errno != ENOENT)
      fail_errno(what, ": remove the stale socket file the original left there");
  } else if (errno != ENOENT) {
    fail_errno(what, ": stat ", path);
  }
  if (!bind_from(fd, given, cwd))
    fail_errno(what, ": bind again", errno == EADDRINUSE ? " (another socket was bound there meanwhile)" : "");
  UniqueFd file = bound_file(fd, dirfd.get(), base, what);
  made.file = path;  // only once it is known to be ours
  if (unlinked) {
    // Its name, as getsockname shows it, without the file nobody could
    // reach it through any more.
    if (::unlinkat(dirfd.get(), base.c_str(), 0) != 0)
      fail_errno(what, ": remove its file again (it was gone at the checkpoint)");
    made.file.reset();
    if (made.dir && ::rmdir(dir.c_str()) == 0) made.dir.reset();
    return;
  }
  report_made(r, path);
  if (::fchownat(file.get(), "", b["uid"].get<uid_t>(), b["gid"].get<gid_t>(), AT_EMPTY_PATH) != 0)
    fail_errno(what, ": give its file its owner again");
  // chmod has no form for an O_PATH fd but through /proc (fchmodat2 is newer).
  if (::chmod(cat("/proc/self/fd/", file.get()).c_str(), b["mode"].get<mode_t>()) != 0)
    fail_errno(what, ": give its file its mode again");
}

// Bound to the same name again (an abstract one in this network
// namespace, a path in this mount namespace), and listening again if it
// was; shut down only after that, as finish() does.
UniqueFd open_bound(const RestoreContext& r, const json& f) {
  const json& b = f["bound"];
  std::string name = bound_name(f, b["name"].get<std::string>());
  bool path = b.contains("path");
  if (!path && (name.size() < 2 || name[0] != '\0' || name.size() > sizeof(sockaddr_un::sun_path)))
    fail(name_of(f), ": bound name of ", name.size(), " bytes in the image is not an abstract name");
  UniqueFd self(::socket(AF_UNIX, f["type"].get<int>() | SOCK_CLOEXEC, 0));
  if (!self) fail_errno(name_of(f), ": socket");
  MadeHere made;
  if (path) {
    bind_path(r, self.get(), f, name, made);
  } else if (!bind_name(self.get(), name)) {
    int err = errno;
    auto other = err == EADDRINUSE ? cuda_name_here(name) : std::nullopt;
    if (!other || !bind_name(self.get(), *other)) {
      errno = err;
      fail_errno(name_of(f), ": bind to ", shown_name(name), " again",
                 err == EADDRINUSE ? " (another process — the original, or another restore of this image in "
                                     "the same network namespace? — is bound there)"
                                   : "");
    }
  }
  if (b["listen"].get<bool>() && ::listen(self.get(), b["backlog"].get<int>()) != 0)
    fail_errno(name_of(f), ": listen on ", shown_name(name));
  finish(self.get(), f);
  made.keep();
  return self;
}

int open_socket(RestoreContext& r, RestoreFiles& rf, const json& f) {
  UniqueFd self;
  auto it = rf.sockets.find(f["ino"].get<uint64_t>());
  if (it != rf.sockets.end()) {
    PendingSocket pending = std::move(it->second);
    rf.sockets.erase(it);
    self = open_second_end(r, std::move(pending), f);
  } else if (f.contains("peer")) {
    self = open_first_end(r, rf, f);
  } else if (f.contains("bound")) {
    self = open_bound(r, f);
  } else if (f.value("peer_closed", false)) {
    self = open_orphan(r, f);
  } else {
    self = open_unconnected(f);
  }
  if (::fcntl(self.get(), F_SETFL, f["flags"].get<int>()) != 0) fail_errno(name_of(f), ": set flags");
  return self.release();
}

}  // namespace

const FileKind kUnixSocket{"unix", match, dump, open_socket, nullptr};

}  // namespace thaw::engine
