"""README.md starts with the two commands a newcomer needs, and they stay true: the first
installs only what the example needs (no test tools) and runs it; the second installs the
test tools and runs the suite, exactly as ``.ci/run`` does."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```\n(.*?)```", text, re.S)
    assert block, "README.md has no code block"
    return block.group(1).strip().splitlines()


def test_the_first_command_installs_only_what_the_example_needs():
    first = _commands()[0]
    extra = re.search(r'pip install -e "\.\[(\w+)\]"', first)
    assert extra and extra.group(1) != "test", first
    pyproject = (ROOT / "pyproject.toml").read_text()  # (tomllib is 3.11+ only)
    listed = re.search(rf"^{extra.group(1)} = \[(.*?)\]", pyproject, re.S | re.M)
    assert listed, f"pyproject.toml has no extra {extra.group(1)!r}"
    needed = listed.group(1)
    assert "pytest" not in needed and "moto" not in needed, needed
    example = re.search(r"python (examples/\S+\.py)", first)
    assert example and (ROOT / example.group(1)).exists(), first


def test_the_second_command_is_what_ci_runs():
    second = _commands()[1]
    assert second == 'pip install -e ".[test]" && python -m pytest'
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith(second)
