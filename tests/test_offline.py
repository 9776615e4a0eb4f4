"""The text model loads from the installed package, and nothing ever opens a network socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO

SCRIPT = textwrap.dedent(
    """
    import json, socket, sys
    attempts = []
    def refuse(self, address, *a, **k):
        attempts.append(repr(address))
        raise OSError("network disabled by test")
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    socket.create_connection = lambda address, *a, **k: refuse(None, address)
    from searchengine import Engine
    with Engine(sys.argv[2], create=True) as eng:
        eng.index([sys.argv[1]])
        hits = eng.search("tomato seedlings", k=1)
        source = eng.models.resolve("text").source
    print(json.dumps({"attempts": attempts, "top": hits[0].path, "source": source}))
    """
)


def test_index_and_search_never_touch_the_network(corpus, index_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.pop("SEARCHENGINE_ALLOW_DOWNLOAD", None)
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(corpus), str(index_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["attempts"] == []
    assert out["source"] == "package"
    assert out["top"].endswith("garden.md")
