"""Which Debian mirror this machine uses, read from its apt sources at run time.

The lab builds Debian roots of newer suites with ``mmdebstrap`` and must fetch them from the
same mirror apt already uses here (a fixed host name in code would be wrong on the next
machine, and this workplace reaches only the mirror it was given). Both formats are read:
one-line ``deb URI SUITE COMPONENTS`` entries (``sources.list``, ``*.list``) and deb822
stanzas (``*.sources``). The Debian archive itself is the entry whose suite is the host's
release without a ``-security``/``-updates``/``-backports`` suffix, or any plain Debian
codename; security and third-party repositories never qualify.

Pure parsing is separate from reading files so it can be unit-tested on text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cutover.errors import PrerequisiteError

DEBIAN_SUITES = frozenset({
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable",
})
"""Suite names of the Debian archive proper (what a plain main-archive entry names)."""


@dataclass(frozen=True)
class AptSource:
    """One enabled ``deb`` entry: a repository URI and the suites it serves."""

    uri: str
    suites: tuple[str, ...]
    origin: str
    """File it came from (named in errors)."""


def parse_one_line(text: str, origin: str = "sources.list") -> list[AptSource]:
    """``deb [options] URI SUITE [COMPONENT...]`` lines; ``deb-src`` and comments skipped."""
    found: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line[4:].strip()
        if words.startswith("["):
            end = words.find("]")
            if end < 0:
                continue
            words = words[end + 1:]
        parts = words.split()
        if len(parts) >= 2:
            found.append(AptSource(parts[0], (parts[1],), origin))
    return found


def parse_deb822(text: str, origin: str = "x.sources") -> list[AptSource]:
    """deb822 stanzas (blank-line separated); ``Types`` must include ``deb`` and an
    ``Enabled: no`` stanza is skipped. Continuation lines (leading space) are folded."""
    found: list[AptSource] = []
    for stanza in _stanzas(text):
        if "deb" not in stanza.get("types", "").split():
            continue
        if stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        suites = tuple(stanza.get("suites", "").split())
        found += [AptSource(uri, suites, origin) for uri in stanza.get("uris", "").split()]
    return found


def _stanzas(text: str) -> Iterable[dict[str, str]]:
    fields: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, key = {}, ""
            continue
        if raw[0] in " \t" and key:
            fields[key] += " " + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if sep:
            key = name.strip().lower()
            fields[key] = value.strip()
    return


def debian_mirror(sources: Sequence[AptSource], host_codename: str = "") -> str:
    """The URI of the Debian archive among ``sources`` (PrerequisiteError if none).

    Preference: an entry serving ``host_codename`` itself, then any plain Debian suite.
    """
    def plain(source: AptSource) -> list[str]:
        return [s for s in source.suites if s in DEBIAN_SUITES]

    for source in sources:
        if host_codename and host_codename in source.suites:
            return source.uri.rstrip("/")
    for source in sources:
        if plain(source):
            return source.uri.rstrip("/")
    raise PrerequisiteError(
        "no Debian archive found in the apt sources (/etc/apt/sources.list, "
        "/etc/apt/sources.list.d/*.list|*.sources): add the Debian mirror this machine "
        "should use, e.g. a 'deb URI bookworm main' line"
    )


def read_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled entry of the machine's apt configuration, in apt's reading order."""
    found: list[AptSource] = []
    main = etc_apt / "sources.list"
    if main.is_file():
        found += parse_one_line(main.read_text(errors="replace"), str(main))
    parts = etc_apt / "sources.list.d"
    for path in sorted(parts.iterdir()) if parts.is_dir() else []:
        if path.suffix == ".list":
            found += parse_one_line(path.read_text(errors="replace"), str(path))
        elif path.suffix == ".sources":
            found += parse_deb822(path.read_text(errors="replace"), str(path))
    return found


def host_codename(os_release: Path = Path("/etc/os-release")) -> str:
    """``VERSION_CODENAME`` of this machine ('' if unknown)."""
    try:
        for line in os_release.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "VERSION_CODENAME":
                return value.strip().strip("\"'")
    except OSError:
        pass
    return ""


def machine_mirror() -> str:
    """The Debian mirror this machine's apt uses (PrerequisiteError if none is set up)."""
    return debian_mirror(read_sources(), host_codename())
