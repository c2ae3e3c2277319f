"""core/ and reward/ stay pure: no Ray, vLLM, config or trainer imports, direct or indirect."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "zerorl"
FORBIDDEN = ("ray", "vllm", "zerorl.config", "zerorl.trainer", "zerorl.launch", "zerorl.roles")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["core", "reward"])
def test_pure_packages_import_nothing_forbidden(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"zerorl/{package} has no modules"
    for path in files:
        for name in imported_modules(path):
            bad = [f for f in FORBIDDEN if name == f or name.startswith(f + ".")]
            assert not bad, f"{path.relative_to(ROOT.parent)} imports {name}"


@pytest.mark.parametrize("package", ["zerorl.core", "zerorl.reward"])
def test_pure_packages_do_not_pull_forbidden_modules_at_runtime(package):
    code = (
        "import sys, importlib, pkgutil\n"
        f"pkg = importlib.import_module('{package}')\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules\n"
        f"       if m.split('.')[0] in ('ray', 'vllm') or m in {FORBIDDEN!r}]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{package} pulled in {out.stdout.strip()}"


# The dependencies point down the house: engines take weights (not workers), and the data rooms
# build no engine (the command line does, ``zerorl.cli.data``).
DOWNWARD = {
    "rollout": ("zerorl.workers", "zerorl.distributed", "zerorl.roles", "zerorl.cli"),
    "data": ("zerorl.rollout", "zerorl.workers", "zerorl.distributed", "zerorl.cli"),
}


@pytest.mark.parametrize("package", sorted(DOWNWARD))
def test_lower_rooms_do_not_import_upper_ones(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_modules(path):
            bad = [f for f in DOWNWARD[package] if name == f or name.startswith(f + ".")]
            assert not bad, f"{path.relative_to(ROOT.parent)} imports {name}"
