import os
import re

from dreamfusion.config import cli_fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_documents_every_option_and_both_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    for f in cli_fields():
        flag = f.metadata["flag"] or f"--{f.name}"
        assert f"`{flag}`" in text, flag
    assert "make demo" in text and "make test" in text


def test_makefile_pins_torch_first_and_never_torchvision():
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    recipe = makefile.split("$(VENV)/.installed:")[1]
    first_install = re.search(r"\$\(PIP\) install[^\n]*", recipe).group(0)
    assert first_install.endswith("torch==2.13.0")
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        assert "torchvision" not in open(os.path.join(ROOT, name)).read().replace("never torchvision", "")
