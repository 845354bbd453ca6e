// RespParser and the RESP2 reply writers (resp.hpp): Redis's networking.c request parsing.
#include <cctype>
#include <charconv>

#include "resp.hpp"

namespace nodus::tools {

namespace {

constexpr std::size_t npos = std::string::npos;

// A decimal integer filling `s` exactly (Redis's string2ll).
bool to_ll(std::string_view s, long long& out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Redis's sdssplitargs: words separated by white space, "double quoted" with \n \r \t \b \a
// \\ \" \xHH escapes, or 'single quoted' with \'. False on unbalanced quotes.
bool split_args(std::string_view line, std::vector<std::string>& args) {
  std::size_t i = 0;
  const std::size_t n = line.size();
  for (;;) {
    while (i < n && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i >= n) return true;
    std::string arg;
    bool in_dq = false, in_sq = false, done = false;
    while (!done) {
      if (in_dq) {
        if (i >= n) return false;
        if (line[i] == '\\' && i + 3 < n && line[i + 1] == 'x' && hex_digit(line[i + 2]) >= 0 &&
            hex_digit(line[i + 3]) >= 0) {
          arg.push_back(static_cast<char>(hex_digit(line[i + 2]) * 16 + hex_digit(line[i + 3])));
          i += 3;
        } else if (line[i] == '\\' && i + 1 < n) {
          ++i;
          const char c = line[i];
          arg.push_back(c == 'n'   ? '\n'
                        : c == 'r' ? '\r'
                        : c == 't' ? '\t'
                        : c == 'b' ? '\b'
                        : c == 'a' ? '\a'
                                   : c);
        } else if (line[i] == '"') {
          // The closing quote must be followed by a space or nothing.
          if (i + 1 < n && !std::isspace(static_cast<unsigned char>(line[i + 1]))) return false;
          done = true;
        } else {
          arg.push_back(line[i]);
        }
      } else if (in_sq) {
        if (i >= n) return false;
        if (line[i] == '\\' && i + 1 < n && line[i + 1] == '\'') {
          ++i;
          arg.push_back('\'');
        } else if (line[i] == '\'') {
          if (i + 1 < n && !std::isspace(static_cast<unsigned char>(line[i + 1]))) return false;
          done = true;
        } else {
          arg.push_back(line[i]);
        }
      } else {
        if (i >= n) {
          done = true;
          break;
        }
        const char c = line[i];
        if (std::isspace(static_cast<unsigned char>(c))) {
          done = true;
        } else if (c == '"') {
          in_dq = true;
        } else if (c == '\'') {
          in_sq = true;
        } else {
          arg.push_back(c);
        }
      }
      if (i < n) ++i;
    }
    args.push_back(std::move(arg));
  }
}

}  // namespace

RespParser::RespParser(Limits limits) : limits_(limits) {}

void RespParser::feed(std::string_view bytes) {
  if (pos_ > 0 && (pos_ == buf_.size() || pos_ > 64 * 1024)) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

RespParser::Next RespParser::fail(std::string why) {
  error_ = "Protocol error: " + std::move(why);
  return Next::kError;
}

std::size_t RespParser::line_end() const {
  const std::size_t nl = buf_.find('\n', pos_);
  return nl == npos ? npos : nl - pos_;
}

RespParser::Next RespParser::inline_command(std::vector<std::string>& args) {
  for (;;) {
    const std::size_t len = line_end();
    if (len == npos) {
      if (buffered() > limits_.max_inline) return fail("too big inline request");
      return Next::kNeedMore;
    }
    if (len > limits_.max_inline) return fail("too big inline request");
    std::string_view line(buf_.data() + pos_, len);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    args.clear();
    if (!split_args(line, args)) return fail("unbalanced quotes in request");
    pos_ += len + 1;
    if (!args.empty()) return Next::kCommand;  // an empty line is skipped, as Redis does
    if (pos_ >= buf_.size() || buf_[pos_] == '*') return next(args);
  }
}

RespParser::Next RespParser::next(std::vector<std::string>& args) {
  if (!error_.empty()) return Next::kError;
  for (;;) {
    if (args_left_ < 0) {  // between commands
      if (pos_ >= buf_.size()) return Next::kNeedMore;
      if (buf_[pos_] != '*') return inline_command(args);
      const std::size_t len = line_end();
      if (len == npos) {
        if (buffered() > limits_.max_inline) return fail("too big mbulk count string");
        return Next::kNeedMore;
      }
      if (len > limits_.max_inline) return fail("too big mbulk count string");
      std::string_view line(buf_.data() + pos_ + 1, len - 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      long long count = 0;
      if (!to_ll(line, count) || count > static_cast<long long>(limits_.max_args)) {
        return fail("invalid multibulk length");
      }
      pos_ += len + 1;
      if (count <= 0) continue;  // *0 or *-1: nothing to run, as Redis
      args_left_ = count;
      bulk_len_ = -1;
      command_bytes_ = 0;
      args_.clear();
      args_.reserve(static_cast<std::size_t>(std::min<long long>(count, 1024)));
    }
    while (args_left_ > 0) {
      if (bulk_len_ < 0) {
        if (pos_ >= buf_.size()) return Next::kNeedMore;
        if (buf_[pos_] != '$') {
          const char c = buf_[pos_];
          return fail(std::string("expected '$', got '") +
                      (std::isprint(static_cast<unsigned char>(c)) ? std::string(1, c) : "?") +
                      "'");
        }
        const std::size_t len = line_end();
        if (len == npos) {
          if (buffered() > limits_.max_inline) return fail("too big bulk count string");
          return Next::kNeedMore;
        }
        if (len > limits_.max_inline) return fail("too big bulk count string");
        std::string_view line(buf_.data() + pos_ + 1, len - 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        long long n = 0;
        if (!to_ll(line, n) || n < 0 || n > static_cast<long long>(limits_.max_bulk)) {
          return fail("invalid bulk length");
        }
        command_bytes_ += static_cast<std::size_t>(n);
        if (command_bytes_ > limits_.max_command_bytes) {
          return fail("command of more than " + std::to_string(limits_.max_command_bytes) +
                      " bytes");
        }
        pos_ += len + 1;
        bulk_len_ = n;
      }
      const auto need = static_cast<std::size_t>(bulk_len_) + 2;
      if (buffered() < need) return Next::kNeedMore;
      args_.emplace_back(buf_.data() + pos_, static_cast<std::size_t>(bulk_len_));
      pos_ += need;
      bulk_len_ = -1;
      --args_left_;
    }
    args_left_ = -1;
    args.swap(args_);
    args_.clear();
    return Next::kCommand;
  }
}

namespace resp {

void simple(std::string& out, std::string_view s) {
  out.push_back('+');
  out.append(s);
  out.append("\r\n");
}

void error(std::string& out, std::string_view s) {
  out.push_back('-');
  for (char c : s) out.push_back(c == '\r' || c == '\n' ? ' ' : c);
  out.append("\r\n");
}

void integer(std::string& out, long long n) {
  out.push_back(':');
  out.append(std::to_string(n));
  out.append("\r\n");
}

void bulk(std::string& out, std::string_view s) {
  out.push_back('$');
  out.append(std::to_string(s.size()));
  out.append("\r\n");
  out.append(s);
  out.append("\r\n");
}

void null(std::string& out) { out.append("$-1\r\n"); }

void array(std::string& out, std::size_t n) {
  out.push_back('*');
  out.append(std::to_string(n));
  out.append("\r\n");
}

}  // namespace resp

}  // namespace nodus::tools
