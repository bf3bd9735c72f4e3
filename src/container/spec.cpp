#include "container/spec.h"

namespace thaw::container {

using nlohmann::json;

json to_json(const Spec& s) {
  json mounts = json::array();
  for (const auto& m : s.mounts)
    mounts.push_back({{"source", m.source}, {"target", m.target}, {"read_only", m.read_only}, {"local", m.local}});
  return {{"id", s.id}, {"mounts", mounts}, {"cgroups", s.cgroups}, {"argv", s.argv},
          {"env", s.env}, {"cwd", s.cwd}, {"host_paths", s.host_paths}, {"dev_shm_from", s.dev_shm_from}};
}

Spec spec_from_json(const json& j) {
  Spec s;
  s.id = j.value("id", "");
  for (const auto& m : j.value("mounts", json::array()))
    s.mounts.push_back({m.at("source").get<std::string>(), m.at("target").get<std::string>(),
                        m.value("read_only", false), m.value("local", false)});
  s.cgroups = j.value("cgroups", std::vector<std::string>{});
  s.argv = j.value("argv", std::vector<std::string>{});
  s.env = j.value("env", std::vector<std::string>{});
  s.cwd = j.value("cwd", "/");
  s.host_paths = j.value("host_paths", std::vector<std::string>{});
  s.dev_shm_from = j.value("dev_shm_from", "");
  return s;
}

}  // namespace thaw::container
