// SQLite helpers shared by the databases of core/ (the index, the keyless
// op store): error mapping, prepared statements, transactions, opening with
// the settings every dfs database uses. Internal to core/.
#pragma once

#include <sqlite3.h>

#include <filesystem>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/bytes.h"
#include "core/status.h"

namespace dfs::core {

// Maps an SQLite result code to a Status naming `what`.
inline Status SqliteStatus(sqlite3* db, int rc, std::string_view what) {
  std::string msg = fmt::format("{}: {}", what,
                                db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_FULL: return Status::NoSpace(std::move(msg));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return Status::Corrupt(std::move(msg));
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return Status::Unavailable(std::move(msg));
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN: return Status::Permission(std::move(msg));
    default: return Status::Io(std::move(msg));
  }
}

// Prepared statements kept per connection and SQL text for reuse: a
// statement is taken out while in use (so never shared) and given back
// reset. Preparing cost more than running the short queries of the file
// tree. Drop() finalizes a connection's statements; call it before
// sqlite3_close.
class StmtCache {
 public:
  static sqlite3_stmt* Take(sqlite3* db, const char* sql);
  static void Give(sqlite3* db, const char* sql, sqlite3_stmt* stmt);
  static void Drop(sqlite3* db);
};

// A prepared statement from the cache, given back reset on destruction.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db), sql_(sql) {
    stmt_ = StmtCache::Take(db, sql);
    rc_ = stmt_ != nullptr ? SQLITE_OK : sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() {
    if (stmt_ == nullptr) return;
    if (rc_ != SQLITE_OK) {
      sqlite3_finalize(stmt_);
      return;
    }
    Reset();
    StmtCache::Give(db_, sql_, stmt_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Status status(std::string_view what) const {
    return rc_ == SQLITE_OK ? Status::Ok() : SqliteStatus(db_, rc_, what);
  }
  void Bind(int i, std::string_view text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, ByteSpan blob) {
    sqlite3_bind_blob(stmt_, i, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, std::int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  // SQLITE_ROW -> true, SQLITE_DONE -> false, else error.
  Result<bool> Step(std::string_view what) {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteStatus(db_, rc, what);
  }
  std::int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return std::string(p ? p : "", static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  ByteSpan Blob(int col) const {
    auto p = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, col));
    return {p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))};
  }

 private:
  sqlite3* db_;
  const char* sql_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

// Runs a query that yields one integer (a count, a maximum) with `arg` as
// ?1, and resets it before returning: a statement left on its row keeps its
// read transaction open past COMMIT, and then the write-ahead log can never
// be checkpointed (it grew without bound, slowing every page lookup).
inline Result<std::int64_t> QueryInt(sqlite3* db, const char* sql, ByteSpan arg,
                                     std::string_view what) {
  Stmt s(db, sql);
  DFS_RETURN_IF_ERROR(s.status(what));
  s.Bind(1, arg);
  DFS_ASSIGN_OR_RETURN(bool row, s.Step(what));
  return row ? s.Int(0) : 0;
}

// Rolls back unless committed.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {}
  ~Transaction() {
    if (begun_ && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Status Begin() {
    int rc = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqliteStatus(db_, rc, "begin transaction");
    begun_ = true;
    return Status::Ok();
  }
  Status Commit() {
    int rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqliteStatus(db_, rc, "commit");
    done_ = true;
    return Status::Ok();
  }

 private:
  sqlite3* db_;
  bool begun_ = false;
  bool done_ = false;
};

inline Status ExecSql(sqlite3* db, const char* sql, std::string_view what) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, fmt::format("{}: setup", what));
  return Status::Ok();
}

// Opens (creating) a database in WAL mode with synchronous=FULL, so a commit
// is durable when it returns; `what` names it in errors. The caller closes it.
// The log is checkpointed every 1000 pages (SQLite's default, which a
// database may raise) and, once a checkpoint let it start over, cut back to
// 32 MiB if a large transaction had grown it.
inline Result<sqlite3*> OpenSqlite(const std::filesystem::path& path, std::string_view what) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    Status s = SqliteStatus(db, rc, fmt::format("{}: open {}", what, path.string()));
    sqlite3_close(db);
    return s;
  }
  sqlite3_busy_timeout(db, 10000);
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                             "PRAGMA foreign_keys=ON", "PRAGMA cache_size=-4096",
                             "PRAGMA journal_size_limit=33554432"}) {
    Status s = ExecSql(db, pragma, what);
    if (!s.ok()) {
      sqlite3_close(db);
      return s;
    }
  }
  return db;
}

}  // namespace dfs::core
