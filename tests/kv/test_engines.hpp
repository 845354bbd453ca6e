// Engines for the store's tests.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "nodus/kv/engine.hpp"

namespace nodus::kv {

/// An engine that passes every call to another one it shares, saying it is durable or not as
/// told: the memory engine claiming durability (what a put's DW counts, without a disk), or a
/// memory engine a test keeps across a node's crash and restart (what a node with a disk
/// would find again).
/// With `meta`, it keeps the store's records (put_meta) there too, as a disk would across a
/// restart.
class SharedEngine final : public Engine {
 public:
  using Records = std::map<std::string, std::string, std::less<>>;
  SharedEngine(std::shared_ptr<Engine> e, bool durable, std::shared_ptr<Records> meta = nullptr)
      : e_(std::move(e)), durable_(durable), meta_(std::move(meta)) {}
  Status put(std::uint32_t p, std::string_view k, std::string_view v) override {
    return e_->put(p, k, v);
  }
  Status get(std::uint32_t p, std::string_view k, std::string* v) const override {
    return e_->get(p, k, v);
  }
  Status erase(std::uint32_t p, std::string_view k) override { return e_->erase(p, k); }
  Status put_batch(std::uint32_t p,
                   const std::vector<std::pair<std::string_view, std::string_view>>& e) override {
    return e_->put_batch(p, e);
  }
  void fold(std::uint32_t p,
            const std::function<bool(std::string_view, std::string_view)>& fn) const override {
    e_->fold(p, fn);
  }
  std::uint64_t keys(std::uint32_t p) const override { return e_->keys(p); }
  std::uint64_t data_bytes(std::uint32_t p) const override { return e_->data_bytes(p); }
  EngineStats stats() const override { return e_->stats(); }
  bool durable() const override { return durable_; }
  Status put_meta(std::string_view name, std::string_view value) override {
    if (meta_) (*meta_)[std::string(name)] = std::string(value);
    return Status();
  }
  Status get_meta(std::string_view name, std::string* value) const override {
    if (!meta_) return Status(ErrorCode::kNotFound);
    auto it = meta_->find(name);
    if (it == meta_->end()) return Status(ErrorCode::kNotFound);
    *value = it->second;
    return Status();
  }
  Status erase_meta(std::string_view name) override {
    if (meta_) {
      if (auto it = meta_->find(name); it != meta_->end()) meta_->erase(it);
    }
    return Status();
  }

 private:
  std::shared_ptr<Engine> e_;
  const bool durable_;
  std::shared_ptr<Records> meta_;
};

/// A fresh memory engine of `partitions` that claims to be durable.
inline std::unique_ptr<Engine> durable_memory_engine(std::uint32_t partitions) {
  return std::make_unique<SharedEngine>(new_memory_engine(partitions), true);
}

}  // namespace nodus::kv
