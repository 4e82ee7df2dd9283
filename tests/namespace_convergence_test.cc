// The file tree across replicas: nodes of an in-process cluster that
// exchange tree ops in any order that keeps each origin's sequence
// (core/index.cc ApplyOp) converge on one tree, with no cycle and nothing
// lost. (tests/namespace_codec_test.cc holds the tree op encoding,
// tests/namespace_test.cc the tree calls on one node; the helpers are in
// tests/namespace_test_util.h.)
#include "core/namespace.h"

#include <sys/xattr.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/file_server.h"
#include "core/index.h"
#include "core/memory_chunk_store.h"
#include "tests/namespace_test_util.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

using namespace testing_ns;

// ------------------------------------------------------------ replication

// A node of an in-process cluster: its FileServer and the ops it made.
struct Node {
  std::vector<Op> log;  // its own ops, in seq order, once durable (before fs: see
                        // NamespaceTest::ops_ in tests/namespace_test.cc)
  std::unique_ptr<FileServer> fs;
  std::map<NodeId, std::size_t> applied;  // per origin: how many of its ops it has
  // The log with every op committed so far (Flush publishes them).
  std::vector<Op>& Log() {
    Status s = fs->Flush();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return log;
  }
  FileServer& operator*() { return *fs; }
  FileServer* operator->() { return fs.get(); }
};

class Cluster {
 public:
  explicit Cluster(int n) {
    for (int i = 0; i < n; ++i) nodes_.push_back(Make());
  }

  Node& operator[](std::size_t i) { return *nodes_[i]; }
  std::size_t size() const { return nodes_.size(); }

  // A node that makes no ops of its own, only receives.
  std::unique_ptr<Node> Make() {
    auto node = std::make_unique<Node>();
    std::uint8_t id = ++made_;
    auto index = Index::Open(dir_ / fmt::format("node{}.db", id));
    EXPECT_TRUE(index.ok()) << index.status().ToString();
    auto fs = FileServer::Create(std::make_unique<MemoryChunkStore>(), std::move(*index),
                                 TestKey(), Options(id));
    EXPECT_TRUE(fs.ok()) << fs.status().ToString();
    node->fs = std::move(*fs);
    Node* raw = node.get();
    node->fs->SetOpListener([raw](const Op& op, bool local) {
      if (local) raw->log.push_back(op);
    });
    return node;
  }

  // Delivers up to `count` more of `from`'s ops to `to`, in seq order.
  static void Deliver(Node& from, Node& to, std::size_t count = SIZE_MAX) {
    std::size_t& have = to.applied[from->node_id()];
    for (; count > 0 && have < from.Log().size(); --count) {
      Result<bool> r = to->ApplyRemoteOp(from.Log()[have]);
      ASSERT_TRUE(r.ok()) << "op " << have + 1 << ": " << r.status().ToString();
      ASSERT_TRUE(*r) << "op " << have + 1 << " was already applied";
      ++have;
    }
  }

  // What an anti-entropy exchange does: `to` gets every op `from` has, of
  // every origin.
  void Relay(Node& from, Node& to) {
    for (auto& n : nodes_) {
      if (n.get() == &to) continue;
      std::size_t known = n.get() == &from ? n->Log().size() : from.applied[(*n)->node_id()];
      std::size_t have = to.applied[(*n)->node_id()];
      if (known > have) Deliver(*n, to, known - have);
    }
  }

