"""The Procfile's command lines, read as a platform reads them: for the benchmarks and the
process tests, which must run exactly what a deployment runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def procfile_command(kind: str, procfile: Path = ROOT / "Procfile") -> str:
    """The command line of one Procfile process type (web, worker, release)."""
    for line in procfile.read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == kind:
            return command.strip()
    raise KeyError(f"the Procfile has no {kind!r} process")
