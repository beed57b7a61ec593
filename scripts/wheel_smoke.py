#!/usr/bin/env python3
"""Wheel smoke test: build (or take) a galrec wheel, install it where no source tree is in reach,
and use it the way a user would.

Steps, each failing loudly:
1. ``maturin build --release`` (skipped with ``--wheel-dir``, where CI already built the wheel);
2. the wheel's tags: abi3 for CPython 3.10+, and on Linux a manylinux tag that ``auditwheel show``
   confirms the binary really satisfies (no newer glibc symbol than the tag allows);
3. a fresh virtual environment (no system site-packages) with the wheel installed ``--no-deps``
   plus numpy and click only, so torch and the other heavy dependencies are provably absent;
4. from an empty temporary directory, ``wheel_smoke_job.py`` (copied there) imports galrec,
   checks the version and build info and runs a small sampling + prompt-assembly job;
5. ``galrec --help``, ``galrec --version`` and ``python -m galrec --help`` through the installed
   entry points;
6. the model carries away: a tiny GAL-Rec run trained by the galrec of the interpreter running
   this script (the build venv, with the tests' tiny configs), exported with ``galrec export
   --format hf`` and deleted, is loaded by the wheel in a second fresh venv (no system
   site-packages) where pip installs it with its ``[models]`` extra; from an empty directory,
   offline, ``wheel_smoke_model.py`` checks ``galrec.load(folder)`` recommends what the run did
   for a user and for a new history (``--no-model`` skips this). The extra's distributions
   (torch, transformers, peft and what they need, never galrec) are borrowed from the build
   venv through a ``.pth`` file and pip installs with ``--no-index``: PyPI's file host sends no
   cache headers through this workplace's network, so pip caches nothing, and downloading
   torch with its CUDA wheels again took 37 minutes here;
7. with ``--sdist``: the sdist is built too and pip builds a wheel from it, which must hold the
   same files as the wheel built from the tree (the sdist is complete).

Usage (repository root):  python scripts/wheel_smoke.py [--wheel-dir DIR] [--sdist] [--no-model]
Runs on Linux, macOS and Windows with Python 3.10+; needs maturin (``galrec[dev]``) to build and,
on Linux, auditwheel to audit; the model stage needs galrec with its test dependencies here.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOB = Path(__file__).resolve().with_name("wheel_smoke_job.py")
MODEL_JOB = Path(__file__).resolve().with_name("wheel_smoke_model.py")
# The only runtime dependencies the smoke environment gets: galrec's light core.
LIGHT_DEPS = ("numpy", "click")
# A command line: strings and paths, stringified when run.
Command = list[str | Path]
# Legacy manylinux names (PEP 513/571/599) and the glibc version each one stands for.
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def log(message: str) -> None:
    """Print one progress line, flushed so CI logs interleave correctly with subprocesses."""
    print(f"[wheel-smoke] {message}", flush=True)


def run(cmd: Command, *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a command, echo it, and return its stdout; a non-zero exit stops the smoke test."""
    log("$ " + " ".join(str(part) for part in cmd))
    started = time.perf_counter()
    result = subprocess.run(
        [str(part) for part in cmd], cwd=cwd, env=env, capture_output=True, text=True
    )
    log(f"  ({time.perf_counter() - started:.1f} s)")
    if result.returncode != 0:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        raise SystemExit(f"[wheel-smoke] FAILED (exit {result.returncode}): {cmd[0]} ...")
    return result.stdout


def find_maturin() -> str:
    """The maturin next to this interpreter (a venv with galrec[dev]) or else the one on PATH."""
    beside = Path(sys.executable).parent / ("maturin.exe" if os.name == "nt" else "maturin")
    found = str(beside) if beside.exists() else shutil.which("maturin")
    if found is None:
        raise SystemExit("[wheel-smoke] maturin not found: pip install 'galrec[dev]' (or maturin)")
    return found


def build_env() -> dict[str, str]:
    """Environment for builds: reuse the tree's cargo target dir so nothing compiles twice."""
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(REPO / "target"))
    return env