  // Everything `to` lacks of every node's ops, taking the next origin at random.
  void CatchUp(Node& to, std::mt19937_64& rng) {
    for (;;) {
      std::vector<Node*> pending;
      for (auto& n : nodes_) {
        if (n.get() != &to && to.applied[(*n)->node_id()] < n->Log().size()) pending.push_back(n.get());
      }
      if (pending.empty()) return;
      Deliver(*pending[rng() % pending.size()], to, 1 + rng() % 3);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }

  // Every node gets everything, in a random order of nodes and origins.
  void SyncAll(std::mt19937_64& rng) {
    std::vector<Node*> order;
    for (auto& n : nodes_) order.push_back(n.get());
    std::shuffle(order.begin(), order.end(), rng);
    for (Node* n : order) CatchUp(*n, rng);
  }

  // Copies every chunk `from` holds to `to` (ops name chunks, not carry them).
  static void ShipChunks(Node& from, Node& to) {
    Status s = testing::CopyChunks(from->chunk_store(), to->chunk_store());
    EXPECT_TRUE(s.ok()) << s.ToString();
  }

  // Syncs everyone, and checks that every node and `observers` fresh nodes
  // (each fed every op in its own random interleaving) show the same tree.
  // Returns it.
  std::string Converge(std::mt19937_64& rng, int observers = 2) {
    SyncAll(rng);
    std::string first = Dump(*nodes_[0]->fs);
    for (std::size_t i = 1; i < nodes_.size(); ++i) {
      EXPECT_EQ(Dump(*nodes_[i]->fs), first) << "node " << i + 1 << " differs from node 1";
    }
    for (int o = 0; o < observers; ++o) {
      std::unique_ptr<Node> obs = Make();
      CatchUp(*obs, rng);
      EXPECT_EQ(Dump(*obs->fs), first) << "observer " << o << " differs from node 1";
    }
    return first;
  }

 private:
  testing::TempDir dir_;
  std::uint8_t made_ = 0;
  std::vector<std::unique_ptr<Node>> nodes_;
};

const FileId kRoot = FileId::Root();

FileId MkOn(Node& n, const FileId& dir, std::string_view name, const NewNode& node) {
  return MUST(n->MakeNode(dir, name, node)).attr.inode;
}
FileId At(Node& n, const FileId& dir, std::string_view name) {
  return MUST(n->LookupName(dir, name)).attr.inode;
}
bool HasOn(Node& n, const FileId& dir, std::string_view name) {
  return n->LookupName(dir, name).ok();
}
// The op of `n`'s log that is later in the total order.
bool Later(const Op& a, const Op& b) { return a.WinsOver(b); }

std::vector<std::uint64_t> Seeds() { return {1, 2, 3, 4, 5}; }

// Runs `a` then `b` when `a_first`, else `b` then `a`.
void InOrder(bool a_first, const std::function<void()>& a, const std::function<void()>& b) {
  (a_first ? a : b)();
  (a_first ? b : a)();
}

// Runs `scenario` once per seed, each time on a fresh cluster of `nodes`.
void ForEachSeed(int nodes,
                 const std::function<void(Cluster&, std::mt19937_64&, std::uint64_t)>& scenario) {
  for (std::uint64_t seed : Seeds()) {
    SCOPED_TRACE(fmt::format("seed {}", seed));
    std::mt19937_64 rng(seed);
    Cluster c(nodes);
    scenario(c, rng, seed);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// (a) A: mv a b/a ; B: mv b a/b, concurrently. One of the two moves is
// skipped everywhere; no cycle, nothing lost.
TEST(ConvergenceTest, ConcurrentRenamesThatWouldFormACycle) {
  ForEachSeed(2, [](Cluster& c, std::mt19937_64& rng, std::uint64_t seed) {
    FileId a = MkOn(c[0], kRoot, "a", Dir());
    FileId b = MkOn(c[0], kRoot, "b", Dir());
    MkOn(c[0], a, "in_a", File());
    MkOn(c[0], b, "in_b", File());
    c.SyncAll(rng);
    // Who goes first (and so is older) alternates with the seed.
    int first = static_cast<int>(seed % 2);
    if (first == 0) {
      NS_ASSERT_OK(c[0]->Rename(kRoot, "a", b, "a"));
      NS_ASSERT_OK(c[1]->Rename(kRoot, "b", a, "b"));
    } else {
      NS_ASSERT_OK(c[1]->Rename(kRoot, "b", a, "b"));
      NS_ASSERT_OK(c[0]->Rename(kRoot, "a", b, "a"));
    }
    bool a_moved_first = Later(c[1].Log().back(), c[0].Log().back());
    std::string tree = c.Converge(rng);
    // The older move stands; the newer one would close a cycle and is skipped.
    for (std::size_t i = 0; i < c.size(); ++i) {
      Node& n = c[i];
      if (a_moved_first) {
        EXPECT_EQ(Names(*n, kRoot), std::vector<std::string>{"b"});
        EXPECT_EQ(At(n, b, "a"), a);
      } else {
        EXPECT_EQ(Names(*n, kRoot), std::vector<std::string>{"a"});
        EXPECT_EQ(At(n, a, "b"), b);
      }
      EXPECT_TRUE(HasOn(n, a, "in_a"));
      EXPECT_TRUE(HasOn(n, b, "in_b"));
    }
  });
}

TEST(ConvergenceTest, ThreeWayRenameCycle) {
  ForEachSeed(3, [](Cluster& c, std::mt19937_64& rng, std::uint64_t) {
    FileId d[3];
    const char* names[3] = {"x", "y", "z"};
    for (int i = 0; i < 3; ++i) d[i] = MkOn(c[0], kRoot, names[i], Dir());
    c.SyncAll(rng);
    // Node i moves d[i] into d[i+1]: together, a cycle of three.
    std::vector<int> order = {0, 1, 2};
    std::shuffle(order.begin(), order.end(), rng);
    for (int i : order) NS_ASSERT_OK(c[i]->Rename(kRoot, names[i], d[(i + 1) % 3], names[i]));
    std::string tree = c.Converge(rng);
    // Two of the moves stand: a chain of three under the root.
    EXPECT_EQ(Names(*c[0], kRoot).size(), 1u) << tree;
    EXPECT_EQ(std::count(tree.begin(), tree.end(), '\n'), 4) << tree;
  });
}

// (b) Two nodes create the same name in one directory: both files stay; the
// older one is listed as "name~<8 hex of its entry>".
TEST(ConvergenceTest, ConcurrentCreatesOfOneNameKeepBoth) {
  ForEachSeed(2, [](Cluster& c, std::mt19937_64& rng, std::uint64_t) {
    FileId d = MkOn(c[0], kRoot, "d", Dir());
    c.SyncAll(rng);
    FileId f0 = MkOn(c[0], d, "f", File(0600));
    FileId f1 = MkOn(c[1], d, "f", File(0640));
    // Directories too, each with something inside.
    FileId s0 = MkOn(c[1], d, "sub", Dir());
    FileId s1 = MkOn(c[0], d, "sub", Dir());
    MkOn(c[1], s0, "from1", File());
    MkOn(c[0], s1, "from0", File());
    // Each node made f, sub, and a file in sub, in that order.
    const Op& make0 = c[0].Log()[c[0].Log().size() - 3];
    const Op& make1 = c[1].Log()[c[1].Log().size() - 3];
    bool f1_newer = Later(make1, make0);
    std::string tree = c.Converge(rng);
    FileId newer = f1_newer ? f1 : f0, older = f1_newer ? f0 : f1;
    std::string loser = "f~" + older.ShortHex();
    for (std::size_t i = 0; i < c.size(); ++i) {
      Node& n = c[i];
      std::vector<std::string> names = Names(*n, d);
      ASSERT_EQ(names.size(), 4u) << tree;
      EXPECT_EQ(At(n, d, "f"), newer);
      EXPECT_EQ(At(n, d, loser), older);
      EXPECT_TRUE(std::find(names.begin(), names.end(), loser) != names.end()) << tree;
      EXPECT_EQ(MUST(n->LookupName(d, loser)).name, loser);
      NS_EXPECT_CODE(n->LookupName(d, "f~00000000"), kNotFound);
      NS_EXPECT_CODE(n->LookupName(d, "f~" + newer.ShortHex()), kNotFound);
      // Both directories, each with its own child.
      FileId sub = At(n, d, "sub");
      FileId other = sub == s0 ? s1 : s0;
      EXPECT_EQ(At(n, d, "sub~" + other.ShortHex()), other);
      EXPECT_TRUE(HasOn(n, s0, "from1"));
      EXPECT_TRUE(HasOn(n, s1, "from0"));
      EXPECT_EQ(MUST(n->GetAttr(d)).nlink, 4u);
      ExpectResumable(*n, d);
    }
    // The loser's name works for every call, and removing the winner gives its name back.
    NS_ASSERT_OK(c[0]->Rename(d, loser, d, "g"));
    NS_ASSERT_OK(c[1]->Unlink(d, "f"));
    c.Converge(rng, 1);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_EQ(Names(*c[i], d), (std::vector<std::string>{"g", "sub", "sub~" + (At(c[i], d, "sub") == s0 ? s1 : s0).ShortHex()}));
      EXPECT_EQ(At(c[i], d, "g"), older);
    }
  });
}

// (c) A file made in a directory that another node removes at the same
// time is not lost: the directory comes back (or its removal is skipped).
TEST(ConvergenceTest, CreateInAConcurrentlyRemovedDirectoryKeepsBoth) {
  ForEachSeed(2, [](Cluster& c, std::mt19937_64& rng, std::uint64_t seed) {
    FileId d = MkOn(c[0], kRoot, "d", Dir());
    FileId e = MkOn(c[0], d, "e", Dir());
    c.SyncAll(rng);
    // Odd seeds remove first (the creates bring the directories back),
    // even ones create first (the removals are skipped).
    auto remove = [&] {
      NS_ASSERT_OK(c[0]->RemoveDir(d, "e"));
      NS_ASSERT_OK(c[0]->RemoveDir(kRoot, "d"));
    };
    auto create = [&] {
      MkOn(c[1], d, "f", File());
      MkOn(c[1], e, "g", File());
    };
    InOrder(seed % 2 == 1, remove, create);
    std::string tree = c.Converge(rng);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_EQ(At(c[i], kRoot, "d"), d) << tree;
      EXPECT_EQ(At(c[i], d, "e"), e) << tree;
      EXPECT_TRUE(HasOn(c[i], d, "f")) << tree;
      EXPECT_TRUE(HasOn(c[i], e, "g")) << tree;
    }
    // The directories work as directories again on the node that removed them.
    MkOn(c[0], e, "h", File());
    NS_EXPECT_CODE(c[0]->RemoveDir(kRoot, "d"), kNotEmpty);
  });
}

// (c') Two nodes remove the same empty directory while a third makes a file
// in it: the file is still not lost.
TEST(ConvergenceTest, CreateInADirectoryRemovedTwiceConcurrently) {
  ForEachSeed(3, [](Cluster& c, std::mt19937_64& rng, std::uint64_t) {
    FileId d = MkOn(c[0], kRoot, "d", Dir());
    c.SyncAll(rng);
    NS_ASSERT_OK(c[0]->RemoveDir(kRoot, "d"));
    NS_ASSERT_OK(c[1]->RemoveDir(kRoot, "d"));
    MkOn(c[2], d, "f", File());
    std::string tree = c.Converge(rng);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_EQ(At(c[i], kRoot, "d"), d) << tree;
      EXPECT_TRUE(HasOn(c[i], d, "f")) << tree;
    }
  });
}

