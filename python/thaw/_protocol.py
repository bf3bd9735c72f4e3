"""Wire format shared by every thaw channel (docs/runtime-protocol.md, "Framing").

A message is a 4-byte little-endian length followed by that many bytes of
UTF-8 JSON (one object). Python values travel as "pickle" payloads: the bytes
of a pickle (protocol 4, made by cloudpickle when it is installed, as Modal
does, so lambdas, closures and a script's own classes travel), carried after the JSON text rather than in it (the
length word's top bit set, a second word with their total length, and the
text's "$blobs" saying where each goes); the runtime never looks inside
them. A payload that arrives as a string is base64 of a pickle (a spawned
call's result kept on disk).

Reads and writes go straight through os.read/os.write on a file descriptor
number, never through a buffered file object: the worker's control channel is
replaced under the same fd number when a container is restored from a
snapshot, and nothing may be read ahead of the message being waited for.
"""

import base64
import json
import os
import pickle
import socket
import struct
import threading

try:
    import cloudpickle
except ImportError:  # plain pickle then: module-level functions and classes only
    cloudpickle = None

PICKLE_PROTOCOL = 4
HEADER = struct.Struct("<I")
# A frame larger than this is refused rather than allocated (a corrupt
# length); the runtime's limit too (container/channel.cpp), text and bytes.
MAX_FRAME = 1 << 30


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame or message."""


class MessageTooLarge(ProtocolError):
    """A message over MAX_FRAME, refused before any of it is written (so the
    connection can go on): .size is its length in bytes."""

    def __init__(self, size):
        super().__init__(f"message of {size} bytes is over thaw's limit of {MAX_FRAME >> 20} MiB")
        self.size = size


def finite(obj):
    """obj with every NaN or infinite float (which JSON cannot hold, and the
    runtime's parser rightly refuses) replaced by the string Python's json
    would have written: "NaN", "Infinity", "-Infinity"."""
    if isinstance(obj, float):
        if obj != obj:
            return "NaN"
        if obj in (float("inf"), float("-inf")):
            return "Infinity" if obj > 0 else "-Infinity"
        return obj
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


BLOBS_FLAG = 0x80000000


def _pointer_token(key):
    return str(key).replace("~", "~0").replace("/", "~1")


def _without_blobs(value, at, blobs):
    """value with each bytes value replaced by None; those go to blobs as
    (JSON pointer, bytes)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        blobs.append((at, value))
        return None
    if isinstance(value, dict):
        return {k: _without_blobs(v, f"{at}/{_pointer_token(k)}", blobs) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_blobs(v, f"{at}/{i}", blobs) for i, v in enumerate(value)]
    return value


def _text(msg):
    try:
        text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(finite(msg), separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def encode_parts(msg):
    """One framed message as a list of buffers to write in order: strict
    JSON (no NaN or Infinity), then the bytes it carries."""
    blobs = []
    text_msg = _without_blobs(msg, "", blobs)
    if not blobs:
        body = _text(msg)
        if len(body) > MAX_FRAME:
            raise MessageTooLarge(len(body))
        return [HEADER.pack(len(body)) + body]
    text_msg["$blobs"] = [[at, len(b) if not isinstance(b, memoryview) else b.nbytes] for at, b in blobs]
    body = _text(text_msg)
    total = sum(n for _, n in text_msg["$blobs"])
    if len(body) + total > MAX_FRAME:
        raise MessageTooLarge(len(body) + total)
    return [HEADER.pack(len(body) | BLOBS_FLAG) + HEADER.pack(total) + body] + [b for _, b in blobs]


def encode(msg):
    """One framed message as bytes."""
    return b"".join(encode_parts(msg))


def decode_body(body):
    try:
        msg = json.loads(body.decode("utf-8") if not isinstance(body, str) else body)
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"frame is not UTF-8 JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"frame is JSON but not an object: {type(msg).__name__}")
    return msg


def _put(msg, pointer, value):
    if not pointer.startswith("/"):
        raise ProtocolError(f"\"$blobs\" pointer {pointer!r} is not a JSON pointer")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]
    node = msg
    def index(t):
        if not t.isdigit():  # no "-1": a pointer counts from the start
            raise ValueError(t)
        return int(t)
    try:
        for t in tokens:
            parent, key = node, (index(t) if isinstance(node, list) else t)
            node = node[key]
        if node is not None:
            raise ProtocolError(f"\"$blobs\" pointer {pointer!r} names a value, not a null")
        parent[key] = value
    except (KeyError, IndexError, ValueError, TypeError):
        raise ProtocolError(f"\"$blobs\" pointer {pointer!r} leads nowhere in the message") from None


def decode_frame(body, blob_data):
    """The message of a frame: its JSON text, and the bytes after it (None
    for a frame without)."""
    msg = decode_body(body)
    if blob_data is None:
        return msg
    where = msg.pop("$blobs", None)
    if not isinstance(where, list):
        raise ProtocolError('bytes follow the message, but it has no "$blobs" saying where they go')
    view = memoryview(blob_data)
    off = 0
    for entry in where:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], int) and entry[1] >= 0):
            raise ProtocolError(f'a "$blobs" entry is not [pointer, length]: {entry!r}')
        if off + entry[1] > len(view):
            raise ProtocolError('the "$blobs" add up to more than the bytes sent')
        _put(msg, entry[0], view[off:off + entry[1]].tobytes())
        off += entry[1]
    if off != len(view):
        raise ProtocolError(f'{len(view) - off} bytes sent that no "$blobs" entry claims')
    return msg


