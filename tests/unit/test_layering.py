"""The packages' layering: edgefdfa.head (and edgefdfa.errors) sit below both packages, firmware_bridge
uses nothing else of edgefdfa, the engine never imports the bridge, and only the CLI, the demo and the fleet
device, above both, import the two. A cycle coming back fails here."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = {"edgefdfa", "edgefdfa.head", "edgefdfa.errors"}  # what the bridge may load of edgefdfa
# the fleet device prices its uplink as a sparse push would be: it sits above the bridge too
ABOVE_BOTH = {"edgefdfa/cli.py", "edgefdfa/demo.py", "edgefdfa/fleet/device.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, relative imports resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names if is_module(f"{module}.{a.name}")}  # from . import x
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_engine_never_imports_the_bridge():
    for path in sources("edgefdfa"):
        if str(path.relative_to(ROOT)) in ABOVE_BOTH:
            continue
        bridge = {m for m in imports(path) if m.split(".")[0] == "firmware_bridge"}
        assert not bridge, f"{path.relative_to(ROOT)} imports {sorted(bridge)}"


def test_the_bridge_imports_only_the_shared_head_and_errors():
    for path in sources("firmware_bridge"):
        engine = {m for m in imports(path) if m.split(".")[0] == "edgefdfa"} - SHARED
        assert not engine, f"{path.relative_to(ROOT)} imports {sorted(engine)}"


def test_the_head_module_stands_alone():
    ours = {m for m in imports(ROOT / "edgefdfa" / "head.py") if m.split(".")[0] in ("edgefdfa", "firmware_bridge")}
    assert not ours


def test_importing_the_whole_bridge_loads_no_engine_module():
    modules = [module_name(p) for p in sources("firmware_bridge")]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'edgefdfa')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert "edgefdfa.head" in loaded  # the check sees what it looks for
    assert loaded <= SHARED, f"importing firmware_bridge loaded {sorted(loaded - SHARED)}"
