"""Every supported install path resolves: ``requirements.txt`` (the course) and the kit's
dependencies (``kit/pyproject.toml``), for Linux x86_64 and aarch64, macOS 14+ on Apple silicon and
Windows x86_64, each with Python 3.11, 3.12 and 3.13, from the public index alone and with
PyTorch's CPU index in front of it. ``pip install --dry-run --report`` resolves each row without
installing anything; the unsupported rows (Intel Macs, macOS 13 or older) are refused, naming torch.

pip's ``--platform`` and ``--python-version`` choose wheels, but pip evaluates environment markers
(``; sys_platform == "linux"``) for the machine it runs on (checked with pip 26.3: resolving for
macOS on Linux asked for Triton). The resolver below therefore runs pip with the marker environment
of the row. Needs the package index (marked ``network``); the CPU index rows are skipped where that
index cannot be reached. The rows wait on the index far more than they compute, so they run side by
side: the 24 public rows and the 2 refused ones took 104 s on this 2-core machine; a single
requirements.txt row takes about 22 s.
"""

import json
import os
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = "https://pypi.org/simple"
CPU_TORCH = "https://download.pytorch.org/whl/cpu"

pytestmark = pytest.mark.network


def _linux(machine: str) -> dict:
    # A glibc 2.35 system (Ubuntu 22.04) accepts every manylinux wheel up to that version.
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(17, 36)] + [f"manylinux2014_{machine}"]
    return {
        "tags": tags,
        "markers": {
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "platform_machine": machine,
        },
    }


def _macos(version: int, machine: str) -> dict:
    return {
        "tags": [f"macosx_{version}_0_{machine}"],
        "markers": {
            "sys_platform": "darwin",
            "platform_system": "Darwin",
            "os_name": "posix",
            "platform_machine": machine,
        },
    }


PLATFORMS = {
    "linux-x86_64": _linux("x86_64"),
    "linux-aarch64": _linux("aarch64"),
    "macos14-arm64": _macos(14, "arm64"),
    "windows-x86_64": {
        "tags": ["win_amd64"],
        "markers": {
            "sys_platform": "win32",
            "platform_system": "Windows",
            "os_name": "nt",
            "platform_machine": "AMD64",
        },
    },
}
UNSUPPORTED = {"macos14-x86_64 (Intel Mac)": _macos(14, "x86_64"), "macos13-arm64": _macos(13, "arm64")}
PYTHONS = ["3.11", "3.12", "3.13"]

# pip with the row's environment markers: packaging's default_environment is what pip's vendored
# markers evaluate against.
RESOLVER = """
import json, sys
from pip._vendor.packaging import markers
row = json.loads(sys.argv[1])
host = markers.default_environment
markers.default_environment = lambda: {**host(), **row}
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def kit_dependencies() -> list[str]:
    return tomllib.loads((ROOT / "kit" / "pyproject.toml").read_text())["project"]["dependencies"]


REQUIREMENTS = {  # what pip is asked to install, by name
    "requirements.txt": lambda: ["-r", str(ROOT / "requirements.txt")],
    "kit": kit_dependencies,
    "binder": lambda: ["-r", str(ROOT / "binder" / "requirements.txt")],
}


@cache
def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=15):
            return True
    except OSError:
        return False


def resolve(platform: dict, python: str, requirements: str, index: str, folder: Path) -> subprocess.CompletedProcess:
    """pip's dry run for one row; its --report is ``folder/report.json``."""
    major, minor = python.split(".")
    markers = {
        **platform["markers"],
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    indexes = ["--index-url", PUBLIC] if index == "public" else ["--index-url", CPU_TORCH, "--extra-index-url", PUBLIC]
    command = [
        sys.executable,
        "-c",
        RESOLVER,
        json.dumps(markers),
        "install",
        "--quiet",
        # The index this project's machines reach serves no wheel metadata files (PEP 658), so pip would download
        # every wheel to read its dependencies: ~2.5 GB of CUDA wheels per Linux row, and 8 rows at once filled
        # CI's disk. HTTP range requests read only the metadata (peak 4 MB of temporary files; same resolution).
        "--use-feature=fast-deps",
        "--resume-retries",  # an interrupted download fails the attempt (see NETWORK_FAILURES) instead of resuming
        "0",
        "--dry-run",
        "--ignore-installed",
        "--only-binary=:all:",
        "--report",
        str(folder / "report.json"),
        "--target",
        str(folder / "target"),
        "--python-version",
        f"{major}{minor}",
        *[option for tag in platform["tags"] for option in ("--platform", tag)],
        *indexes,
        *REQUIREMENTS[requirements](),
    ]
    # No configuration file (this machine's global one adds local wheel folders and constraints; --isolated
    # skips only the user's) and no PIP_* variable: the index alone decides.
    env = {name: value for name, value in os.environ.items() if not name.startswith("PIP_")}
    temporary = folder / "tmp"  # pip's unpacked downloads, removed even when pip is killed
    temporary.mkdir()
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=900,
            env={**env, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1", "TMPDIR": str(temporary)},
        )
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


# A download cut short is the network's failure, not the row's: the row runs again from the start. (Seen in CI: a
# 423 MB CUDA wheel interrupted, resumed by pip, and then refused for its hash.)
NETWORK_ATTEMPTS = 3
NETWORK_FAILURES = ("Connection interrupted", "not enough bytes", "Read timed out", "ConnectionError")


def _skip_unreachable(index: str):
    if index == "cpu" and not reachable(CPU_TORCH + "/torch/"):
        pytest.skip(f"PyTorch's CPU index ({CPU_TORCH}) cannot be reached from here")
    if not reachable(PUBLIC + "/pip/"):
        pytest.skip(f"the public index ({PUBLIC}) cannot be reached from here")


ROWS = [
    (platform, python, requirements, index)
    for platform in PLATFORMS
    for python in PYTHONS
    for requirements in ("requirements.txt", "kit")
    for index in ("public", "cpu")
]


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict[tuple, tuple[subprocess.CompletedProcess, dict | None]]:
    """Every row of the matrix, resolved at once: a row waits on the index far more than it computes
    (10 s of CPU in 80 s for requirements.txt), so the rows run side by side."""
    rows = [
        row for row in ROWS if reachable(PUBLIC + "/pip/") and (row[3] == "public" or reachable(CPU_TORCH + "/torch/"))
    ]
    folder = tmp_path_factory.mktemp("resolution")

    def one(row):
        platform, python, requirements, index = row
        for attempt in range(NETWORK_ATTEMPTS):
            where = folder / f"{'-'.join(row)}-{attempt}"
            where.mkdir()
            run = resolve(PLATFORMS[platform], python, requirements, index, where)
            if not any(sign in run.stderr for sign in NETWORK_FAILURES):
                break
        report = json.loads((where / "report.json").read_text()) if run.returncode == 0 else None
        return row, (run, report)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(one, rows))


