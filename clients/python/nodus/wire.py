"""Frames of the node protocol (docs/protocol.md sections 1-4) and the cookie's MACs."""

import hashlib
import hmac
import os

import msgpack

VERSION = 1
HELLO, CHALLENGE, PROOF, WELCOME, REFUSE = 1, 2, 3, 4, 5
DATA, HEARTBEAT, BYE, PEERS = 16, 17, 18, 19

# Envelope kinds (section 4).
INFO, CAST, CALL, REPLY, ERROR_REPLY = 0, 1, 2, 3, 4
LINK, UNLINK, LINK_EXIT, EXIT_SIGNAL = 5, 6, 7, 8
MONITOR, DEMONITOR, DOWN, GET_STATUS, STOP = 9, 10, 11, 12, 13

PART_BYTES = 64 * 1024          # ZMQ_MAXMSGSIZE: one part at most
MAX_MESSAGE_BYTES = 64 << 20    # a message joined from its parts
NONCE_BYTES = 32
NOT_AUTHENTICATED = "not authenticated"
HIDDEN = "hidden"


def read_cookie(path):
    """The cookie in the file `path`: its bytes without trailing white space (section 3).
    Raises ValueError for a file that is empty or all white space."""
    with open(path, "rb") as f:
        return cookie_bytes(f.read(), path)


def cookie_bytes(raw, where="the cookie"):
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    cookie = raw.rstrip(b" \t\r\n")
    if not cookie:
        raise ValueError("%s is empty or all white space" % where)
    return cookie


def challenge_mac(cookie, nonce_c, acceptor, connector):
    return hmac.new(cookie, b"nodus1/challenge" + nonce_c + acceptor.encode() + b"\0" +
                    connector.encode(), hashlib.sha256).digest()


def proof_mac(cookie, nonce_a, connector, acceptor):
    return hmac.new(cookie, b"nodus1/proof" + nonce_a + connector.encode() + b"\0" +
                    acceptor.encode(), hashlib.sha256).digest()


def nonce():
    return os.urandom(NONCE_BYTES)


def pack(frame):
    return msgpack.packb(frame, use_bin_type=True)


def hello(name, creation, listen, caps, nonce_c):
    return pack([HELLO, VERSION, name, creation, listen, list(caps), nonce_c])


def challenge(name, creation, nonce_a, mac):
    return pack([CHALLENGE, VERSION, name, creation, nonce_a, mac])


def proof(mac):
    return pack([PROOF, mac])


def welcome():
    return pack([WELCOME])


def refuse(reason):
    return pack([REFUSE, reason])


def heartbeat(seq):
    return pack([HEARTBEAT, seq])


def bye(reason):
    return pack([BYE, reason])


def data(kind, from_pid, to, ref, budget_us, tag, payload):
    """A DATA frame. `from_pid`, `ref`: Pid/Ref or None; `to`: a Pid or a name (str)."""
    def ext(x):
        return None if x is None else msgpack.ExtType(x._ext, x.payload())
    to_wire = to if isinstance(to, str) else ext(to)
    return pack([DATA, kind, ext(from_pid), to_wire, ext(ref), budget_us, tag, payload])


def parts(message):
    """A message as the ZeroMQ parts it travels in: 64 KiB each, the last shorter."""
    if len(message) <= PART_BYTES:
        return [message]
    return [message[i:i + PART_BYTES] for i in range(0, len(message), PART_BYTES)]


def frames(message):
    """The frames of one message, each a list (the kind first). A frame that does not decode
    ends the message (section 1): what came before it is returned, the rest dropped; the
    second value says whether that happened."""
    unpacker = msgpack.Unpacker(raw=False, use_list=True, strict_map_key=False,
                                unicode_errors="surrogateescape",
                                max_buffer_size=MAX_MESSAGE_BYTES)
    unpacker.feed(message)
    out = []
    try:
        for frame in unpacker:
            if not isinstance(frame, list) or not frame or not isinstance(frame[0], int):
                return out, True
            out.append(frame)
    except Exception:  # msgpack's decode errors: the rest cannot be resynchronised
        return out, True
    return out, False
