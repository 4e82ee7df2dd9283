#include "core/key_names.h"

#include <gtest/gtest.h>

namespace dfs::core {
namespace {

TEST(KeyNamesTest, OrdinaryKeysAreAccepted) {
  for (std::string_view k : {"a", "notes.txt", "docs/2026/report.pdf", "ünïcødé/файл",
                             "with space", ".hidden", "a..b", "..."}) {
    EXPECT_TRUE(ValidateKey(k).ok()) << k << ": " << ValidateKey(k).ToString();
  }
  EXPECT_TRUE(ValidateKey(std::string(255, 'x')).ok());
}

TEST(KeyNamesTest, HostileKeysAreRefused) {
  const std::string with_nul("a\0b", 3);
  for (std::string k : {std::string(""), std::string("../x"), std::string("a/../b"),
                        std::string(".."), std::string("."), std::string("/etc/passwd"),
                        std::string("a//b"), std::string("a/"), with_nul,
                        std::string("line\nbreak"), std::string(10 * 1024, 'a'),
                        std::string(256, 'x'), std::string("\xff\xfe"),
                        std::string("\xc0\xaf"), std::string("\xe0\x80"),
                        std::string("\xed\xa0\x80")}) {
    Status s = ValidateKey(k);
    EXPECT_FALSE(s.ok()) << "accepted a hostile key of " << k.size() << " bytes";
    EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
    EXPECT_LT(s.message().size(), 200u) << "errors must not echo huge keys";
  }
}

TEST(KeyNamesTest, PrefixMayBeEmptyOrEndInSlash) {
  EXPECT_TRUE(ValidatePrefix("").ok());
  EXPECT_TRUE(ValidatePrefix("docs/").ok());
  EXPECT_TRUE(ValidatePrefix("do").ok());
  EXPECT_FALSE(ValidatePrefix("../").ok());
  EXPECT_FALSE(ValidatePrefix(std::string("a\0", 2)).ok());
}

}  // namespace
}  // namespace dfs::core
