#include "core/namespace.h"

#include <cstring>

#include <fmt/format.h>

#include "core/encoding.h"

namespace dfs::core {
namespace {

constexpr std::size_t kMaxSteps = 4096;
constexpr std::uint8_t kMaskMode = 1, kMaskUid = 2, kMaskGid = 4, kMaskAtime = 8, kMaskMtime = 16;

class Out {
 public:
  void U(std::uint64_t v, int n) {
    std::size_t at = b_.size();
    b_.resize(at + static_cast<std::size_t>(n));
    StoreLe(b_.data() + at, v, n);
  }
  void Raw(const void* p, std::size_t n) {
    std::size_t at = b_.size();
    b_.resize(at + n);
    if (n > 0) std::memcpy(b_.data() + at, p, n);
  }
  void Id(const FileId& id) { Raw(id.bytes.data(), id.bytes.size()); }
  void Str(std::string_view s, int len_bytes) {
    U(s.size(), len_bytes);
    Raw(s.data(), s.size());
  }
  Bytes Take() { return std::move(b_); }

 private:
  Bytes b_;
};

class In {
 public:
  explicit In(ByteSpan b) : b_(b) {}
  bool U(std::uint64_t* v, int n) {
    if (!Need(static_cast<std::size_t>(n))) return false;
    *v = LoadLe(b_.data() + at_, n);
    at_ += static_cast<std::size_t>(n);
    return true;
  }
  template <typename T>
  bool Num(T* v, int n) {
    std::uint64_t u;
    if (!U(&u, n)) return false;
    *v = static_cast<T>(u);
    return true;
  }
  bool Id(FileId* id) {
    if (!Need(id->bytes.size())) return false;
    std::memcpy(id->bytes.data(), b_.data() + at_, id->bytes.size());
    at_ += id->bytes.size();
    return true;
  }
  bool Str(std::string* s, int len_bytes, std::size_t max) {
    std::uint64_t n;
    if (!U(&n, len_bytes) || n > max || !Need(n)) return false;
    s->assign(reinterpret_cast<const char*>(b_.data() + at_), n);
    at_ += n;
    return true;
  }
  bool Blob(Bytes* out, int len_bytes, std::size_t max) {
    std::uint64_t n;
    if (!U(&n, len_bytes) || n > max || !Need(n)) return false;
    out->assign(b_.data() + at_, b_.data() + at_ + n);
    at_ += n;
    return true;
  }
  bool done() const { return at_ == b_.size(); }

 private:
  bool Need(std::uint64_t n) const { return n <= b_.size() - at_; }
  ByteSpan b_;
  std::size_t at_ = 0;
};

bool ValidType(std::uint8_t t) { return t >= 1 && t <= 7; }

}  // namespace

Status ValidateXattrName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("empty xattr name");
  if (name.size() > kXattrNameMax) return Status::NameTooLong("xattr name too long");
  if (name.starts_with("system.") ||
      (name.starts_with("security.") && name != "security.capability")) {
    return Status::Unsupported(fmt::format("xattr '{}' is not kept by dfs", name));
  }
  return Status::Ok();
}

Status ValidateName(std::string_view name) {
  if (name.size() > kNameMax) {
    return Status::NameTooLong(fmt::format("name of {} bytes (at most {})", name.size(), kNameMax));
  }
  if (name.empty()) return Status::InvalidArgument("empty name");
  if (name == "." || name == "..") return Status::InvalidArgument(fmt::format("name '{}'", name));
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("name holds '/' or NUL");
  }
  return Status::Ok();
}

