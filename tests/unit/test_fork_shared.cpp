// Which of a tree root's mappings are staged for its children to inherit
// (engine/resources/fork_shared.cpp): those a descendant has pages of in
// common with it, at the same address and the same place in pages.img.
#include <gtest/gtest.h>

#include "engine/resources/tree.h"

namespace {

using thaw::image::Manifest;
using thaw::image::PageRun;
using thaw::image::Vma;

Vma anon(uint64_t start, uint64_t end, std::vector<PageRun> runs) {
  Vma v;
  v.start = start;
  v.end = end;
  v.kind = "anon";
  v.prot = 3;
  v.runs = std::move(runs);
  return v;
}

PageRun run(uint64_t addr, uint64_t len, uint64_t offset) { return PageRun{addr, len, offset, {}}; }

std::vector<bool> staged(const Manifest& root, const Manifest& child) {
  return thaw::engine::staged_mappings({&root, &child});
}

TEST(ForkShared, AMappingAChildSharesPagesOfIsStaged) {
  Manifest root, child;
  root.vmas = {anon(0x10000, 0x20000, {run(0x10000, 0x10000, 0)}), anon(0x30000, 0x40000, {run(0x30000, 0x1000, 0x10000)})};
  // The child's copy: the first page its own (written), the rest the root's.
  child.vmas = {anon(0x10000, 0x20000, {run(0x10000, 0x1000, 0x20000), run(0x11000, 0xf000, 0x1000)})};
  EXPECT_EQ(staged(root, child), (std::vector<bool>{true, false}));
}

TEST(ForkShared, PagesOfTheRootElsewhereOrAtAnotherPlaceAreNotShared) {
  Manifest root, child;
  root.vmas = {anon(0x10000, 0x20000, {run(0x10000, 0x2000, 0)})};
  // Same address, other data; other address, same data.
  child.vmas = {anon(0x10000, 0x20000, {run(0x10000, 0x2000, 0x5000)}), anon(0x50000, 0x52000, {run(0x50000, 0x2000, 0)})};
  EXPECT_EQ(staged(root, child), (std::vector<bool>{false}));
}

TEST(ForkShared, ARunSpanningTwoOfTheRootsRunsIsSharedOnlyWhereTheyLineUp) {
  Manifest root, child;
  root.vmas = {anon(0x10000, 0x20000, {run(0x10000, 0x1000, 0x7000), run(0x11000, 0x1000, 0x8000)})};
  child.vmas = {anon(0x10000, 0x20000, {run(0x10000, 0x2000, 0x7000)})};
  EXPECT_EQ(staged(root, child), (std::vector<bool>{true}));
  // A hole in the root's runs under the child's run: not its pages.
  root.vmas[0].runs[1] = run(0x12000, 0x1000, 0x9000);
  child.vmas[0].runs = {run(0x10000, 0x3000, 0x7000)};
  EXPECT_EQ(staged(root, child), (std::vector<bool>{false}));
}

TEST(ForkShared, OnlyPrivateAnonymousMemoryAForkHandsOnIsStaged) {
  Manifest root, child;
  root.vmas = {anon(0x10000, 0x20000, {run(0x10000, 0x1000, 0)})};
  child.vmas = {anon(0x10000, 0x20000, {run(0x10000, 0x1000, 0)})};
  EXPECT_EQ(staged(root, child), (std::vector<bool>{true}));
  root.vmas[0].madv = thaw::image::kMadvDontFork;  // a child never had it
  EXPECT_EQ(staged(root, child), (std::vector<bool>{false}));
  root.vmas[0].madv = 0;
  root.vmas[0].shared = true;
  EXPECT_EQ(staged(root, child), (std::vector<bool>{false}));
  root.vmas[0].shared = false;
  // The child's mapping reaches past the root's: not inside it whole.
  child.vmas[0].end = 0x21000;
  EXPECT_EQ(staged(root, child), (std::vector<bool>{false}));
}

TEST(ForkShared, AFilesPrivateMappingIsSharedWhereItMapsTheSameFileAtTheSameOffset) {
  Manifest root, child;
  thaw::image::FileId lib, other;
  lib.path = "/lib/libx.so";
  lib.dev = 8, lib.ino = 42;
  other.path = "/lib/liby.so";
  other.dev = 8, other.ino = 43;
  root.mapped_files = {lib};
  child.mapped_files = {other, lib};  // its own table: the same file at another index
  Vma rv = anon(0x10000, 0x20000, {run(0x10000, 0x2000, 0)});
  rv.kind = "file", rv.file = 0, rv.pgoff = 0x3000;
  root.vmas = {rv};
  Vma cv = anon(0x11000, 0x12000, {run(0x11000, 0x1000, 0x1000)});
  cv.kind = "file", cv.file = 1, cv.pgoff = 0x4000;
  child.vmas = {cv};
  EXPECT_EQ(staged(root, child), (std::vector<bool>{true}));
  child.vmas[0].pgoff = 0x5000;  // another part of the file there
  EXPECT_EQ(staged(root, child), (std::vector<bool>{false}));
  child.vmas[0].pgoff = 0x4000;
  child.vmas[0].file = 0;  // another file
  EXPECT_EQ(staged(root, child), (std::vector<bool>{false}));
  child.vmas[0].file = 1;
  child.vmas[0].kind = "anon";  // anonymous memory over the file's range
  EXPECT_EQ(staged(root, child), (std::vector<bool>{false}));
}

TEST(ForkShared, ASingleProcessStagesNothing) {
  Manifest root;
  root.vmas = {anon(0x10000, 0x20000, {run(0x10000, 0x1000, 0)})};
  EXPECT_TRUE(thaw::engine::staged_mappings({&root}).empty());
}

}  // namespace
