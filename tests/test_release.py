"""The release: one version everywhere, SQL upgrade paths, CHANGELOG, META.json for PGXN, make dist's zip.

These read the checkout and need no server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parent.parent


def read(name: str) -> str:
    path = ROOT / name
    assert path.exists(), f"{path} is missing: these tests read the checkout"
    return path.read_text()


def release() -> str:
    """The release version: pyproject.toml's."""
    return str(tomllib.loads(read("pyproject.toml"))["project"]["version"])


def sql_version() -> str:
    """The extension's SQL version: the control file's default_version."""
    match = re.search(r"^default_version\s*=\s*'([^']+)'", read("alive_worker.control"), re.M)
    assert match, "alive_worker.control has no default_version"
    return match.group(1)


def meta() -> dict[str, Any]:
    return dict(json.loads(read("META.json")))


# ---- one version ----


def test_every_release_number_is_the_same() -> None:
    version = release()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    package = re.search(r'^__version__ = "([^"]+)"', read("alive_worker/__init__.py"), re.M)
    assert package and package.group(1) == version, "alive_worker.__version__"
    assert meta()["version"] == version, "META.json version"
    assert meta()["provides"]["alive_worker"]["version"] == version, "META.json provides"
    debian = re.match(r"alive-worker \(([^)]+)\) ", read("debian/changelog"))
    assert debian and debian.group(1).rsplit("-", 1)[0] == version, "debian/changelog"


def test_sql_version_is_the_releases_major_and_minor() -> None:
    assert sql_version() == ".".join(release().split(".")[:2])


def test_every_install_script_updates_to_the_default_version() -> None:
    installs: set[str] = set()
    updates: dict[str, set[str]] = {}
    for script in (ROOT / "sql").glob("alive_worker--*.sql"):
        versions = script.name.removeprefix("alive_worker--").removesuffix(".sql").split("--")
        if len(versions) == 1:
            installs.add(versions[0])
        else:
            updates.setdefault(versions[0], set()).add(versions[1])
    assert installs, "no install script in sql/"
    for start in sorted(installs):
        reached, frontier = {start}, [start]
        while frontier:
            for target in updates.get(frontier.pop(), set()) - reached:
                reached.add(target)
                frontier.append(target)
        assert sql_version() in reached, f"no update path from {start} to {sql_version()}"


def test_changelog_has_every_version_and_upgrade_script() -> None:
    changelog = read("CHANGELOG.md")
    sections = re.findall(r"^## (\d+\.\d+(?:\.\d+)?)\b", changelog, re.M)
    assert release() in sections or sql_version() in sections, f"no section for {release()}"
    versions = {p.name.removeprefix("alive_worker--").removesuffix(".sql").split("--")[-1]
                for p in (ROOT / "sql").glob("alive_worker--*.sql")}  # fmt: skip
    for version in versions:
        assert any(s == version or s.startswith(f"{version}.") for s in sections), f"no section for {version}"
    for script in (ROOT / "sql").glob("alive_worker--*.sql"):
        assert f"sql/{script.name}" in changelog, f"CHANGELOG.md does not name {script.name}"


# ---- META.json: PGXN meta spec 1.0.0 (https://pgxn.org/spec/), as a JSON Schema ----

