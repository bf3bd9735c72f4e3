"""Web endpoints served by `thaw serve --http`: FastAPI-style functions
(query parameters, a JSON body, a label), a class method whose snapshot holds
its state, a failing endpoint, a WSGI app and an ASGI app (hand-written: no
web framework is installed). Each answer says which process served it.
"""
import json
import os

import thaw

E2E_DIR = os.environ["E2E_DIR"]
image = thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR})
app = thaw.App("e2e-web", image=image)

with open(os.path.join(E2E_DIR, "web_global_runs"), "a") as f:
    f.write(f"{os.getpid()}\n")


@app.function(enable_memory_snapshot=True)
@thaw.fastapi_endpoint()
def square(x: int, scale: float = 1.0, loud: bool = False):
    return {"square": x * x * scale, "loud": loud, "pid": os.getpid()}


@app.function()
@thaw.fastapi_endpoint(method="POST", label="echo-body")
def echo(item: dict):
    return {"got": item}


@app.function()
@thaw.web_endpoint()
def boom():
    raise RuntimeError("boom on purpose")


@app.function()
@thaw.wsgi_app()
def wsgi():
    def application(environ, start_response):
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.dumps({"script": environ["SCRIPT_NAME"], "path": environ["PATH_INFO"],
                           "query": environ["QUERY_STRING"], "method": environ["REQUEST_METHOD"],
                           "custom": environ.get("HTTP_X_CUSTOM"),
                           "body": environ["wsgi.input"].read(size).decode()}).encode()
        start_response("201 Created", [("Content-Type", "application/json"), ("X-App", "wsgi")])
        return [body]
    return application


@app.function()
@thaw.asgi_app()
def asgi():
    state = {"requests": 0, "started": False}

    async def application(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    state["started"] = True
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        state["requests"] += 1
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        out = json.dumps({"path": scope["path"], "root": scope["root_path"], "method": scope["method"],
                          "body": body.decode(), "started": state["started"],
                          "requests": state["requests"], "pid": os.getpid()}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": out[:5], "more_body": True})
        await send({"type": "http.response.body", "body": out[5:]})
    return application


@app.cls(enable_memory_snapshot=True)
class Model:
    @thaw.enter(snap=True)
    def load(self):
        self.weights = [3] * 1000
        self.loaded_in = os.getpid()

    @thaw.fastapi_endpoint()
    def predict(self, x: int):
        return {"y": self.weights[0] * x, "pid": os.getpid()}

    @thaw.method()
    def plain(self):
        return "not on the web"


@app.function()
@thaw.fastapi_endpoint(requires_proxy_auth=True)
def private():
    return {"private": "ok"}
