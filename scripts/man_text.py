"""Man pages as plain text, and the SEE ALSO references people wrote in them.

Standard library only (scripts/fetch_samples.py uses it): no groff or mandoc needed, and the
same text comes out on every machine, so an evaluation built on it is reproducible.

- `roff_to_text(source)`: the text of a man(7) page, roughly as `man PAGE | col -b` shows it
  without the indentation: headings on their own lines, filled paragraphs joined into one
  line, no-fill blocks (.nf, .EX) line by line, tbl tables one row per line, font and size
  escapes dropped, special characters (\\(em, \\[aq], \\e, \\-) as Unicode. None for a
  `.so` redirect stub (a page that only points at another page).
- `so_target(source)`: the page a `.so` stub points at ("man2/chmod.2" -> "chmod.2").
- `see_also(text)`: the `name(section)` references of the text's SEE ALSO section;
  `cut_see_also(text)` the text without that section.
- `build_see_also(folder, aliases)`: the references of every page under `folder`, resolved
  through aliases (symlinked and `.so` pages) to real pages, as a JSON-ready dict.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from pathlib import Path

# Special characters by groff name: \(xx, \[xx], and the strings \*(lq \*(rq.
GLYPHS = {
    "em": "\u2014",
    "en": "\u2013",
    "aq": "'",
    "dq": '"',
    "lq": "\u201c",
    "rq": "\u201d",
    "oq": "\u2018",
    "cq": "\u2019",
    "bu": "\u2022",
    "ha": "^",
    "ti": "~",
    "ga": "`",
    "aa": "\u00b4",
    "rs": "\\",
    "sl": "/",
    "ba": "|",
    "br": "|",
    "hy": "-",
    "mi": "-",
    "pl": "+",
    "eq": "=",
    "**": "*",
    "mu": "\u00d7",
    "di": "\u00f7",
    "+-": "\u00b1",
    "<=": "\u2264",
    ">=": "\u2265",
    "!=": "\u2260",
    "->": "\u2192",
    "<-": "\u2190",
    "ua": "\u2191",
    "da": "\u2193",
    "co": "\u00a9",
    "rg": "\u00ae",
    "tm": "\u2122",
    "dg": "\u2020",
    "sc": "\u00a7",
    "de": "\u00b0",
    "ss": "\u00df",
    "mc": "\u00b5",
    "*m": "\u03bc",
    "pc": "\u00b7",
    "Fo": "\u00ab",
    "Fc": "\u00bb",
    "sd": "\u2033",
    "fm": "\u2032",
    "R": "\u00ae",
    "Tm": "\u2122",
}
# Accented letters: \(:a, \['e], \(^o ... (accent mark + letter).
ACCENTS = {
    ":": "\u0308",
    "'": "\u0301",
    "`": "\u0300",
    "^": "\u0302",
    "~": "\u0303",
    ",": "\u0327",
    "o": "\u030a",
}
# Escapes whose argument is a name (one char, (xx or [name]): fonts, sizes, registers...
_NAMED = set("fFgkmMnVY$*")
# Escapes whose argument sits between delimiters: \w'..', \h'..', \N'..' ...
_DELIMITED = set("hvwoxlLDXZbHSNRAB")
# Escapes that print nothing: \& \| \^ \, \/ \: \% \) \c and motions.
_SILENT = set("&|^,/:%)cdurpatz{}")
_SPACES = {" ": " ", "~": " ", "0": " ", "t": "\t"}
_LITERAL = {"e": "\\", "\\": "\\", "-": "-", ".": ".", "'": "\u00b4", "`": "`"}

FONT_MACROS = {"B", "I", "SM", "SB"}
ALTERNATING = {"BR", "IR", "RB", "BI", "IB", "RI"}
PARAGRAPH = {"PP", "LP", "P", "HP", "sp", "ns"}


def glyph(name: str) -> str:
    """A special character by name ("em", "u00E9", ":a"); "" when unknown."""
    if name in GLYPHS:
        return GLYPHS[name]
    if re.fullmatch(r"u[0-9A-Fa-f]{4,6}(?:_[0-9A-Fa-f]{4,6})*", name):
        chars = "".join(chr(int(h, 16)) for h in name[1:].split("_"))
        return unicodedata.normalize("NFC", chars)
    if len(name) == 2 and name[0] in ACCENTS and name[1].isalpha():
        return unicodedata.normalize("NFC", name[1] + ACCENTS[name[0]])
    return ""


def _name_arg(line: str, i: int, signed: bool = False) -> tuple[str, int]:
    """The name after an escape at line[i:]: x, (xx or [long name]; returns (name, next i)."""
    if signed and i < len(line) and line[i] in "+-":
        i += 1
    if i >= len(line):
        return "", i
    if line[i] == "(":
        return line[i + 1 : i + 3], i + 3
    if line[i] == "[":
        end = line.find("]", i + 1)
        end = len(line) if end == -1 else end
        return line[i + 1 : end], end + 1
    return line[i], i + 1


def unescape(line: str) -> str:
    """Text of one roff line: comments cut, font/size/motion escapes dropped, glyphs mapped."""
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c != "\\" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        e = line[i + 1]
        i += 2
        if e in '"#':  # comment to the end of the line
            break
        if e in _NAMED:
            name, i = _name_arg(line, i)
            if e == "*":
                out.append(glyph(name))
        elif e == "s":
            _, i = _name_arg(line, i, signed=True)
        elif e in "([":
            name, i = _name_arg(line, i - 1)
            out.append(glyph(name))
        elif e in _DELIMITED:
            if i < n:
                end = line.find(line[i], i + 1)
                i = n if end == -1 else end + 1
        elif e in _SPACES:
            out.append(_SPACES[e])
        elif e in _LITERAL:
            out.append(_LITERAL[e])
        elif e not in _SILENT:
            out.append(e)
    return "".join(out)


def macro_args(rest: str) -> list[str]:
    """Arguments of a macro line: split at spaces, "double quoted" ones kept whole ("" is
    a quote inside quotes), escapes left for unescape()."""
    args: list[str] = []
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t":
            i += 1
        if i >= n:
            break
        buf: list[str] = []
        if rest[i] == '"':
            i += 1
            while i < n:
                if rest[i] == '"':
                    if rest[i + 1 : i + 2] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                if rest[i] == "\\" and i + 1 < n:
                    buf.append(rest[i : i + 2])
                    i += 2
                    continue
                buf.append(rest[i])
                i += 1
        else:
            while i < n and rest[i] not in " \t":
                if rest[i] == "\\" and i + 1 < n:
                    if rest[i + 1] == '"':  # a comment ends the arguments
                        return [*args, "".join(buf)] if buf else args
                    buf.append(rest[i : i + 2])
                    i += 2
                    continue
                buf.append(rest[i])
                i += 1
        args.append("".join(buf))
    return args


def so_target(source: str) -> str | None:
    """For a page that is only a `.so` redirect: the key of the page it names ("chmod.2")."""
    target = None
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped or re.match(r"^[.'][ \t]*(?:\\\"|$)", stripped):
            continue
        m = re.match(r"^[.'][ \t]*so[ \t]+(\S+)", stripped)
        if m is None or target is not None:
            return None
        target = Path(m.group(1)).name
    if target and target.endswith(".gz"):
        target = target[: -len(".gz")]
    return target


class _Writer:
    """Collects output lines: filled paragraphs joined, no-fill lines kept, blank gaps."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.para: list[str] = []
        self.fill = True

    def text(self, s: str) -> None:
        if self.fill:
            if s.strip():
                self.para.append(s.strip())
            else:
                self.gap()
        else:
            self.flush()
            self.lines.append(s.rstrip())

    def flush(self) -> None:
        if self.para:
            self.lines.append(re.sub(r"[ \t]+", " ", " ".join(self.para)))
            self.para = []

    def gap(self) -> None:
        self.flush()
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def heading(self, s: str) -> None:
        self.gap()
        self.lines.append(s.strip())

    def result(self) -> str:
        self.flush()
        text = "\n".join(self.lines).strip("\n")
        return re.sub(r"\n{3,}", "\n\n", text) + "\n"


def _skip_block(lines: Iterator[str], end: str) -> None:
    """Consume lines up to the one that ends a block: ".." (macro definitions, .ig) or a
    line holding `end` (conditional blocks)."""
    for line in lines:
        if (line.strip() == "..") if end == ".." else (end in line):
            return


def roff_to_text(source: str) -> str | None:
    """Plain text of a man(7) page (see the module docstring); None for a `.so` stub."""
    if so_target(source):
        return None
    out = _Writer()
    source = re.sub(r"(?<!\\)\\\n", "", source)  # a backslash at the end joins lines
    lines = iter(source.splitlines())
    pending = ""  # "heading" or "tag": what the next text line is
    url: list[str] = []
    table = ""  # "", "format" (tbl options and formats), "data"
    tab = "\t"

    def emit(line: str) -> None:
        nonlocal pending
        if pending == "heading":
            out.heading(line)
        else:
            out.text(line)
            if pending == "tag":
                out.flush()
        pending = ""

    for raw in lines:
        if table == "format":
            stripped = raw.strip()
            m = re.search(r"tab\s*\((.)\)", stripped)
            if stripped.endswith(";") and m:
                tab = m.group(1)
            if stripped.endswith("."):
                table = "data"
            continue
        if raw[:1] in (".", "'"):
            m = re.match(r"^[.'][ \t]*(\S*)[ \t]*(.*)$", raw)
            name, rest = (m.group(1), m.group(2)) if m else ("", "")
            if name.startswith('\\"') or not name:
                continue
            if name in ("TS", "T&"):
                out.flush()
                table, tab = "format", "\t"
                continue
            if name == "TE":
                table = ""
                out.gap()
                continue
            args = [unescape(a) for a in macro_args(rest)]
            if name in ("SH", "SS"):
                if args:
                    out.heading(" ".join(args))
                else:
                    out.gap()
                    pending = "heading"
            elif name in FONT_MACROS:
                if args:
                    emit(" ".join(args))
            elif name in ALTERNATING:
                emit("".join(args))
            elif name in PARAGRAPH:
                out.gap()
            elif name in ("TP", "TQ"):
                (out.gap if name == "TP" else out.flush)()
                pending = "tag"
            elif name == "IP":
                out.gap()
                if args and args[0]:
                    out.text(args[0])
            elif name == "br":
                out.flush()
            elif name in ("nf", "EX"):
                out.flush()
                out.fill = False
            elif name in ("fi", "EE"):
                out.flush()
                out.fill = True
            elif name in ("UR", "MT"):
                url = args[:1]
            elif name in ("UE", "ME"):
                if url and url[0]:
                    out.text(f"<{url[0]}>" + "".join(args))
                url = []
            elif name == "SY":
                out.flush()
                out.text(" ".join(args))
            elif name == "OP":
                out.text("[" + " ".join(args) + "]")
            elif name in ("de", "de1", "am", "ig"):
                _skip_block(lines, "..")
            elif name in ("if", "ie", "el") and "\\{" in rest:
                _skip_block(lines, "\\}")
            # any other request (.TH, .RS, .RE, .in, .ad, .ft, .so inside a page...) prints nothing
            continue
        text = raw
        if table == "data":
            stripped = text.strip()
            if stripped in ("_", "=", ""):
                continue
            opens = text.rstrip().endswith("T{")
            text = re.sub(r"^T\}", "", text.rstrip())
            text = re.sub(r"T\{$", "", text)
            cells = [unescape(c).strip() for c in text.split(tab)]
            if any(cells):
                out.text("  ".join(c for c in cells if c))
            if not opens:
                out.flush()
            continue
        emit(unescape(text))
    return out.result()


# ---- SEE ALSO ------------------------------------------------------------------------------

_HEADING = re.compile(r"^[A-Z][A-Z0-9 _,/&'-]*$")
_REF = re.compile(r"(?<![\w.:+@-])([A-Za-z0-9_][\w.:+@-]*)\(([1-9][a-z]*)\)")


def see_also(text: str) -> list[tuple[str, str]]:
    """(name, section) of each reference in the SEE ALSO section, in order, without repeats."""
    refs: list[tuple[str, str]] = []
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "SEE ALSO":
            inside = True
            continue
        if inside and stripped and line == stripped and _HEADING.match(stripped):
            break
        if inside:
            for m in _REF.finditer(line):
                ref = (m.group(1), m.group(2))
                if ref not in refs:
                    refs.append(ref)
    return refs


def cut_see_also(text: str) -> str:
    """The text without its SEE ALSO section (the heading up to the next heading)."""
    out: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped == "SEE ALSO":
            inside = True
            continue
        if inside and stripped and line.rstrip("\n") == stripped and _HEADING.match(stripped):
            inside = False
        if not inside:
            out.append(line)
    return "".join(out).rstrip("\n") + "\n"


def page_key(path: Path) -> str:
    """ "open.2" for .../man2/open.2.txt (or open.2.gz, open.2)."""
    name = path.name
    for suffix in (".txt", ".gz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def resolve(key: str, aliases: Mapping[str, str]) -> str:
    """Follow aliases (symlinks, `.so` stubs) to a real page key; cycles stop where they loop."""
    seen = {key}
    while key in aliases and aliases[key] not in seen:
        key = aliases[key]
        seen.add(key)
    return key


def build_see_also(folder: Path, aliases: Mapping[str, str]) -> dict[str, object]:
    """The SEE ALSO graph of the pages under folder/*/man*/ (or folder/man*/) as a dict:
    {"pages": {key: {"path": relative path, "see_also": [keys]}}, "aliases": {...}}.
    References are resolved through aliases; references to pages that are not here (other
    packages' pages) are kept, so that a reader sees what the authors cited."""
    pages: dict[str, dict[str, object]] = {}
    for path in sorted(folder.rglob("*.txt")):
        if not path.parent.name.startswith("man"):
            continue
        key = page_key(path)
        refs = []
        for name, section in see_also(path.read_text(encoding="utf-8", errors="replace")):
            ref = resolve(f"{name}.{section}", aliases)
            if ref != key and ref not in refs:
                refs.append(ref)
        pages[key] = {"path": path.relative_to(folder).as_posix(), "see_also": refs}
    return {
        "about": "SEE ALSO references of each page, as name.section keys resolved through "
        "aliases (symlinked or .so pages) to real pages; made by scripts/man_text.py",
        "pages": pages,
        "aliases": dict(sorted(aliases.items())),
    }