# A term: two or more characters, none of them a slash, backslash, space or control character.
TERM = {"type": "string", "pattern": r"^[^/\\\s\x00-\x1f\x7f]{2,}$"}
# Semantic Versioning 2.0.0, as the spec requires of every version.
SEMVER = {
    "type": "string",
    "pattern": r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$",
}
# 0 (any version), a version, or comma-separated comparisons with versions.
VERSION_RANGE = {
    "oneOf": [
        {"const": 0},
        {"type": "string", "pattern": r"^0$"},
        {
            "type": "string",
            "pattern": r"^\s*((==|!=|>=|<=|>|<)\s*)?\d+\.\d+\.\d+\S*(\s*,\s*(==|!=|>=|<=|>|<)\s*\d+\.\d+\.\d+\S*)*\s*$",
        },
    ]
}
URI = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$"}
PATH = {"type": "string", "pattern": r"^[^\\/\s][^\\\s]*$"}
# Keys of the spec, and custom ones: x_ or X_ followed by anything.
CUSTOM: dict[str, Any] = {"^[xX]_.": {}}
LICENSES = [
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd", "gfdl_1_2",
    "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1",
    "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source", "restricted",
    "unrestricted", "unknown",
]  # fmt: skip
RELATIONSHIP = {"type": "object", "propertyNames": TERM, "additionalProperties": VERSION_RANGE}
PHASE = {
    "type": "object",
    "minProperties": 1,
    "properties": {name: RELATIONSHIP for name in ("requires", "recommends", "suggests", "conflicts")},
    "patternProperties": CUSTOM,
    "additionalProperties": False,
}
PGXN_META_1_0_0: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name", "abstract", "maintainer", "license", "provides", "meta-spec", "version"],
    "properties": {
        "name": TERM,
        "abstract": {"type": "string", "minLength": 1},
        "description": {"type": "string", "minLength": 1},
        "version": SEMVER,
        "maintainer": {
            "oneOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            ]
        },
        "license": {
            "oneOf": [
                {"enum": LICENSES},
                {"type": "array", "minItems": 1, "items": {"enum": LICENSES}},
                {"type": "object", "minProperties": 1, "additionalProperties": URI},
            ]
        },
        "provides": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": TERM,
            "additionalProperties": {
                "type": "object",
                "required": ["file", "version"],
                "properties": {
                    "file": PATH,
                    "docfile": PATH,
                    "version": SEMVER,
                    "abstract": {"type": "string", "minLength": 1},
                },
                "patternProperties": CUSTOM,
                "additionalProperties": False,
            },
        },
        "prereqs": {
            "type": "object",
            "properties": {name: PHASE for name in ("configure", "build", "test", "runtime", "develop")},
            "patternProperties": CUSTOM,
            "additionalProperties": False,
        },
        "resources": {
            "type": "object",
            "minProperties": 1,
            "properties": {
                "homepage": URI,
                "bugtracker": {
                    "type": "object",
                    "minProperties": 1,
                    "properties": {"web": URI, "mailto": {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+$"}},
                    "patternProperties": CUSTOM,
                    "additionalProperties": False,
                },
                "repository": {
                    "type": "object",
                    "minProperties": 1,
                    "properties": {"url": URI, "web": URI, "type": {"type": "string", "pattern": "^[a-z]+$"}},
                    "patternProperties": CUSTOM,
                    "additionalProperties": False,
                },
            },
            "patternProperties": CUSTOM,
            "additionalProperties": False,
        },
        "tags": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[^\x00-\x1f\x7f]+$"},
        },
        "no_index": {
            "type": "object",
            "minProperties": 1,
            "properties": {
                key: {"oneOf": [PATH, {"type": "array", "minItems": 1, "items": PATH}]}
                for key in ("file", "directory")
            },
            "patternProperties": CUSTOM,
            "additionalProperties": False,
        },
        "release_status": {"enum": ["stable", "testing", "unstable"]},
        "generated_by": {"type": "string", "minLength": 1},
        "meta-spec": {
            "type": "object",
            "required": ["version"],
            "properties": {"version": {"const": "1.0.0"}, "url": URI},
            "patternProperties": CUSTOM,
            "additionalProperties": False,
        },
    },
    "patternProperties": CUSTOM,
    "additionalProperties": False,
}


def pgxn_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(PGXN_META_1_0_0)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_meta_json_follows_the_pgxn_meta_spec() -> None:
    jsonschema.Draft202012Validator.check_schema(PGXN_META_1_0_0)
    assert pgxn_errors(meta()) == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"version": "1.2"}, "version"),
        ({"license": "PostgreSQL"}, "license"),
        ({"name": "alive worker"}, "name"),
        ({"provides": {"alive_worker": {"file": "sql/alive_worker--1.0.sql"}}}, "provides/alive_worker"),
        ({"meta-spec": {"version": "2.0.0"}}, "meta-spec/version"),
        (
            {"prereqs": {"runtime": {"requires": {"PostgreSQL": "fifteen"}}}},
            "prereqs/runtime/requires/PostgreSQL",
        ),
        ({"homepage": "https://example.org"}, "(top)"),
    ],
)
def test_the_spec_check_refuses_what_pgxn_would(change: dict[str, Any], path: str) -> None:
    errors = pgxn_errors({**meta(), **change})
    assert any(error.startswith(f"{path}: ") for error in errors), errors


def test_meta_json_describes_this_extension() -> None:
    document = meta()
    assert document["name"] == "alive_worker" and document["license"] == "postgresql"
    [(extension, provided)] = document["provides"].items()
    assert extension == "alive_worker"
    for key in ("file", "docfile"):
        assert (ROOT / provided[key]).is_file(), f"META.json names {provided[key]}, which is missing"
    assert document["prereqs"]["runtime"]["requires"]["PostgreSQL"] == "15.0.0"


# ---- make dist ----


def test_dist_zip_holds_the_release_under_its_versioned_prefix(tmp_path: Path) -> None:
    zip_path = tmp_path / f"alive_worker-{release()}.zip"
    if (ROOT / ".git").exists():
        # The tests may run as another OS user than the checkout's owner.
        env = {
            **os.environ,
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "safe.directory",
            "GIT_CONFIG_VALUE_0": "*",
        }
        result = subprocess.run(
            [ROOT / "scripts" / "dist", str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT
        )
        assert result.returncode == 0, result.stderr
    else:
        # A copy of the tests (scripts/test-run, for a checkout the server's
        # OS user cannot read): the zip scripts/dist made there, from it.
        zip_path = ROOT / "dist" / zip_path.name
        assert zip_path.is_file(), f"{zip_path} is missing: scripts/test-run makes it with scripts/dist"
    prefix = f"alive_worker-{release()}/"
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        assert all(name.startswith(prefix) for name in names)
        for member in ("META.json", "alive_worker.control", "Makefile", "sql/alive_worker--1.0.sql"):
            assert prefix + member in names, f"{member} is not in the zip"
        assert json.loads(archive.read(prefix + "META.json"))["version"] == release()
