"""The documentation against the code: README.md and docs/*.md must not drift from the tree.

- docs/architecture.md's Redis layout table lists exactly the keys of relay/store/keys.py's docstring;
- every path of ours named in backticks or linked exists;
- every relative link points to an existing file (and, for a Markdown file, an existing heading);
- README.md stays the user's page: short, and linking each document of docs/;
- the failed-session Slack payload README.md shows is what the Slack adapter sends.
"""

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"
KEYS_MODULE = ROOT / "relay" / "store" / "keys.py"

# The front door: two commands, sessions, the API, a config, deploy and security at a glance.
README_MAX_LINES = 320
OUR_PREFIXES = ("relay/", "workers/", "config/", "devtools/", "bench/", "tests/", "docs/", ".ci/")

_FENCE = re.compile(r"^\s*(```|~~~).*?^\s*\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# A key line of the docstring: "- <key pattern>   <type>   <what it holds>", columns two spaces apart
# (a pattern may hold single spaces, as in <event id>).
_DOCSTRING_KEY = re.compile(r"^- (relay:\S.*?)\s{2,}(\S+)\s{2,}")


def _documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _prose(text: str) -> str:
    """The text without fenced code blocks: commands and sample output are not references."""
    return _FENCE.sub("", text)


def _links(text: str) -> list[str]:
    return _LINK.findall(_prose(text))


def _is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) and not target.startswith("#")


def _split_anchor(target: str) -> tuple[str, str]:
    path, _, anchor = target.partition("#")
    return path, anchor


def _exists(relative: str) -> bool:
    """Whether a repository path exists; `<type>`-style placeholders and `*` are globbed."""
    pattern = re.sub(r"<[^>/]*>", "*", relative.rstrip("/"))
    if "*" in pattern or "?" in pattern or "[" in pattern:
        return any(ROOT.glob(pattern))
    return (ROOT / pattern).exists()


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(document: Path) -> set[str]:
    anchors: set[str] = set()
    for line in _prose(document.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug, n = _slug(m.group(1)), 0
        while (slug if n == 0 else f"{slug}-{n}") in anchors:
            n += 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _docstring_keys() -> dict[str, str]:
    docstring = ast.get_docstring(ast.parse(KEYS_MODULE.read_text(encoding="utf-8")))
    assert docstring, f"{_name(KEYS_MODULE)}: no module docstring"
    keys = {}
    for line in docstring.splitlines():
        if line.startswith("- relay:"):
            m = _DOCSTRING_KEY.match(line)
            assert m, f"{_name(KEYS_MODULE)}: cannot read the key line {line!r}"
            keys[m.group(1)] = m.group(2)
    return keys


def _layout_table() -> dict[str, str]:
    """The `key` and `type` columns of the table under "## Redis layout" in docs/architecture.md."""
    section = re.search(r"^## Redis layout\s*$(.*?)(?=^## |\Z)", ARCHITECTURE.read_text(encoding="utf-8"), re.M | re.S)
    assert section, f"{_name(ARCHITECTURE)}: no '## Redis layout' section"
    rows = [line for line in section.group(1).splitlines() if line.startswith("|")]
    assert len(rows) >= 3, f"{_name(ARCHITECTURE)}: no table in '## Redis layout'"
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header == ["key", "type", "holds"], f"{_name(ARCHITECTURE)}: Redis layout columns are {header}"
    table: dict[str, str] = {}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        key, kind = cells[0].strip("`"), cells[1].strip("`")
        assert key not in table, f"{_name(ARCHITECTURE)}: key {key} is listed twice"
        table[key] = kind
    return table


def test_redis_layout_table_lists_exactly_the_keys_of_keys_py():
    documented, named = _layout_table(), _docstring_keys()
    assert named, f"{_name(KEYS_MODULE)}: no '- relay:' key lines in its docstring"
    missing = sorted(set(named) - set(documented))
    extra = sorted(set(documented) - set(named))
    assert not missing, f"{_name(ARCHITECTURE)}: keys of {_name(KEYS_MODULE)} missing from the table: {missing}"
    assert not extra, f"{_name(ARCHITECTURE)}: keys not in {_name(KEYS_MODULE)}'s docstring: {extra}"
    for key, kind in named.items():
        assert documented[key] == kind, (
            f"{_name(ARCHITECTURE)}: {key} has type {documented[key]!r}, {_name(KEYS_MODULE)} says {kind!r}"
        )


def _mentioned_paths(document: Path) -> list[str]:
    """Paths of ours in code spans (each whitespace-separated word) and in relative links, as
    repository paths with any `:line` or `#anchor` stripped."""
    text = _prose(document.read_text(encoding="utf-8"))
    found = []
    for _, span in _CODE_SPAN.findall(text):
        for word in span.split():
            path = re.sub(r"#.*$", "", word.lstrip("(\"'").rstrip(",;.)\"'"))
            path = re.sub(r":\d+(-\d+)?$", "", path).rstrip(":")
            if path.startswith(OUR_PREFIXES):
                found.append(path)
    for target in _links(text):
        path, _ = _split_anchor(target)
        if not path or not _is_relative(path):
            continue
        resolved = (document.parent / path).resolve()
        if resolved.is_relative_to(ROOT):
            relative = resolved.relative_to(ROOT).as_posix()
            if relative.startswith(OUR_PREFIXES):
                found.append(re.sub(r":\d+(-\d+)?$", "", relative))
    return found


def test_every_path_of_ours_in_the_docs_exists():
    missing = [
        f"{_name(document)}: {path}"
        for document in _documents()
        for path in _mentioned_paths(document)
        if not _exists(path)
    ]
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def test_readme_is_short_and_links_every_document():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"
    linked = {_split_anchor(target)[0] for target in _links(README.read_text(encoding="utf-8"))}
    documents = sorted(DOCS.glob("*.md"))
    assert documents, "docs/ holds no .md file"
    unlinked = [_name(d) for d in documents if _name(d) not in linked]
    assert not unlinked, f"README.md does not link: {', '.join(unlinked)}"


def test_every_relative_link_points_to_an_existing_file():
    broken = []
    for document in _documents():
        for target in _links(document.read_text(encoding="utf-8")):
            if not _is_relative(target):
                if target.startswith("#") and target[1:] not in _anchors(document):
                    broken.append(f"{_name(document)}: {target} (no such heading)")
                continue
            path, anchor = _split_anchor(target)
            resolved = (document.parent / path).resolve()
            if not resolved.exists():
                broken.append(f"{_name(document)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{_name(document)}: {target} (no such heading in {path})")
    assert not broken, "relative links that lead nowhere:\n" + "\n".join(broken)


def test_readme_shows_the_failed_session_slack_payload_as_delivered():
    from devtools.screenshots import failed_session
    from workers.destinations.slack import slack_message

    text = README.read_text()
    marker = text.index("<!-- failed-session-slack")
    block = re.search(r"```json\n(.*?)\n```", text[marker:], re.DOTALL)
    assert block is not None, "README.md: no JSON block after the failed-session-slack marker"
    assert json.loads(block.group(1)) == slack_message(failed_session())
