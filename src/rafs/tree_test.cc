#include "rafs/tree.h"

#include "base/status_matchers.h"

namespace naiad::rafs {
namespace {

using ::naiad::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::shared_ptr<TreeInode> File(const std::string& content_tag) {
  auto f = std::make_shared<TreeInode>();
  f->mode = S_IFREG | 0644;
  f->symlink = content_tag;  // a marker to tell versions apart in these tests
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
  d->xattrs.emplace_back(kOpaqueXattr, "y");
  return d;
}

std::vector<std::string> Paths(const Tree& tree) {
  std::vector<std::string> paths;
  tree.Walk([&](const std::string& path, const TreeInode& inode) {
    paths.push_back(path + (inode.is_dir() ? "/" : "=" + inode.symlink));
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

  lower.ApplyLayer(middle);
  lower.ApplyLayer(upper);
  EXPECT_THAT(Paths(lower), ElementsAre("/", "dir-becomes-file=2", "etc/", "etc/gone=3",
                                        "etc/keep=1", "opt/", "var/", "var/replaced=2"));
  EXPECT_FALSE((*lower.Find("opt"))->is_opaque());
}

}  // namespace
}  // namespace naiad::rafs
