"""Voices end to end with the real GE2E weights from the resemblyzer wheel: voice segments
from speech in audio and video, search by voice, speakers (list, name, filter), names that
survive re-indexing, and bad input (silence, tones, a word too short) that costs nothing.

Speakers are two espeak-ng voices (en+f4 and en+m3), measured apart (cosine ~0.64 between
them, ~0.96 within one); real people are measured by scripts/eval_voices.py."""

from __future__ import annotations

import json
import os
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from searchengine.config import IndexConfig
from searchengine.encoders import voice
from searchengine.encoders.registry import ModelRegistry
from searchengine.engine import Engine
from searchengine.errors import ModelUnavailable, UserError
from tests.conftest import run_cli
from tests.speech_fixtures import SAMPLE_RATE, espeak_available, make_speech, read_pcm
from tests.video_fixtures import make_slideshow, solid, tone

pytestmark = pytest.mark.skipif(not espeak_available(), reason="needs espeak-ng (make sysdeps)")

ALICE, BOB = "en+f4", "en+m3"
LINES = {
    "alice_budget.wav": (ALICE, "The quarterly budget was approved after a long meeting."),
    "alice_garden.wav": (ALICE, "Please water the plants and feed the cat while I am away."),
    "bob_trains.wav": (BOB, "The next train to the city leaves from platform four at noon."),
    "bob_budget.wav": (BOB, "I think the budget for the new library is far too small."),
}
QUERY = (ALICE, "Could you send me the report before Friday, thank you very much.")
NEW = (ALICE, "Tomorrow we will walk along the river and have lunch in the park.")


