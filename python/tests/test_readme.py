"""The README's Python quick-start runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_quick_start_runs(capsys):
    text = README.read_text()
    section = text[text.index("## From Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, str(README), "exec"), {})
    accuracy = float(re.search(r"accuracy on held-out digits: ([0-9.]+)", capsys.readouterr().out).group(1))
    assert accuracy > 0.85
