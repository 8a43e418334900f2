"""The model registry: every listed model builds single-channel with the right shapes."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import tests.helpers  # noqa: F401  (sets HF_HUB_OFFLINE)
from radroute.errors import InvalidConfigError, ModelNotFoundError
from radroute.models import (ModelPackage, create_model, get_default_cfg, is_model, list_models,
                             register_model)

EXPECTED = {"roth2015", "menkovski2015", "mobilenetv1_100", "mobilenetv2_100",
            "mobilenetv3_small_100", "mobilenetv3_large_100", "resnet18", "resnet34",
            "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "inception_v3", "googlenet"}


def test_registry_lists_the_published_architectures():
    assert EXPECTED <= set(list_models())
    assert list_models("mobilenet*") == sorted(n for n in EXPECTED if n.startswith("mobilenet"))
    assert "convnext_atto" in list_models("convnext_at*", include_timm=True)
    assert get_default_cfg("menkovski2015")["paper"].startswith("Menkovski")


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_single_channel(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_chans=1).eval()
    size = 80 if get_default_cfg(name)["input_size"] >= 299 else 32  # Inception needs >= 75 px
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        again = model.forward_head(feats)
    assert logits.shape == (2, 7)
    assert feats.ndim == 4 and feats.shape[0] == 2
    assert pre.ndim == 2 and pre.shape[0] == 2 and pre.shape[1] > 7
    torch.testing.assert_close(again, logits)
    assert model.architecture == name


def test_aliases_and_any_timm_name():
    assert create_model("mobilenet_v2", num_classes=3).architecture == "mobilenetv2_100"
    m = create_model("convnext_atto", num_classes=3)
    assert m(torch.randn(1, 1, 32, 32)).shape == (1, 3)
    with pytest.raises(ModelNotFoundError):
        create_model("no_such_net", num_classes=3)


def test_register_model_decorator():
    @register_model(name="tiny_test_net", input_size=8)
    def tiny_test_net(num_classes=2, in_chans=1):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))

    assert is_model("tiny_test_net") and get_default_cfg("tiny_test_net")["input_size"] == 8
    assert create_model("tiny_test_net", num_classes=4)(torch.randn(2, 1, 8, 8)).shape == (2, 4)


def test_pretrained_not_available_is_a_clear_error():
    with pytest.raises(ModelNotFoundError, match="no pretrained weights"):
        create_model("resnet18", num_classes=3, pretrained=True)
    with pytest.raises(ModelNotFoundError):
        create_model("googlenet", num_classes=3, pretrained=True)


@pytest.mark.parametrize("name,first_conv", [("resnet18", "conv1.weight"),
                                             ("googlenet", "conv1.conv.weight")])
def test_rgb_weights_adapted_to_one_channel(tmp_path, name, first_conv):
    torch.manual_seed(0)
    rgb = create_model(name, num_classes=1000, in_chans=3)
    file = tmp_path / "rgb.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(file))

    gray = create_model(name, num_classes=5, in_chans=1, pretrained_path=file)
    sd = gray.state_dict()
    # one channel = sum over RGB (timm adapt_input_conv), other layers copied as is
    torch.testing.assert_close(sd[first_conv], rgb.state_dict()[first_conv].sum(1, keepdim=True))
    some_inner = [k for k in sd if k.endswith("weight") and sd[k].ndim == 4][3]
    torch.testing.assert_close(sd[some_inner], rgb.state_dict()[some_inner])
    gray.eval(), rgb.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        # the 1000-class head is not loaded into the 5-class model
        assert gray(x).shape == (1, 5)
        # a gray image through the adapted net == the same gray image as RGB through the original
        torch.testing.assert_close(gray.forward_features(x), rgb.forward_features(x.expand(1, 3, 64, 64)),
                                   rtol=1e-4, atol=1e-4)


def test_weights_for_another_architecture_are_refused(tmp_path):
    file = tmp_path / "w.safetensors"
    save_file(dict(create_model("roth2015", num_classes=3).state_dict()), str(file))
    with pytest.raises(InvalidConfigError):
        create_model("menkovski2015", num_classes=3, pretrained_path=file)


def test_pretrained_from_a_model_package(tmp_path):
    torch.manual_seed(1)
    src = create_model("menkovski2015", num_classes=4)
    pkg = ModelPackage(name="src", architecture="menkovski2015", tasks={"t": list("abcd")},
                       preprocessing={"size": 32})
    pkg.save(tmp_path / "pkg", src.state_dict())
    dst = create_model("menkovski2015", num_classes=9, pretrained_path=tmp_path / "pkg")
    torch.testing.assert_close(dst.state_dict()["features.0.weight"], src.state_dict()["features.0.weight"])
    assert dst.get_classifier().out_features == 9
