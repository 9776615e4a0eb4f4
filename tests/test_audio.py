"""Audio end to end: speech found at the right moment with the real tiny.en model, CLAP
windows stored and searched with a tiny random CLAP, bad files recorded, pending without
CLAP weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from searchengine import Engine
from tests.speech_fixtures import make_speech


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("audio") / "recordings"
    root.mkdir()
    make_speech(
        root / "meeting.wav", "the quarterly budget meeting is on Tuesday", lead_silence_s=7.0
    )
    real = sorted(
        p
        for p in (sample_dir / "sounds").rglob("*")
        if p.suffix in (".ogg", ".oga", ".wav", ".mp3")
    )
    assert len(real) >= 3
    for p in (real[0], real[len(real) // 2], real[-1]):
        shutil.copy(p, root / p.name)
    data = real[0].read_bytes()
    (root / "truncated.ogg").write_bytes(data[: len(data) // 3])
    (root / "garbage.mp3").write_bytes(b"\xff\xfb" + bytes(range(256)) * 40)
    return root


def tiny_clap(test_models: dict[str, Path]) -> dict[str, str]:
    return {"clap": str(test_models["clap"])}


def by_name(eng: Engine) -> dict[str, tuple[str, str | None]]:
    return {Path(r.path).name: (r.state, r.reason) for r in eng.catalog.all_files()}


def test_spoken_phrase_is_found_at_the_right_time(recordings, tmp_path, test_models):
    with Engine(tmp_path / "idx", create=True, models=tiny_clap(test_models)) as eng:
        summary = eng.index([recordings])
        states = by_name(eng)
        assert states["meeting.wav"][0] == "indexed"
        assert states["garbage.mp3"][0] == "failed"
        assert summary.failed >= 1 and summary.failed + summary.skipped <= 2
        hits = eng.search("quarterly budget meeting", k=3, types=["audio"])
        assert Path(hits[0].path).name == "meeting.wav"
        speech = [s for s in hits[0].segments if s.kind == "speech"]
        assert speech and "budget" in speech[0].text.lower()
        assert 6.0 <= speech[0].start <= 8.0 and speech[0].end > speech[0].start
        assert hits[0].type == "audio"
        windows = eng.status()["spaces"]["clap"]["vectors"]
        assert windows >= 4  # every recording has at least one CLAP window


def test_clap_windows_cover_the_file_and_similar_finds_itself(recordings, tmp_path, test_models):
    with Engine(tmp_path / "idx", create=True, models=tiny_clap(test_models)) as eng:
        eng.index([recordings])
        rows = eng.catalog.segment_rows(eng.catalog.vector_ids("clap").tolist()).values()
        meeting = sorted((r.start, r.end) for r in rows if r.path.endswith("meeting.wav"))
        assert meeting[0][0] == 0.0
        assert all(b[0] - a[0] == 5.0 for a, b in zip(meeting[:-1], meeting[1:], strict=True))
        real = [
            p
            for p in recordings.iterdir()
            if p.suffix in (".ogg", ".oga") and p.name != "truncated.ogg"
        ]
        hits = eng.similar(real[0], k=2, types=["audio"], include_self=True)
        assert Path(hits[0].path).name == real[0].name
        assert hits[0].segments and hits[0].segments[0].start is not None
        sound_hits = eng.search("a dog barking", k=3, types=["audio"])
        assert sound_hits and all(h.type == "audio" for h in sound_hits)


def test_without_clap_weights_audio_is_pending_but_speech_is_searchable(
    recordings, tmp_path, test_models
):
    index = tmp_path / "idx"
    with Engine(index, create=True) as eng:  # default laion CLAP weights are not here
        summary = eng.index([recordings])
        assert summary.pending >= 4
        assert by_name(eng)["meeting.wav"][0] == "pending"
        hit = eng.search("budget meeting on Tuesday", k=1)[0]
        assert hit.path.endswith("meeting.wav")
        assert hit.segments[0].kind == "speech" and 6.0 <= hit.segments[0].start <= 8.0
    with Engine(index, models=tiny_clap(test_models)) as eng:
        summary = eng.index([recordings])
        assert summary.pending == 0 and summary.changed >= 4
        assert by_name(eng)["meeting.wav"][0] == "indexed"


def test_speech_can_be_turned_off_per_index(recordings, tmp_path, test_models, monkeypatch):
    index = tmp_path / "idx"
    with Engine(index, create=True, models=tiny_clap(test_models)) as eng:
        eng.index([recordings])
        assert eng.search("quarterly budget", k=1)[0].segments[0].kind == "speech"
        windows = set(eng.catalog.vector_ids("clap").tolist())
        speech_before = _speech_lines(eng)
        assert speech_before
    calls = _count_encoder_calls(monkeypatch)
    with Engine(index, models={"speech": "off"}) as eng:
        summary = eng.index([recordings])
        assert summary.reembedded >= 4 and summary.changed == 0  # only the transcripts go
        top = eng.search("quarterly budget", k=1, types=["audio"])
        assert all(s.kind != "speech" for h in top for s in h.segments)
        assert set(eng.catalog.vector_ids("clap").tolist()) == windows  # sounds untouched
        assert _speech_lines(eng) == []
    assert calls.get("clap", 0) == 0
    with Engine(index, models={"speech": "tiny.en"}) as eng:
        summary = eng.index([recordings])
        assert summary.reembedded >= 4 and summary.changed == 0  # transcripts come back
        assert set(eng.catalog.vector_ids("clap").tolist()) == windows
        assert [t for _, t in _speech_lines(eng)] == [t for _, t in speech_before]
        assert eng.search("quarterly budget", k=1)[0].segments[0].kind == "speech"
    assert calls.get("clap", 0) == 0


def _speech_lines(eng: Engine) -> list[tuple[float, str]]:
    rows = eng.catalog.segment_rows(eng.catalog.vector_ids("text").tolist()).values()
    return sorted((r.start, r.text) for r in rows if r.kind == "speech")


def _count_encoder_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts embed_items calls per space until the test ends (the loaded encoders are
    shared by the whole process, so the counting is undone by monkeypatch)."""
    from searchengine.encoders import registry

    calls: dict[str, int] = {}
    for (space, _, _), enc in list(registry._LOADED.items()):
        if not hasattr(enc, "embed_items"):
            continue  # the speech transcriber
        original = enc.embed_items

        def counting(payloads, space=space, original=original):
            calls[space] = calls.get(space, 0) + 1
            return original(payloads)

        monkeypatch.setattr(enc, "embed_items", counting)
    return calls
