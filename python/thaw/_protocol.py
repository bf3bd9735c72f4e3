"""Wire format shared by every thaw channel (docs/runtime-protocol.md, "Framing").

A message is a 4-byte little-endian length followed by that many bytes of
UTF-8 JSON (one object). Python values travel as "pickle" payloads: the base64
text of a pickle (protocol 4); the runtime never looks inside them.

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

PICKLE_PROTOCOL = 4
HEADER = struct.Struct("<I")
# A frame larger than this is refused rather than allocated (a corrupt length).
MAX_FRAME = 1 << 31


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame or message."""


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


def encode(msg):
    """One framed message as bytes: strict JSON (no NaN or Infinity)."""
    try:
        text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(finite(msg), separators=(",", ":"), allow_nan=False)
    body = text.encode("utf-8")
    if len(body) >= MAX_FRAME:
        raise ProtocolError(f"message of {len(body)} bytes is too large to send")
    return HEADER.pack(len(body)) + body


def decode_body(body):
    try:
        msg = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"frame is not UTF-8 JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"frame is JSON but not an object: {type(msg).__name__}")
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
    chunks = []
    got = 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            if got == 0:
                return None
            raise ProtocolError(f"connection closed inside a frame ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def send_msg(chan, msg):
    """Send one message on chan (an fd number or an object with fileno())."""
    write_all(_fileno(chan), encode(msg))


def recv_msg(chan):
    """The next message on chan, or None when the peer closed the channel."""
    fd = _fileno(chan)
    head = read_exact(fd, HEADER.size)
    if head is None:
        return None
    (n,) = HEADER.unpack(head)
    if n >= MAX_FRAME:
        raise ProtocolError(f"frame length {n} is out of range")
    body = read_exact(fd, n) if n else b""
    if body is None:
        raise ProtocolError("connection closed after a frame header")
    return decode_body(body)


def dump_payload(value):
    """A Python value as a pickle payload (base64 text)."""
    return base64.b64encode(pickle.dumps(value, protocol=PICKLE_PROTOCOL)).decode("ascii")


def load_payload(payload):
    """The Python value inside a pickle payload."""
    return pickle.loads(base64.b64decode(payload))


class Channel:
    """A framed, bidirectional channel on one fd. Sends are serialised by a
    lock (a worker with concurrent inputs answers from several threads);
    receives are meant for one reader."""

    def __init__(self, fd):
        self.fd = fd
        self._send_lock = threading.Lock()

    def send(self, msg):
        data = encode(msg)
        with self._send_lock:
            write_all(self.fd, data)

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
        self.sock.sendall(encode(msg))

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
        bytes read so far are kept, so a later recv() continues the frame."""
        self.sock.settimeout(timeout)
        try:
            head = self._read_exact(HEADER.size)
            if head is None:
                return None
            (n,) = HEADER.unpack(head)
            if n >= MAX_FRAME:
                raise ProtocolError(f"frame length {n} is out of range")
            try:
                body = self._read_exact(n) if n else b""
            except BaseException:
                self._buf[:0] = head  # keep the frame whole for a retry
                raise
            if body is None:
                raise ProtocolError("runtime closed the connection after a frame header")
            return decode_body(body)
        finally:
            try:
                self.sock.settimeout(None)
            except OSError:
                pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
