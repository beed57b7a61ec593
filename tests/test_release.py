"""The release path: workflows, the single-sourced version, build info, stubs, extras, metadata.

The wheel itself is built, audited and smoke-tested by scripts/wheel_smoke.py (run by .ci/run);
these tests check everything that can be checked fast from the tree and the built extension.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import galrec
import pytest
import yaml
from click.testing import CliRunner
from galrec import _core, _optional
from galrec.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser from PyPI (galrec[dev] installs it there)
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
RELEASE_WORKFLOW = WORKFLOWS / "release.yml"


def load_toml(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def load_workflow(path: Path) -> dict[str, Any]:
    """Parse a workflow with a YAML parser; YAML 1.1 reads the bare key ``on`` as True."""
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(workflow, dict), f"{path} is not a YAML mapping"
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def load_script(name: str) -> ModuleType:
    """Import a script from scripts/ (not a package) to test its helpers."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def steps_text(job: dict[str, Any]) -> str:
    """All ``uses`` and ``run`` lines of a job, for checking what it does."""
    return "\n".join(
        str(step.get("uses", "")) + "\n" + str(step.get("run", "")) for step in job["steps"]
    )


def cargo_version() -> str:
    return str(load_toml(REPO / "Cargo.toml")["workspace"]["package"]["version"])


