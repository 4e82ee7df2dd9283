#include "core/sqlite_util.h"

#include <mutex>
#include <string>
#include <unordered_map>

namespace dfs::core {
namespace {

struct Cache {
  std::mutex mu;
  // Per connection: SQL text -> one idle statement.
  std::unordered_map<sqlite3*, std::unordered_map<std::string, sqlite3_stmt*>> idle;
};

Cache& TheCache() {
  static Cache* c = new Cache;  // never destroyed: statics may close databases late
  return *c;
}

}  // namespace

sqlite3_stmt* StmtCache::Take(sqlite3* db, const char* sql) {
  Cache& c = TheCache();
  std::lock_guard lock(c.mu);
  auto conn = c.idle.find(db);
  if (conn == c.idle.end()) return nullptr;
  auto it = conn->second.find(sql);
  if (it == conn->second.end()) return nullptr;
  sqlite3_stmt* stmt = it->second;
  conn->second.erase(it);
  return stmt;
}

void StmtCache::Give(sqlite3* db, const char* sql, sqlite3_stmt* stmt) {
  Cache& c = TheCache();
  {
    std::lock_guard lock(c.mu);
    auto [it, inserted] = c.idle[db].try_emplace(sql, stmt);
    if (inserted) return;
  }
  sqlite3_finalize(stmt);  // one of this text is idle already
}

void StmtCache::Drop(sqlite3* db) {
  std::unordered_map<std::string, sqlite3_stmt*> mine;
  {
    Cache& c = TheCache();
    std::lock_guard lock(c.mu);
    auto conn = c.idle.find(db);
    if (conn == c.idle.end()) return;
    mine = std::move(conn->second);
    c.idle.erase(conn);
  }
  for (auto& [sql, stmt] : mine) sqlite3_finalize(stmt);
}

}  // namespace dfs::core
