// Which images a live template takes (engine/template.h), and the reason it
// gives for those it does not.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "common/io.h"
#include "engine/template.h"

namespace {

using thaw::engine::Template;

// A worker as the runtime snapshots one: pid 2 in its namespace, /dev/null
// on fd 0, its stdio and control channel inherited.
thaw::image::Manifest worker() {
  thaw::image::Manifest m;
  m.process.pid = 41000;
  m.process.ns_pid = 2;
  m.threads.push_back({});
  m.threads[0].tid = 41000;
  m.threads[0].ns_tid = 2;
  m.files = nlohmann::json::array({{{"kind", "file"}, {"path", "/dev/null"}, {"mode", S_IFCHR | 0666}},
                                   {{"kind", "external"}, {"desc", "pipe:[1]"}}});
  m.fds = nlohmann::json::array({{{"fd", 0}, {"file", 0}}, {{"fd", 1}, {"file", 1}}, {{"fd", 3}, {"file", 1}}});
  thaw::image::Vma v;
  v.start = 0x10000;
  v.end = 0x20000;
  v.kind = "anon";
  m.vmas.push_back(v);
  return m;
}

TEST(Template, TakesAWorkerWithThreadsAndForkAdvisedMemory) {
  auto m = worker();
  EXPECT_EQ(Template::ineligible(m), "");
  m.threads.push_back({});
  m.threads[1].tid = 41007;
  m.threads[1].ns_tid = 9;
  m.vmas[0].madv = thaw::image::kMadvDontFork | thaw::image::kLocked;  // mapped and locked again in each copy
  EXPECT_EQ(Template::ineligible(m), "");
}

TEST(Template, TakesFilesEachCopyOpensAnew) {
  // Opened again for every copy by its namespace init: none is shared.
  auto m = worker();
  m.files.push_back({{"kind", "file"}, {"path", "/data/x.bin"}, {"mode", S_IFREG | 0644}});
  m.files.push_back({{"kind", "pipe"}, {"desc", "pipe:[7]"}});
  m.files.push_back({{"kind", "epoll"}, {"desc", "anon_inode:[eventpoll]"}, {"entries", nlohmann::json::array()}});
  m.files.push_back({{"kind", "unix"}, {"desc", "socket:[9]"}});  // one end of a pair, no address
  for (int i = 0; i < 4; i++) m.fds.push_back({{"fd", 5 + i}, {"file", 2 + i}});
  EXPECT_EQ(Template::ineligible(m), "");
}

nlohmann::json udp_on(uint16_t port, bool kernel_port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return {{"kind", "udp"},
          {"name", "UDP 127.0.0.1:" + std::to_string(port)},
          {"addr", thaw::to_hex(&a, sizeof a)},
          {"kernel_port", kernel_port}};
}

TEST(Template, TakesUdpSocketsOnPortsTheKernelChose) {
  // Each copy binds its own, on another port when the template holds this one.
  auto m = worker();
  m.files.push_back(udp_on(40123, true));
  m.files.push_back(udp_on(0, false));  // never bound
  m.fds.push_back({{"fd", 7}, {"file", 2}});
  m.fds.push_back({{"fd", 8}, {"file", 3}});
  EXPECT_EQ(Template::ineligible(m), "");
}

TEST(Template, RefusesWhatCopiesWouldShareOrLose) {
  auto u = worker();  // a port the program chose: the template would hold it, no copy could have it
  u.files.push_back(udp_on(8125, false));
  u.fds.push_back({{"fd", 7}, {"file", 2}});
  EXPECT_NE(Template::ineligible(u).find("fd 7 (UDP 127.0.0.1:8125) is bound to an address"), std::string::npos);

  auto m = worker();  // the template holds the address: no copy could bind it
  m.files.push_back({{"kind", "tcp_listen"}, {"desc", "tcp 0.0.0.0:8000"}});
  m.fds.push_back({{"fd", 7}, {"file", 2}});
  EXPECT_NE(Template::ineligible(m).find("fd 7 (tcp 0.0.0.0:8000) is bound to an address"), std::string::npos);

  m = worker();
  m.files.push_back({{"kind", "file"}, {"path", "/run/q.fifo"}, {"mode", S_IFIFO | 0600}});
  m.fds.push_back({{"fd", 6}, {"file", 2}});
  EXPECT_NE(Template::ineligible(m).find("fd 6 (/run/q.fifo) is a named FIFO"), std::string::npos);

  m = worker();
  m.files.push_back({{"kind", "unix"}, {"desc", "socket:[12]"}, {"bound", {{"name", "@x"}}}});
  m.fds.push_back({{"fd", 5}, {"file", 2}});
  EXPECT_NE(Template::ineligible(m).find("fd 5 (socket:[12]) is bound"), std::string::npos);

  m = worker();  // every copy would want the path
  m.files.push_back({{"kind", "unix"}, {"bound", {{"name", "2f746d70"}, {"path", "/tmp/pymp-x/listener-y"}}}});
  m.fds.push_back({{"fd", 5}, {"file", 2}});
  EXPECT_NE(Template::ineligible(m).find("fd 5 (unix socket bound to /tmp/pymp-x/listener-y) is bound to a path"),
            std::string::npos);

  m = worker();
  m.process.creds.uids = {1000, 1000, 1000, 1000};
  EXPECT_NE(Template::ineligible(m).find("uid 1000"), std::string::npos);

  m = worker();
  m.shmem.push_back({});
  m.vmas.push_back(m.vmas[0]);
  m.vmas.back().kind = "shmem";
  m.vmas.back().shared = true;
  m.vmas.back().start = 0x7000;
  EXPECT_NE(Template::ineligible(m).find("shared memory mapped at 0x7000"), std::string::npos);
  m.vmas.back().shared = false;
  m.vmas.back().name = "/lib/x.so (deleted)";
  EXPECT_NE(Template::ineligible(m).find("it maps a deleted file (or a memfd) privately at 0x7000 (/lib/x.so "
                                         "(deleted);"),
            std::string::npos);
  // One only fds reach (a memfd, a deleted file) is made anew per copy.
  m = worker();
  m.shmem.push_back({});
  EXPECT_EQ(Template::ineligible(m), "");

  m = worker();
  m.process.itimers.push_back({});
  EXPECT_NE(Template::ineligible(m).find("timers"), std::string::npos);

  m = worker();
  m.threads[0].pending.push_back({});
  EXPECT_NE(Template::ineligible(m).find("pending signals"), std::string::npos);

  m = worker();
  m.vmas[0].kind = "file";
  m.vmas[0].madv = thaw::image::kMadvWipeOnFork;
  EXPECT_NE(Template::ineligible(m).find("not private anonymous"), std::string::npos);

  m = worker();
  m.gpu.uuid = "GPU-1";
  EXPECT_NE(Template::ineligible(m).find("GPU"), std::string::npos);

  m = worker();
  m.process.stopped = true;
  EXPECT_NE(Template::ineligible(m).find("stopped"), std::string::npos);
}

}  // namespace
