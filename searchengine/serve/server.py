"""Start the server: bind (a clear line when the port is taken), settle the token, load the
query models, then hand the socket to uvicorn."""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
from collections.abc import Callable

from searchengine.errors import UserError
from searchengine.serve.security import server_token
from searchengine.serve.uploads import DEFAULT_MAX_BYTES


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), or a UserError saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"cannot bind to '{host}': {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    # proto given: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say TCP, and
    # with it on, each keep-alive answer waited ~40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use: pick another with --port") from None
        raise UserError(f"cannot bind to {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"


class Server:
    """uvicorn on a socket we bound, run in a thread: the command waits on it (Ctrl-C
    stops it), tests and benchmarks run beside it."""

    def __init__(self, app, sock: socket.socket, log_level: str = "warning") -> None:
        import uvicorn

        self.sock = sock
        self.url = address(sock)
        config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self) -> Server:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server stopped while starting")
            self.thread.join(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
        self.sock.close()


def stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Set `stop` on SIGINT and SIGTERM (main thread only; elsewhere nothing changes) and
    give back a function restoring the old handlers. The main thread waits on the event
    rather than joining the server thread: Ctrl-C interrupting a join marks the thread as
    stopped in Python 3.11, and uvicorn's shutdown (uploads deleted, engines closed) was
    then skipped."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, lambda *_: stop.set())

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


def run_server(
    index: str | os.PathLike[str] | None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    token: str | None = None,
    cors: list[str] | None = None,
    max_upload: int = DEFAULT_MAX_BYTES,
    parallel: int = 1,
    say: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """`searchengine serve`: open the index read-only, bind, print the address, serve until
    Ctrl-C (or until `stop` is set, for a caller running it in a thread)."""
    from searchengine.engine import Engine
    from searchengine.serve.app import create_app

    need, generated = server_token(host, token)
    engine = Engine(index, readonly=True)
    try:
        sock = bind(host, port)
    except UserError:
        engine.close()
        raise
    try:
        app = create_app(
            engine=engine, token=need, cors=cors, max_upload=max_upload, parallel=parallel
        )
    except UserError:
        engine.close()
        sock.close()
        raise
    stop = stop or threading.Event()
    restore = stop_on_signals(stop)
    server: Server | None = None
    try:
        app.state.library.warm()
        server = Server(app, sock).start()  # the address is printed once it answers
        say(f"serving {engine.dir} at {server.url}  (Ctrl-C stops)")
        if generated:
            say(f"open {server.url}?token={need}  (a token made for this run, shown this once)")
        elif need is not None:
            say("every request must carry the token given (--token or $SEARCHENGINE_TOKEN)")
        while server.thread is not None and server.thread.is_alive():
            if stop.wait(0.2):
                break
    finally:
        if server is not None:
            server.stop()  # uvicorn's shutdown closes the uploads and the engines
        else:
            sock.close()
            app.state.library.close()
        app.state.uploads.close()  # also when the shutdown did not run to its end
        restore()
