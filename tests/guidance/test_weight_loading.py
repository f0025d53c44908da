"""Missing or unreachable weights fail with one line naming the model, the cache and --hf_key."""

import pytest

from dreamfusion.errors import UserError
from dreamfusion.guidance import make_guidance
from dreamfusion.guidance import weights as weights_mod


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.strip() == msg
    return msg


def test_missing_hub_weights_offline_name_model_cache_and_option(offline_hub, monkeypatch):
    monkeypatch.setattr(weights_mod, "hub_reachable", lambda *a, **k: pytest.fail("network probed"))
    with pytest.raises(UserError) as exc:
        make_guidance("SD", sd_version="2.1")
    msg = one_line(exc)
    assert "stabilityai/stable-diffusion-2-1-base" in msg
    assert str(offline_hub) in msg and "HF_HUB_OFFLINE" in msg
    assert "--hf_key /path/to/folder" in msg


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
def test_unreachable_hub_without_offline_flag(offline_hub, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(weights_mod, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(UserError) as exc:
        make_guidance("zero123", zero123_key="nobody/no-such-zero123")
    msg = one_line(exc)
    assert "nobody/no-such-zero123" in msg and str(offline_hub) in msg
    assert "cannot be reached" in msg and "--zero123_ckpt" in msg


def test_bad_local_folders(tmp_path):
    with pytest.raises(UserError) as exc:
        make_guidance("SD", hf_key=str(tmp_path / "missing"))
    msg = one_line(exc)
    assert str(tmp_path / "missing") in msg and "--hf_key" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError) as exc:
        make_guidance("SD", hf_key=str(empty))
    assert str(empty) in one_line(exc)
    with pytest.raises(UserError) as exc:
        make_guidance("IF", if_key=str(empty))
    assert "DeepFloyd IF" in one_line(exc)


def test_unknown_guidance_and_cache_folder(monkeypatch, tmp_path):
    with pytest.raises(UserError):
        make_guidance("imagen")
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert weights_mod.cache_folder() == str(tmp_path / "hub")
    assert weights_mod.cache_folder("/x/y") == "/x/y"


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
def test_zero123_default_and_stable_dreamfusion_ckpt_path_give_real_hints(offline_hub, monkeypatch):
    monkeypatch.setattr(weights_mod, "hub_reachable", lambda *a, **k: pytest.fail("network probed"))
    from dreamfusion.config import Config

    with pytest.raises(UserError) as exc:  # the default is the hub id: the hint names a real download
        make_guidance("zero123", zero123_key=Config().zero123_ckpt)
    assert "hf download kxic/zero123-xl" in one_line(exc)
    # stable-dreamfusion's relative .ckpt path is a path, not a hub id to download
    assert weights_mod.looks_like_path("pretrained/zero123/zero123-xl.ckpt")
    assert not weights_mod.looks_like_path("kxic/zero123-xl")
    with pytest.raises(UserError) as exc:
        make_guidance("zero123", zero123_key="pretrained/zero123/zero123-xl.ckpt")
    msg = one_line(exc)
    assert "single checkpoint file" in msg and "hf download" not in msg and "--zero123_ckpt" in msg
