#include "kv_value.hpp"

#include <sodium.h>

#include "json_term.hpp"
#include "nodus/node/codec.hpp"

namespace nodus::tools {

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len;
    std::uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

Result<std::string> value_bytes(const std::string& text, bool as_term) {
  if (!as_term) return text;
  auto t = json_text_to_term(text);
  if (!t.ok()) return Status(ErrorCode::kBadArg, "VALUE (--term): " + t.error().message());
  if (t->is_bin()) return t->as_bin();
  std::string out(1, kTermValueTag);
  encode_term(*t, out);
  return out;
}

nlohmann::json value_json(std::string_view bytes) {
  if (valid_utf8(bytes)) return std::string(bytes);
  if (!bytes.empty() && bytes.front() == kTermValueTag) {
    if (auto t = decode_term(bytes.substr(1)); t.ok()) return term_to_json(*t);
  }
  std::string b64(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(b64.data(), b64.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  b64.resize(b64.size() - 1);  // the terminating NUL
  return nlohmann::json{{"$base64", b64}};
}

std::string value_text(std::string_view bytes) {
  if (valid_utf8(bytes)) return std::string(bytes);
  return value_json(bytes).dump();
}

std::string to_base64url(std::string_view bytes) {
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_encoded_len(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), variant);
  out.resize(out.size() - 1);
  return out;
}

Result<std::string> from_base64url(std::string_view text) {
  std::string out(text.size(), '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size()) {
    return Status(ErrorCode::kBadArg, "not base64url text");
  }
  out.resize(len);
  return out;
}

}  // namespace nodus::tools
