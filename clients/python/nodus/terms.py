"""Terms: nodus's values in Python, and their MessagePack encoding (docs/protocol.md section 5).

The mapping, both ways:

    nodus            Python
    integer          int (signed 64-bit on the wire)
    float            float
    atom             Atom (a str subclass); true/false are bool, undefined is None
    binary           bytes
    tuple            tuple
    list             list
    map              dict
    pid, ref         Pid, Ref

A plain ``str`` is encoded as an atom (nodus has no string type besides binaries and atoms:
pass ``bytes`` for a binary). A decoded atom is an ``Atom``, which compares equal to the ``str``
of its name, so ``reply == "ok"`` reads as Erlang's ``Reply =:= ok``.
"""

import struct

import msgpack

EXT_LIST = 1
EXT_PID = 2
EXT_REF = 3

MAX_ATOM_BYTES = 255
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 63) - 1


class Atom(str):
    """An atom: a name, at most 255 bytes of UTF-8."""

    __slots__ = ()

    def __repr__(self):
        return "Atom(%s)" % str.__repr__(self)


class _Id:
    """A pid or ref: the node's name, its creation (32 bits) and a 64-bit id."""

    __slots__ = ("node", "creation", "id")
    _ext = 0

    def __init__(self, node, creation, id):
        self.node = Atom(node)
        self.creation = creation
        self.id = id

    def _key(self):
        return (type(self), self.node, self.creation, self.id)

    def __eq__(self, other):
        return isinstance(other, _Id) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def payload(self):
        name = self.node.encode("utf-8")
        return bytes([len(name)]) + name + struct.pack(">IQ", self.creation, self.id)

    @classmethod
    def from_payload(cls, data):
        if not data or len(data) != 13 + data[0]:
            raise ValueError("malformed pid/ref ext payload of %d bytes" % len(data))
        n = data[0]
        creation, id = struct.unpack(">IQ", data[1 + n:])
        return cls(data[1:1 + n].decode("utf-8", "surrogateescape"), creation, id)


class Pid(_Id):
    """A process identifier. ``str(pid)`` is nodus's text form, ``<node.slot.serial>``."""

    __slots__ = ()
    _ext = EXT_PID

    def __str__(self):
        return "<%s.%d.%d>" % (self.node, self.id & 0xFFFFFFFF, self.id >> 32)

    def __repr__(self):
        return "Pid(%s)" % self


class Ref(_Id):
    """A reference: names a call, a monitor or a timer."""

    __slots__ = ()
    _ext = EXT_REF

    def __str__(self):
        return "#Ref<%s.%d.%d>" % (self.node, self.creation, self.id)

    def __repr__(self):
        return str(self)


def _wire(term):
    """The object msgpack-python packs for `term`."""
    if term is None or isinstance(term, (bool, float)):
        return term
    if isinstance(term, int):
        if not _INT_MIN <= term <= _INT_MAX:
            raise ValueError("integer %d does not fit in 64 signed bits" % term)
        return term
    if isinstance(term, str):
        if len(term.encode("utf-8")) > MAX_ATOM_BYTES:
            raise ValueError("atom of more than %d bytes: %.40r..." % (MAX_ATOM_BYTES, term))
        return term
    if isinstance(term, (bytes, bytearray, memoryview)):
        return bytes(term)
    if isinstance(term, tuple):
        return [_wire(t) for t in term]
    if isinstance(term, list):
        return msgpack.ExtType(EXT_LIST, _pack([_wire(t) for t in term]))
    if isinstance(term, dict):
        return {_wire_key(k): _wire(v) for k, v in term.items()}
    if isinstance(term, _Id):
        return msgpack.ExtType(term._ext, term.payload())
    raise TypeError("%s is no term (int, float, str for an atom, bytes, tuple, list, dict, "
                    "bool, None, Pid, Ref)" % type(term).__name__)


def _wire_key(k):
    w = _wire(k)
    if isinstance(w, list):  # a tuple key: msgpack-python packs tuples as arrays too
        return tuple(w)
    return w


def _pack(obj):
    return msgpack.packb(obj, use_bin_type=True, strict_types=False)


def encode(term):
    """The MessagePack bytes of `term`. Raises TypeError/ValueError for what is no term."""
    return _pack(_wire(term))


def _ext_hook(code, data):
    if code == EXT_LIST:
        inner = _unpack(data)
        if not isinstance(inner, tuple):
            raise ValueError("malformed list ext: the payload is not an array")
        return list(inner)
    if code == EXT_PID:
        return Pid.from_payload(data)
    if code == EXT_REF:
        return Ref.from_payload(data)
    raise ValueError("unknown ext type %d" % code)


def _atoms(obj):
    """msgpack-python's str -> Atom, recursively (lists are already converted by _ext_hook)."""
    if isinstance(obj, str):
        return Atom(obj)
    if isinstance(obj, tuple):
        return tuple(_atoms(o) for o in obj)
    if isinstance(obj, list):
        return [_atoms(o) for o in obj]
    if isinstance(obj, dict):
        return {_atoms(k): _atoms(v) for k, v in obj.items()}
    return obj


def _unpack(data):
    return msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=False,
                           ext_hook=_ext_hook, unicode_errors="surrogateescape")


def decode(data):
    """The term MessagePack `data` holds. Raises ValueError when it holds none."""
    try:
        return _atoms(_unpack(data))
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError,
            TypeError) as e:
        raise ValueError("undecodable term: %s" % e) from None
