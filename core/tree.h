// TreeState: the replicated file tree's structure (groundwork for the mount
// issue), after Kleppmann, Mulligan, Gomes and Beresford, "A highly-available
// move operation for replicated trees" (IEEE TPDS 2021).
//
// Every structural change is a Move: put `child` under `parent` as `name`.
// Creating is a move of a new id; deleting is a move under Trash(). Moves
// are totally ordered by (HLC time, origin, seq). They may arrive in any
// order: a move older than ones already applied is slotted in by undoing the
// newer ones, doing it, and redoing them. A move that would make a node its
// own ancestor is skipped (and stays skipped or not as the log is redone),
// so every replica that has the same set of moves has the same tree and no
// cycle ever forms, whatever the delivery order.
//
// Names: two children of one directory may come to carry the same name
// (concurrent creates or moves). Children() resolves it deterministically:
// the child placed by the later move keeps the name; the others are listed
// as "name~<first 8 hex of their id>".
//
// Not yet: persistence (the SQLite tables of the index will hold the log and
// the parent table), truncation of the log below the causally stable time
// (the minimum of all replicas' version vectors), file attributes (last
// writer wins per attribute, like the key index). Memory here grows with
// the tree and the log.
//
// Thread safety: a value type; callers lock.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <map>
#include <tuple>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/hlc.h"
#include "core/node_id.h"

namespace dfs::core {

// A file or directory of the tree: 16 random bytes, fixed for its life.
struct FileId {
  std::array<std::uint8_t, 16> bytes{};
  auto operator<=>(const FileId&) const = default;
  bool operator==(const FileId&) const = default;

  static FileId Random();
  static FileId Root() { return FileId{}; }
  static FileId Trash() {
    FileId t;
    t.bytes.fill(0xff);
    return t;
  }
  std::string ShortHex() const;
};

struct Move {
  HlcTime time;
  NodeId origin;
  std::uint64_t seq = 0;
  FileId child;
  FileId parent;
  std::string name;

  // The total order moves apply in.
  auto Order() const { return std::tie(time, origin, seq); }
};

class TreeState {
 public:
  // Applies `move` in its place in the order; a move already applied is
  // ignored. Returns whether it was new.
  bool Apply(const Move& move);

  // Where `id` is: (parent, name as placed), or nullopt if never created.
  std::optional<std::pair<FileId, std::string>> Location(const FileId& id) const;
  // Whether `id` is under the root (not deleted, not in a deleted subtree).
  bool IsLive(const FileId& id) const;
  // The children of `dir` with their resolved names, in name order.
  std::vector<std::pair<std::string, FileId>> Children(const FileId& dir) const;
  // The child of `dir` with resolved name `name`.
  std::optional<FileId> Lookup(const FileId& dir, const std::string& name) const;

  bool operator==(const TreeState& other) const { return parent_ == other.parent_; }
  std::size_t log_size() const { return log_.size(); }

 private:
  struct Placed {
    FileId parent;
    std::string name;
    std::tuple<HlcTime, NodeId, std::uint64_t> by;  // the move that placed it
    bool operator==(const Placed&) const = default;
  };
  struct Entry {
    Move move;
    std::optional<Placed> before;  // the child's place before the move (none: new)
  };

  bool IsAncestor(const FileId& ancestor, FileId node) const;
  void Do(Entry& entry);
  void Undo(const Entry& entry);
  void Place(const FileId& child, const std::optional<Placed>& where);

  std::vector<Entry> log_;  // in move order
  std::map<FileId, Placed> parent_;
  std::map<FileId, std::map<FileId, bool>> children_;  // parent -> its children
};

}  // namespace dfs::core
