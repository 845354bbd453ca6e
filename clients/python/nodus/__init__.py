"""nodus: a Python client of the nodus node protocol (docs/protocol.md).

    import nodus
    node = nodus.Node(cookie_file="cluster-configs/local-3/cookie").connect("127.0.0.1", 7201)
    node.call("stack", ("push", 1))           # a name registered on the node linked
    ctx = node.kv.put(b"user:1", b"ada")
    obj = node.kv.get(b"user:1", r=2)         # obj.values, obj.context
    with node.kv.watch(b"user:*") as w:       # every change of the keys matching a glob
        for event in w:                       # WatchEvent(kind, key, value, context)
            print(event.kind, event.key)
"""

from .errors import *  # noqa: F401,F403 (the exception classes)
from .errors import NodusError, error_class
from .kv import Kv, KvObject, Watch, WatchEvent, hash_tag, partition_of, preference_list
from .node import GLOBAL, Global, Mailbox, Message, Monitor, Node, Registry, Via
from .terms import Atom, Pid, Ref, decode, encode

__all__ = ["Node", "Global", "Via", "Registry", "GLOBAL", "Monitor", "Mailbox", "Message", "Kv",
           "KvObject", "Watch", "WatchEvent",
           "Atom", "Pid", "Ref", "encode", "decode", "NodusError", "error_class", "hash_tag",
           "partition_of", "preference_list"]
