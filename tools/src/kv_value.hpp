// How nodusctl writes the store's values, keys and causal contexts for people and scripts
// (DESIGN.md "Admin CLI", docs/protocol.md 12.3).
//
// The store keeps bytes. A VALUE on the command line is stored as the bytes of its text; with
// --term it is read as JSON mapped onto a term (json_term.hpp): a binary term is stored as its
// bytes, any other term as the byte 0x83 followed by the term's MessagePack encoding (as
// Erlang's term_to_binary starts with 131, a byte that cannot start UTF-8 text). Bytes are
// shown as a JSON string when they are valid UTF-8, as the term's JSON when they are such an
// encoded term, and as {"$base64": "..."} otherwise. Causal contexts and keys cursors are opaque
// bytes, written as base64url without padding.
//
// Thread-safety: free functions on values.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "nodus/transport/status.hpp"

namespace nodus::tools {

/// The first byte of a stored value that holds an encoded term.
inline constexpr char kTermValueTag = '\x83';

/// True when `bytes` is well-formed UTF-8 (no overlong forms, surrogates or code points above
/// U+10FFFF).
bool valid_utf8(std::string_view bytes);

/// The bytes to store for a VALUE given on the command line: its text, or with `as_term` the
/// encoding of the term its JSON stands for. Errors: kBadArg saying what is wrong with the
/// JSON.
Result<std::string> value_bytes(const std::string& text, bool as_term);

/// Stored bytes as JSON: a string, a term's JSON, or {"$base64": "..."} (above).
nlohmann::json value_json(std::string_view bytes);

/// Stored bytes for people: the text itself when it is UTF-8, else value_json's JSON text.
std::string value_text(std::string_view bytes);

/// Opaque bytes (a context, a cursor) as base64url without padding, and back. Errors: kBadArg
/// when `text` is not base64url.
std::string to_base64url(std::string_view bytes);
Result<std::string> from_base64url(std::string_view text);

}  // namespace nodus::tools
