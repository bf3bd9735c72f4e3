#include "runtime/introspect.h"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>

#include "common/error.h"

namespace thaw::runtime {

std::string absolute_app_file(const std::string& file) {
  char real[PATH_MAX];
  if (!::realpath(file.c_str(), real)) fail_errno("app file ", file);
  struct stat st;
  if (::stat(real, &st) != 0 || !S_ISREG(st.st_mode)) fail("app file ", file, " is not a regular file");
  return real;
}

AppDesc introspect(const Context& ctx, const std::string& app_file) {
  return with_context("inspect " + app_file, [&] {
    std::string dir = app_file.substr(0, app_file.rfind('/'));
    auto r = run_capture({ctx.python, "-m", "thaw._introspect", app_file}, user_python_env(ctx), dir.empty() ? "/" : dir,
                         ctx.log.fd(), 120);
    if (r.status != 0) fail("python3 -m thaw._introspect exited with status ", r.status, " (its error is above)");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(r.out);
    } catch (const std::exception& e) {
      fail("thaw._introspect printed something that is not JSON: ", e.what());
    }
    AppDesc a = parse_app(j, app_file);
    if (a.file.empty()) a.file = app_file;
    return a;
  });
}

}  // namespace thaw::runtime
