"""The map of docs/architecture.md, checked: each room of robot/ imports only the rooms
below it. A new import that points upward fails here with the file and the edge."""
import ast
import os

from conftest import ROOT

# room -> the rooms it may import (besides itself). The leaves (errors, fileio, words,
# procinfo, textlog, config) sit under everything; config reads files through fileio.
LEAVES = {"errors", "fileio", "words", "procinfo", "textlog", "__version__",
          "_storybot", "_storybot_abi"}  # the compiled kernel bindings (setup.py, the Duo bundle)
ALLOWED = {
    "cli": {"service", "story", "models", "kernel", "speech", "config"},
    "service": {"story", "models", "kernel", "speech", "config"},
    "story": {"models", "kernel", "speech", "config"},
    "models": {"kernel", "config"},
    "speech": {"config"},
    "kernel": set(),
    "config": set(),
    "__main__": {"cli"},
}
ROOMS = set(ALLOWED) | LEAVES


def _room(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _edges():
    pkg = os.path.join(ROOT, "robot")
    for dirpath, _, files in os.walk(pkg):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, ROOT)
            src = _room(rel[:-3].replace(os.sep, ".").replace(".__init__", ""))
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "robot":
                    targets = [f"robot.{a.name}" for a in node.names] if node.module == "robot" else [node.module]
                    for t in targets:
                        yield rel, src, _room(t)
                elif isinstance(node, ast.Import):
                    for a in node.names:
                        if a.name.startswith("robot."):
                            yield rel, src, _room(a.name)


def test_every_module_belongs_to_a_room():
    strays = sorted({src for _, src, _ in _edges() if src not in ROOMS})
    assert not strays, f"modules outside the map of docs/architecture.md: {strays}; give them a room there and here"


def test_imports_flow_one_way():
    upward = sorted({f"{rel}: {src} -> {dst}" for rel, src, dst in _edges()
                     if dst != src and dst not in LEAVES and dst not in ALLOWED.get(src, set())})
    assert not upward, "imports against the map (docs/architecture.md):\n" + "\n".join(upward)