def _write_wav(path: Path, pcm: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    data = (np.clip(pcm, -1, 1) * 32767).astype(np.int16).tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("voices")
    lib = root / "library"
    lib.mkdir()
    for name, (who, text) in LINES.items():
        make_speech(lib / name, text, voice=who)
    # Alice in a video's sound track (speech at 1 s, after a second of silence)
    said = make_speech(root / "alice_video.wav", LINES["alice_garden.wav"][1], 1.0, voice=ALICE)
    pcm = read_pcm(said, 48000)
    frames = [solid((200, 40, 40)), solid((40, 40, 200))]
    make_slideshow(lib / "alice_talks.mkv", frames, len(pcm) / 48000 / 2, audio=pcm)
    # Bob, a pause, then Alice: one file, two voices
    gap = np.zeros(int(1.5 * SAMPLE_RATE), dtype=np.float32)
    both = [read_pcm(lib / "bob_budget.wav"), gap, read_pcm(lib / "alice_budget.wav")]
    _write_wav(lib / "dialogue.wav", np.concatenate(both))
    # bad input: digital silence, a chord (music, no speech), a word under half a second
    _write_wav(lib / "silence.wav", np.zeros(3 * SAMPLE_RATE, dtype=np.float32))
    chord = sum(tone(4.0, f, SAMPLE_RATE) for f in (262.0, 330.0, 392.0)) / 3
    _write_wav(lib / "chord.wav", chord.astype(np.float32))
    make_speech(lib / "short.wav", "a", voice=BOB)
    query = make_speech(root / "query.wav", QUERY[1], voice=QUERY[0])
    new = make_speech(root / "new" / "alice_river.wav", NEW[1], voice=NEW[0])
    return {"root": root, "lib": lib, "query": query, "new": new}


@pytest.fixture(scope="module")
def index(media: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import load_script

    models = load_script("make_test_models").make_all(Path(__file__).resolve().parent / ".models")
    folder = tmp_path_factory.mktemp("idx") / "index"
    with Engine(
        folder,
        create=True,
        models={"clip": str(models["clip_config"]), "clap": str(models["clap"])},
        clip_pretrained=str(models["clip_checkpoint"]),
    ) as eng:
        summary = eng.index([media["lib"]])
    assert summary.failed == 0 and summary.pending == 0, summary.problems
    return folder


def _voice_rows(eng: Engine) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for rec in eng.catalog.all_files():
        segs = [s for s in eng.catalog.file_segments(rec.id) if s.space == "voice"]
        out[Path(rec.path).name] = [(s.start, s.end) for s in segs]
    return out


def test_mel_spectrogram_matches_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(1)
    wav = (rng.standard_normal(SAMPLE_RATE * 2) * 0.1).astype(np.float32)
    ref = librosa.feature.melspectrogram(
        y=wav, sr=SAMPLE_RATE, n_fft=voice.N_FFT, hop_length=voice.HOP, n_mels=voice.N_MELS
    ).T
    ours = voice.mel_spectrogram(wav)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4 * ref.max()


def test_weights_resolve_from_the_wheel_and_off_or_missing_is_explained(tmp_path: Path) -> None:
    cfg = IndexConfig()
    found = ModelRegistry(cfg).resolve("voice")
    assert found.source == "package" and found.location.endswith("pretrained.pt")
    cfg.models["voice"] = "off"
    with pytest.raises(ModelUnavailable, match="off"):
        ModelRegistry(cfg).encoder("voice")
    cfg.models["voice"] = str(tmp_path / "nope.pt")
    with pytest.raises(ModelUnavailable, match="--voice"):
        ModelRegistry(cfg).encoder("voice")


def test_voice_segments_cover_speech_only(index: Path) -> None:
    with Engine(index, readonly=True) as eng:
        rows = _voice_rows(eng)
        states = {Path(r.path).name: r.state for r in eng.catalog.all_files()}
    for name in [*LINES, "alice_talks.mkv", "dialogue.wav"]:
        assert rows[name], name
        assert all(0.5 <= end - start <= 3.01 for start, end in rows[name]), rows[name]
    assert rows["alice_talks.mkv"][0][0] >= 0.5  # speech at 1 s (VAD pads a few 100 ms)
    for name in ("silence.wav", "chord.wav", "short.wav"):  # no voice, and no failure
        assert rows.get(name, []) == [], name
        assert states[name] != "failed"


def test_similar_voice_finds_the_same_person_across_audio_and_video(
    index: Path, media: dict[str, Path]
) -> None:
    with Engine(index, readonly=True) as eng:
        hits = eng.similar_voice(media["query"], k=5)
    names = [Path(h.path).name for h in hits]
    alice = {"alice_budget.wav", "alice_garden.wav", "alice_talks.mkv", "dialogue.wav"}
    assert set(names[:4]) == alice, names
    assert all(not n.startswith("bob") for n in names), names
    dialogue = next(h for h in hits if h.path.endswith("dialogue.wav"))
    assert all(seg.start > 3.0 for seg in dialogue.segments)  # Alice speaks after Bob
    video = next(h for h in hits if h.type == "video")
    assert video.segments and video.segments[0].start is not None
    assert video.segments[0].end > video.segments[0].start


def test_speakers_name_filter_and_cli(index: Path, media: dict[str, Path]) -> None:
    with Engine(index) as eng:
        found = eng.speakers()
        assert len(found) == 2
        groups = sorted(sorted(Path(p).name[:3] for p in s.files) for s in found)
        assert groups == [["ali", "ali", "ali", "dia"], ["bob", "bob", "dia"]]
        alice = next(s for s in found if "alice_budget.wav" in {Path(p).name for p in s.files})
        assert alice.sample is not None and alice.seconds > 8
        with pytest.raises(UserError):
            eng.name_speaker(alice.id, "7")
    env = {**os.environ, "SEARCHENGINE_OFFLINE": "1"}
    res = run_cli("speakers", "name", str(alice.id), "Alice", "--index", str(index), env=env)
    assert res.returncode == 0, res.stderr
    res = run_cli(
        "search", "budget", "--speaker", "alice", "--json", "--index", str(index), env=env
    )
    assert res.returncode == 0, res.stderr
    hits = json.loads(res.stdout)
    assert hits and all(Path(h["path"]).name.startswith(("alice", "dia")) for h in hits), hits
    assert "dialogue.wav" in {Path(h["path"]).name for h in hits}, hits
    firsts = [h["segments"][0] for h in hits]  # the moment shown first is Alice's
    assert all(s.get("speaker") == "Alice" for s in firsts), firsts
    with Engine(index, readonly=True) as eng:
        by_name = eng.search("Alice")  # a name alone: where that speaker talks
        assert {Path(h.path).name for h in by_name} == {
            "alice_budget.wav",
            "alice_garden.wav",
            "alice_talks.mkv",
            "dialogue.wav",
        }
    res = run_cli("speakers", "--json", "--index", str(index), env=env)
    assert res.returncode == 0, res.stderr
    listed = {s["label"]: s for s in json.loads(res.stdout)}
    assert set(listed) == {"Alice", f"speaker {next(s.id for s in found if s.id != alice.id)}"}
    assert listed["Alice"]["sample"]["end"] > listed["Alice"]["sample"]["start"]
    res = run_cli("search", "budget", "--speaker", "Nobody", "--index", str(index), env=env)
    assert res.returncode != 0 and "no speaker 'Nobody'" in res.stderr
    assert "Traceback" not in res.stderr


def test_names_survive_reindexing_and_new_files_join(index: Path, media: dict[str, Path]) -> None:
    with Engine(index) as eng:
        named = [s for s in eng.speakers() if s.name]
        if not named:  # run alone: name Alice here
            alice = next(s for s in eng.speakers() if any("alice" in p for p in s.files))
            eng.name_speaker(alice.id, "Alice")
        changed = media["lib"] / "alice_budget.wav"
        os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
        shutil.copy(media["new"], media["lib"] / "alice_river.wav")
        changed.write_bytes(changed.read_bytes())  # new content time: re-embedded
        eng.index([media["lib"]])
        found = {s.name: s for s in eng.speakers()}
    assert "Alice" in found
    files = {Path(p).name for p in found["Alice"].files}
    assert {"alice_budget.wav", "alice_river.wav", "alice_talks.mkv"} <= files
    assert not any(n.startswith("bob") for n in files)


def test_missing_voice_weights_leave_files_pending_until_they_return(
    media: dict[str, Path], tmp_path: Path
) -> None:
    from tests.conftest import load_script

    models = load_script("make_test_models").make_all(Path(__file__).resolve().parent / ".models")
    weights = tmp_path / "ge2e.pt"
    shutil.copy(voice._packaged_weights(), weights)  # type: ignore[arg-type]
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(media["lib"] / "bob_trains.wav", lib / "bob.wav")
    chosen = {"clap": str(models["clap"]), "speech": "off", "voice": str(weights)}
    with Engine(tmp_path / "idx", create=True, models=chosen) as eng:
        hidden = weights.rename(tmp_path / "elsewhere.pt")
        summary = eng.index([lib])
        rec = eng.catalog.all_files()[0]
        assert summary.pending == 1 and rec.state == "pending", summary.problems
        assert "voice model" in (rec.reason or "") and "--voice" in (rec.reason or "")
    hidden.rename(weights)
    with Engine(tmp_path / "idx") as eng:
        eng.index([lib])
        assert eng.catalog.all_files()[0].state == "indexed"
        assert [s.label for s in eng.speakers()] and len(eng.speakers()) == 1


def test_names_follow_the_voice_to_another_voice_model(
    media: dict[str, Path], tmp_path: Path
) -> None:
    """A new voice model's vectors cannot be compared with a named speaker's old centroid:
    the name follows the moments where that speaker talked (here the same weights under
    another path, which is a model change to the index all the same)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("alice_budget.wav", "alice_garden.wav", "bob_trains.wav"):
        shutil.copy(media["lib"] / name, lib / name)
    from tests.conftest import load_script

    models = load_script("make_test_models").make_all(Path(__file__).resolve().parent / ".models")
    chosen = {"clap": str(models["clap"]), "speech": "off"}
    with Engine(tmp_path / "idx", create=True, models=chosen) as eng:
        eng.index([lib])
        alice = next(s for s in eng.speakers() if any("alice" in p for p in s.files))
        eng.name_speaker(alice.id, "Alice")
    weights = tmp_path / "ge2e.pt"
    shutil.copy(voice._packaged_weights(), weights)  # type: ignore[arg-type]
    with Engine(tmp_path / "idx", models={"voice": str(weights)}) as eng:
        assert eng.config.models["voice"] == str(weights)
        eng.index([lib])
        found = {s.label: {Path(p).name for p in s.files} for s in eng.speakers()}
    assert found.get("Alice") == {"alice_budget.wav", "alice_garden.wav"}, found


def test_a_speaker_name_read_from_the_query_is_said(index: Path) -> None:
    """Searching "Alice budget" filters to Alice's moments: the reading must say so (a speaker named
    like a common word would otherwise silently narrow every search that uses it)."""
    with Engine(index) as eng:
        if not any(s.name == "Alice" for s in eng.speakers()):  # run alone: name Alice here
            alice = next(s for s in eng.speakers() if any("alice" in p for p in s.files))
            eng.name_speaker(alice.id, "Alice")
        page = eng.search("budget Alice")
        plain = eng.search("budget", literal=True)
    assert page.reading.changed() and page.reading.query == "budget Alice"
    assert any("Alice" in note and "--literal" in note for note in page.reading.notes)
    assert not plain.reading.notes


def test_a_name_given_twice_joins_the_clusters_and_clear_is_explicit(
    index: Path, tmp_path: Path
) -> None:
    """One person often forms several clusters: naming a second cluster with a name already
    given joins it to that speaker (filter, hit labels, listing, re-clustering); an empty
    name is an error and removing a name takes --clear. (Bob's cluster stands in for a
    second cluster of Alice's: the plumbing is what is tested.)"""
    from searchengine import speakers as spk

    copy = tmp_path / "index"
    shutil.copytree(index, copy)
    env = {**os.environ, "SEARCHENGINE_OFFLINE": "1"}
    with Engine(copy) as eng:
        alice = next(s for s in eng.speakers() if "alice_budget.wav" in str(s.files))
        bob = next(s for s in eng.speakers() if s.id != alice.id)
        eng.name_speaker(alice.id, "Alice")
    res = run_cli("speakers", "name", str(bob.id), "", "--index", str(copy), env=env)
    assert res.returncode != 0 and "--clear" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("speakers", "name", str(bob.id), "alice", "--index", str(copy), env=env)
    assert res.returncode == 0, res.stderr
    assert "joined to Alice: now 2 clusters" in res.stdout, res.stdout
    every = {"alice_budget.wav", "alice_garden.wav", "alice_talks.mkv", "dialogue.wav"}
    every |= {"bob_trains.wav", "bob_budget.wav"}
    with Engine(copy) as eng:
        listed = eng.speakers()
        assert [(s.label, sorted(s.clusters)) for s in listed] == [
            ("Alice", sorted([alice.id, bob.id]))
        ]
        assert every <= {Path(p).name for p in listed[0].files}
        hits = eng.search("budget", speaker="Alice", k=20, cutoff=False)
        assert {"bob_budget.wav", "alice_budget.wav"} <= {Path(h.path).name for h in hits}
        labels = {seg.speaker for h in hits for seg in h.segments if seg.speaker}
        assert labels == {"Alice"}, labels
        assert every <= {Path(h.path).name for h in eng.search("Alice", k=20)}
        with eng.writer():  # re-clustering keeps the join
            spk.recluster(eng.voices, eng.config.model_key("voice"))
        assert [sorted(s.clusters) for s in eng.speakers()] == [sorted([alice.id, bob.id])]
    res = run_cli("speakers", "name", str(bob.id), "--clear", "--index", str(copy), env=env)
    assert res.returncode == 0, res.stderr
    with Engine(copy, readonly=True) as eng:
        assert sorted(s.label for s in eng.speakers()) == ["Alice", f"speaker {bob.id}"]


def test_a_joined_cluster_keeps_its_name_through_a_voice_model_change(
    media: dict[str, Path], tmp_path: Path
) -> None:
    """A cluster joined to a named speaker remembers its own moments, so after a voice
    model change (same weights, another path) the name still covers both clusters."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in ("alice_budget.wav", "bob_trains.wav"):
        shutil.copy(media["lib"] / name, lib / name)
    from tests.conftest import load_script

    models = load_script("make_test_models").make_all(Path(__file__).resolve().parent / ".models")
    chosen = {"clap": str(models["clap"]), "speech": "off"}
    with Engine(tmp_path / "idx", create=True, models=chosen) as eng:
        eng.index([lib])
        alice = next(s for s in eng.speakers() if any("alice" in p for p in s.files))
        other = next(s for s in eng.speakers() if s.id != alice.id)
        eng.name_speaker(alice.id, "Alice")
        assert eng.name_speaker(other.id, "Alice").joined  # type: ignore[union-attr]
    weights = tmp_path / "ge2e.pt"
    shutil.copy(voice._packaged_weights(), weights)  # type: ignore[arg-type]
    with Engine(tmp_path / "idx", models={"voice": str(weights)}) as eng:
        eng.index([lib])
        found = [
            (s.label, len(s.clusters), {Path(p).name for p in s.files}) for s in eng.speakers()
        ]
    assert found == [("Alice", 2, {"alice_budget.wav", "bob_trains.wav"})], found
