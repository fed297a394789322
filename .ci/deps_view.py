"""The dependencies kerasrun's wheel declares, taken from this environment: a folder of links for a .pth file.

python .ci/deps_view.py WHEEL FOLDER reads the wheel's Requires-Dist, follows every requirement through the
installed distributions (their own requirements, with the extras asked for, markers evaluated here), checks that
each installed version satisfies every requirement on it, and links each distribution's top-level files and folders
into FOLDER. .ci/wheel installs the wheel alone into a fresh virtualenv whose .pth names FOLDER: kerasrun then runs
on its declared dependencies only, not on the test extras this environment holds as well, without downloading and
unpacking TensorFlow again. (A namespace folder such as google/ is linked whole, files of other distributions
included: a small leak.)
"""

from __future__ import annotations

import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def wheel_requirements(wheel: Path) -> list[Requirement]:
    """The Requires-Dist lines of the wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(name).decode())
    return [Requirement(text) for text in message.get_all("Requires-Dist") or []]


def closure(requirements: list[Requirement]) -> tuple[dict[str, metadata.Distribution], list[str]]:
    """The installed distributions the requirements need, recursively, and what is missing or of a wrong version."""
    found: dict[str, metadata.Distribution] = {}
    problems: list[str] = []
    visited: set[tuple[str, str]] = set()
    todo = [(requirement, "") for requirement in requirements]  # (requirement, the extra of whoever asks for it)
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{requirement}: not installed")
            continue
        if not requirement.specifier.contains(dist.version, prereleases=True):
            problems.append(f"{requirement}: {dist.version} is installed")
        key = canonicalize_name(requirement.name)
        found[key] = dist
        for wanted in ["", *requirement.extras]:
            if (key, wanted) not in visited:
                visited.add((key, wanted))
                todo.extend((Requirement(text), wanted) for text in dist.requires or [])
    return found, problems


def link(dists: dict[str, metadata.Distribution], folder: Path) -> None:
    """Link every top-level file and folder of the distributions into `folder` (scripts outside site-packages skipped)."""
    folder.mkdir(parents=True)
    for dist in dists.values():
        for top in sorted({file.parts[0] for file in dist.files or [] if file.parts[0] != ".."}):
            target = folder / top
            if not target.exists():
                target.symlink_to(Path(str(dist.locate_file(top))))


def main() -> int:
    """Link the wheel's declared dependencies into FOLDER; exit 1 naming any that is missing or of a wrong version."""
    wheel, folder = Path(sys.argv[1]), Path(sys.argv[2])
    dists, problems = closure(wheel_requirements(wheel))
    if problems:
        print("the wheel's requirements are not met here:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    link(dists, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
