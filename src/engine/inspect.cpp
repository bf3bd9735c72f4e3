// `thaw inspect`: what an image holds, in words or as JSON.
#include <sys/mman.h>

#include <algorithm>
#include <map>
#include <sstream>

#include "common/error.h"
#include "engine/engine.h"
#include "image/image.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

// An fd's description: its own, or the tree's shared one (Manifest::pool).
const nlohmann::json& description(const image::Manifest& m, const nlohmann::json& fd_entry) {
  const nlohmann::json& f = m.files.at(fd_entry["file"].get<size_t>());
  return f["kind"] == "pooled" ? m.pool.at(f["pool"].get<size_t>()) : f;
}

std::string prot_str(int prot, bool shared) {
  std::string s = "---p";
  if (prot & PROT_READ) s[0] = 'r';
  if (prot & PROT_WRITE) s[1] = 'w';
  if (prot & PROT_EXEC) s[2] = 'x';
  if (shared) s[3] = 's';
  return s;
}
// The page data an image holds for a mapping: its own private runs, and for
// a shared one the part of its object's runs that falls inside it (stored
// once per object, however many mappings show it).
uint64_t stored(const image::Manifest& m, const image::Vma& v) {
  uint64_t n = 0;
  for (const auto& r : v.runs) n += r.len;
  if (v.kind == "shmem" && v.shmem >= 0 && static_cast<size_t>(v.shmem) < m.shmem.size()) {
    uint64_t lo = v.pgoff, hi = v.pgoff + (v.end - v.start);
    for (const auto& r : m.shmem[v.shmem].runs) {
      uint64_t a = std::max(lo, r.addr), b = std::min(hi, r.addr + r.len);
      if (a < b) n += b - a;
    }
  }
  return n;
}

// The places in pages.img the processes of a tree stored pages at, to tell
// how much of a child's memory is pages another process stored first (a
// fork left them shared: stored once, shared again at restore).
class StoredAt {
 public:
  void add(const image::Manifest& m) {
    for (const auto& v : m.vmas)
      for (const auto& r : v.runs) add(r.offset, r.offset + r.len);
  }
  // Bytes of m's private runs that lie where an earlier process's are.
  uint64_t overlap(const image::Manifest& m) const {
    uint64_t n = 0;
    for (const auto& v : m.vmas)
      for (const auto& r : v.runs) {
        uint64_t lo = r.offset, hi = r.offset + r.len;
        auto it = at_.upper_bound(lo);
        if (it != at_.begin()) --it;
        for (; it != at_.end() && it->first < hi; ++it)
          if (it->second > lo) n += std::min(hi, it->second) - std::max(lo, it->first);
      }
    return n;
  }

 private:
  void add(uint64_t lo, uint64_t hi) {
    auto it = at_.upper_bound(lo);
    if (it != at_.begin() && std::prev(it)->second >= lo) --it;
    while (it != at_.end() && it->first <= hi) {
      lo = std::min(lo, it->first);
      hi = std::max(hi, it->second);
      it = at_.erase(it);
    }
    at_[lo] = hi;
  }
  std::map<uint64_t, uint64_t> at_;  // start -> end, disjoint
};

// Per child of the tree, bytes of its pages stored by an earlier process.
std::vector<uint64_t> stored_once(const image::Manifest& m) {
  StoredAt at;
  at.add(m);
  std::vector<uint64_t> out;
  for (const auto& k : m.children) {
    out.push_back(at.overlap(k));
    at.add(k);
  }
  return out;
}
}  // namespace