def only_file(directory: Path, pattern: str) -> Path:
    """The single file matching ``pattern`` in ``directory`` (one wheel per platform: abi3)."""
    matches = sorted(directory.glob(pattern))
    if len(matches) != 1:
        raise SystemExit(f"[wheel-smoke] expected one {pattern} in {directory}, found {matches}")
    return matches[0]


def manylinux_glibc(platform_tag: str) -> tuple[int, int] | None:
    """The glibc version a manylinux platform tag promises, or None for a non-manylinux tag."""
    modern = re.match(r"manylinux_(\d+)_(\d+)_", platform_tag)
    if modern:
        return int(modern.group(1)), int(modern.group(2))
    legacy = platform_tag.split("_", 1)[0]
    return LEGACY_MANYLINUX.get(legacy)


def check_wheel_tags(wheel: Path) -> str:
    """Check the wheel is abi3 for CPython 3.10+ and return its platform tag(s)."""
    # name-version-pythontag-abitag-platformtag.whl (no build tag from maturin)
    _name, version, python_tag, abi_tag, platform_tag = wheel.stem.split("-")
    if (python_tag, abi_tag) != ("cp310", "abi3"):
        raise SystemExit(
            f"[wheel-smoke] {wheel.name}: expected cp310-abi3, got {python_tag}-{abi_tag}"
        )
    log(f"wheel {wheel.name}: version {version}, {python_tag}-{abi_tag}, platform {platform_tag}")
    return platform_tag


def audit_manylinux(wheel: Path, platform_tag: str) -> None:
    """Linux: the wheel's manylinux tag must be one its binary satisfies, per auditwheel."""
    claimed = [manylinux_glibc(tag) for tag in platform_tag.split(".")]
    if not claimed or any(glibc is None for glibc in claimed):
        raise SystemExit(f"[wheel-smoke] Linux wheel without a manylinux tag: {platform_tag}")
    report = run([sys.executable, "-m", "auditwheel", "show", wheel])
    found = re.search(r'platform tag:\s*"([^"]+)"', report)
    if found is None:
        raise SystemExit(f"[wheel-smoke] cannot read auditwheel's verdict:\n{report}")
    needed = manylinux_glibc(found.group(1))
    if needed is None:
        raise SystemExit(f"[wheel-smoke] auditwheel found no manylinux tag: {found.group(1)}")
    for glibc in claimed:
        assert glibc is not None
        if glibc < needed:
            raise SystemExit(
                f"[wheel-smoke] {platform_tag} promises glibc {glibc}, but the binary needs "
                f"{needed} ({found.group(1)})"
            )
    log(f"auditwheel: binary needs {found.group(1)}; the wheel's tag {platform_tag} holds")


def check_wheel_contents(wheel: Path) -> list[str]:
    """The wheel carries the extension, its stubs, the py.typed marker and the licence."""
    with zipfile.ZipFile(wheel) as archive:
        names = sorted(archive.namelist())
    required = {
        "extension": r"^galrec/_core\.(abi3\.so|pyd|so)$",
        "stubs": r"^galrec/_core\.pyi$",
        "py.typed": r"^galrec/py\.typed$",
        "licence": r"^galrec-[^/]+\.dist-info/licenses/LICENSE$",
        "entry point": r"^galrec-[^/]+\.dist-info/entry_points\.txt$",
    }
    for what, pattern in required.items():
        if not any(re.match(pattern, name) for name in names):
            raise SystemExit(f"[wheel-smoke] {wheel.name} lacks the {what} ({pattern})")
    return names


def venv_paths(venv: Path) -> tuple[Path, Path]:
    """The venv's python and galrec executables on this OS."""
    if os.name == "nt":
        return venv / "Scripts" / "python.exe", venv / "Scripts" / "galrec.exe"
    return venv / "bin" / "python", venv / "bin" / "galrec"


