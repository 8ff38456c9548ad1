"""Imports flow one way: config <- relay.domain <- relay.store <- relay.web, relay.cli and workers,
which never import each other; only relay.web imports Flask; what ships never imports the
development tooling. Checked by reading every file's imports with `ast`, without importing it
(the worker's process never loading Flask is tests/workers/test_fanout.py's)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ("config", "relay", "workers", "devtools", "bench", "tests", "wsgi")
SHIPPED = ("config", "relay", "workers")
TOOLING = ("devtools", "bench", "tests")
WEB_ONLY = ("flask", "werkzeug")
SERVICE = ("config", "relay.domain", "relay.store", "relay.logs")  # what web, cli and workers build on

# The packages of ours each part may import (itself included), most specific part first.
ALLOWED = {
    "relay.domain": ("config", "relay.domain"),
    "relay.store": ("config", "relay.domain", "relay.store"),
    "relay.logs": ("config", "relay.domain", "relay.store"),  # shared by web, cli and workers
    "relay.web": (*SERVICE, "relay.web"),
    "relay.cli": (*SERVICE, "relay.cli"),
    "relay": (),  # relay/__init__.py runs on every import of relay.*: it imports nothing of ours
    "workers": (*SERVICE, "workers"),
    "config": ("config",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_ours(name: str) -> bool:
    return name.split(".", maxsplit=1)[0] in OURS


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in `path`, in functions too; `from a import b` is a.b when
    a.b is a module of ours, else a; relative imports are made absolute."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module_name(path).split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if is_ours(sub) and is_module(sub) else base))
    return found


def files(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def part_of(module: str) -> str:
    """The most specific part in ALLOWED that `module` belongs to."""
    return max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def shown(path: Path, line: int, name: str) -> str:
    return f"{path.relative_to(ROOT)}:{line} imports {name}"


def test_each_part_imports_only_the_parts_below_it():
    violations = []
    for path in files(*SHIPPED):
        part = part_of(module_name(path))
        allowed = ALLOWED[part]
        for line, name in imports(path):
            # A parent package of an allowed one (`relay` itself) runs only its __init__, checked too.
            if is_ours(name) and not any(within(name, a) or a.startswith(name + ".") for a in allowed):
                violations.append(
                    f"{shown(path, line, name)}, but {part} may import only {', '.join(allowed) or 'nothing of ours'}"
                )
    assert violations == [], "\n".join(violations)


def test_what_ships_never_imports_the_development_tooling():
    violations = [
        shown(path, line, name)
        for path in files(*SHIPPED)
        for line, name in imports(path)
        if any(within(name, tool) for tool in TOOLING)
    ]
    assert violations == [], "\n".join(violations)


def test_only_the_web_app_imports_flask():
    violations = []
    web_imports = 0
    for path in [*files(*SHIPPED), ROOT / "wsgi.py"]:
        in_web = within(module_name(path), "relay.web")
        for line, name in imports(path):
            if any(within(name, lib) for lib in WEB_ONLY):
                web_imports += in_web
                if not in_web:
                    violations.append(shown(path, line, name))
    assert violations == [], "\n".join(violations)
    assert web_imports, "no import of Flask found in relay/web: is this test reading the files?"
