// Engines for the store's tests.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "nodus/kv/engine.hpp"

namespace nodus::kv {

/// The memory engine claiming to be durable: what a put's DW counts, without a disk.
class DurableMemoryEngine final : public Engine {
 public:
  explicit DurableMemoryEngine(std::uint32_t partitions) : e_(new_memory_engine(partitions)) {}
  Status put(std::uint32_t p, std::string_view k, std::string_view v) override {
    return e_->put(p, k, v);
  }
  Status get(std::uint32_t p, std::string_view k, std::string* v) const override {
    return e_->get(p, k, v);
  }
  Status erase(std::uint32_t p, std::string_view k) override { return e_->erase(p, k); }
  void fold(std::uint32_t p,
            const std::function<bool(std::string_view, std::string_view)>& fn) const override {
    e_->fold(p, fn);
  }
  std::uint64_t keys(std::uint32_t p) const override { return e_->keys(p); }
  std::uint64_t data_bytes(std::uint32_t p) const override { return e_->data_bytes(p); }
  EngineStats stats() const override { return e_->stats(); }
  bool durable() const override { return true; }

 private:
  std::unique_ptr<Engine> e_;
};

}  // namespace nodus::kv
