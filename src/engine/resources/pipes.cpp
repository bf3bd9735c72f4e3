// Pipes with both ends inside the process: the pipe is recreated with its
// capacity and its unread data. (A pipe with one end outside is "external",
// see files.cpp.)
#include <fcntl.h>
#include <unistd.h>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/file_kinds.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

bool match(const FdProbe& p) { return link_is(p, "pipe:"); }

json dump(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>&) {
  json f{{"ino", link_inode(p.link)}, {"flags", p.flags}};
  f["end"] = (p.flags & O_ACCMODE) == O_RDONLY ? "r" : "w";
  f["capacity"] = ::fcntl(p.dup.get(), F_GETPIPE_SZ);
  if (f["end"] == "r") {
    // tee() copies the buffered data into our own pipe without consuming it.
    int pr[2];
    if (::pipe2(pr, O_NONBLOCK | O_CLOEXEC) != 0) fail_errno("pipe");
    UniqueFd r(pr[0]), w(pr[1]);
    int cap = f["capacity"];
    if (::fcntl(w.get(), F_SETPIPE_SZ, cap) < 0) fail_errno("size pipe");
    std::string data;
    ssize_t n = ::tee(p.dup.get(), w.get(), cap, SPLICE_F_NONBLOCK);
    if (n > 0) {
      data.resize(n);
      if (::read(r.get(), data.data(), n) != n) fail_errno("read pipe data");
    }
    f["data"] = store_bytes(c, data);
  }
  return f;
}

int open_pipe(RestoreContext& r, RestoreFiles& rf, const json& f) {
  uint64_t ino = f["ino"];
  auto it = rf.pipes.find(ino);
  if (it == rf.pipes.end()) {
    int pr[2];
    if (::pipe2(pr, O_CLOEXEC) != 0) fail_errno("pipe:[", ino, "]: create");
    it = rf.pipes.emplace(ino, std::make_pair(UniqueFd(pr[0]), UniqueFd(pr[1]))).first;
    if (f.contains("capacity")) ::fcntl(pr[1], F_SETPIPE_SZ, f["capacity"].get<int>());
  }
  bool read_end = f["end"] == "r";
  if (read_end && f.contains("data")) {
    std::string data = load_bytes(r, f["data"]);
    if (!data.empty()) write_all(it->second.second.get(), data.data(), data.size(), cat("pipe:[", ino, "]"));
  }
  // Our copies of both ends stay in `rf` until every fd is installed. The
  // first description of an end without O_LARGEFILE is pipe2's own (a dup: the copy in `rf`
  // is closed later); any other gets an open of its own (a dup would share
  // flags), which, as open() does on x86-64, adds O_LARGEFILE: right for an
  // end opened through /proc, one flag more for another pipe2 end.
  int src = (read_end ? it->second.first : it->second.second).get();
  int flags = f["flags"].get<int>();
  bool own = !(flags & O_LARGEFILE) && rf.pipe_ends_given.insert({ino, read_end}).second;
  int fd = own ? ::fcntl(src, F_DUPFD_CLOEXEC, 0)
               : ::open(cat("/proc/self/fd/", src).c_str(), (read_end ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
  if (fd < 0) fail_errno("pipe:[", ino, "]: open its ", read_end ? "read" : "write", " end");
  if (::fcntl(fd, F_SETFL, flags) != 0) fail_errno("pipe:[", ino, "]: set flags");
  return fd;
}

}  // namespace

const FileKind kPipe{"pipe", match, dump, open_pipe, nullptr};

}  // namespace thaw::engine
