// The one table of nodus error codes.
//
// Each code has a stable number (it crosses the wire and appears in logs), a short name (the
// word users see: in exit reasons, CLI JSON and log lines) and a message. Ranges keep meaning:
//   1000-1999  expected failures a caller handles (timeout, noproc, nodedown, ...)
//   2000-2999  caller misuse (badarg, bad configuration, calling yourself)
//   3000-3999  peer or protocol errors (malformed frame, authentication)
//   4000-4999  internal errors (a broken invariant that was survived)
// Add a code only when some caller would react to it differently from the existing ones.
//
// Codes 5000-9999 belong to the layers above transport, a thousand each, so that a layer adds
// its own without editing this file: 5000-5999 registry, 6000-6999 kv, 7000-7999 tools,
// 9000-9999 applications (8000-8999 reserved). A layer declares its codes in its own table of
// the same form and registers the range once (status.hpp: NODUS_DECLARE_ERRORS,
// NODUS_DEFINE_ERRORS); error_name, error_message, error_from_name and error_from_number then
// know them like these, and they cross the wire by number like these.
//
// NODUS_ERROR(Enumerator, number, name, message)
#ifndef NODUS_ERROR
#error "define NODUS_ERROR(Enumerator, number, name, message) before including this table"
#endif

NODUS_ERROR(kOk, 0, "ok", "success")

NODUS_ERROR(kTimeout, 1000, "timeout", "the operation did not complete before its deadline")
NODUS_ERROR(kNoProc, 1001, "noproc", "no such process: it is dead or was never there")
NODUS_ERROR(kNodeDown, 1002, "nodedown", "the node holding the process is down or unreachable")
NODUS_ERROR(kOverloaded, 1003, "overloaded", "the receiver's bounded mailbox is full")
NODUS_ERROR(kExited, 1004, "exit", "the process exited before it answered")
NODUS_ERROR(kIgnored, 1005, "ignore", "init returned ignore: no process was started")
NODUS_ERROR(kAlreadyStarted, 1006, "already_started", "a process already holds that name")
NODUS_ERROR(kNotFound, 1007, "not_found", "no such item")
NODUS_ERROR(kNoQuorum, 1008, "no_quorum", "too few replicas answered to meet the quorum")
NODUS_ERROR(kUnavailable, 1009, "unavailable", "no replica that could serve the request is up")

NODUS_ERROR(kBadArg, 2000, "badarg", "a malformed or unexpected argument")
NODUS_ERROR(kCallingSelf, 2001, "calling_self", "a process called itself: it would deadlock")
NODUS_ERROR(kBadConfig, 2002, "bad_config", "invalid configuration")
NODUS_ERROR(kCrossPartition, 2003, "cross_partition", "the keys belong to different partitions")
NODUS_ERROR(kValueTooLarge, 2004, "value_too_large", "the key or value is larger than the limit")

NODUS_ERROR(kProtocol, 3000, "protocol_error", "a peer sent a malformed or oversized frame")
NODUS_ERROR(kAuth, 3001, "auth_failed", "authentication failed")

NODUS_ERROR(kInternal, 4000, "internal", "an internal error")
