// Engines for the store's tests.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "nodus/kv/engine.hpp"

namespace nodus::kv {

/// An engine that passes every call to another one it shares, saying it is durable or not as
/// told: the memory engine claiming durability (what a put's DW counts, without a disk), or a
/// memory engine a test keeps across a node's crash and restart (what a node with a disk
/// would find again).
class SharedEngine final : public Engine {
 public:
  SharedEngine(std::shared_ptr<Engine> e, bool durable) : e_(std::move(e)), durable_(durable) {}
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

 private:
  std::shared_ptr<Engine> e_;
  const bool durable_;
};

/// A fresh memory engine of `partitions` that claims to be durable.
inline std::unique_ptr<Engine> durable_memory_engine(std::uint32_t partitions) {
  return std::make_unique<SharedEngine>(new_memory_engine(partitions), true);
}

}  // namespace nodus::kv
