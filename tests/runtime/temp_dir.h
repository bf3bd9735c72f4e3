// A directory of its own for one test, removed with everything in it.
#pragma once
#include <stdlib.h>

#include <string>

#include "common/error.h"
#include "image/image.h"

namespace thaw::runtime::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) fail_errno("mkdtemp ", tmpl);
    path_ = tmpl;
  }
  ~TempDir() { thaw::image::remove_tree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace thaw::runtime::testing