// A move of a directory into one that another node removed after moving it
// under the first: the removed one may come back only where it closes no
// cycle. Nothing is lost, no cycle forms.
TEST(ConvergenceTest, ResurrectionNeverClosesACycle) {
  ForEachSeed(2, [](Cluster& c, std::mt19937_64& rng, std::uint64_t) {
    FileId a = MkOn(c[0], kRoot, "A", Dir());
    FileId x = MkOn(c[0], kRoot, "X", Dir());
    FileId d = MkOn(c[0], x, "D", Dir());
    MkOn(c[0], a, "keep", File());
    c.SyncAll(rng);
    // Node 1: mv X/D A/D ; rmdir A/D. Node 2, later, not having seen them: mv A X/D/A.
    NS_ASSERT_OK(c[0]->Rename(x, "D", a, "D"));
    NS_ASSERT_OK(c[0]->RemoveDir(a, "D"));
    NS_ASSERT_OK(c[1]->Rename(kRoot, "A", d, "A"));
    std::string tree = c.Converge(rng);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_TRUE(HasOn(c[i], kRoot, "X")) << tree;
      // A is reachable from the root, with its file (Dump checks nothing else is lost).
      EXPECT_NE(tree.find("A/keep"), std::string::npos) << tree;
    }
  });
}