def _fileno(chan):
    return chan if isinstance(chan, int) else chan.fileno()


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd, n):
    """Exactly n bytes from fd; None on end of file before the first byte."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:got + (1 << 24)]])
        if not k:
            if got == 0:
                return None
            raise ProtocolError(f"connection closed inside a frame ({got} of {n} bytes)")
        got += k
    return bytes(buf) if n < (1 << 16) else buf


def send_msg(chan, msg):
    """Send one message on chan (an fd number or an object with fileno())."""
    fd = _fileno(chan)
    for part in encode_parts(msg):
        write_all(fd, part)


def recv_msg(chan):
    """The next message on chan, or None when the peer closed the channel."""
    fd = _fileno(chan)
    head = read_exact(fd, HEADER.size)
    if head is None:
        return None
    (n,) = HEADER.unpack(head)
    blobs = None
    if n & BLOBS_FLAG:
        n &= ~BLOBS_FLAG
        more = read_exact(fd, HEADER.size)
        if more is None:
            raise ProtocolError("connection closed after a frame header")
        (blobs,) = HEADER.unpack(more)
    if n + (blobs or 0) > MAX_FRAME:
        raise ProtocolError(f"frame length {n + (blobs or 0)} is out of range")
    body = read_exact(fd, n) if n else b""
    if body is None:
        raise ProtocolError("connection closed after a frame header")
    data = None
    if blobs is not None:
        data = read_exact(fd, blobs) if blobs else b""
        if data is None:
            raise ProtocolError("connection closed inside a frame")
    return decode_frame(bytes(body), data)


CLOUDPICKLE_ADVICE = ("thaw pickles these with cloudpickle when it is installed, as Modal "
                      "does: apt-get install python3-cloudpickle")


def dump_payload(value):
    """A Python value as a pickle payload (bytes, sent after the JSON).

    Plain pickle loads what cloudpickle makes (given cloudpickle importable),
    so the loading side needs no more than pickle.loads."""
    if cloudpickle is not None:
        return cloudpickle.dumps(value, protocol=PICKLE_PROTOCOL)
    try:
        return pickle.dumps(value, protocol=PICKLE_PROTOCOL)
    except (pickle.PicklingError, AttributeError) as e:
        # What plain pickle cannot name (a lambda, a local function or class,
        # one of __main__ that the other side does not have) and cloudpickle
        # sends by value. AttributeError: "Can't pickle local object".
        raise pickle.PicklingError(f"{e}: plain pickle sends functions and classes by name, "
                                   f"so not lambdas, closures or locally defined ones; "
                                   f"{CLOUDPICKLE_ADVICE}") from e


def load_payload(payload):
    """The Python value inside a pickle payload: bytes, or base64 text."""
    if isinstance(payload, str):
        payload = base64.b64decode(payload)
    try:
        return pickle.loads(payload)
    except AttributeError as e:
        # Plain pickle sent a class of the caller's __main__ by name, and
        # this side's __main__ has no such thing.
        if cloudpickle is not None or not str(e).startswith("Can't get attribute"):
            raise
        raise AttributeError(f"{e}: plain pickle sends classes and functions by name, so "
                             f"those of a script's __main__ cannot be found here; "
                             f"{CLOUDPICKLE_ADVICE}") from e
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "cloudpickle":
            raise
        raise ModuleNotFoundError(
            "this value was pickled with cloudpickle (it holds a lambda, a closure or a "
            "class defined in a script), and this Python cannot import cloudpickle to load "
            "it: apt-get install python3-cloudpickle", name="cloudpickle") from e


class Channel:
    """A framed, bidirectional channel on one fd. Sends are serialised by a
    lock (a worker with concurrent inputs answers from several threads);
    receives are meant for one reader."""

    def __init__(self, fd):
        self.fd = fd
        self._send_lock = threading.Lock()

    def send(self, msg):
        parts = encode_parts(msg)
        with self._send_lock:
            for part in parts:
                write_all(self.fd, part)

    def recv(self):
        return recv_msg(self.fd)


class SocketConnection:
    """A client connection to the runtime's unix socket."""

    def __init__(self, path, timeout=None):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if timeout is not None:
                self.sock.settimeout(timeout)
            self.sock.connect(path)
            self.sock.settimeout(None)
        except BaseException:
            self.sock.close()
            raise
        self._buf = bytearray()

    def send(self, msg):
        for part in encode_parts(msg):
            self.sock.sendall(part)

    def _read_exact(self, n):
        # Appending to a bytearray in place: re-concatenating an immutable
        # buffer per chunk made a 64 MiB result take 20 s to read.
        while len(self._buf) < n:
            chunk = self.sock.recv(max(n - len(self._buf), 1 << 20))
            if not chunk:
                if not self._buf:
                    return None
                raise ProtocolError("runtime closed the connection inside a frame")
            self._buf += chunk
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def recv(self, timeout=None):
        """The next message; None when the runtime closed the connection.
        Raises socket.timeout (TimeoutError) if none is complete in time; the
        bytes read so far are kept, so a later recv() continues the frame.
        timeout=0 polls."""
        self.sock.settimeout(timeout)
        try:
            return self._recv_frame()
        except BlockingIOError:
            # settimeout(0) makes the socket non-blocking: "nothing yet" is
            # then EAGAIN, not a timeout, and must not read as a dead runtime.
            raise TimeoutError("no complete message yet") from None
        finally:
            try:
                self.sock.settimeout(None)
            except OSError:
                pass

    def _recv_frame(self):
        head = self._read_exact(HEADER.size)
        if head is None:
            return None
        (n,) = HEADER.unpack(head)
        blobs = 0
        try:
            if n & BLOBS_FLAG:
                n &= ~BLOBS_FLAG
                more = self._read_exact(HEADER.size)
                if more is None:
                    raise ProtocolError("runtime closed the connection after a frame header")
                head += more
                (blobs,) = HEADER.unpack(more)
        except BaseException:
            self._buf[:0] = head  # keep the frame whole for a retry
            raise
        if n + blobs > MAX_FRAME:
            raise ProtocolError(f"frame length {n + blobs} is out of range")
        try:
            frame = self._read_exact(n + blobs) if n + blobs else b""
        except BaseException:
            self._buf[:0] = head  # keep the frame whole for a retry
            raise
        if frame is None:
            raise ProtocolError("runtime closed the connection after a frame header")
        return decode_frame(frame[:n], frame[n:] if len(head) > HEADER.size else None)

    def idle_and_open(self):
        """For a connection kept between requests: True if the runtime has
        not closed it and sent nothing since (so a request sent on it is
        read), without waiting."""
        if self._buf:
            return False
        try:
            self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return False  # end of file (closed), or bytes nobody asked for
        except BlockingIOError:
            return True
        except OSError:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
