"""The repository stands alone: its tracked text never points at a file or document it does not hold.

Scans every file `git ls-files` lists (binary files skipped) for four kinds of reference:
relative links in markdown files, repository paths (a tracked top-level directory followed by a file name
with an extension, or any `*.md` name), paths relative to the file's folder (`../x`), and phrases
that name documents kept outside the repository. A reader must be able to follow every one of
them inside this checkout.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parents[2]
THIS_FILE = PurePosixPath("tests/ops/test_stands_alone.py")

URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
MARKDOWN_NAME = re.compile(r"(?<![\w/.-])((?:\.{1,2}/)*(?:[\w.-]+/)*[\w.-]+\.md)\b")
# A path that climbs from the file's folder: it must land on something tracked, never outside.
RELATIVE_PATH = re.compile(r"(?<![\w/.)$-])((?:\.\./)+[\w./-]*[\w-])")
# Documents kept outside the repository (notes, briefs, the issue tracker), named without a path
# the checks above catch (a missing `*.md` or a path climbing out already is): state the fact or
# cite the primary source instead.
OUTSIDE_DOCUMENTS = re.compile(
    r"\b(?:design|research) notes?\b|\bresearch(?=/)|\bthe (?:team )?brief\b|\bthe seed's\b|\bissues? #?\d+",
    re.IGNORECASE,
)
# Files that exist only once a person or a script has made them from a tracked example or
# template; naming them is how the docs tell the reader to make them.
MADE_FROM_TRACKED = frozenset({"deploy/.env"})  # from deploy/compose.env.example


def tracked_files() -> list[PurePosixPath]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    return [PurePosixPath(name) for name in listing.split("\0") if name]


def text_of(path: PurePosixPath) -> str | None:
    data = (REPO / path).read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def known_paths(files: list[PurePosixPath]) -> set[str]:
    """Every tracked file and every directory above one, as repository-relative strings."""
    known = {str(path) for path in files}
    known.update(str(parent) for path in files for parent in path.parents if str(parent) != ".")
    return known


def resolves(target: str, source: PurePosixPath, known: set[str]) -> bool:
    """Whether `target` names a tracked file or directory, read from `source`'s folder or the root."""
    target = target.split("#", 1)[0].rstrip("/")
    if not target:
        return True  # a link to an anchor in the same file
    for base in (source.parent, PurePosixPath(".")):
        parts: list[str] = list(base.parts) if str(base) != "." else []
        for part in PurePosixPath(target).parts:
            if part == "..":
                if not parts:
                    break  # climbs out of the repository
                parts.pop()
            elif part != ".":
                parts.append(part)
        else:
            if "/".join(parts) in known:
                return True
    return False


def dangling_references(source: PurePosixPath, text: str, known: set[str], top_level: set[str]) -> list[str]:
    repo_path = re.compile(
        r"(?<![\w/.~$-])((?:" + "|".join(map(re.escape, sorted(top_level))) + r")/[\w./-]*\.[A-Za-z]\w*)"
    )
    found: list[str] = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = URL.sub(" ", raw_line)
        names = set(MARKDOWN_NAME.findall(line))
        if source.suffix == ".md":
            names |= set(MARKDOWN_LINK.findall(line))
        names |= {match.rstrip(".") for match in repo_path.findall(line)}
        names |= set(RELATIVE_PATH.findall(line))
        for name in sorted(names):
            if name in MADE_FROM_TRACKED or name.startswith(("mailto:", "#")):
                continue
            if not resolves(name, source, known):
                found.append(f"{source}:{number}: {name!r} is not in the repository")
        for match in OUTSIDE_DOCUMENTS.finditer(line):
            found.append(f"{source}:{number}: {match.group(0)!r} names a document outside the repository")
    return found


def scan(files: list[PurePosixPath], texts: dict[PurePosixPath, str]) -> list[str]:
    known = known_paths(files)
    top_level = {path.parts[0] for path in files if len(path.parts) > 1}
    problems: list[str] = []
    for path in files:
        text = texts.get(path)
        if text is not None and path != THIS_FILE:
            problems.extend(dangling_references(path, text, known, top_level))
    return problems


def test_tracked_text_names_only_what_the_repository_holds() -> None:
    files = tracked_files()
    texts = {path: text for path in files if (text := text_of(path)) is not None}
    problems = scan(files, texts)
    assert not problems, "\n".join(problems)


def test_each_kind_of_outside_reference_is_reported_with_file_and_line() -> None:
    files = [PurePosixPath(p) for p in ("README.md", "docs/architecture.md", "cloud/api/app.py")]
    text = "\n".join(
        [
            "Fine: [architecture](architecture.md), README.md, cloud/api/app.py, deploy/.env.",
            "See [the plan](../plan.md) and docs/missing.md.",
            '"""As cloud/api/gone.py and the research notes say."""',
            "Copied from ../notes/gifts; the seed's formula, as issue 18 asked.",
            "https://github.com/thingsboard/thingsboard/blob/master/README.md is a primary source.",
        ]
    )
    problems = scan(files, {PurePosixPath("docs/architecture.md"): text})
    assert problems == [
        "docs/architecture.md:2: '../plan.md' is not in the repository",
        "docs/architecture.md:2: 'docs/missing.md' is not in the repository",
        "docs/architecture.md:3: 'cloud/api/gone.py' is not in the repository",
        "docs/architecture.md:3: 'research notes' names a document outside the repository",
        "docs/architecture.md:4: '../notes/gifts' is not in the repository",
        'docs/architecture.md:4: "the seed\'s" names a document outside the repository',
        "docs/architecture.md:4: 'issue 18' names a document outside the repository",
    ]