def make_smoke_venv(venv: Path, base_python: str, wheel: Path) -> tuple[Path, Path]:
    """A fresh venv holding the wheel (no deps) plus numpy and click only."""
    run([base_python, "-m", "venv", venv])
    python, galrec_exe = venv_paths(venv)
    pip: Command = [python, "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    run([*pip, "--no-deps", wheel])
    run([*pip, *LIGHT_DEPS])
    return python, galrec_exe


def run_entry_points(python: Path, galrec_exe: Path, version: str, workdir: Path) -> None:
    """``galrec --help`` / ``--version`` and ``python -m galrec --help`` work without torch."""
    help_text = run([galrec_exe, "--help"], cwd=workdir)
    if "Usage:" not in help_text or "galrec" not in help_text:
        raise SystemExit(f"[wheel-smoke] unexpected galrec --help output:\n{help_text}")
    version_text = run([galrec_exe, "--version"], cwd=workdir).strip()
    if version_text != f"galrec, version {version}":
        raise SystemExit(
            f"[wheel-smoke] galrec --version said {version_text!r}, wheel is {version}"
        )
    run([python, "-m", "galrec", "--help"], cwd=workdir)
    log(f"entry points ok: {version_text}")


def borrow_model_dependencies(wheel: Path, target: Path) -> int:
    """Link into ``target`` the distributions of this interpreter (the build venv) that the
    wheel's ``galrec[models]`` requires, transitively, and nothing else (galrec is not among
    them). Markers are evaluated for this interpreter, which the model venv is made from.
    Returns how many distributions are linked."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def needed(requires: list[str], extras: frozenset[str]) -> list[tuple[Requirement, str]]:
        """The requirements that apply with ``extras`` (and none), by their canonical name."""
        applying = []
        for text in requires:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
                applying.append((req, canonicalize_name(req.name)))
        return applying

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(name).decode().splitlines()
    requires = [
        line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")
    ]
    pending = needed(requires, frozenset({"", "models"}))
    seen: set[tuple[str, frozenset[str]]] = set()
    found: dict[str, metadata.Distribution] = {}
    while pending:
        req, key = pending.pop()
        extras = frozenset({"", *req.extras})
        if (key, extras) in seen:
            continue
        seen.add((key, extras))
        try:
            found[key] = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            message = f"[wheel-smoke] this venv lacks {req}, which galrec[models] needs"
            raise SystemExit(message) from None
        pending += needed(found[key].requires or [], extras)
    target.mkdir()
    for dist in found.values():
        for top in {file.parts[0] for file in dist.files or []}:
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue  # scripts outside site-packages, caches, path hooks
            if not (target / top).exists():
                (target / top).symlink_to(Path(str(dist.locate_file(top))))
    return len(found)


def check_model_carries_away(wheel: Path, tmp: Path) -> None:
    """Step 6: train and export here, delete the run, serve the export from the wheel."""
    started = time.perf_counter()
    run_dir, folder = tmp / "model-run", tmp / "carried" / "gal_rec"
    expected = tmp / "expected.json"
    run([sys.executable, MODEL_JOB, "train", run_dir, expected], cwd=REPO)
    export = ["export", run_dir, "--format", "hf", "--out", folder]
    run([sys.executable, "-m", "galrec", *export], cwd=REPO)
    shutil.rmtree(run_dir)  # the folder alone must serve
    trained = time.perf_counter()
    venv = tmp / "venv-models"
    run([sys.executable, "-m", "venv", venv])
    python, _ = venv_paths(venv)
    borrowed = tmp / "borrowed"
    count = borrow_model_dependencies(wheel, borrowed)
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip()
    (Path(site) / "galrec-smoke-borrowed.pth").write_text(f"{borrowed}\n")
    log(f"{count} distributions that galrec[models] needs are borrowed from {sys.prefix}")
    pip: Command = [python, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    # the venv's own setuptools (old, from ensurepip up to Python 3.11) would shadow the
    # borrowed one that torch requires
    run([*pip, "uninstall", "--yes", "setuptools"])
    # pip resolves the extra against the borrowed ones: nothing is downloaded, a missing one fails
    run([*pip, "install", "--no-index", f"{wheel}[models]"])
    installed = time.perf_counter()
    workdir = tmp / "work-models"
    workdir.mkdir()
    job = workdir / MODEL_JOB.name
    shutil.copy(MODEL_JOB, job)
    offline = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    sys.stdout.write(run([python, "-I", job, "serve", folder, expected], cwd=workdir, env=offline))
    log(
        f"model carried away in {time.perf_counter() - started:.0f} s (train + export "
        f"{trained - started:.0f} s, venv with galrec[models] {installed - trained:.0f} s, "
        f"serve {time.perf_counter() - installed:.0f} s)"
    )


def check_sdist_builds(sdist: Path, python: Path, wheel_names: list[str], out: Path) -> None:
    """pip builds a wheel from the sdist alone, holding the same files as the tree's wheel."""
    started = time.perf_counter()
    run(
        [
            python,
            "-m",
            "pip",
            "--disable-pip-version-check",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            out,
            sdist,
        ],
        env=build_env(),
    )
    rebuilt = only_file(out, "*.whl")
    with zipfile.ZipFile(rebuilt) as archive:
        rebuilt_names = sorted(archive.namelist())
    if rebuilt_names != wheel_names:
        missing = sorted(set(wheel_names) - set(rebuilt_names))
        extra = sorted(set(rebuilt_names) - set(wheel_names))
        raise SystemExit(f"[wheel-smoke] sdist wheel differs: missing {missing}, extra {extra}")
    log(f"sdist {sdist.name} builds from source ({time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel-dir", type=Path, help="take the one wheel here, do not build")
    parser.add_argument("--sdist", action="store_true", help="also build the sdist and check it")
    parser.add_argument(
        "--python", default=sys.executable, help="base interpreter of the smoke venv"
    )
    parser.add_argument(
        "--no-model",
        action="store_true",
        help="skip the model stage (training and serving an exported model; needs torch)",
    )
    args = parser.parse_args()
    if args.sdist and args.wheel_dir is not None:
        parser.error(
            "--sdist checks a fresh build of this tree; it does not combine with --wheel-dir"
        )
    if not args.no_model and importlib.util.find_spec("galrec") is None:
        parser.error(
            "the model stage trains with the galrec of this interpreter (the build venv: "
            "pip install -e '.[dev]'); run it with that python, or pass --no-model"
        )

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="galrec-wheel-smoke-") as tmp_name:
        tmp = Path(tmp_name)
        dist = tmp / "dist"
        if args.wheel_dir is None:
            build: Command = [find_maturin(), "build", "--release", "--out", dist]
            run([*build, "--sdist"] if args.sdist else build, cwd=REPO, env=build_env())
            wheel_dir = dist
        else:
            wheel_dir = args.wheel_dir.resolve()
        wheel = only_file(wheel_dir, "galrec-*.whl")
        size_kib = wheel.stat().st_size / 1024
        log(f"wheel size: {size_kib:.0f} KiB ({wheel.stat().st_size} bytes)")

        platform_tag = check_wheel_tags(wheel)
        if sys.platform.startswith("linux"):
            audit_manylinux(wheel, platform_tag)
        wheel_names = check_wheel_contents(wheel)
        version = wheel.name.split("-")[1]

        python, galrec_exe = make_smoke_venv(tmp / "venv", args.python, wheel)
        # An empty working directory: nothing of the source tree can shadow the install.
        workdir = tmp / "work"
        workdir.mkdir()
        job = workdir / JOB.name
        shutil.copy(JOB, job)
        sys.stdout.write(run([python, "-I", job, "--version", version], cwd=workdir))
        run_entry_points(python, galrec_exe, version, workdir)
        if not args.no_model:
            check_model_carries_away(wheel, tmp)

        if args.sdist:
            sdist = only_file(dist, "galrec-*.tar.gz")
            check_sdist_builds(sdist, python, wheel_names, tmp / "from-sdist")
    log(f"OK in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