@pytest.mark.parametrize("row", ROWS, ids=lambda row: "-".join(row))
def test_every_supported_row_resolves(row, resolved):
    platform, python, requirements, index = row
    _skip_unreachable(index)
    run, report = resolved[row]
    assert run.returncode == 0, run.stderr[-3000:]
    installed = {item["metadata"]["name"].lower(): item for item in report["install"]}
    assert "torch" in installed and "numpy" in installed
    torch_version = installed["torch"]["metadata"]["version"]
    if requirements == "requirements.txt":
        assert torch_version.split("+")[0] == "2.13.0"
    if platform.startswith("linux"):
        assert "triton" in installed  # chapter 7's kernel, with the Triton that this torch accepts
    else:
        assert "triton" not in installed  # Linux wheels only: chapter 7 says it needs Linux
    if index == "cpu":
        assert not any(name.startswith("nvidia-") for name in installed), sorted(installed)
    if requirements == "kit":
        assert {"nbformat", "jupyterquiz"} <= set(installed)


@pytest.mark.parametrize("platform", list(UNSUPPORTED))
def test_unsupported_rows_are_refused_naming_torch(platform, tmp_path):
    """Intel Macs (no torch wheel since 2.3) and macOS 13 or older (torch's arm64 wheels need
    macOS 14): book/setup.md says so and sends them to a hosted notebook."""
    _skip_unreachable("public")
    run = resolve(UNSUPPORTED[platform], "3.12", "requirements.txt", "public", tmp_path)
    assert run.returncode != 0
    assert "No matching distribution found for torch" in run.stderr, run.stderr[-3000:]
    setup = (ROOT / "book" / "setup.md").read_text()
    assert "Intel Mac" in setup and "macOS 13" in setup


def test_binder_resolves_with_cpu_torch(tmp_path):
    """binder/ (repo2docker): Python from runtime.txt, requirements.txt through the CPU index."""
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    binder = (ROOT / "binder" / "requirements.txt").read_text()
    assert f"--extra-index-url {CPU_TORCH}" in binder and "-r ../requirements.txt" in binder
    _skip_unreachable("cpu")
    run = resolve(PLATFORMS["linux-x86_64"], "3.11", "binder", "public", tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    installed = {
        i["metadata"]["name"].lower(): i for i in json.loads((tmp_path / "report.json").read_text())["install"]
    }
    assert installed["torch"]["metadata"]["version"] == "2.13.0+cpu"
    assert not any(name.startswith("nvidia-") for name in installed)
