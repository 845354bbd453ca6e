// The text form of the records the store keeps beside its data (Engine::put_meta): numbers in
// decimal and byte strings as "LEN:BYTES", separated by single spaces, so that a record holds
// any key or node name and a reader checks every length against what is there.
//
// Thread-safety: values; use each from one thread.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace nodus::kv {

/// Builds a record, field by field.
class RecordWriter {
 public:
  RecordWriter& number(std::uint64_t v) {
    space();
    s_.append(std::to_string(v));
    return *this;
  }
  RecordWriter& bytes(std::string_view b) {
    number(b.size());
    s_.push_back(':');
    s_.append(b);
    return *this;
  }
  const std::string& str() const { return s_; }
  std::string take() { return std::move(s_); }

 private:
  void space() {
    if (!s_.empty()) s_.push_back(' ');
  }
  std::string s_;
};

/// Reads a record field by field; each read returns false (and reads nothing more) when the
/// next field is not of the kind asked for or runs past the end.
class RecordReader {
 public:
  explicit RecordReader(std::string_view s) : s_(s) {}
  bool number(std::uint64_t& v) {
    skip_space();
    const char* end = s_.data() + s_.size();
    auto [p, ec] = std::from_chars(s_.data() + pos_, end, v);
    if (ec != std::errc()) return false;
    pos_ = static_cast<std::size_t>(p - s_.data());
    return true;
  }
  bool bytes(std::string& out) {
    std::uint64_t n = 0;
    if (!number(n) || pos_ >= s_.size() || s_[pos_] != ':' || n > s_.size() - pos_ - 1) {
      return false;
    }
    out.assign(s_.substr(pos_ + 1, n));
    pos_ += 1 + n;
    return true;
  }
  /// True when every field was read.
  bool done() const { return pos_ == s_.size(); }

 private:
  void skip_space() {
    if (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
  }
  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace nodus::kv
