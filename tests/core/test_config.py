"""load_config / from_dict: nested frozen dataclasses from YAML; unknown keys and wrong types name key and file."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from glassbox.config import ConfigError, flatten, from_dict, load_config, to_dict


@dataclass(frozen=True)
class Inner:
    height: int = 64
    fov_deg: float = 3.0
    names: tuple[str, ...] = ("range",)


@dataclass(frozen=True)
class Outer:
    mode: str = "a"
    inner: Inner = field(default_factory=Inner)
    limit: int | None = None
    flag: bool = False


def test_nested_load_with_conversions(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("mode: b\ninner:\n  height: 32\n  fov_deg: 2\n  names: [x, y]\nlimit: null\nflag: true\n")
    cfg = load_config(p, Outer)
    assert cfg == Outer("b", Inner(32, 2.0, ("x", "y")), None, True)
    assert isinstance(cfg.inner.fov_deg, float) and isinstance(cfg.inner.names, tuple)


@pytest.mark.parametrize("text, message", [
    ("inner:\n  heigth: 3\n", "unknown key 'inner.heigth' for Inner"),
    ("inner:\n  height: tall\n", "key 'inner.height' expects int, got 'tall'"),
    ("flag: 1\n", "key 'flag' expects bool"),
    ("inner:\n  height: 2.5\n", "expects int"),
    ("limit: x\n", "key 'limit' expects"),
    ("- 1\n- 2\n", "expected a mapping"),
])
def test_errors_name_the_key_and_the_file(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(p, Outer)
    assert str(p) in str(info.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "none.yaml", Outer)
    (tmp_path / "x.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "x.yaml", Outer)


def test_round_trips_dict_and_dotted_names():
    cfg = Outer("c", Inner(16, 1.5, ("a",)), 7, True)
    assert from_dict(Outer, to_dict(cfg)) == cfg
    flat = flatten(cfg)
    assert flat == {"mode": "c", "inner.height": 16, "inner.fov_deg": 1.5, "inner.names": ("a",), "limit": 7,
                    "flag": True}
