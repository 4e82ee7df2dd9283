#include "core/tree.h"

#include <algorithm>

#include "core/io.h"

namespace dfs::core {

FileId FileId::Random() {
  FileId id;
  do {
    FillRandom(id.bytes.data(), id.bytes.size());
  } while (id == Root() || id == Trash());
  return id;
}

std::string FileId::ShortHex() const { return ToHex(ByteSpan(bytes.data(), 4)); }

bool TreeState::Apply(const Move& move) {
  auto order = move.Order();
  // The first entry not before `move`.
  auto pos = std::lower_bound(log_.begin(), log_.end(), order,
                              [](const Entry& e, const auto& o) { return e.move.Order() < o; });
  if (pos != log_.end() && pos->move.Order() == order) return false;
  // Undo the newer moves, newest first; do this one; redo them in order.
  std::size_t at = static_cast<std::size_t>(pos - log_.begin());
  for (std::size_t i = log_.size(); i > at; --i) Undo(log_[i - 1]);
  log_.insert(log_.begin() + static_cast<std::ptrdiff_t>(at), Entry{move, std::nullopt});
  for (std::size_t i = at; i < log_.size(); ++i) Do(log_[i]);
  return true;
}

bool TreeState::IsAncestor(const FileId& ancestor, FileId node) const {
  // Walks up from `node`; the tree is acyclic, so this ends.
  for (;;) {
    if (node == ancestor) return true;
    auto it = parent_.find(node);
    if (it == parent_.end()) return false;
    node = it->second.parent;
  }
}

void TreeState::Place(const FileId& child, const std::optional<Placed>& where) {
  auto old = parent_.find(child);
  if (old != parent_.end()) {
    auto siblings = children_.find(old->second.parent);
    if (siblings != children_.end()) {
      siblings->second.erase(child);
      if (siblings->second.empty()) children_.erase(siblings);
    }
    parent_.erase(old);
  }
  if (where) {
    parent_[child] = *where;
    children_[where->parent][child] = true;
  }
}

void TreeState::Do(Entry& entry) {
  const Move& m = entry.move;
  auto current = parent_.find(m.child);
  entry.before = current == parent_.end() ? std::nullopt : std::optional<Placed>(current->second);
  // The root and the trash never move; nothing goes under itself or its
  // own descendants.
  if (m.child == FileId::Root() || m.child == FileId::Trash()) return;
  if (IsAncestor(m.child, m.parent)) return;
  Place(m.child, Placed{m.parent, m.name, m.Order()});
}

void TreeState::Undo(const Entry& entry) { Place(entry.move.child, entry.before); }

std::optional<std::pair<FileId, std::string>> TreeState::Location(const FileId& id) const {
  auto it = parent_.find(id);
  if (it == parent_.end()) return std::nullopt;
  return std::make_pair(it->second.parent, it->second.name);
}

bool TreeState::IsLive(const FileId& id) const {
  return id == FileId::Root() || (IsAncestor(FileId::Root(), id) && !IsAncestor(FileId::Trash(), id));
}

std::vector<std::pair<std::string, FileId>> TreeState::Children(const FileId& dir) const {
  std::vector<std::pair<std::string, FileId>> out;
  auto kids = children_.find(dir);
  if (kids == children_.end()) return out;
  // For each name, the child placed by the latest move keeps it.
  std::map<std::string, FileId> owner;
  for (const auto& [child, unused] : kids->second) {
    const Placed& p = parent_.at(child);
    auto [it, fresh] = owner.emplace(p.name, child);
    if (!fresh && parent_.at(it->second).by < p.by) it->second = child;
  }
  for (const auto& [child, unused] : kids->second) {
    const Placed& p = parent_.at(child);
    out.emplace_back(owner.at(p.name) == child ? p.name : p.name + "~" + child.ShortHex(), child);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<FileId> TreeState::Lookup(const FileId& dir, const std::string& name) const {
  for (const auto& [n, id] : Children(dir)) {
    if (n == name) return id;
  }
  return std::nullopt;
}

}  // namespace dfs::core
