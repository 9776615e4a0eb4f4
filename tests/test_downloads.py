"""Missing default models: `--offline` / SEARCHENGINE_OFFLINE=1 opens no socket at all, and an
unreachable hub leaves the files pending within seconds, with the one-line hint."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from searchengine import Engine
from tests.conftest import REPO

# Runs the CLI with every socket connect recorded; "refuse" makes each one fail.
SCRIPT = textwrap.dedent(
    """
    import atexit, json, socket, sys
    mode, record, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    attempts = []
    original = socket.socket.connect
    def connect(self, address, *a, **k):
        attempts.append(repr(address))
        if mode == "refuse":
            raise OSError("network disabled by test")
        return original(self, address, *a, **k)
    socket.socket.connect = connect
    socket.socket.connect_ex = connect
    atexit.register(lambda: open(record, "w").write(json.dumps(attempts)))
    from searchengine.cli import main
    main(argv)
    """
)


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """Three images (clip space) and two sounds (clap space)."""
    root = tmp_path / "media"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(
            root / f"pic{i}.png"
        )
    for i in range(2):
        tone = np.sin(np.linspace(0, 2 * np.pi * 440 * (i + 1), 48000)) * 0.3
        with wave.open(str(root / f"tone{i}.wav"), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(48000)
            out.writeframes((tone * 32767).astype("<i2").tobytes())
    return root


def _env(home: Path, **extra: str) -> dict[str, str]:
    """No model caches, no hub settings of the caller's, no opt-in or opt-out."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "TRANSFORMERS_", "SEARCHENGINE_ALLOW", "SEARCHENGINE_OFF"))
        and k.lower() not in ("https_proxy", "http_proxy", "all_proxy")
    }
    env.update(HOME=str(home), HF_HOME=str(home / "hf"), XDG_CACHE_HOME=str(home / "cache"))
    env.update(extra)
    return env


def _index(media: Path, index_dir: Path, tmp_path: Path, mode: str, env, *flags: str):
    record = tmp_path / f"attempts-{mode}.json"
    args = ["index", str(media), "--index", str(index_dir), "--speech", "off", "--json"]
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(record), *args, *flags],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), json.loads(record.read_text())


def _pending(summary: dict) -> dict[str, str]:
    return {Path(p["path"]).name: p["reason"] for p in summary["problems"]}


@pytest.mark.parametrize("how", ["flag", "env"])
def test_offline_opens_no_socket_and_leaves_media_pending(how, media, index_dir, tmp_path):
    home = tmp_path / "home"
    if how == "flag":
        summary, attempts = _index(media, index_dir, tmp_path, "refuse", _env(home), "--offline")
    else:
        env = _env(home, SEARCHENGINE_OFFLINE="1")
        summary, attempts = _index(media, index_dir, tmp_path, "refuse", env)
    assert attempts == []
    assert summary["pending"] == 5 and summary["failed"] == 0
    reasons = _pending(summary)
    assert sorted(reasons) == ["pic0.png", "pic1.png", "pic2.png", "tone0.wav", "tone1.wav"]
    for name, why in reasons.items():
        assert "\n" not in why
        assert "download (off: --offline or SEARCHENGINE_OFFLINE=1)" in why, why
        assert ("clip model" if name.endswith(".png") else "clap model") in why


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends


def test_unreachable_hub_leaves_media_pending_within_seconds(media, index_dir, tmp_path):
    port = _closed_port()
    env = _env(tmp_path / "home", HF_ENDPOINT=f"http://127.0.0.1:{port}")
    summary, attempts = _index(media, index_dir, tmp_path, "record", env)
    assert summary["pending"] == 5 and summary["failed"] == 0
    assert summary["seconds"] < 20  # one refused probe, no retries
    assert attempts == [repr(("127.0.0.1", port))]  # the probe, once for both spaces
    for why in _pending(summary).values():
        assert f"download (http://127.0.0.1:{port} unreachable)" in why, why
        assert "--offline / SEARCHENGINE_OFFLINE=1" in why


COMMIT = "c" * 40


class _Hub(http.server.BaseHTTPRequestHandler):
    """The few hub endpoints `snapshot_download` uses, serving one folder as one repo."""

    repo = "laion/clap-htsat-unfused"
    folder: Path
    seen: list[str]

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def _files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.folder.iterdir()) if p.is_file()}

    def _send(self, body: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.seen.append(f"{self.command} {path}")
        files = self._files()
        api = f"/api/models/{self.repo}"
        if path.startswith(f"{api}/tree/"):
            tree = [
                {
                    "type": "file",
                    "path": name,
                    "size": len(data),
                    "oid": hashlib.sha1(data).hexdigest(),
                }
                for name, data in files.items()
            ]
            return self._send(json.dumps(tree).encode(), "application/json")
        if path == api or path.startswith(f"{api}/revision/"):
            info = {"id": self.repo, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]}
            return self._send(json.dumps(info).encode(), "application/json")
        prefix = f"/{self.repo}/resolve/"
        if path.startswith(prefix):
            name = path[len(prefix) :].split("/", 1)[1]
            if name in files:
                data = files[name]
                headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
                return self._send(data, "application/octet-stream", headers)
        self.send_error(404)

    do_HEAD = do_GET


def test_reachable_hub_downloads_the_default_clap_model_and_indexes(
    media, index_dir, tmp_path, test_models
):
    for png in media.glob("*.png"):
        png.unlink()
    handler = type("Hub", (_Hub,), {"folder": test_models["clap"], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        home = tmp_path / "home"
        env = _env(home, HF_ENDPOINT=f"http://127.0.0.1:{port}")
        summary, attempts = _index(media, index_dir, tmp_path, "record", env)
    finally:
        server.shutdown()
        server.server_close()
    assert summary["added"] == 2 and summary["pending"] == 0, summary
    assert all(a.startswith("('127.0.0.1'") for a in attempts)
    snapshot = home / "hf" / "hub" / "models--laion--clap-htsat-unfused" / "snapshots" / COMMIT
    assert (snapshot / "config.json").is_file()
    assert any(s.endswith("/model.safetensors") for s in handler.seen)


@pytest.mark.parametrize("command", ["models", "status"])
def test_reports_never_download(command, index_dir, tmp_path):
    """`models` and `status` say where weights are; only `index` (or a query) fetches them."""
    Engine(index_dir, create=True).close()
    record = tmp_path / "attempts.json"
    args = [command, "--index", str(index_dir), "--json"]
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, "refuse", str(record), *args],
        capture_output=True,
        text=True,
        env=_env(tmp_path / "home", SEARCHENGINE_INDEX=str(index_dir)),
        cwd=REPO,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(record.read_text()) == []
    rows = json.loads(res.stdout)
    rows = rows if command == "models" else [{"space": k, **v} for k, v in rows["spaces"].items()]
    clip = next(r for r in rows if r["space"] == "clip")
    assert not clip["available"] and "download (on first use, by index)" in clip["weights"]