# --- workflows -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_workflow_matches_github_schema(path: Path) -> None:
    """Every workflow parses and validates against the GitHub workflow JSON schema."""
    load_workflow(path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_release_workflow_builds_every_platform_and_smoke_tests_it() -> None:
    workflow = load_workflow(RELEASE_WORKFLOW)
    assert set(workflow["on"]["push"]["tags"]) == {"v*"}
    jobs = workflow["jobs"]
    expected_targets = {
        "linux": {"x86_64", "aarch64"},
        "macos": {"x86_64", "aarch64"},
        "windows": {"x64"},
    }
    for name, targets in expected_targets.items():
        job = jobs[name]
        platforms = job["strategy"]["matrix"]["platform"]
        assert {entry["target"] for entry in platforms} == targets, name
        builds = [step for step in job["steps"] if step.get("uses") == "PyO3/maturin-action@v1"]
        assert len(builds) == 1, f"{name}: one maturin-action build step"
        assert "--release" in builds[0]["with"]["args"]
        assert "scripts/wheel_smoke.py --wheel-dir dist" in steps_text(job), name
        uploads = [
            step
            for step in job["steps"]
            if step.get("uses", "").startswith("actions/upload-artifact")
        ]
        assert uploads and uploads[0]["with"]["name"].startswith("wheels-"), name
    linux_build = next(
        s for s in jobs["linux"]["steps"] if s.get("uses") == "PyO3/maturin-action@v1"
    )
    assert linux_build["with"]["manylinux"] == "2014"
    # Linux wheels are audited: auditwheel must be installed where the smoke test runs.
    assert "pip install auditwheel" in steps_text(jobs["linux"])
    sdist_job = jobs["sdist"]
    assert any(step.get("with", {}).get("command") == "sdist" for step in sdist_job["steps"])
    assert "scripts/wheel_smoke.py --sdist" in steps_text(sdist_job)


def test_release_workflow_publishes_only_tags_after_every_build() -> None:
    jobs = load_workflow(RELEASE_WORKFLOW)["jobs"]
    publish = jobs["publish"]
    assert set(publish["needs"]) == set(jobs) - {"publish"}
    assert "startsWith(github.ref, 'refs/tags/v')" in publish["if"]
    assert publish["permissions"]["id-token"] == "write"  # PyPI trusted publishing
    text = steps_text(publish)
    assert "pypa/gh-action-pypi-publish@release/v1" in text
    assert 'scripts/check_release_tag.py "${GITHUB_REF_NAME}"' in text
    # Only the publish job may write: every other job reads with the workflow's default.
    assert load_workflow(RELEASE_WORKFLOW)["permissions"] == {"contents": "read"}


def test_workflow_scripts_exist() -> None:
    """Every scripts/... path a workflow runs is a file in the tree."""
    for path in WORKFLOWS.glob("*.yml"):
        for script in re.findall(r"scripts/[\w./-]+\.py", path.read_text(encoding="utf-8")):
            assert (REPO / script).is_file(), f"{path.name} runs missing {script}"


def test_ci_workflow_runs_the_ci_script() -> None:
    job = load_workflow(WORKFLOWS / "ci.yml")["jobs"]["check"]
    assert ".ci/run" in steps_text(job)
    assert "scripts/wheel_smoke.py" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


# --- version and build info ------------------------------------------------------------------


def test_version_lives_in_cargo_toml_only() -> None:
    version = cargo_version()
    pyproject = load_toml(REPO / "pyproject.toml")["project"]
    assert "version" not in pyproject and "version" in pyproject["dynamic"]
    for crate in ("galrec-core", "galrec-py"):
        package = load_toml(REPO / "rust" / crate / "Cargo.toml")["package"]
        assert package["version"] == {"workspace": True}, crate
    assert galrec.__version__ == version
    assert _core.build_info()["version"] == version
    assert importlib.metadata.version("galrec") == version


def test_cli_version_and_changelog_name_the_version() -> None:
    version = cargo_version()
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"galrec, version {version}"
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_release_tag.py"), f"v{version}", "--notes"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert "### Added" in check.stdout


def test_release_tag_gate_rejects_a_mismatched_tag() -> None:
    wrong = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_release_tag.py"), "v999.0.0"],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode != 0
    assert "does not match" in wrong.stderr


def test_build_info_names_profile_and_target() -> None:
    info = _core.build_info()
    assert set(info) == {"version", "profile", "target", "target_arch", "target_os"}
    assert info["profile"] in {"release", "debug"}
    machine = platform.machine().lower()
    assert info["target_arch"] == {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    assert info["target"].startswith(info["target_arch"] + "-")
    assert info["target_os"] in info["target"] or info["target_os"] == "macos"


def test_stubs_match_the_built_extension(tmp_path: Path) -> None:
    """mypy's stubtest compares _core.pyi with the compiled module, name by name."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "galrec._core",
            # PyO3 classes are not subclassable, so the stubs mark them @final; PEP 800's
            # @disjoint_base adds nothing for a class nothing can derive from.
            "--ignore-disjoint-bases",
            "--allowlist",
            str(REPO / "tests" / "stubtest_allowlist.txt"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # outside the tree: stubtest sees the installed package, caches there
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- metadata, extras, release profile -------------------------------------------------------


def test_package_metadata_is_complete() -> None:
    metadata = importlib.metadata.metadata("galrec")
    assert metadata["License-Expression"] == "Apache-2.0"
    assert (REPO / "LICENSE").read_text(encoding="utf-8").split()[:4] == [
        "Apache",
        "License",
        "Version",
        "2.0,",
    ]
    assert metadata["Requires-Python"] == ">=3.10"
    urls = {entry.split(",", 1)[0] for entry in metadata.get_all("Project-URL") or []}
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= urls
    classifiers = set(metadata.get_all("Classifier") or [])
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.10" in classifiers
    assert metadata["Description-Content-Type"].startswith("text/markdown")


def test_every_optional_module_is_provided_by_its_extra() -> None:
    extras = load_toml(REPO / "pyproject.toml")["project"]["optional-dependencies"]
    assert {"dev", "plots", "models", "gguf"} <= set(extras)
    for module, (distribution, extra) in _optional.OPTIONAL_MODULES.items():
        requirements = [re.split(r"[<>=;!~ \[]", req, maxsplit=1)[0] for req in extras[extra]]
        assert distribution in requirements, f"{module}: {distribution} not in galrec[{extra}]"


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        _optional.OPTIONAL_MODULES, "galrec_absent_module", ("absent-dist", "plots")
    )
    with pytest.raises(_optional.MissingOptionalDependency) as missing:
        _optional.require("galrec_absent_module", "drawing a curve")
    message = str(missing.value)
    assert "drawing a curve" in message and "pip install 'galrec[plots]'" in message
    assert isinstance(missing.value, ImportError)


def test_require_returns_an_installed_module_and_rejects_unknown_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(_optional.OPTIONAL_MODULES, "json", ("json-dist", "models"))
    assert _optional.require("json", "reading json").__name__ == "json"
    with pytest.raises(ValueError, match="not a registered optional dependency"):
        _optional.require("numpy", "arrays")


def test_release_profile_is_tuned_for_speed() -> None:
    profile = load_toml(REPO / "Cargo.toml")["profile"]["release"]
    assert profile["lto"] in ("fat", True)
    assert profile["codegen-units"] == 1
    maturin = load_toml(REPO / "pyproject.toml")["tool"]["maturin"]
    assert maturin["profile"] == "release" and maturin["strip"] is True


# --- the smoke script's manylinux audit ------------------------------------------------------


def test_manylinux_tag_parsing() -> None:
    smoke = load_script("wheel_smoke")
    assert smoke.manylinux_glibc("manylinux_2_34_x86_64") == (2, 34)
    assert smoke.manylinux_glibc("manylinux2014_aarch64") == (2, 17)
    assert smoke.manylinux_glibc("manylinux_2_17_x86_64") == (2, 17)
    assert smoke.manylinux_glibc("linux_x86_64") is None
    assert smoke.manylinux_glibc("macosx_11_0_arm64") is None
