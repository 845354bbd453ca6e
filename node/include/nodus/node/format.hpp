// fmt support for nodus values: include this (with {fmt} available, as spdlog brings it) and
// fmt::format("{} -> {}", pid, reply) prints terms, pids, atoms, refs, reasons, messages and
// statuses as their to_string() text, the same as operator<<. Nodus itself needs no {fmt}:
// only a program that includes this header does.
#pragma once

#include <fmt/ostream.h>

#include "nodus/node/message.hpp"
#include "nodus/node/process.hpp"
#include "nodus/node/term.hpp"
#include "nodus/transport/status.hpp"

template <>
struct fmt::formatter<nodus::Atom> : fmt::ostream_formatter {};
template <>
struct fmt::formatter<nodus::Pid> : fmt::ostream_formatter {};
template <>
struct fmt::formatter<nodus::Ref> : fmt::ostream_formatter {};
template <>
struct fmt::formatter<nodus::Term> : fmt::ostream_formatter {};
template <>
struct fmt::formatter<nodus::Reason> : fmt::ostream_formatter {};
template <>
struct fmt::formatter<nodus::Message> : fmt::ostream_formatter {};
template <>
struct fmt::formatter<nodus::Status> : fmt::ostream_formatter {};
