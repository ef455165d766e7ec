#include "rafs/tree.h"

#include <malloc.h>

#include <iostream>

#include "base/status_matchers.h"
#include "base/strings.h"

namespace naiad::rafs {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::shared_ptr<TreeInode> File(const std::string& content_tag) {
  auto f = std::make_shared<TreeInode>();
  f->mode = S_IFREG | 0644;
  f->set_symlink(content_tag);  // a marker to tell versions apart in these tests
  return f;
}

std::shared_ptr<TreeInode> Dir() { return std::make_shared<TreeInode>(); }

std::shared_ptr<TreeInode> Whiteout() {
  auto w = std::make_shared<TreeInode>();
  w->mode = S_IFCHR;
  return w;
}

std::shared_ptr<TreeInode> OpaqueDir() {
  auto d = Dir();
  d->mutable_xattrs().emplace_back(kOpaqueXattr, "y");
  return d;
}

std::vector<std::string> Paths(const Tree& tree) {
  std::vector<std::string> paths;
  tree.Walk([&](const std::string& path, const TreeInode& inode) {
    paths.push_back(path + (inode.is_dir() ? "/" : "=" + std::string(inode.symlink())));
  });
  return paths;
}

TEST(Tree, InsertCreatesParentsAndRejectsFilesInTheWay) {
  Tree tree;
  ASSERT_OK(tree.Insert("a/b/c", File("1")));
  EXPECT_THAT(Paths(tree), ElementsAre("/", "a/", "a/b/", "a/b/c=1"));
  EXPECT_THAT(tree.Insert("a/b/c/d", File("2")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a directory")));
  ASSERT_OK(tree.Link("a/hard", "a/b/c"));
  EXPECT_EQ(*tree.Find("a/hard"), *tree.Find("a/b/c"));
  EXPECT_THAT(tree.Link("x", "missing"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not found")));
}

TEST(Tree, DirectoryEntryAfterItsContentKeepsTheContent) {
  Tree tree;
  ASSERT_OK(tree.Insert("d/f", File("1")));
  auto d = Dir();
  d->mode = S_IFDIR | 0700;
  ASSERT_OK(tree.Insert("d", d));
  EXPECT_THAT(Paths(tree), ElementsAre("/", "d/", "d/f=1"));
  EXPECT_EQ((*tree.Find("d"))->mode, S_IFDIR | 0700u);
}

// Three layers with deletions, an opaque directory and replaced files, as overlayfs stacks them.
TEST(Tree, ApplyLayerHasOverlaySemantics) {
  Tree lower;
  ASSERT_OK(lower.Insert("etc/keep", File("1")));
  ASSERT_OK(lower.Insert("etc/gone", File("1")));
  ASSERT_OK(lower.Insert("opt/old/a", File("1")));
  ASSERT_OK(lower.Insert("var/replaced", File("1")));
  ASSERT_OK(lower.Insert("dir-becomes-file/x", File("1")));

  Tree middle;
  ASSERT_OK(middle.Insert("etc/gone", Whiteout()));
  ASSERT_OK(middle.Insert("opt", OpaqueDir()));
  ASSERT_OK(middle.Insert("opt/new", File("2")));
  ASSERT_OK(middle.Insert("var/replaced", File("2")));
  ASSERT_OK(middle.Insert("dir-becomes-file", File("2")));
  ASSERT_OK(middle.Insert("ghost", Whiteout()));  // nothing below: a no-op

  Tree upper;
  ASSERT_OK(upper.Insert("etc/gone", File("3")));  // re-created after deletion
  ASSERT_OK(upper.Insert("opt/new", Whiteout()));

  ASSERT_OK(lower.ApplyLayer(std::move(middle)));
  ASSERT_OK(lower.ApplyLayer(std::move(upper)));
  EXPECT_THAT(Paths(lower), ElementsAre("/", "dir-becomes-file=2", "etc/", "etc/gone=3",
                                        "etc/keep=1", "opt/", "var/", "var/replaced=2"));
  EXPECT_FALSE((*lower.Find("opt"))->is_opaque());
}

TEST(Tree, NamesOutliveTheLayersTheyCameFrom) {
  Tree lower;
  ASSERT_OK(lower.Insert("keep/a", File("1")));
  {
    Tree upper;
    std::string long_name(200, 'n');  // bigger than any small-string buffer
    ASSERT_OK(upper.Insert("keep/" + long_name, File("2")));
    ASSERT_OK(upper.Insert("new/b", File("2")));
    ASSERT_OK(lower.ApplyLayer(std::move(upper)));
  }  // upper and the strings its paths came from are gone
  EXPECT_THAT(Paths(lower), ElementsAre("/", "keep/", "keep/a=1",
                                        "keep/" + std::string(200, 'n') + "=2", "new/", "new/b=2"));
}

TEST(Tree, ChunkListHoldsSlotsInlineOrOnTheHeap) {
  ChunkList none;
  EXPECT_TRUE(none.empty());
  ChunkList one(1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0], kHoleChunk);
  one[0] = 7;
  ChunkList many(5);
  for (uint32_t i = 0; i < 5; ++i) {
    EXPECT_EQ(many[i], kHoleChunk);
    many[i] = i * 10;
  }
  ChunkList copy = many;
  many[0] = 99;
  EXPECT_THAT(std::vector<uint32_t>(copy.begin(), copy.end()), ElementsAre(0, 10, 20, 30, 40));
  ChunkList moved = std::move(copy);
  EXPECT_EQ(moved.size(), 5u);
  EXPECT_EQ(copy.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  ChunkList one_copy = one;
  EXPECT_THAT(std::vector<uint32_t>(one_copy.begin(), one_copy.end()), ElementsAre(7));
}

// Each tree numbers its chunks from 0: applying a layer moves its chunks to the end of the lower
// tree's table and renumbers its files' slots, holes staying holes.
TEST(Tree, ApplyLayerRenumbersTheUpperLayersChunks) {
  auto file_with = [](Tree& tree, std::vector<uint64_t> offsets) {
    auto f = File("");
    f->chunks = ChunkList(offsets.size());
    for (size_t i = 0; i < offsets.size(); ++i) {
      if (offsets[i] == 0) continue;  // a hole
      ChunkRef c;
      c.uncompressed_offset = offsets[i];
      f->chunks[i] = *tree.AddChunk(c);
    }
    return f;
  };
  Tree lower;
  ASSERT_OK(lower.Insert("a", file_with(lower, {4096, 8192})));
  Tree upper;
  ASSERT_OK(upper.Insert("b", file_with(upper, {0, 12288, 16384})));
  ASSERT_OK(lower.ApplyLayer(std::move(upper)));
  ASSERT_EQ(lower.chunks().size(), 4u);
  ASSERT_OK_AND_ASSIGN(auto b, lower.Find("b"));
  ASSERT_EQ(b->chunks.size(), 3u);
  EXPECT_EQ(b->chunks[0], kHoleChunk);
  EXPECT_EQ(lower.chunk(b->chunks[1]).uncompressed_offset, 12288u);
  EXPECT_EQ(lower.chunk(b->chunks[2]).uncompressed_offset, 16384u);
  ASSERT_OK_AND_ASSIGN(auto a, lower.Find("a"));
  EXPECT_EQ(lower.chunk(a->chunks[1]).uncompressed_offset, 8192u);
}

// `naiad image create` holds the tree of a whole layer: a layer of a million small files is a
// million of everything here. A small file's inode, its name and its place in the directory
// used to take about 400 bytes of heap (shared inode with strings and vectors inline, a map node
// and a string per name, an 80-byte ChunkRef per chunk); the lean representation takes well
// under half of that.
TEST(Tree, SmallFilesCostFewBytesEach) {
  constexpr uint32_t kFiles = 100'000;
  size_t before = ::mallinfo2().uordblks;
  Tree tree;
  for (uint32_t i = 0; i < kFiles; ++i) {
    auto f = std::make_shared<TreeInode>();
    f->mode = S_IFREG | 0644;
    f->size = 100;
    f->chunks = ChunkList(1);
    f->chunks[0] = i;
    ASSERT_OK(tree.Insert(StrCat("usr/lib/python3/pkg", i / 1000, "/module_", i, ".py"), f));
  }
  size_t per_file = (::mallinfo2().uordblks - before) / kFiles;
  EXPECT_LT(per_file, 200u);
  std::cout << "heap per small file in the tree: " << per_file << " bytes\n";
}

}  // namespace
}  // namespace naiad::rafs
