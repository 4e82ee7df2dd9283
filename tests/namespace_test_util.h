// Helpers shared by the tests of the file tree (namespace_codec_test.cc,
// namespace_test.cc, namespace_convergence_test.cc): status checks, node
// kinds, listings, and a dump of everything a mount could see of a tree,
// checked for lost entries and cycles.
#pragma once

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/file_server.h"
#include "core/index.h"
#include "core/namespace.h"
#include "core/tree_db.h"
#include "tests/test_util.h"

namespace dfs::core::testing_ns {

inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const Result<T>& r) {
  return r.status();
}

#define NS_ASSERT_OK(expr)                                                       \
  do {                                                                           \
    const auto& ns_r_ = (expr);                                                  \
    ASSERT_TRUE(ns_r_.ok()) << #expr << ": " << StatusOf(ns_r_).ToString();      \
  } while (0)
#define NS_EXPECT_OK(expr)                                                       \
  do {                                                                           \
    const auto& ns_r_ = (expr);                                                  \
    EXPECT_TRUE(ns_r_.ok()) << #expr << ": " << StatusOf(ns_r_).ToString();      \
  } while (0)
#define NS_EXPECT_CODE(expr, c)                                                  \
  do {                                                                           \
    const auto& ns_r_ = (expr);                                                  \
    EXPECT_EQ(ErrorCodeName(StatusOf(ns_r_).code()), ErrorCodeName(ErrorCode::c)) \
        << #expr << ": " << StatusOf(ns_r_).ToString();                          \
  } while (0)

// The value of a Result, or a failed expectation and a default value.
template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) {
    ADD_FAILURE() << what << ": " << r.status().ToString();
    return T{};
  }
  return std::move(r).value();
}
#define MUST(expr) Must((expr), #expr)

inline VolumeKey TestKey() {
  Bytes b(VolumeKey::kSize, 7);
  return *VolumeKey::FromBytes(b);
}

inline FileServerOptions Options(std::uint8_t node) {
  FileServerOptions o;
  o.node_id = testing::TestNodeId(node);
  o.chunker = {64 * 1024, 128 * 1024, 512 * 1024};
  o.workers = 2;
  o.lock_timeout = std::chrono::milliseconds(200);
  return o;
}

inline NewNode Dir(std::uint32_t mode = 0755) {
  NewNode n;
  n.type = FileType::kDirectory;
  n.mode = mode;
  return n;
}
inline NewNode File(std::uint32_t mode = 0644) {
  NewNode n;
  n.type = FileType::kRegular;
  n.mode = mode;
  return n;
}
inline NewNode Symlink(std::string target) {
  NewNode n;
  n.type = FileType::kSymlink;
  n.mode = 0777;
  n.symlink = std::move(target);
  return n;
}

inline std::string Hex(ByteSpan b) { return ToHex(b); }