Bytes TreeOp::Encode() const {
  Out o;
  o.U(kVersion, 1);
  o.U(steps.size(), 2);
  for (const TreeStep& s : steps) {
    o.U(static_cast<std::uint8_t>(s.kind), 1);
    switch (s.kind) {
      case TreeStep::Kind::kCreate:
        o.Id(s.inode);
        o.U(static_cast<std::uint8_t>(s.node.type), 1);
        o.U(s.node.mode, 4);
        o.U(s.node.uid, 4);
        o.U(s.node.gid, 4);
        o.U(s.node.rdev, 8);
        o.U(static_cast<std::uint64_t>(s.time_ns), 8);
        o.Str(s.node.symlink, 2);
        break;
      case TreeStep::Kind::kMove:
        o.Id(s.entry);
        o.Id(s.parent);
        o.Id(s.inode);
        o.U(static_cast<std::uint8_t>(s.node.type), 1);
        o.Str(s.name, 2);
        break;
      case TreeStep::Kind::kSetAttr: {
        const AttrChange& a = s.attrs;
        std::uint8_t mask = (a.mode ? kMaskMode : 0) | (a.uid ? kMaskUid : 0) |
                            (a.gid ? kMaskGid : 0) | (a.atime_ns ? kMaskAtime : 0) |
                            (a.mtime_ns ? kMaskMtime : 0);
        o.Id(s.inode);
        o.U(mask, 1);
        o.U(a.mode.value_or(0), 4);
        o.U(a.uid.value_or(0), 4);
        o.U(a.gid.value_or(0), 4);
        o.U(static_cast<std::uint64_t>(a.atime_ns.value_or(0)), 8);
        o.U(static_cast<std::uint64_t>(a.mtime_ns.value_or(0)), 8);
        break;
      }
      case TreeStep::Kind::kContent: {
        o.Id(s.inode);
        o.U(static_cast<std::uint64_t>(s.mtime_ns), 8);
        Bytes m = s.manifest.Encode();
        o.U(m.size(), 4);
        o.Raw(m.data(), m.size());
        break;
      }
      case TreeStep::Kind::kContentPart: {
        o.Id(s.inode);
        o.Id(s.content);
        o.U(s.part, 4);
        Bytes m = s.manifest.Encode();
        o.U(m.size(), 4);
        o.Raw(m.data(), m.size());
        break;
      }
      case TreeStep::Kind::kContentParts:
        o.Id(s.inode);
        o.U(static_cast<std::uint64_t>(s.mtime_ns), 8);
        o.Id(s.content);
        o.U(s.part, 4);
        o.U(s.manifest.size, 8);
        break;
      case TreeStep::Kind::kXattr:
        o.Id(s.inode);
        o.U(s.present ? 1 : 0, 1);
        o.Str(s.name, 2);
        o.U(s.value.size(), 4);
        o.Raw(s.value.data(), s.value.size());
        break;
    }
  }
  return o.Take();
}

