"""A function whose global scope holds connections to processes outside
its container, as clients of local services do: a unix stream socket to a
server, a syslog handler sending to a named datagram socket, and a dup of
stderr. The snapshot is taken with the first restored as closed by the
server, the syslog socket connected to its name again, the dup sharing the
restored container's stderr."""
import logging
import logging.handlers
import os
import socket

import thaw

E2E_DIR = os.environ.get("E2E_DIR", "")
app = thaw.App("e2e-outside", image=thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR}))

if not thaw.is_local():
    SERVER = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    SERVER.connect(os.path.join(E2E_DIR, "server.sock"))
    LOG = logging.getLogger("e2e-outside")
    LOG.addHandler(logging.handlers.SysLogHandler(address=os.path.join(E2E_DIR, "syslog.sock")))
    ERR = os.fdopen(os.dup(2), "w")


@app.function(enable_memory_snapshot=True, scaledown_window=2)
def use_them():
    LOG.warning("hello from a restored container")
    ERR.write("written through the dup of stderr\n")
    ERR.flush()
    return repr(SERVER.recv(10))
