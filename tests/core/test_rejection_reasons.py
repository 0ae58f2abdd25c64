"""The rejection vocabulary: one tuple (``glassbox.msg.REASONS``), enforced by ``ConversionError``, and every
place that raises one names a reason of it literally (a reason never carries numbers or names: those go in the
message text)."""
import ast
import re
from pathlib import Path

import pytest

from glassbox import msg as gm

SOURCES = Path(gm.__file__).resolve().parents[3]          # ros2_ws/src: the core, the nodes and the trainer


def _raise_sites() -> list[tuple[str, int, ast.AST]]:
    """(file, line, reason argument) of every ``ConversionError(...)`` call in the packages' sources."""
    sites = []
    for path in sorted(SOURCES.glob("*/*/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == \
                    "ConversionError":
                sites.append((str(path.relative_to(SOURCES)), node.lineno, (node.args or [None])[0]))
    return sites


def test_the_vocabulary_is_fixed_words():
    assert len(set(gm.REASONS)) == len(gm.REASONS)
    for reason in gm.REASONS:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", reason), reason        # no digits, no names, no spaces
        err = gm.ConversionError(reason, f"details with numbers 42 and names 'x' for {reason}")
        assert (err.reason, str(err)) == (reason, f"details with numbers 42 and names 'x' for {reason}")


@pytest.mark.parametrize("reason", ["size_mismatch 12 != 16", "missing_field:z", "Empty", "", "nan"])
def test_a_reason_outside_the_vocabulary_is_refused(reason):
    with pytest.raises(ValueError, match="unknown rejection reason"):
        gm.ConversionError(reason, "detail")


def test_every_raise_site_names_a_reason_of_the_vocabulary_literally():
    sites = _raise_sites()
    assert len(sites) > 20, sites                         # the codecs, the stages and the synchroniser
    used = set()
    for path, line, arg in sites:
        assert isinstance(arg, ast.Constant) and arg.value in gm.REASONS, f"{path}:{line}: {ast.dump(arg)}"
        used.add(arg.value)
    assert used == set(gm.REASONS)                        # and no word of the vocabulary is unused
