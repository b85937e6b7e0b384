"""What can be checked of the Dockerfile without a container engine: the
release build uses flags Cargo accepts for this Cargo.toml and Cargo.lock,
the toolchain is new enough, every native library is provided, the build
context holds what Cargo reads, and the final image is distroless, labelled
and runs as a numeric non-root user."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib

import pytest
from conftest import ROOT, have, run

DOCKERFILE = (ROOT / "Dockerfile").read_text()
CARGO = tomllib.loads((ROOT / "Cargo.toml").read_text())
LOCK = tomllib.loads((ROOT / "Cargo.lock").read_text())

# `-sys` crates in Cargo.lock and what the build stage must install for them
# on Linux. None: nothing native to link there. A new -sys crate fails the
# test until the Dockerfile (and this table) account for it.
SYS_CRATES: dict[str, list[str] | None] = {
    "nettle-sys": ["nettle-dev", "pkg-config", "clang", "libclang-dev"],
    "clang-sys": None,  # libclang for bindgen at build time (installed for nettle-sys)
    "libbz2-rs-sys": None,  # bzip2 in Rust
    "linux-raw-sys": None,  # syscall numbers, no library
    "windows-sys": None,
    "core-foundation-sys": None,
    "security-framework-sys": None,
    "js-sys": None,
    "web-sys": None,
    "jni-sys": None,
}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        current = ""
    return out


INSTRUCTIONS = instructions(DOCKERFILE)


def global_args() -> dict[str, str]:
    args = {}
    for word, rest in INSTRUCTIONS:
        if word == "FROM":
            break
        if word == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value
    return args


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """(resolved base image, instructions) per stage."""
    args = global_args()
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for word, rest in INSTRUCTIONS:
        if word == "FROM":
            base = rest.split()[0]
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
            out.append((base, []))
        elif out:
            out[-1][1].append((word, rest))
    return out


def cargo_build_command() -> list[str]:
    for _, body in stages():
        for word, rest in body:
            if word == "RUN" and "cargo build" in rest:
                command = rest[rest.index("cargo build") :].split("&&")[0]
                return shlex.split(command)
    pytest.fail("no `cargo build` in the Dockerfile")


def test_multi_stage_with_a_distroless_final_image():
    all_stages = stages()
    assert len(all_stages) >= 2
    final_base, final = all_stages[-1]
    assert final_base.startswith("gcr.io/distroless/") or final_base == "scratch", final_base
    # No shell in the final image: a RUN there must use the exec form.
    for word, rest in final:
        if word == "RUN":
            assert rest.startswith("["), f"shell-form RUN in the final stage: {rest}"
    entrypoint = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
    assert entrypoint == [["/usr/local/bin/imagegate"]]
    copied = [rest for word, rest in final if word == "COPY"]
    assert any(r.startswith("--from=build") and r.endswith("/usr/local/bin/imagegate") for r in copied)


def test_runs_as_a_numeric_non_root_user():
    final = stages()[-1][1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "no USER in the final stage"
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), users[-1]
    uid = int(users[-1].split(":")[0])
    assert uid != 0
    # The chart's security context runs as the same user.
    values = (ROOT / "charts" / "imagegate" / "values.yaml").read_text()
    assert f"runAsUser: {uid}" in values


def test_oci_labels():
    final = stages()[-1][1]
    labels = " ".join(rest for word, rest in final if word == "LABEL")
    for key in ("title", "description", "licenses", "version", "revision", "created", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert f'org.opencontainers.image.licenses="{CARGO["package"]["license"]}"' in labels


def test_release_build_flags():
    command = cargo_build_command()
    assert command[:2] == ["cargo", "build"]
    assert "--release" in command
    assert "--locked" in command, "the image must be built from Cargo.lock as committed"
    bins = [command[i + 1] for i, a in enumerate(command) if a == "--bin"]
    assert bins == ["imagegate"]
    declared = [b["name"] for b in CARGO.get("bin", [])]
    assert "imagegate" in declared
    features = set(CARGO.get("features", {}))
    for i, arg in enumerate(command):
        if arg in ("--features", "-F"):
            for feature in re.split(r"[ ,]+", command[i + 1]):
                assert feature in features, f"unknown feature {feature}"
    assert not [a for a in command if a.startswith("--target-dir")]


def test_release_profile_is_the_one_cargo_uses():
    # The Dockerfile relies on Cargo.toml's release profile (no RUSTFLAGS or
    # profile overrides in the image build), so a local `cargo build
    # --release --locked` makes the same binary.
    assert "RUSTFLAGS" not in DOCKERFILE and "CARGO_PROFILE" not in DOCKERFILE
    assert "release" in CARGO.get("profile", {})


@pytest.mark.skipif(not have("cargo"), reason="cargo not installed")
def test_lockfile_and_features_resolve_as_the_dockerfile_asks():
    # `cargo metadata --locked` resolves the same dependency graph the build
    # would and fails when Cargo.lock is out of date; cheap (no compiling).
    command = cargo_build_command()
    feature_flags = []
    for i, arg in enumerate(command):
        if arg in ("--features", "-F"):
            feature_flags += [arg, command[i + 1]]
        elif arg in ("--all-features", "--no-default-features"):
            feature_flags.append(arg)
    host = re.search(r"^host: (\S+)$", run(["rustc", "-vV"]).stdout, re.M).group(1)
    result = run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline", "--filter-platform", host, *feature_flags],
        cwd=ROOT,
    )
    if result.returncode != 0 and "offline" in result.stderr and "download" in result.stderr:
        pytest.skip("crates not in the local cache (offline)")
    assert result.returncode == 0, result.stderr


def test_toolchain_is_new_enough():
    base = stages()[0][0]
    m = re.search(r"rust:(\d+)\.(\d+)", base)
    assert m, f"build stage is not an official rust image with a version tag: {base}"
    have_version = (int(m.group(1)), int(m.group(2)))
    need = tuple(int(x) for x in CARGO["package"]["rust-version"].split(".")[:2])
    assert have_version >= need, f"{base} is older than rust-version {CARGO['package']['rust-version']}"
    runtime = stages()[-1][0]
    # glibc of the build and runtime images must match: both Debian 12.
    assert "bookworm" in base and "debian12" in runtime


def test_native_libraries_are_provided():
    installed = " ".join(rest for word, rest in stages()[0][1] if word == "RUN" and "apt-get install" in rest)
    sys_crates = sorted({p["name"] for p in LOCK["package"] if p["name"].endswith("-sys")})
    for crate in sys_crates:
        assert crate in SYS_CRATES, f"new native dependency {crate}: install what it needs in the Dockerfile's build stage"
        for package in SYS_CRATES[crate] or []:
            assert re.search(rf"(^|\s){re.escape(package)}(\s|$)", installed), f"{crate} needs {package}"
    # The libraries they link are copied into the image (the distroless cc
    # image has only the C runtime).
    build = " ".join(rest for word, rest in stages()[0][1] if word == "RUN")
    assert "ldd /out/bin/imagegate" in build
    final = " ".join(rest for word, rest in stages()[-1][1])
    assert "LD_LIBRARY_PATH=/usr/lib/imagegate" in final


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics: the last pattern matching the path
    or one of its parent directories decides; `!` re-includes."""
    excluded = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        for depth in range(1, len(parts) + 1):
            if fnmatch.fnmatchcase("/".join(parts[:depth]), pat):
                excluded = not negate
                break
    return excluded


def test_build_context_has_what_cargo_reads():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    needed = ["Cargo.toml", "Cargo.lock", "src/main.rs", "src/lib.rs"]
    for section in ("bin", "bench", "test", "example"):
        for target in CARGO.get(section, []):
            if "path" in target:
                needed.append(target["path"])
            elif section == "bench":
                needed.append(f"benches/{target['name']}.rs")
            elif section == "test":
                needed.append(f"tests/{target['name']}.rs")
            elif section == "example":
                needed.append(f"examples/{target['name']}.rs")
    if "lib" in CARGO and "path" in CARGO["lib"]:
        needed.append(CARGO["lib"]["path"])
    build_script = CARGO["package"].get("build")
    if build_script or (ROOT / "build.rs").exists():
        needed.append(build_script or "build.rs")
    for path in needed:
        assert not dockerignore_excludes(path, patterns), f".dockerignore leaves out {path}"
    for path in ["target/release/imagegate", ".git/HEAD", ".venv-chart/bin/python", "tests/fixtures/cimage/MANIFEST.md", "charts/imagegate/values.yaml"]:
        assert dockerignore_excludes(path, patterns), f".dockerignore lets in {path}"