// (d) Concurrent attribute, time, xattr and content writes: the write whose
// op is later in the total order wins, identically everywhere, whatever
// order the ops arrive in.
TEST(ConvergenceTest, LastWriterWinsForAttributesAndContent) {
  ForEachSeed(3, [](Cluster& c, std::mt19937_64& rng, std::uint64_t seed) {
    FileId f = MkOn(c[0], kRoot, "f", File());
    c.SyncAll(rng);
    // Everyone sets the xattr first, so that a removal has something to remove.
    for (int i = 0; i < 3; ++i) NS_ASSERT_OK(c[i]->SetXattr(f, "user.k", AsBytes("init"), 0));
    auto mode_of = [](int i) { return 0600u + static_cast<std::uint32_t>(i) * 010; };
    // A later write may set an older time: the op order decides, not the value.
    auto mtime_of = [](int i) { return std::int64_t{1'000'000'000} - i * 1000; };
    auto xattr_of = [](int i) { return i == 1 ? std::string() : "v" + std::to_string(i); };
    auto data_of = [&](int i) { return testing::RandomBytes(1000 + i * 777, seed * 10 + i); };
    // Four rounds (mode, mtime, xattr, content); in each, the nodes write in a random order.
    std::vector<std::vector<const Op*>> ops(4, std::vector<const Op*>(3));
    std::vector<std::vector<std::size_t>> at(4, std::vector<std::size_t>(3));
    for (int step = 0; step < 4; ++step) {
      std::vector<int> order = {0, 1, 2};
      std::shuffle(order.begin(), order.end(), rng);
      for (int i : order) {
        Node& n = c[i];
        if (step == 0) {
          AttrChange m;
          m.mode = mode_of(i);
          MUST(n->SetAttr(f, m));
        } else if (step == 1) {
          AttrChange t;
          t.mtime_ns = mtime_of(i);
          MUST(n->SetAttr(f, t));
        } else if (step == 2) {
          if (xattr_of(i).empty()) {
            NS_ASSERT_OK(n->RemoveXattr(f, "user.k"));
          } else {
            NS_ASSERT_OK(n->SetXattr(f, "user.k", AsBytes(xattr_of(i)), 0));
          }
        } else {
          Bytes data = data_of(i);
          FileServer::ChunkPins pins(n.fs.get());
          MemoryReader r(data);
          Manifest man = MUST(n->StoreData(r, &pins));
          NS_ASSERT_OK(n->CommitContent(f, man, mtime_of(i) + 1, &pins));
        }
        at[step][i] = n.Log().size() - 1;
      }
    }
    auto op = [&](int step, int i) -> const Op& { return c[i].Log()[at[step][i]]; };
    auto winner = [&](int step) {
      int best = 0;
      for (int i = 1; i < 3; ++i) {
        if (Later(op(step, i), op(step, best))) best = i;
      }
      return best;
    };
    // Content needs its chunks where it is read.
    for (std::size_t i = 0; i < 3; ++i) {
      for (std::size_t j = 0; j < 3; ++j) {
        if (i != j) Cluster::ShipChunks(c[i], c[j]);
      }
    }
    std::string tree = c.Converge(rng, 2);
    // mtime is written by the mtime round and by the content round: the later of all wins.
    int mt = winner(1), ct = winner(3);
    std::int64_t want_mtime = Later(op(3, ct), op(1, mt)) ? mtime_of(ct) + 1 : mtime_of(mt);
    Bytes want_data = data_of(winner(3));
    for (std::size_t i = 0; i < 3; ++i) {
      Node& n = c[i];
      Attr a = MUST(n->GetAttr(f));
      EXPECT_EQ(a.mode, mode_of(winner(0)));
      EXPECT_EQ(a.mtime_ns, want_mtime);
      EXPECT_EQ(a.size, want_data.size());
      if (xattr_of(winner(2)).empty()) {
        NS_EXPECT_CODE(n->GetXattr(f, "user.k"), kNoAttribute);
      } else {
        EXPECT_EQ(AsString(MUST(n->GetXattr(f, "user.k"))), xattr_of(winner(2)));
      }
      Manifest m = MUST(n->Content(f));
      Bytes back(m.size);
      EXPECT_EQ(MUST(n->ReadContent(m, 0, back)), m.size);
      EXPECT_TRUE(back == want_data);
    }
  });
}

// (f) One node removes a file (or an empty directory) while another renames
// it: whichever op is later decides, identically everywhere.
TEST(ConvergenceTest, RenameVersusRemove) {
  ForEachSeed(2, [](Cluster& c, std::mt19937_64& rng, std::uint64_t seed) {
    // The seeds cover every (file or directory, which goes first) pair.
    bool dir = seed % 2 == 1, remove_first = (seed / 2) % 2 == 1;
    SCOPED_TRACE(fmt::format("dir {} remove_first {}", dir, remove_first));
    FileId sub = MkOn(c[0], kRoot, "sub", Dir());
    FileId f = MkOn(c[0], kRoot, "f", dir ? Dir() : File());
    c.SyncAll(rng);
    auto remove = [&] {
      NS_ASSERT_OK(dir ? c[0]->RemoveDir(kRoot, "f") : c[0]->Unlink(kRoot, "f"));
    };
    auto rename = [&] { NS_ASSERT_OK(c[1]->Rename(kRoot, "f", sub, "g")); };
    InOrder(remove_first, remove, rename);
    bool rename_later = Later(c[1].Log().back(), c[0].Log().back());
    std::string tree = c.Converge(rng);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_FALSE(HasOn(c[i], kRoot, "f")) << tree;
      if (rename_later) {
        // The rename takes the name out of the trash again.
        EXPECT_EQ(At(c[i], sub, "g"), f) << tree;
      } else {
        EXPECT_FALSE(HasOn(c[i], sub, "g")) << tree;
      }
      if (!dir) {
        EXPECT_EQ(MUST(c[i]->GetAttr(f)).nlink, rename_later ? 1u : 0u);
      }
    }
  });
}

// Concurrent renames of one file to two places: it ends in one, once.
TEST(ConvergenceTest, ConcurrentRenamesOfOneFile) {
  ForEachSeed(3, [](Cluster& c, std::mt19937_64& rng, std::uint64_t) {
    FileId f = MkOn(c[0], kRoot, "f", File());
    FileId a = MkOn(c[0], kRoot, "a", Dir());
    FileId b = MkOn(c[0], kRoot, "b", Dir());
    c.SyncAll(rng);
    NS_ASSERT_OK(c[0]->Rename(kRoot, "f", a, "f"));
    NS_ASSERT_OK(c[1]->Rename(kRoot, "f", b, "f"));
    MUST(c[2]->Link(f, kRoot, "link"));
    bool b_later = Later(c[1].Log().back(), c[0].Log().back());
    std::string tree = c.Converge(rng);
    for (std::size_t i = 0; i < c.size(); ++i) {
      EXPECT_EQ(HasOn(c[i], a, "f"), !b_later) << tree;
      EXPECT_EQ(HasOn(c[i], b, "f"), b_later) << tree;
      EXPECT_FALSE(HasOn(c[i], kRoot, "f"));
      EXPECT_EQ(At(c[i], kRoot, "link"), f);
      EXPECT_EQ(MUST(c[i]->GetAttr(f)).nlink, 2u);
    }
  });
}

// Ops may arrive before the ops they depend on (another origin's create of
// the inode they name): nothing shows until it comes, then all of it does.
TEST(ConvergenceTest, OpsAheadOfTheirCausesWait) {
  Cluster c(2);
  std::unique_ptr<Node> late = c.Make();
  FileId d = MkOn(c[0], kRoot, "d", Dir());
  Cluster::Deliver(c[0], c[1]);
  FileId f = MkOn(c[1], d, "f", File());
  NS_ASSERT_OK(c[1]->SetXattr(d, "user.x", AsBytes("y"), 0));
  // `late` gets node 2's ops first: a name in a directory it does not know.
  Cluster::Deliver(c[1], *late);
  EXPECT_TRUE(Names(**late, kRoot).empty());
  NS_EXPECT_CODE((*late)->GetAttr(d), kNotFound);
  Cluster::Deliver(c[0], *late);
  EXPECT_EQ(At(*late, d, "f"), f);
  EXPECT_EQ(AsString(MUST((*late)->GetXattr(d, "user.x"))), "y");
  Cluster::Deliver(c[1], c[0]);
  EXPECT_EQ(Dump(**late), Dump(*c[0]));
  // A gap in one origin's ops is refused, a repeat ignored.
  MkOn(c[0], kRoot, "x", File());
  MkOn(c[0], kRoot, "y", File());
  NS_EXPECT_CODE(c[1]->ApplyRemoteOp(c[0].Log().back()), kUnavailable);
  EXPECT_FALSE(MUST(c[1]->ApplyRemoteOp(c[0].Log().front())));
}

// (e) Three nodes each make a few hundred random changes on their own view,
// with partial syncs now and then; after a full exchange in random order
// every node, and fresh nodes fed in other orders, show the same tree.
class RandomWorkload {
 public:
  RandomWorkload(Node& node, std::mt19937_64& rng) : n_(node), rng_(rng) {}

  void Step() {
    // A view a few ops old is fine: a name gone since gives kNotFound.
    if (steps_++ % 4 == 0) Scan();
    int kind = static_cast<int>(rng_() % 100);
    Status s = Status::Ok();
    const FileId& dir = Pick(dirs_);
    std::string name = Name();
    if (kind < 12) {
      s = n_->MakeNode(dir, name, Dir(0700 + static_cast<std::uint32_t>(rng_() % 077))).status();
    } else if (kind < 27) {
      s = n_->MakeNode(dir, name, File()).status();
    } else if (kind < 30) {
      s = n_->MakeNode(dir, name, Symlink(name + "-target")).status();
    } else if (kind < 50 && !items_.empty()) {
      const Item& it = Pick(items_);
      unsigned flags = 0;
      int f = static_cast<int>(rng_() % 10);
      if (f == 0) flags = FileServer::kRenameNoReplace;
      if (f == 1 && !items_.empty()) {
        const Item& other = Pick(items_);
        s = n_->Rename(it.parent, it.e.name, other.parent, other.e.name,
                       FileServer::kRenameExchange);
      } else {
        s = n_->Rename(it.parent, it.e.name, dir, name, flags);
      }
    } else if (kind < 62 && !items_.empty()) {
      const Item& it = Pick(items_);
      s = it.e.attr.type == FileType::kDirectory ? n_->RemoveDir(it.parent, it.e.name)
                                                  : n_->Unlink(it.parent, it.e.name);
    } else if (kind < 68 && !items_.empty()) {
      const Item& it = Pick(items_);
      s = n_->Link(it.e.attr.inode, dir, name).status();
    } else if (kind < 76 && !items_.empty()) {
      const Item& it = Pick(items_);
      AttrChange ch;
      if (rng_() % 2) ch.mode = static_cast<std::uint32_t>(rng_() % 07777);
      if (rng_() % 2) ch.uid = static_cast<std::uint32_t>(rng_() % 3);
      if (rng_() % 3 == 0) ch.mtime_ns = static_cast<std::int64_t>(rng_() % 1000000);
      if (rng_() % 3 == 0) ch.atime_ns = static_cast<std::int64_t>(rng_() % 1000000);
      s = n_->SetAttr(it.e.attr.inode, ch).status();
    } else if (kind < 86 && !items_.empty()) {
      const Item& it = Pick(items_);
      std::string xname = rng_() % 2 ? "user.a" : "user.b";
      if (rng_() % 4 == 0) {
        s = n_->RemoveXattr(it.e.attr.inode, xname);
      } else {
        int flags = static_cast<int>(rng_() % 3);  // 0, XATTR_CREATE, XATTR_REPLACE
        s = n_->SetXattr(it.e.attr.inode, xname, testing::RandomBytes(rng_() % 20, rng_()), flags);
      }
    } else if (!items_.empty()) {
      const Item& it = Pick(items_);
      Bytes data = testing::RandomBytes(rng_() % 3000, rng_());
      FileServer::ChunkPins pins(n_.fs.get());
      MemoryReader r(data);
      Result<Manifest> m = n_->StoreData(r, &pins);
      s = m.status();
      if (m.ok()) {
        Manifest man = *m;
        if (rng_() % 4 == 0) man.AppendHole(rng_() % 100000);
        s = n_->CommitContent(it.e.attr.inode, man, static_cast<std::int64_t>(rng_() % 1000), &pins);
      }
    }
    ErrorCode c = s.code();
    bool expected = c == ErrorCode::kOk || c == ErrorCode::kExists || c == ErrorCode::kNotEmpty ||
                    c == ErrorCode::kNotDirectory || c == ErrorCode::kIsDirectory ||
                    c == ErrorCode::kInvalidArgument || c == ErrorCode::kNotFound ||
                    c == ErrorCode::kNoAttribute;
    EXPECT_TRUE(expected) << "op kind " << kind << ": " << s.ToString();
    if (c == ErrorCode::kOk) ++done_;
  }

  int done() const { return done_; }

 private:
  struct Item {
    FileId parent;
    DirEntry e;
  };

  void Scan() {
    dirs_.assign(1, FileId::Root());
    items_.clear();
    std::function<void(const FileId&, int)> walk = [&](const FileId& dir, int depth) {
      if (depth > 100) return;
      for (const auto& [e, next] : List(*n_, dir)) {
        (void)next;
        items_.push_back(Item{dir, e});
        if (e.attr.type == FileType::kDirectory) {
          dirs_.push_back(e.entry);
          walk(e.entry, depth + 1);
        }
      }
    };
    walk(FileId::Root(), 0);
  }

  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[rng_() % v.size()];
  }
  std::string Name() {
    static const char* kNames[] = {"a", "b", "c", "d", "e", "f", "g"};
    return kNames[rng_() % 7];
  }

  Node& n_;
  std::mt19937_64& rng_;
  std::vector<FileId> dirs_;
  std::vector<Item> items_;
  int done_ = 0;
  int steps_ = 0;
};

