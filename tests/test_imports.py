"""The dependency direction of DESIGN.md, checked by walking every import."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "chunkstore": set(),
    "models": {"chunkstore.errors"},  # the one error root, nothing else of chunkstore
    "ingest": {"chunkstore", "models"},
    "inference": {"chunkstore", "models"},
    "training": {"chunkstore", "models"},
    "dashboards": {"chunkstore"},
    "satchunk": {"chunkstore", "models", "ingest", "inference", "training", "dashboards"},
    # the job functions like the CLI (``from satchunk import ...``), never its internals
    "benchmarks": {"chunkstore", "models", "ingest", "inference", "training", "dashboards",
                   "satchunk."},
}
OURS = set(ALLOWED)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every absolute import in ``path``; ``import a.b`` gives
    ("a.b", [])."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [a.name for a in node.names]))
    return found


def imported_packages(path: Path) -> set[str]:
    """Our packages that ``path`` imports, as the ALLOWED table names them: a package,
    ``package.module`` for an import of one module, ``satchunk.`` for the composition
    root's public face (``from satchunk import X``)."""
    found = set()
    for module, names in _imports(path):
        top = module.split(".")[0]
        if top not in OURS:
            continue
        if top == "satchunk" and module == "satchunk" and names:
            found.add("satchunk.")
        elif module.startswith("chunkstore.errors"):
            found.add("chunkstore.errors")
        else:
            found.add(top)
    return found


def _allowed(package: str, dep: str) -> bool:
    allowed = ALLOWED[package] | {package}
    return dep in allowed or (dep == "chunkstore.errors" and "chunkstore" in allowed)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_design(package):
    files = list((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    wrong = {
        f"{f.relative_to(ROOT)} imports {dep}"
        for f in files
        for dep in imported_packages(f)
        if not _allowed(package, dep)
    }
    assert not wrong, sorted(wrong)


def test_the_walker_sees_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import ingest.x\nfrom chunkstore import y\nfrom . import z\nimport numpy\n"
                 "from satchunk import predict_job\nfrom chunkstore.errors import InputError\n")
    assert imported_packages(f) == {"ingest", "chunkstore", "satchunk.", "chunkstore.errors"}
    g = tmp_path / "n.py"
    g.write_text("from satchunk.cli import main\n")
    assert imported_packages(g) == {"satchunk"}  # an internal: not the public face


def test_benchmarks_import_only_public_satchunk_names():
    import satchunk

    wrong = {f"{f.relative_to(ROOT)}: {n}" for f in (ROOT / "benchmarks").rglob("*.py")
             for module, names in _imports(f) if module == "satchunk"
             for n in names if n not in satchunk.__all__}
    assert not wrong, sorted(wrong)


PURE = {
    "chunkstore/_grid.py", "chunkstore/_histogram.py", "chunkstore/_ids.py",
    "chunkstore/_layout.py", "ingest/_sensors.py", "ingest/_target.py", "ingest/_cloud.py",
    "inference/_block.py", "models/_inputs.py", "models/_spec.py", "models/_indices.py",
    "training/_sampler.py", "training/_split.py", "training/_metrics.py",
    "ingest/_label_rules.py", "ingest/_label_source.py",
}
IO_MODULES = {"rasterio", "zarr", "s3fs", "fsspec", "boto3", "botocore", "pyogrio", "requests",
              "distributed", "xarray", "obstore", "aiohttp", "urllib3", "tornado"}


def _our_modules(path: Path, root: Path) -> set[Path]:
    """The files of ours under ``root`` that ``path`` imports: relative imports,
    ``pkg.module``, and a name taken from a package's face, resolved to the module its
    ``__init__`` takes it from."""
    out: set[Path] = set()

    def module_file(dotted: str) -> Path | None:
        base = root.joinpath(*dotted.split("."))
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if cand.exists():
                return cand
        return None

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {m for a in node.names if a.name.split(".")[0] in OURS
                    and (m := module_file(a.name)) is not None}
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            pkg = path.parent
            for _ in range(node.level - 1):
                pkg = pkg.parent
            dotted = ".".join(pkg.relative_to(root).parts + tuple((node.module or "").split(".")
                                                                   if node.module else ()))
        elif node.module and node.module.split(".")[0] in OURS:
            dotted = node.module
        else:
            continue
        target = module_file(dotted)
        if target is None:
            continue
        if target.name != "__init__.py":
            out.add(target)
            continue
        for a in node.names:  # a submodule, or a name the package's face hands on
            out.add(module_file(f"{dotted}.{a.name}") or _home(target, a.name))
    return out


def _home(init: Path, name: str) -> Path:
    """The module of ``init``'s package that the face takes ``name`` from (the face
    itself when it defines it)."""
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module and any(
                a.name == name for a in node.names):
            base = init.parent.joinpath(*node.module.split("."))
            return base.with_suffix(".py") if base.with_suffix(".py").exists() \
                else base / "__init__.py"
    return init


def _io_reached(start: Path, root: Path = ROOT) -> dict[str, list[str]]:
    """Every I/O module that importing ``start`` reaches through our own modules, with
    the chain of our files that leads to it."""
    seen, found = {start}, {}
    todo = [(start, [str(start.relative_to(root))])]
    while todo:
        path, chain = todo.pop()
        for module, _ in _imports(path):
            if module.split(".")[0] in IO_MODULES:
                found.setdefault(module.split(".")[0], chain)
        for nxt in _our_modules(path, root) - seen:
            seen.add(nxt)
            todo.append((nxt, [*chain, str(nxt.relative_to(root))]))
    return found


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_modules_do_no_io(module):
    reached = _io_reached(ROOT / module)
    assert not reached, {k: " -> ".join(v) for k, v in reached.items()}


def test_the_purity_walk_follows_our_own_imports(tmp_path):
    """A pure module that reaches rasterio through one of ours is caught, however it
    imports it."""
    pkg = tmp_path / "ingest"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from ._io import read\nfrom ._clean import tidy\n")
    (pkg / "_io.py").write_text("import rasterio.windows\n\ndef read(): ...\n")
    (pkg / "_clean.py").write_text("import math\n\ndef tidy(): ...\n")
    (pkg / "_relative.py").write_text("from . import _io\n")
    (pkg / "_facing.py").write_text("from ingest import read\n")
    (pkg / "_dotted.py").write_text("from ingest._io import read\n")
    (pkg / "_via_face_clean.py").write_text("from ingest import tidy\n")
    for name in ("_relative", "_facing", "_dotted"):
        assert _io_reached(pkg / f"{name}.py", tmp_path)["rasterio"][-1] == "ingest/_io.py"
    assert not _io_reached(pkg / "_via_face_clean.py", tmp_path)