// The names `dir` lists, in listing order.
inline std::vector<std::string> Names(FileServer& fs, const FileId& dir) {
  std::vector<std::string> names;
  Status s = fs.ReadDir(dir, 0, [&](const DirEntry& e, std::uint64_t) {
    names.push_back(e.name);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  std::sort(names.begin(), names.end());  // listings are in placement order
  return names;
}

inline std::vector<std::pair<DirEntry, std::uint64_t>> List(FileServer& fs, const FileId& dir,
                                                            std::uint64_t offset = 0,
                                                            std::size_t max = SIZE_MAX) {
  std::vector<std::pair<DirEntry, std::uint64_t>> out;
  Status s = fs.ReadDir(dir, offset, [&](const DirEntry& e, std::uint64_t next) {
    out.emplace_back(e, next);
    return out.size() < max;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// Resuming a listing from every `next` offset gives exactly the rest of it.
inline void ExpectResumable(FileServer& fs, const FileId& dir) {
  auto all = List(fs, dir);
  for (std::size_t i = 0; i < all.size(); ++i) {
    auto rest = List(fs, dir, all[i].second);
    ASSERT_EQ(rest.size(), all.size() - i - 1) << "resuming after entry " << i;
    for (std::size_t j = 0; j < rest.size(); ++j) {
      EXPECT_EQ(rest[j].first.name, all[i + 1 + j].first.name);
      EXPECT_EQ(rest[j].first.entry, all[i + 1 + j].first.entry);
      EXPECT_EQ(rest[j].second, all[i + 1 + j].second);
    }
  }
}

inline std::string TypeName(FileType t) {
  switch (t) {
    case FileType::kRegular: return "file";
    case FileType::kDirectory: return "dir";
    case FileType::kSymlink: return "symlink";
    case FileType::kFifo: return "fifo";
    case FileType::kSocket: return "socket";
    case FileType::kCharDevice: return "chr";
    case FileType::kBlockDevice: return "blk";
  }
  return "?";
}

inline std::string AttrLine(const Attr& a) {
  return fmt::format("inode={} type={} mode={:o} uid={} gid={} size={} nlink={} rdev={} atime={} "
                     "mtime={} ctime={}",
                     a.inode.ShortHex(), TypeName(a.type), a.mode, a.uid, a.gid, a.size, a.nlink,
                     a.rdev, a.atime_ns, a.mtime_ns, a.ctime_ns);
}

// Everything the mount could see of the tree, one line per entry, walking
// from the root. Also checks that every listed name looks up to the same
// entry, and that every entry with a name is reachable from the root (none
// lost under a removed directory or in a detached cycle).
inline std::string Dump(FileServer& fs) {
  std::string out = "/ " + AttrLine(MUST(fs.GetAttr(FileId::Root()))) + "\n";
  std::uint64_t reachable = 0;
  std::function<void(const FileId&, const std::string&, int)> walk =
      [&](const FileId& dir, const std::string& path, int depth) {
        if (depth > 200) {
          ADD_FAILURE() << "tree deeper than any test builds at " << path;
          return;
        }
        auto listed = List(fs, dir);  // placement order is local: compare in name order
        std::sort(listed.begin(), listed.end(),
                  [](const auto& x, const auto& y) { return x.first.name < y.first.name; });
        for (const auto& [e, next] : listed) {
          (void)next;
          ++reachable;
          std::string p = path + "/" + e.name;
          const Attr& a = e.attr;
          out += fmt::format("{} entry={} {}", p, e.entry.ShortHex(), AttrLine(a));
          Result<DirEntry> looked = fs.LookupName(dir, e.name);
          if (!looked.ok() || looked->entry != e.entry) {
            ADD_FAILURE() << "lookup of listed name " << p << " gives "
                          << (looked.ok() ? looked->entry.ShortHex() : looked.status().ToString());
          }
          Attr direct = MUST(fs.GetAttr(a.inode));
          EXPECT_EQ(AttrLine(direct), AttrLine(a)) << p;
          if (a.type == FileType::kSymlink) out += " -> " + MUST(fs.ReadLink(a.inode));
          if (a.type == FileType::kRegular) {
            Manifest m = MUST(fs.Content(a.inode));
            EXPECT_EQ(m.size, a.size) << p;
            out += fmt::format(" content={}:", m.size);
            for (const ChunkRef& r : m.chunks) {
              out += fmt::format("{}/{},", r.IsHole() ? "hole" : r.id.ShortHex(), r.size);
            }
          }
          for (const std::string& x : MUST(fs.ListXattr(a.inode))) {
            out += fmt::format(" {}={}", x, Hex(MUST(fs.GetXattr(a.inode, x))));
          }
          out += "\n";
          if (a.type == FileType::kDirectory) walk(e.entry, p, depth + 1);
        }
      };
  walk(FileId::Root(), "", 0);
  auto live = fs.index().WithDb([](sqlite3* db) { return treedb::CountLiveEntries(db); });
  EXPECT_TRUE(live.ok());
  if (live.ok()) {
    EXPECT_EQ(reachable, *live) << "entries with a name that the root does not reach:\n" << out;
  }
  return out;
}

// Walks up from every entry that is not in the trash: each must reach the
// root — or, while some ops are still on their way (`complete` false), an
// entry this node has not heard of yet. Never a directory in the trash (a
// name lost with a removed directory) or a cycle.
inline void ExpectNothingLost(FileServer& fs, bool complete) {
  std::vector<FileId> ids;
  Status s = fs.index().WithDb([&](sqlite3* db) -> Status {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT id FROM entries WHERE parent != ?1", -1, &st, nullptr) !=
        SQLITE_OK) {
      return Status::Io(sqlite3_errmsg(db));
    }
    FileId trash = FileId::Trash();
    sqlite3_bind_blob(st, 1, trash.bytes.data(), 16, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
      FileId id;
      std::memcpy(id.bytes.data(), sqlite3_column_blob(st, 0), 16);
      ids.push_back(id);
    }
    sqlite3_finalize(st);
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (const FileId& id : ids) {
    FileId at = id;
    std::string chain = id.ShortHex();
    for (int depth = 0;; ++depth) {
      if (at == FileId::Root()) break;
      if (depth > 1000) {
        ADD_FAILURE() << "cycle above entry " << chain.substr(0, 200);
        break;
      }
      auto e = fs.index().WithDb([&](sqlite3* db) { return treedb::GetEntry(db, at); });
      ASSERT_TRUE(e.ok()) << e.status().ToString();
      if (!e->has_value()) {
        EXPECT_FALSE(complete) << "entry " << chain << " hangs under an unknown entry";
        break;
      }
      if ((*e)->parent == FileId::Trash()) {
        ADD_FAILURE() << "entry " << chain << " is under a removed directory";
        break;
      }
      at = (*e)->parent;
      chain += " < " + at.ShortHex();
    }
  }
}

}  // namespace dfs::core::testing_ns
