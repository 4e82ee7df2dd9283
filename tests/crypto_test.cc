// Known-answer tests for the primitives dfs uses (as dfs calls them), and the
// behaviour of the key file and VolumeCrypto.
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <cryptopp/aes.h>
#include <cryptopp/crc.h>
#include <cryptopp/gcm.h>
#include <cryptopp/hkdf.h>
#include <cryptopp/hmac.h>
#include <cryptopp/sha.h>
#include <gtest/gtest.h>

#include "core/encoding.h"
#include "core/key_file.h"
#include "core/volume_crypto.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

Bytes Hex(std::string_view hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// RFC 4231, test cases 1 and 2.
TEST(CryptoKat, HmacSha256Rfc4231) {
  auto hmac = [](const Bytes& key, std::string_view data) {
    CryptoPP::HMAC<CryptoPP::SHA256> h(key.data(), key.size());
    Bytes out(32);
    h.CalculateDigest(out.data(), reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
    return ToHex(out);
  };
  EXPECT_EQ(hmac(Bytes(20, 0x0b), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(hmac(Bytes{'J', 'e', 'f', 'e'}, "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

// RFC 5869, test cases 1 and 3 (3: empty salt and info, as dfs derives).
TEST(CryptoKat, HkdfSha256Rfc5869) {
  auto hkdf = [](const Bytes& ikm, const Bytes& salt, const Bytes& info) {
    Bytes out(42);
    CryptoPP::HKDF<CryptoPP::SHA256>().DeriveKey(out.data(), out.size(), ikm.data(), ikm.size(),
                                                 salt.data(), salt.size(), info.data(),
                                                 info.size());
    return ToHex(out);
  };
  EXPECT_EQ(hkdf(Bytes(22, 0x0b), Hex("000102030405060708090a0b0c"), Hex("f0f1f2f3f4f5f6f7f8f9")),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  EXPECT_EQ(hkdf(Bytes(22, 0x0b), {}, {}),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

// RFC 3720 (iSCSI), appendix B.4, and the common check value.
TEST(CryptoKat, Crc32cRfc3720) {
  auto crc = [](const Bytes& b) { return Crc32c(b.data(), b.size()); };
  Bytes up(32), down(32);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<std::uint8_t>(i);
    down[i] = static_cast<std::uint8_t>(31 - i);
  }
  EXPECT_EQ(crc(Bytes(32, 0x00)), 0x8A9136AAu);
  EXPECT_EQ(crc(Bytes(32, 0xFF)), 0x62A8AB43u);
  EXPECT_EQ(crc(up), 0x46DD794Eu);
  EXPECT_EQ(crc(down), 0x113FDB5Cu);
  const std::string check = "123456789";
  EXPECT_EQ(crc(Bytes(check.begin(), check.end())), 0xE3069283u);
  EXPECT_EQ(crc(Bytes()), 0u);
}

// The chunk files, manifests and op records on disk carry CRC32Cs that
// Crypto++ computed before ISA-L did: both agree at every length and
// alignment the fast paths split on.
TEST(CryptoKat, Crc32cAgreesWithCryptoPP) {
  Bytes buf = testing::RandomBytes(3 << 20, 7);
  for (std::size_t n : {1u, 3u, 8u, 15u, 16u, 31u, 63u, 64u, 127u, 255u, 256u, 1000u, 4095u,
                        4096u, 65537u, 1u << 20, (3u << 20) - 5}) {
    for (std::size_t off : {0u, 1u, 5u}) {
      CryptoPP::CRC32C ref;
      ref.Update(buf.data() + off, n);
      std::uint8_t digest[4];
      ref.Final(digest);
      EXPECT_EQ(Crc32c(buf.data() + off, n), LoadLe(digest, 4)) << n << " at " << off;
    }
  }
}

// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 14 and 16.
TEST(CryptoKat, Aes256GcmSpecVectors) {
  struct Case {
    std::string key, iv, aad, plain, cipher, tag;
  };
  const Case cases[] = {
      {std::string(64, '0'), std::string(24, '0'), "", std::string(32, '0'),
       "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
      {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
       "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
       "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
       "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
       "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
       "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
       "76fc6ece0f4e1768cddf8853bb2d551b"},
  };
  for (const Case& c : cases) {
    Bytes key = Hex(c.key), iv = Hex(c.iv), aad = Hex(c.aad), plain = Hex(c.plain);
    Bytes cipher(plain.size()), tag(16);
    CryptoPP::GCM<CryptoPP::AES>::Encryption enc;
    enc.SetKeyWithIV(key.data(), key.size(), iv.data(), iv.size());
    enc.EncryptAndAuthenticate(cipher.data(), tag.data(), tag.size(), iv.data(), iv.size(),
                               aad.data(), aad.size(), plain.data(), plain.size());
    EXPECT_EQ(ToHex(cipher), c.cipher);
    EXPECT_EQ(ToHex(tag), c.tag);
    Bytes back(plain.size());
    CryptoPP::GCM<CryptoPP::AES>::Decryption dec;
    dec.SetKeyWithIV(key.data(), key.size(), iv.data(), iv.size());
    EXPECT_TRUE(dec.DecryptAndVerify(back.data(), tag.data(), tag.size(), iv.data(), iv.size(),
                                     aad.data(), aad.size(), cipher.data(), cipher.size()));
    EXPECT_EQ(back, plain);
  }
}

VolumeKey FixedKey(std::uint8_t base = 0) {
  Bytes b(32);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(base + i);
  return *VolumeKey::FromBytes(b);
}

TEST(VolumeCryptoTest, SubkeysAreDistinctAndNotZero) {
  VolumeCrypto c(FixedKey());
  Bytes a = c.DeriveSubkey("a", 32), b = c.DeriveSubkey("b", 32);
  EXPECT_NE(a, b);
  EXPECT_NE(a, Bytes(32, 0));
  EXPECT_NE(a, Bytes(FixedKey().secret().begin(), FixedKey().secret().end()));
  EXPECT_NE(c.key_check(), (std::array<std::uint8_t, 8>{}));
  EXPECT_NE(c.chunker_seed(), 0u);
  VolumeCrypto other(FixedKey(1));
  EXPECT_NE(c.key_check(), other.key_check());
  EXPECT_NE(c.chunker_seed(), other.chunker_seed());
}

TEST(VolumeCryptoTest, IdIsKeyedHmacOfPlaintext) {
  VolumeCrypto c(FixedKey()), other(FixedKey(1));
  Bytes data = testing::RandomBytes(1000, 1);
  EXPECT_EQ(c.ComputeId(data), c.ComputeId(data));
  EXPECT_NE(c.ComputeId(data), other.ComputeId(data));
  data[0] ^= 1;
  EXPECT_NE(c.ComputeId(data), c.ComputeId(testing::RandomBytes(1000, 1)));
}

TEST(VolumeCryptoTest, SealRoundTripsAndHidesPlaintext) {
  VolumeCrypto c(FixedKey());
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{1} << 20}) {
    Bytes plain(size, 'A');
    ChunkId id = c.ComputeId(plain);
    Bytes sealed, back;
    c.Seal(id, plain, &sealed);
    ASSERT_EQ(sealed.size(), size + VolumeCrypto::kOverhead);
    if (size > 64) {
      EXPECT_EQ(AsString(sealed).find(std::string(32, 'A')), std::string::npos);
    }
    ASSERT_TRUE(c.Unseal(id, sealed, &back).ok());
    EXPECT_EQ(back, plain);
    Bytes again;
    c.Seal(id, plain, &again);
    EXPECT_EQ(again, sealed) << "sealing is deterministic";
  }
}

TEST(VolumeCryptoTest, SealIntoALentBufferEqualsSeal) {
  VolumeCrypto c(FixedKey());
  Bytes plain = testing::RandomBytes(100000, 7), sealed, back;
  ChunkId id = c.ComputeId(plain);
  c.Seal(id, plain, &sealed);
  Bytes lent(plain.size() + VolumeCrypto::kOverhead, 0xee);
  c.SealInto(id, plain, lent);
  EXPECT_EQ(lent, sealed);
  ASSERT_TRUE(c.Unseal(id, lent, &back).ok());
  EXPECT_EQ(back, plain);
  Bytes short_by_one(plain.size() + VolumeCrypto::kOverhead - 1);
  EXPECT_THROW(c.SealInto(id, plain, short_by_one), std::logic_error);
}

TEST(VolumeCryptoTest, WrongKeyIsReportedAsWrongKey) {
  VolumeCrypto c(FixedKey()), other(FixedKey(1));
  Bytes plain = testing::RandomBytes(5000, 2), sealed, out{1, 2, 3};
  ChunkId id = c.ComputeId(plain);
  c.Seal(id, plain, &sealed);
  Status s = other.Unseal(id, sealed, &out);
  EXPECT_EQ(s.code(), ErrorCode::kWrongKey) << s.ToString();
  EXPECT_TRUE(out.empty());
}

TEST(VolumeCryptoTest, AnyFlippedByteOrWrongIdFails) {
  VolumeCrypto c(FixedKey());
  Bytes plain = testing::RandomBytes(300, 3), sealed, out;
  ChunkId id = c.ComputeId(plain);
  c.Seal(id, plain, &sealed);
  for (std::size_t i = 0; i < sealed.size(); ++i) {
    Bytes bad = sealed;
    bad[i] ^= 0x80;
    Status s = c.Unseal(id, bad, &out);
    EXPECT_FALSE(s.ok()) << "byte " << i;
    EXPECT_TRUE(out.empty()) << "byte " << i;
  }
  ChunkId other = c.ComputeId(AsBytes("other"));
  EXPECT_EQ(c.Unseal(other, sealed, &out).code(), ErrorCode::kCorrupt);
  for (std::size_t n : {std::size_t{0}, std::size_t{3}, std::size_t{20}, sealed.size() - 1}) {
    EXPECT_FALSE(c.Unseal(id, ByteSpan(sealed.data(), n), &out).ok()) << n;
    EXPECT_TRUE(out.empty());
  }
}

// A saved envelope pins format v1 (key derivation, header, AAD, cipher).
TEST(VolumeCryptoTest, DecodesSavedFixture) {
  const auto path = std::filesystem::path(DFS_FIXTURE_DIR) / "crypto_envelope_v1.bin";
  VolumeCrypto c(FixedKey());
  const std::string text = "dfs envelope fixture v1: the quick brown fox";
  ChunkId id = c.ComputeId(AsBytes(text));
  if (std::getenv("DFS_WRITE_FIXTURES") != nullptr) {
    Bytes sealed;
    c.Seal(id, AsBytes(text), &sealed);
    testing::WriteFile(path, sealed);
  }
  Bytes saved = testing::ReadFile(path);
  ASSERT_FALSE(saved.empty());
  Bytes out;
  Status s = c.Unseal(id, saved, &out);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(AsString(out), text);
  EXPECT_EQ(saved.size(), text.size() + VolumeCrypto::kOverhead);
}

TEST(KeyFileTest, CreateReadRoundTripMode0600) {
  testing::TempDir dir;
  auto path = dir / "sub/dir/volume.key";
  ASSERT_TRUE(CreateKeyFile(path).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto a = ReadKeyFile(path), b = ReadKeyFile(path);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(std::equal(a->secret().begin(), a->secret().end(), b->secret().begin()));
  EXPECT_NE(Bytes(a->secret().begin(), a->secret().end()), Bytes(32, 0));
  // Two generated keys differ.
  ASSERT_TRUE(CreateKeyFile(dir / "second.key").ok());
  auto c = ReadKeyFile(dir / "second.key");
  EXPECT_FALSE(std::equal(a->secret().begin(), a->secret().end(), c->secret().begin()));
}

TEST(KeyFileTest, RefusesToOverwrite) {
  testing::TempDir dir;
  auto path = dir / "k";
  ASSERT_TRUE(CreateKeyFile(path).ok());
  Bytes before = testing::ReadFile(path);
  Status s = CreateKeyFile(path);
  EXPECT_EQ(s.code(), ErrorCode::kExists);
  EXPECT_NE(s.message().find(path.string()), std::string::npos);
  EXPECT_EQ(testing::ReadFile(path), before);
}

TEST(KeyFileTest, BadFilesGiveClearErrors) {
  testing::TempDir dir;
  EXPECT_EQ(ReadKeyFile(dir / "missing").status().code(), ErrorCode::kNotFound);
  ASSERT_TRUE(CreateKeyFile(dir / "good").ok());
  std::string good(AsString(testing::ReadFile(dir / "good")));
  struct Bad {
    std::string content, expect;
  };
  std::string damaged = good;
  damaged[good.find("key ") + 10] = damaged[good.find("key ") + 10] == 'a' ? 'b' : 'a';
  std::string wrong_version = good;
  wrong_version.replace(good.find(" 1\n"), 3, " 7\n");
  const Bad cases[] = {
      {"hello world\n", "not a dfs volume key file"},
      {"", "not a dfs volume key file"},
      {wrong_version, "unsupported key file version '7'"},
      {damaged, "checksum mismatch"},
      {good.substr(0, good.size() - 5), "malformed"},
      {std::string(5000, 'x'), "not a small regular file"},
  };
  int i = 0;
  for (const Bad& b : cases) {
    auto path = dir / ("bad" + std::to_string(i++));
    testing::WriteFile(path, AsBytes(b.content));
    auto key = ReadKeyFile(path);
    ASSERT_FALSE(key.ok()) << b.expect;
    EXPECT_EQ(key.status().code(), ErrorCode::kInvalidArgument) << b.expect;
    EXPECT_NE(key.status().message().find(b.expect), std::string::npos) << key.status().ToString();
  }
}

}  // namespace
}  // namespace dfs::core
