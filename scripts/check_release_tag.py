#!/usr/bin/env python3
"""Release gate: the pushed tag must be ``v`` + the version in Cargo.toml (the one place the
version lives), and CHANGELOG.md must have a section for it.

Usage:  python scripts/check_release_tag.py v0.1.0 [--notes]
With ``--notes`` it prints that CHANGELOG section (the GitHub release notes). Python 3.11+.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def cargo_version() -> str:
    """The workspace version from Cargo.toml: galrec's single source of its version."""
    with (REPO / "Cargo.toml").open("rb") as manifest:
        return str(tomllib.load(manifest)["workspace"]["package"]["version"])


def changelog_section(version: str) -> str:
    """The body of CHANGELOG.md's ``## [version]`` section, without its heading."""
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    heading = re.search(rf"^## \[{re.escape(version)}\][^\n]*\n", text, flags=re.MULTILINE)
    if heading is None:
        raise SystemExit(f"CHANGELOG.md has no '## [{version}]' section")
    following = re.search(r"^## ", text[heading.end() :], flags=re.MULTILINE)
    end = heading.end() + following.start() if following else len(text)
    return text[heading.end() : end].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tag", help="the git tag being released, e.g. v0.1.0")
    parser.add_argument("--notes", action="store_true", help="print the changelog section")
    args = parser.parse_args()
    version = cargo_version()
    if args.tag != f"v{version}":
        raise SystemExit(f"tag {args.tag!r} does not match Cargo.toml's version {version!r}")
    section = changelog_section(version)
    print(section if args.notes else f"tag {args.tag} matches version {version}; changelog ok")


if __name__ == "__main__":
    main()
