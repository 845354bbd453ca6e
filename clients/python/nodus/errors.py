"""Errors: one exception class per error code of docs/protocol.md section 13.

Every exception the client raises for a failure the protocol names is a ``NodusError`` with
``code`` (the stable number), ``name`` (the code's short name, the atom of a reason term:
``"noproc"``, ``"no_quorum"``) and ``message`` (one line for people). ``reason`` keeps the
term the node sent, when it sent one. Catch a class (``except NoProc``) or test ``e.name``.
"""

# number -> (short name, class name), from error_definitions.hpp and kv/errors.hpp.
CODES = {
    0: ("ok", None),
    1000: ("timeout", "Timeout"),
    1001: ("noproc", "NoProc"),
    1002: ("nodedown", "NodeDown"),
    1003: ("overloaded", "Overloaded"),
    1004: ("exit", "Exited"),
    1005: ("ignore", "Ignored"),
    1006: ("already_started", "AlreadyStarted"),
    1007: ("not_found", "NotFound"),
    1008: ("no_quorum", "NoQuorum"),
    1009: ("unavailable", "Unavailable"),
    2000: ("badarg", "BadArg"),
    2001: ("calling_self", "CallingSelf"),
    2002: ("bad_config", "BadConfig"),
    2003: ("cross_partition", "CrossPartition"),
    2004: ("value_too_large", "ValueTooLarge"),
    3000: ("protocol_error", "ProtocolError"),
    3001: ("auth_failed", "AuthFailed"),
    4000: ("internal", "Internal"),
    6000: ("too_many_siblings", "TooManySiblings"),
    6020: ("too_many_watches", "TooManyWatches"),
    6030: ("version_mismatch", "VersionMismatch"),
}

NUMBER_OF = {name: number for number, (name, _) in CODES.items()}


class NodusError(Exception):
    """A failure with a code of the protocol's table."""

    code = 4000
    name = "internal"

    def __init__(self, message="", reason=None):
        super().__init__(message or self.name)
        self.message = message or self.name
        self.reason = reason

    def __str__(self):
        return "%s: %s" % (self.name, self.message) if self.message != self.name else self.name


_BY_NAME = {}
for _number, (_name, _cls) in CODES.items():
    if _cls is None:
        continue
    _bases = (NodusError,)
    if _name == "timeout":
        _bases = (NodusError, TimeoutError)
    elif _name == "not_found":
        _bases = (NodusError, KeyError)
    elif _name in ("badarg", "value_too_large", "bad_config"):
        _bases = (NodusError, ValueError)
    globals()[_cls] = _BY_NAME[_name] = type(_cls, _bases, {
        "code": _number, "name": _name, "__str__": NodusError.__str__,
        "__doc__": "The error code %d, %s." % (_number, _name)})


class NoQuorum(_BY_NAME["no_quorum"]):  # noqa: F811 (a richer class for the store's answer)
    """Too few replicas were up or answered: ``which`` quorum (r, pr, w, pw, dw) needed
    ``needed`` and ``got`` counted toward it."""

    def __init__(self, message="", reason=None, which=None, needed=None, got=None):
        super().__init__(message, reason)
        self.which, self.needed, self.got = which, needed, got


_BY_NAME["no_quorum"] = NoQuorum


class WatchLost(NodusError):
    """The store ended a watch (``{kv_watch_lost, Pattern}``, docs/protocol.md 12.7): its
    watcher fell behind (more than ``kv.watch_queue`` events not acknowledged), an event would
    have come out of order, or the watch server restarted. Events may have been missed: read
    what you need, then watch again. ``pattern`` is the watch's pattern as given."""

    code = 1003  # as overloaded: the watcher was too slow
    name = "watch_lost"

    def __init__(self, message="", reason=None, pattern=None):
        super().__init__(message, reason)
        self.pattern = pattern


def error_class(name):
    """The class of a code's short name; ``ProtocolError`` for a name the table lacks."""
    return _BY_NAME.get(name, _BY_NAME["protocol_error"])


def error_of_number(number, message="", reason=None):
    """The exception for a code number (a ``status``); an unknown number is a
    ``ProtocolError`` naming it (section 13)."""
    entry = CODES.get(number)
    if entry is None or entry[1] is None:
        return _BY_NAME["protocol_error"]("unknown error code %d: %s" % (number, message),
                                          reason)
    return _BY_NAME[entry[0]](message, reason)


def error_of_reason(reason, context=""):
    """The exception for a reason term (an error reply's payload, a DOWN's reason): a reason
    that is a code's name, or a tuple headed by one (``{badarg, Why}``), is that code; any
    other is ``Exited`` (the process ended with that reason), as the C++ side maps them."""
    head = reason[0] if isinstance(reason, tuple) and reason else reason
    detail = ""
    if isinstance(reason, tuple) and len(reason) == 2 and isinstance(reason[1], bytes):
        detail = reason[1].decode("utf-8", "replace")
    elif isinstance(reason, tuple) and len(reason) > 1:
        detail = repr(reason[1:])
    if isinstance(head, str) and head in _BY_NAME:
        return _BY_NAME[head](context + (detail or head), reason)
    return _BY_NAME["exit"](context + "exited with %r" % (reason,), reason)
