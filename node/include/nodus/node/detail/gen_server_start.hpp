// The machinery behind start<T>, call_as<R> and receive_response_as<R> (gen_server.hpp): how a
// server's type and init arguments become the process that runs it. Not part of the API: use start,
// start_link and call_as. gen_server.hpp includes it where GenServer and Action are complete; it is
// not meant to be included on its own.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "nodus/node/message.hpp"
#include "nodus/node/process.hpp"
#include "nodus/node/timeout.hpp"

namespace nodus {

namespace detail {

/// Creates the server process; `make` builds the server and runs init inside it.
using ServerFactory = std::function<std::pair<std::unique_ptr<GenServer>, Action>()>;
Result<Pid, Reason> start_server(Node& node, const SpawnOptions& opts, ServerFactory make,
                                 const std::string* type_name, std::size_t state_size,
                                 const char* behaviour = "gen_server");

std::string demangle(const char* mangled);

template <class T, class... Args>
Result<Pid, Reason> start_impl(Node& node, SpawnOptions opts, Args&&... args) {
  static_assert(std::is_base_of_v<GenServer, T>, "start<T>: T must derive from GenServer");
  auto packed = std::make_shared<std::tuple<std::decay_t<Args>...>>(std::forward<Args>(args)...);
  ServerFactory make = [packed]() -> std::pair<std::unique_ptr<GenServer>, Action> {
    auto server = std::make_unique<T>();
    T* raw = server.get();
    Action a = std::apply([raw](auto&... as) { return raw->init(std::move(as)...); }, *packed);
    return {std::move(server), std::move(a)};
  };
  static const std::string type = demangle(typeid(T).name());
  return start_server(node, opts, std::move(make), &type, sizeof(T));
}

template <class... A>
struct FirstIsOptions : std::false_type {};
template <class First, class... Rest>
struct FirstIsOptions<First, Rest...> : std::is_same<std::decay_t<First>, SpawnOptions> {};

/// A call whose reply may be a typed message (call_as).
Result<Message, Reason> call_typed(const Dest& to, Message request, Timeout timeout);
/// The reply to a send_request, typed or not; abandons the request on timeout
/// (receive_response_as).
Result<Message, Reason> receive_typed(const RequestId& id, Timeout timeout);
}  // namespace detail

}  // namespace nodus