Result<TreeOp> TreeOp::Decode(ByteSpan data) {
  In in(data);
  std::uint64_t version, count;
  if (!in.U(&version, 1) || !in.U(&count, 2)) return Status::Corrupt("tree op truncated");
  if (version != kVersion) {
    return Status::InvalidArgument(fmt::format("unsupported tree op version {}", version));
  }
  if (count == 0 || count > kMaxSteps) return Status::Corrupt(fmt::format("tree op of {} steps", count));
  TreeOp op;
  op.steps.reserve(count);
  auto bad = [](std::size_t i, std::string_view what) {
    return Status::Corrupt(fmt::format("tree op step {}: {}", i, what));
  };
  for (std::size_t i = 0; i < count; ++i) {
    TreeStep s;
    std::uint8_t kind, type;
    if (!in.Num(&kind, 1)) return bad(i, "truncated");
    s.kind = static_cast<TreeStep::Kind>(kind);
    switch (s.kind) {
      case TreeStep::Kind::kCreate:
        if (!in.Id(&s.inode) || !in.Num(&type, 1) || !in.Num(&s.node.mode, 4) ||
            !in.Num(&s.node.uid, 4) || !in.Num(&s.node.gid, 4) || !in.Num(&s.node.rdev, 8) ||
            !in.Num(&s.time_ns, 8) || !in.Str(&s.node.symlink, 2, kSymlinkMax)) {
          return bad(i, "create truncated");
        }
        if (!ValidType(type) || (s.node.mode & ~07777u) != 0) return bad(i, "bad type or mode");
        s.node.type = static_cast<FileType>(type);
        if (s.inode == FileId::Root() || s.inode == FileId::Trash()) return bad(i, "reserved inode");
        break;
      case TreeStep::Kind::kMove:
        if (!in.Id(&s.entry) || !in.Id(&s.parent) || !in.Id(&s.inode) || !in.Num(&type, 1) ||
            !in.Str(&s.name, 2, kNameMax)) {
          return bad(i, "move truncated");
        }
        if (!ValidType(type)) return bad(i, "bad type");
        s.node.type = static_cast<FileType>(type);
        if (s.entry == FileId::Root() || s.entry == FileId::Trash()) return bad(i, "moves the root");
        if (Status v = ValidateName(s.name); !v.ok()) return bad(i, v.message());
        break;
      case TreeStep::Kind::kSetAttr: {
        std::uint8_t mask;
        std::uint32_t mode, uid, gid;
        std::int64_t atime, mtime;
        if (!in.Id(&s.inode) || !in.Num(&mask, 1) || !in.Num(&mode, 4) || !in.Num(&uid, 4) ||
            !in.Num(&gid, 4) || !in.Num(&atime, 8) || !in.Num(&mtime, 8)) {
          return bad(i, "setattr truncated");
        }
        if ((mode & ~07777u) != 0 || (mask & ~31u) != 0) return bad(i, "bad mode or mask");
        if (mask & kMaskMode) s.attrs.mode = mode;
        if (mask & kMaskUid) s.attrs.uid = uid;
        if (mask & kMaskGid) s.attrs.gid = gid;
        if (mask & kMaskAtime) s.attrs.atime_ns = atime;
        if (mask & kMaskMtime) s.attrs.mtime_ns = mtime;
        break;
      }
      case TreeStep::Kind::kContent: {
        Bytes m;
        if (!in.Id(&s.inode) || !in.Num(&s.mtime_ns, 8) || !in.Blob(&m, 4, kManifestMax)) {
          return bad(i, "content truncated");
        }
        DFS_ASSIGN_OR_RETURN(s.manifest, Manifest::Decode(m));
        break;
      }
      case TreeStep::Kind::kContentPart: {
        Bytes m;
        if (!in.Id(&s.inode) || !in.Id(&s.content) || !in.Num(&s.part, 4) ||
            !in.Blob(&m, 4, kManifestMax)) {
          return bad(i, "content part truncated");
        }
        if (s.part >= kContentPartsMax) return bad(i, "content part number out of range");
        DFS_ASSIGN_OR_RETURN(s.manifest, Manifest::Decode(m));
        if (s.manifest.is_inline() || s.manifest.chunks.empty()) {
          return bad(i, "a content part holds stored chunks");
        }
        break;
      }
      case TreeStep::Kind::kContentParts:
        if (!in.Id(&s.inode) || !in.Num(&s.mtime_ns, 8) || !in.Id(&s.content) ||
            !in.Num(&s.part, 4) || !in.Num(&s.manifest.size, 8)) {
          return bad(i, "content parts truncated");
        }
        if (s.part < 1 || s.part > kContentPartsMax) return bad(i, "content part count out of range");
        break;
      case TreeStep::Kind::kXattr: {
        std::uint8_t present;
        if (!in.Id(&s.inode) || !in.Num(&present, 1) || !in.Str(&s.name, 2, kXattrNameMax) ||
            !in.Blob(&s.value, 4, kXattrValueMax)) {
          return bad(i, "xattr truncated");
        }
        if (present > 1 || s.name.empty()) return bad(i, "bad xattr");
        s.present = present == 1;
        break;
      }
      default:
        return Status::InvalidArgument(fmt::format("tree op step {}: unknown kind {}", i, kind));
    }
    op.steps.push_back(std::move(s));
  }
  if (!in.done()) return Status::Corrupt("tree op has trailing bytes");
  return op;
}

}  // namespace dfs::core