std::string inspect(const std::string& dir, bool as_json) {
  image::Reader img(dir);
  const auto& m = img.manifest();
  uint64_t mapped = 0, stored_total = 0;
  for (const auto& v : m.vmas) {
    mapped += v.end - v.start;
    if (v.kind != "shmem") stored_total += stored(m, v);
  }
  for (const auto& obj : m.shmem)
    for (const auto& r : obj.runs) stored_total += r.len;
  if (as_json) {
    json j;
    j["format_version"] = m.version;
    j["thaw_version"] = m.thaw_version;
    j["kernel"] = m.kernel;
    j["cpu"] = m.cpu;
    j["pid"] = m.process.pid;
    j["ns_pid"] = m.process.ns_pid;
    j["comm"] = m.process.comm;
    j["exe"] = m.process.exe.path;
    j["pages_bytes"] = m.pages_bytes;
    j["mapped_bytes"] = mapped;
    json vmas = json::array();
    for (const auto& v : m.vmas)
      vmas.push_back(json{{"start", v.start}, {"end", v.end}, {"perms", prot_str(v.prot, v.shared)},
                          {"kind", v.kind}, {"name", v.name}, {"stored_bytes", stored(m, v)}});
    j["mappings"] = vmas;
    json threads = json::array();
    for (const auto& t : m.threads) threads.push_back(json{{"tid", t.tid}, {"ns_tid", t.ns_tid}, {"comm", t.comm}});
    j["threads"] = threads;
    json fds = json::array();
    for (const auto& e : m.fds) {
      const json& f = description(m, e);
      fds.push_back(json{{"fd", e["fd"]}, {"kind", f["kind"]}, {"shared", &f != &m.files.at(e["file"].get<size_t>())},
                         {"what", f.value("path", f.value("desc", std::string()))}});
    }
    j["fds"] = fds;
    j["shmem_objects"] = m.shmem.size();
    j["gpu"] = m.gpu.uuid.empty() ? json(nullptr) : json(m.gpu);
    json kids = json::array();
    std::vector<uint64_t> once = stored_once(m);
    for (const auto& k : m.children) {
      uint64_t kid_stored = 0;
      for (const auto& v : k.vmas) kid_stored += stored(m, v);  // shared memory is the root's
      kids.push_back(json{{"pid", k.process.pid}, {"parent", k.process.parent}, {"comm", k.process.comm},
                          {"exe", k.process.exe.path}, {"threads", k.threads.size()}, {"mappings", k.vmas.size()},
                          {"fds", k.fds.size()}, {"stored_bytes", kid_stored},
                          {"shared_stored_bytes", once[&k - m.children.data()]}});
    }
    j["children"] = kids;
    j["shared_files"] = m.pool.size();
    return j.dump(2) + "\n";
  }
  std::ostringstream o;
  o << "image " << dir << " (format " << m.version << ", thaw " << m.thaw_version << ", kernel " << m.kernel << ")\n";
  o << "process " << m.process.pid;
  if (m.process.ns_pid && m.process.ns_pid != m.process.pid) o << " (" << m.process.ns_pid << " in its pid namespace)";
  o << " (" << m.process.comm << "), exe " << m.process.exe.path << "\n";
  o << "cpu " << m.cpu.model << ", xfeatures 0x" << std::hex << m.cpu.xfeatures << std::dec << "\n";
  if (!m.gpu.uuid.empty())
    o << "gpu " << m.gpu.model << " (" << m.gpu.uuid << "), driver " << m.gpu.display_driver << " / CUDA API "
      << m.gpu.driver_version << ": " << (m.gpu.memory_bytes >> 20) << " MiB of GPU memory held, restore thread "
      << m.gpu.restore_tid << "\n";
  else
    o << "gpu: none\n";
  o << "memory: " << m.vmas.size() << " mappings, " << (mapped >> 20) << " MiB mapped, " << (stored_total >> 20)
    << " MiB stored (" << m.pages_bytes << " bytes of page data)\n";
  for (const auto& v : m.vmas) {
    char line[256];
    std::snprintf(line, sizeof line, "  %012llx-%012llx %s %-10s %8llu KiB stored  %s\n",
                  (unsigned long long)v.start, (unsigned long long)v.end, prot_str(v.prot, v.shared).c_str(),
                  v.kind.c_str(), (unsigned long long)(stored(m, v) >> 10), v.name.c_str());
    o << line;
  }
  o << "threads: " << m.threads.size() << "\n";
  for (const auto& t : m.threads) {
    o << "  tid " << t.tid;
    if (t.ns_tid && t.ns_tid != t.tid) o << " (" << t.ns_tid << " in its pid namespace)";
    o << " (" << t.comm << ")\n";
  }
  o << "fds: " << m.fds.size() << "\n";
  for (const auto& e : m.fds) {
    const json& f = description(m, e);
    bool shared = &f != &m.files.at(e["file"].get<size_t>());
    o << "  " << e["fd"].get<int>() << ": " << f["kind"].get<std::string>() << (shared ? " (shared with children) " : " ")
      << f.value("path", f.value("desc", std::string())) << "\n";
  }
  if (!m.children.empty()) {
    o << "child processes: " << m.children.size() << " (" << m.pool.size()
      << " open files shared between processes)\n";
    std::vector<uint64_t> once = stored_once(m);
    for (const auto& k : m.children) {
      uint64_t kid_stored = 0;
      for (const auto& v : k.vmas) kid_stored += stored(m, v);
      o << "  pid " << k.process.pid << " (" << k.process.comm << "), parent " << k.process.parent << ": "
        << k.threads.size() << " threads, " << k.vmas.size() << " mappings, " << (kid_stored >> 20)
        << " MiB of pages (" << (once[&k - m.children.data()] >> 20)
        << " MiB of them an earlier process's, stored once), " << k.fds.size() << " fds\n";
    }
  }
  return o.str();
}

}  // namespace thaw::engine
