"""Real web frameworks behind @asgi_app and @wsgi_app (Debian's
python3-fastapi and python3-flask): a FastAPI app with a path parameter, a
pydantic body and an HTTPException, and a Flask app with two routes. The
apps are built in the global scope, so the memory snapshot holds them.
"""
import asyncio
import os

import fastapi
import fastapi.responses
import flask
import pydantic

import thaw

app = thaw.App("e2e-web-frameworks")

api = fastapi.FastAPI()
STARTED = []


class Item(pydantic.BaseModel):
    name: str
    price: float


@api.on_event("startup")
async def started():
    STARTED.append(os.getpid())


@api.get("/items/{item_id}")
async def read_item(item_id: int, q: str = "none"):
    if item_id == 404:
        raise fastapi.HTTPException(status_code=404, detail="no such item")
    return {"item_id": item_id, "q": q, "started": bool(STARTED)}


@api.post("/items")
def create_item(item: Item):
    return {"name": item.name, "doubled": item.price * 2}


async def token_pieces(flag):
    # The second piece waits for the test's flag file: the test passes only
    # if the first reaches it on its own.
    yield b"token-1\n"
    for _ in range(6000):  # at most 5 min, past the test's read timeout
        if os.path.exists(flag):
            break
        await asyncio.sleep(0.05)
    yield b"token-2\n"


@api.get("/tokens")
async def tokens(flag: str):
    return fastapi.responses.StreamingResponse(token_pieces(flag), media_type="text/plain")


site = flask.Flask("site")


@site.route("/hello/<name>")
def hello(name):
    return flask.jsonify(greeting=f"hello {name}", root=flask.request.script_root,
                         agent=flask.request.headers.get("User-Agent"))


@site.route("/form", methods=["POST"])
def form():
    return flask.request.form["word"].upper(), 202, {"X-Flask": "1"}


@app.function(enable_memory_snapshot=True)
@thaw.asgi_app()
def fastapi_app():
    return api


@app.function(enable_memory_snapshot=True)
@thaw.wsgi_app(label="flask")
def flask_app():
    return site


@app.function(enable_memory_snapshot=True)
@thaw.fastapi_endpoint()
def stream_tokens(flag: str):
    return fastapi.responses.StreamingResponse(token_pieces(flag), media_type="text/plain")


def caller(x_caller: str = fastapi.Header("nobody")):
    # A dependency: only FastAPI itself runs these.
    return x_caller.upper()


@app.function(enable_memory_snapshot=True)
@thaw.fastapi_endpoint(method="POST", docs=True)
def whoami(request: fastapi.Request, item: Item, background: fastapi.BackgroundTasks,
           who: str = fastapi.Depends(caller), n: int = fastapi.Query(1, alias="times")):
    # Served by a real FastAPI app (as Modal serves every endpoint): a
    # Request, a dependency, a header, an aliased query parameter, a
    # pydantic body and a background task.
    background.add_task(STARTED.append, "after the answer")
    return {"who": who, "name": item.name * n, "url": str(request.url.path),
            "client": request.client.host, "background_ran": STARTED.count("after the answer")}


@app.function(timeout=2)
@thaw.fastapi_endpoint()
def slow(request: fastapi.Request, seconds: float):
    # Sync: FastAPI runs it in a thread, which its timeout cannot stop, so
    # its container leaves after a timeout rather than take more requests.
    import time
    time.sleep(seconds)
    import socket
    return {"container": socket.gethostname(), "path": request.url.path}
