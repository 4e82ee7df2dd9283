// The volume's file tree as the mount sees it: the types of its nodes and
// the tree ops that change it (docs/format.md, "tree op").
//
// Two kinds of object:
//   - an *inode* (FileId) holds what a file is: type, mode, owner, times,
//     content (a Manifest), symlink target, extended attributes;
//   - an *entry* (FileId) is one name of an inode in a directory. A file
//     with three hard links has three entries. A directory has exactly one
//     entry, and its entry id is its inode id. The root is FileId::Root().
//
// Entries form the replicated tree of core/tree.h (Kleppmann et al.): every
// structural change is a move of an entry; creating is a move of a new
// entry, removing is a move under FileId::Trash(). Inode attributes, content
// and each extended attribute are last-writer-wins registers ordered by the
// op that wrote them. A tree op is one op of the node's op log (Op::Kind::
// kTree) and holds a list of steps that apply together, in order.
//
// Thread safety: value types.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/manifest.h"
#include "core/status.h"
#include "core/tree.h"

namespace dfs::core {

enum class FileType : std::uint8_t {
  kRegular = 1,
  kDirectory = 2,
  kSymlink = 3,
  kFifo = 4,
  kSocket = 5,
  kCharDevice = 6,
  kBlockDevice = 7,
};

// What stat(2) shows of an inode.
struct Attr {
  FileId inode;
  FileType type = FileType::kRegular;
  std::uint32_t mode = 0;  // permission bits and set-id/sticky (07777), no type bits
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t size = 0;  // content bytes; symlink: target length
  std::uint32_t nlink = 1;
  std::uint64_t rdev = 0;
  std::int64_t atime_ns = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
};

// One name in a directory listing, with what it names.
struct DirEntry {
  std::string name;  // as listed: a name two entries share gets "~<8 hex>" on the older one
  FileId entry;
  Attr attr;
};

// What a new inode starts as.
struct NewNode {
  FileType type = FileType::kRegular;
  std::uint32_t mode = 0644;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t rdev = 0;
  std::string symlink;  // the target, for kSymlink
};

// A change of attributes; only the fields that are set change.
struct AttrChange {
  std::optional<std::uint32_t> mode;
  std::optional<std::uint32_t> uid;
  std::optional<std::uint32_t> gid;
  std::optional<std::int64_t> atime_ns;
  std::optional<std::int64_t> mtime_ns;
};

// One step of a tree op.
struct TreeStep {
  enum class Kind : std::uint8_t {
    kCreate = 1,   // inode: a new inode with `node` (idempotent)
    kMove = 2,     // entry -> (parent, name); `inode` is what the entry names
    kSetAttr = 3,  // inode: the fields of `attrs` that are set
    kContent = 4,  // inode: content = manifest, mtime = mtime_ns
    kXattr = 5,    // inode: xattr `name` = value, or removed when !present
    // A manifest too large for one op travels in pieces: ops of kContentPart
    // steps, then the op whose kContentParts step commits them. An origin's
    // ops apply in its order, so every replica holds the pieces by then.
    kContentPart = 6,   // inode: piece number `part` of content `content`; manifest = its refs
    kContentParts = 7,  // inode: content = the `part` pieces of `content` joined
                        // (manifest carries only their total size), mtime = mtime_ns
  };
  Kind kind = Kind::kMove;
  FileId inode;
  FileId entry;
  FileId parent;
  std::string name;  // entry name (kMove) or xattr name (kXattr)
  NewNode node;      // kCreate
  std::int64_t time_ns = 0;  // kCreate: birth time (atime = mtime = ctime)
  AttrChange attrs;  // kSetAttr
  Manifest manifest; // kContent, kContentPart; kContentParts: its size only
  std::int64_t mtime_ns = 0;  // kContent, kContentParts
  FileId content;          // kContentPart, kContentParts: which pieced content
  std::uint32_t part = 0;  // kContentPart: the piece's number; kContentParts: how many
  Bytes value;       // kXattr
  bool present = true;  // kXattr
};

struct TreeOp {
  static constexpr std::uint8_t kVersion = 1;
  std::vector<TreeStep> steps;

  // Versioned binary encoding (docs/format.md, "tree op"). Decode validates
  // every field (names, sizes, kinds); errors: kCorrupt, kInvalidArgument.
  Bytes Encode() const;
  static Result<TreeOp> Decode(ByteSpan data);
};

inline constexpr std::size_t kNameMax = 255;       // bytes of one name
inline constexpr std::size_t kSymlinkMax = 4095;   // bytes of a symlink target (PATH_MAX - 1)
inline constexpr std::size_t kXattrNameMax = 255;
inline constexpr std::size_t kXattrValueMax = 64 * 1024;
// Bound on a file's encoded manifest, whole or joined from pieces (about
// 1.8 million chunks: 1.8 TiB with the default chunker). It is held in memory
// whole when the file is read or written.
inline constexpr std::size_t kManifestMax = 64u << 20;
inline constexpr std::uint32_t kContentPartsMax = 65536;  // pieces of one content

// A name that may be an entry's: 1..255 bytes, no '/', no NUL, not "." or
// "..". Errors: kNameTooLong, kInvalidArgument.
Status ValidateName(std::string_view name);

// An xattr name dfs keeps: 1..255 bytes. Names the kernel or a security
// module would interpret are refused with kUnsupported (EOPNOTSUPP):
// "system.*" (POSIX ACLs, which the mount would not enforce; access is
// the mode bits, checked by the kernel) and "security.*" labels of modules
// dfs does not run, except "security.capability" (file capabilities, which
// the kernel reads through getxattr). Refusing them quickly also tells
// `ls -l` and friends to stop asking for every file. Errors: kNameTooLong,
// kInvalidArgument, kUnsupported.
Status ValidateXattrName(std::string_view name);

}  // namespace dfs::core