TEST(ConvergenceTest, RandomWorkloadsConverge) {
  for (std::uint64_t seed : {11u, 22u, 33u}) {
    SCOPED_TRACE(seed);
    std::mt19937_64 rng(seed);
    Cluster c(3);
    std::vector<RandomWorkload> work;
    for (std::size_t i = 0; i < 3; ++i) work.emplace_back(c[i], rng);
    constexpr int kRounds = 25, kOpsPerRound = 10;
    for (int round = 0; round < kRounds; ++round) {
      for (std::size_t i = 0; i < 3; ++i) {
        for (int k = 0; k < kOpsPerRound; ++k) work[i].Step();
      }
      // A partial sync: some (from, to) pairs exchange, either the way
      // anti-entropy does (everything `from` has, of every origin) or just
      // some of `from`'s own ops (ahead of ops of others they depend on).
      for (std::size_t from = 0; from < 3; ++from) {
        for (std::size_t to = 0; to < 3; ++to) {
          if (from == to || rng() % 3 != 0) continue;
          if (rng() % 2 == 0) {
            c.Relay(c[from], c[to]);
          } else {
            Cluster::Deliver(c[from], c[to], 1 + rng() % 20);
          }
          ASSERT_FALSE(::testing::Test::HasFatalFailure());
        }
      }
      for (std::size_t i = 0; i < 3; ++i) ExpectNothingLost(*c[i], /*complete=*/false);
    }
    for (std::size_t i = 0; i < 3; ++i) EXPECT_GT(work[i].done(), kRounds * kOpsPerRound / 4);
    std::string tree = c.Converge(rng, 2);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    EXPECT_GT(std::count(tree.begin(), tree.end(), '\n'), 5) << tree;
  }
}

}  // namespace
}  // namespace dfs::core
