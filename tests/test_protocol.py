"""The environment the tool passes to the processes it starts is declared in one place."""

import ast
import re
from pathlib import Path

from probe import protocol

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for folder in ("probe", "apps", "locustfiles") for p in (ROOT / folder).rglob("*.py")]
# gunicorn's config reads where the tool lives before it can import the tool.
BOOTSTRAP = {("apps/gunicorn_conf.py", protocol.HOME)}


def test_code_names_the_variables_through_the_protocol_module():
    spelled = set()
    for path in SOURCES:
        if path.name == "protocol.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and re.fullmatch(r"GEVENT_PROBE_\w+", node.value)):
                spelled.add((str(path.relative_to(ROOT)), node.value))
    assert spelled == BOOTSTRAP


def test_every_variable_mentioned_anywhere_is_declared():
    texts = [p.read_text() for p in SOURCES] + [(ROOT / "README.md").read_text()]
    mentioned = {m for text in texts for m in re.findall(r"GEVENT_PROBE_[A-Z0-9_]*[A-Z0-9]", text)}
    assert mentioned - protocol.DECLARED == set()
    assert len(protocol.DECLARED) >= 30
