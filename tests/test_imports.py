"""The dependency direction of DESIGN.md, checked by walking every import."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "chunkstore": set(),
    "models": set(),
    "ingest": {"chunkstore"},
    "inference": {"chunkstore", "models"},
    "training": {"chunkstore", "models"},
    "dashboards": {"chunkstore"},
    "satchunk": {"chunkstore", "models", "ingest", "inference", "training", "dashboards"},
}
OURS = set(ALLOWED)


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_design(package):
    files = list((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    wrong = {
        f"{f.relative_to(ROOT)} imports {dep}"
        for f in files
        for dep in imported_packages(f) - ALLOWED[package] - {package}
    }
    assert not wrong, sorted(wrong)


def test_the_walker_sees_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import ingest.x\nfrom chunkstore import y\nfrom . import z\nimport numpy\n")
    assert imported_packages(f) == {"ingest", "chunkstore"}


PURE = {
    "chunkstore/_grid.py", "chunkstore/_histogram.py", "chunkstore/_ids.py",
    "chunkstore/_layout.py", "ingest/_sensors.py", "ingest/_target.py", "ingest/_cloud.py",
    "inference/_block.py", "models/_inputs.py", "models/_spec.py", "models/_indices.py",
    "training/_sampler.py", "training/_split.py", "training/_metrics.py",
    "ingest/_indices.py", "ingest/_label_rules.py",
}
IO_MODULES = {"rasterio", "zarr", "s3fs", "fsspec", "boto3", "botocore", "pyogrio", "requests",
              "distributed", "xarray"}


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_modules_do_no_io(module):
    tree = ast.parse((ROOT / module).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    assert not names & IO_MODULES, f"{module} imports {names & IO_MODULES}"
