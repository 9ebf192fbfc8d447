"""DPED: TF-free checkpoint reader, generator/discriminator, official weights, VGG-19 features, losses."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_modules.dped import (
    DPEDDiscriminator,
    DPEDGenerator,
    load_official_dped,
    rgb_to_grayscale_tf,
    tf_same_pad,
)
from lightning_modules.tf_checkpoint import list_tf_checkpoint, load_tf_checkpoint
from losses.dped import (
    ALTERNATIVE_WEIGHTS,
    ColorLoss,
    DPEDGeneratorLoss,
    color_loss,
    content_loss,
    discriminator_loss,
    gauss_kernel_official,
    gauss_kernel_official_1d,
    texture_loss,
    tv_loss,
)
from losses.vgg import VGG19_LAYERS, VGG19Features

PHONES = ("iphone", "sony", "blackberry")
REF = "reference/dped_official/A_venice_normal_r40_c170_100x100"


# --------------------------------------------------------------------------- TF checkpoint reader


def _parse_tensors_txt(path: Path) -> dict[str, dict[str, tuple]]:
    sections: dict[str, dict[str, tuple]] = {}
    current = None
    for line in path.read_text().splitlines():
        m = re.match(r"## (\w+)_orig", line)
        if m:
            current = sections.setdefault(m.group(1), {})
            continue
        m = re.match(r"(generator/\S+)\s+(\w+)\s+\[([\d, ]+)\]\s+(\d+)\s+(\d+)\s+(\d+)", line)
        if m and current is not None:
            shape = tuple(int(s) for s in m.group(3).split(","))
            current[m.group(1)] = (m.group(2), shape, int(m.group(4)), int(m.group(5)), int(m.group(6)))
    return sections


def test_tf_reader_matches_tensors_txt(shared):
    listing = _parse_tensors_txt(shared("weights/dped/tensors.txt"))
    assert set(listing) == set(PHONES)
    for phone in PHONES:
        infos = list_tf_checkpoint(shared(f"weights/dped/{phone}_orig.index"))
        expected = listing[phone]
        assert list(infos) == list(expected)  # same names, same (lexicographic) order
        for name, (dtype, shape, numel, offset, nbytes) in expected.items():
            info = infos[name]
            assert (str(info.dtype), info.shape, info.numel, info.offset, info.size) == (
                dtype,
                shape,
                numel,
                offset,
                nbytes,
            )


def test_tf_reader_errors(shared, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.index"):
        list_tf_checkpoint(tmp_path / "nothing")
    (tmp_path / "bad.index").write_bytes(bytes(range(64)))
    with pytest.raises(ValueError, match="magic"):
        list_tf_checkpoint(tmp_path / "bad")
    # a corrupted copy (in a temporary folder) must fail its crc32c check
    src = shared("weights/dped/iphone_orig.index")
    shutil.copy(src, tmp_path / "c.index")
    data = bytearray(Path(str(src).replace(".index", ".data-00000-of-00001")).read_bytes())
    with pytest.raises(FileNotFoundError, match="c.data-00000-of-00001"):
        load_tf_checkpoint(tmp_path / "c")
    data[4096 + 100] ^= 0x01  # inside generator/W1
    (tmp_path / "c.data-00000-of-00001").write_bytes(bytes(data))
    assert load_tf_checkpoint(tmp_path / "c", ["generator/b12"])["generator/b12"].shape == (3,)
    with pytest.raises(ValueError, match="crc32c"):
        load_tf_checkpoint(tmp_path / "c", ["generator/W1"])
    with pytest.raises(KeyError):
        load_tf_checkpoint(tmp_path / "c", ["generator/W13"], verify=False)


# --------------------------------------------------------------------------- networks


def test_parameter_counts_and_init():
    with torch.device("meta"):  # counting needs no memory or init
        d = DPEDDiscriminator()
        assert sum(p.numel() for p in d.parameters()) == 7_361_122
        assert sum(p.numel() for p in d.fc.parameters()) == 6_423_552
        small = DPEDGenerator(n_blocks=2)
        assert sum(p.numel() for p in small.parameters()) == 401_475 - 2 * (2 * 36_928 + 256)
    torch.manual_seed(0)
    g = DPEDGenerator()
    assert sum(p.numel() for p in g.parameters()) == 401_475
    w = g.blocks[0].conv_a.weight
    assert w.abs().max() <= 0.02 + 1e-7  # truncated at 2σ
    assert abs(w.std().item() - 0.01 * 0.8796) < 5e-4  # std of N(0, σ) truncated at ±2σ
    assert torch.all(g.conv_in.bias == 0.01) and torch.all(g.conv_out.bias == 0.01)
    assert torch.all(g.blocks[1].norm_b.weight == 1) and torch.all(g.blocks[1].norm_b.bias == 0)


def test_generator_any_size_and_range():
    torch.manual_seed(0)
    g = DPEDGenerator()
    with torch.no_grad():
        g.conv_out.weight.mul_(1000)  # saturate tanh: output must stay inside (−0.08, 1.08)
        y = g(torch.rand(2, 3, 37, 53))
    assert y.shape == (2, 3, 37, 53)
    assert y.min() >= 0.5 - 0.58 and y.max() <= 0.5 + 0.58
    assert y.min() < 0 and y.max() > 1  # range is wider than [0, 1], unclipped
    with pytest.raises(ValueError):
        g(torch.rand(1, 1, 8, 8))


def test_discriminator_padding_grayscale_and_shapes():
    x = torch.zeros(1, 1, 100, 100)
    assert tf_same_pad(x, 11, 4).shape[-2:] == (107, 107)  # 3 + 100 + 4
    p = tf_same_pad(torch.ones(1, 1, 100, 100), 11, 4)
    assert p[0, 0, 3:-4, 3:-4].all() and p[0, 0, :3].sum() == 0 and p[0, 0, -4:].sum() == 0
    rgb = torch.rand(2, 3, 4, 4)
    ref = 0.2989 * rgb[:, 0] + 0.5870 * rgb[:, 1] + 0.1140 * rgb[:, 2]
    torch.testing.assert_close(rgb_to_grayscale_tf(rgb)[:, 0], ref)

    torch.manual_seed(0)
    d = DPEDDiscriminator()
    img = torch.rand(2, 3, 100, 100)
    logits = d(img)
    assert logits.shape == (2, 2)
    torch.testing.assert_close(d(rgb_to_grayscale_tf(img)), logits)  # RGB and grey input agree
    assert torch.all(d.out.bias == 0.01) and d.fc.weight.abs().max() <= 0.02 + 1e-7
    h = d.convs(rgb_to_grayscale_tf(img))
    assert h.shape == (2, 128, 7, 7)
    with pytest.raises(ValueError):
        d(torch.rand(1, 3, 64, 64))


# --------------------------------------------------------------------------- official weights


def test_official_iphone_reproduces_reference(shared):
    g = load_official_dped(shared("weights/dped/iphone_orig.index").with_suffix(""))
    crop = np.asarray(Image.open(shared(f"{REF}_input.png")).convert("RGB"))
    assert crop.shape == (100, 100, 3)
    ref = np.load(shared(f"{REF}_output.npz"))["output"]
    x = torch.from_numpy(crop.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = g(x)[0].permute(1, 2, 0).numpy()
    assert y.dtype == np.float32
    assert np.abs(y - ref).max() <= 1e-4


def test_all_phones_load(shared):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 24, 32)
    outs = []
    for phone in PHONES:
        g = load_official_dped(shared(f"weights/dped/{phone}_orig.index").with_suffix(""))
        assert all(p.requires_grad and p.device.type == "cpu" for p in g.parameters())  # fine-tunable
        norm = g.blocks[0].norm_a
        assert (norm.weight - 1).abs().mean() < 0.5 and norm.bias.abs().mean() < 0.5  # scale ≈ 1, shift ≈ 0
        with torch.no_grad():
            outs.append(g(x))
    for i in range(3):
        assert torch.isfinite(outs[i]).all()
        assert not torch.allclose(outs[i], outs[(i + 1) % 3], atol=1e-3)


def test_official_loader_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_official_dped(tmp_path / "iphone_orig")
    msg = str(err.value)
    assert "iphone_orig.index" in msg and "iphone_orig.data-00000-of-00001" in msg and "aiff22/DPED" in msg


# --------------------------------------------------------------------------- blur kernel and losses


def test_official_gauss_kernel():
    k = gauss_kernel_official(21, 3)
    assert k.shape == (21, 21) and k.dtype == torch.float32
    assert abs(k.sum().item() - 1) < 1e-6
    torch.testing.assert_close(k, k.T)
    torch.testing.assert_close(k, k.flip(0))
    # literal transcription of utils.gauss_kernel with scipy
    import scipy.stats as st

    interval = 7 / 21
    edges = np.linspace(-3 - interval / 2, 3 + interval / 2, 22)
    k1 = np.diff(st.norm.cdf(edges))
    raw = np.sqrt(np.outer(k1, k1))
    np.testing.assert_allclose(k.numpy(), raw / raw.sum(), rtol=1e-6)
    marginal = k.double().sum(0)
    pos = torch.arange(21, dtype=torch.float64) - 10
    sigma = torch.sqrt((marginal * pos**2).sum()).item()
    assert abs(sigma - 4.34) < 0.01
    g = torch.exp(-(pos**2) / (2 * 3.0**2))
    g2 = torch.outer(g, g) / torch.outer(g, g).sum()
    assert (k.double() - g2).abs().max() > 1e-3  # not a σ = 3 Gaussian


def test_separable_blur_equals_the_official_2d_kernel():
    g = gauss_kernel_official_1d(21, 3)
    assert g.shape == (21,) and abs(g.sum().item() - 1) < 1e-6
    assert (torch.outer(g.double(), g.double()) - gauss_kernel_official(21, 3).double()).abs().max() < 1e-9
    torch.manual_seed(0)
    e, d = torch.rand(3, 3, 100, 100), torch.rand(3, 3, 100, 100)
    two_d = color_loss(e, d, gauss_kernel_official())  # one 21×21 pass on each image
    separable = color_loss(e, d)  # default: two 1-D passes on D − E
    assert abs(separable.item() - two_d.item()) <= 1e-6 * two_d.item()
    assert ColorLoss().kernel.shape == (21,)
    assert DPEDGeneratorLoss(weights={"content": 0}).kernel.shape == (21,)


def test_color_loss_by_hand():
    from scipy.ndimage import correlate

    torch.manual_seed(0)
    e, d = torch.rand(2, 3, 9, 11), torch.rand(2, 3, 9, 11)
    k = gauss_kernel_official().double().numpy()
    total = 0.0
    for n in range(2):
        for c in range(3):
            bd = correlate(d[n, c].double().numpy(), k, mode="constant")
            be = correlate(e[n, c].double().numpy(), k, mode="constant")
            total += ((bd - be) ** 2).sum()
    expected = total / (2 * 2)
    assert abs(color_loss(e, d).item() - expected) < 1e-5 * expected
    # identity kernel: plain half sum per image
    one = torch.ones(1, 1)
    torch.testing.assert_close(color_loss(e, d, one), ((e - d) ** 2).sum() / 4)
    torch.testing.assert_close(ColorLoss(loss_weight=0.5)(e, d), 0.5 * color_loss(e, d))
    with pytest.raises(ValueError):
        color_loss(e, d[:, :, :8])


def test_texture_and_discriminator_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [100.0, -100.0]])
    p1 = [1 / (1 + math.e**2), math.e / (1 + math.e), 1e-10]  # class-1 probability (last one clipped)
    expected = sum(math.log(p) for p in p1)
    assert abs(texture_loss(logits).item() - expected) < 1e-4
    # at chance: b·ln 0.5
    assert abs(texture_loss(torch.zeros(5, 2)).item() - 5 * math.log(0.5)) < 1e-5
    adv = torch.tensor([1.0, 0.0, 0.0])  # DSLR, enhanced, enhanced
    p0 = [1 - p1[0], 1 - p1[1]]
    expected_d = -(math.log(p0[0]) + math.log(p1[1]) + math.log(1e-10))
    assert abs(discriminator_loss(logits, adv).item() - expected_d) < 1e-3
    onehot = torch.stack([adv, 1 - adv], 1)
    torch.testing.assert_close(discriminator_loss(logits, onehot), discriminator_loss(logits, adv))
    # generator step (all targets = enhanced): L_texture = −L_D
    torch.testing.assert_close(texture_loss(logits), -discriminator_loss(logits, torch.zeros(3)))
    with pytest.raises(ValueError):
        texture_loss(torch.zeros(3, 3))


def test_tv_loss_by_hand():
    x = torch.tensor([[[[0.0, 1.0, 3.0], [1.0, 1.0, 1.0]]]])  # 1×1×2×3
    dx = ((1 - 0) ** 2 + (3 - 1) ** 2 + 0 + 0) / 4
    dy = ((1 - 0) ** 2 + 0 + (1 - 3) ** 2) / 3
    assert abs(tv_loss(x).item() - (dx + dy)) < 1e-6
    assert tv_loss(torch.full((2, 3, 5, 5), 0.3)).item() == 0


def test_content_loss_and_vgg_random():
    torch.manual_seed(0)
    e, d = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 6, 6)
    torch.testing.assert_close(content_loss(e, d, torch.nn.Identity()), ((e - d) ** 2).mean())
    vgg = VGG19Features(pretrained=False)
    assert VGG19_LAYERS.index("relu5_4") == 35 and len(vgg.layers) == 36
    assert not any(p.requires_grad for p in vgg.parameters()) and not vgg.training
    vgg.train()
    assert not vgg.training
    with torch.no_grad():
        f = vgg(torch.rand(1, 3, 100, 100))
    assert f.shape == (1, 512, 7, 7)  # TF SAME (ceil) pooling: 100 → 50 → 25 → 13 → 7
    x = torch.rand(1, 3, 20, 20)
    torch.testing.assert_close(
        vgg.preprocess(x)[0, :, 0, 0], 255 * x[0, :, 0, 0] - torch.tensor([123.68, 116.779, 103.939])
    )
    y = x.clone().requires_grad_(True)
    loss = content_loss(y, x.flip(-1), vgg)
    loss.backward()
    assert loss.item() > 0 and y.grad is not None and y.grad.abs().sum() > 0
    assert content_loss(x, x, vgg).item() == 0


def test_vgg_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.delenv("DARKROOM_VGG19", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError) as err:
        VGG19Features()
    msg = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in msg
    assert "imagenet-vgg-verydeep-19.mat" in msg and "DARKROOM_VGG19" in msg
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        VGG19Features(weights=tmp_path / "nope.pth")
    with pytest.raises(ValueError):
        VGG19Features(layer="relu6_1", pretrained=False)


def test_vgg_loads_torchvision_and_matconvnet_files(tmp_path, monkeypatch):
    import scipy.io

    torch.manual_seed(0)
    src = VGG19Features("relu2_1", pretrained=False)
    sd = {f"features.{k}": v for k, v in src.layers.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(sd, ckpt / "vgg19-dcbb9e9d.pth")
    monkeypatch.delenv("DARKROOM_VGG19", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    v = VGG19Features("relu2_1")  # found in the hub cache
    assert v.normalization == "imagenet"
    torch.testing.assert_close(v.layers[5].weight, src.layers[5].weight)
    x = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(
        v.preprocess(x),
        (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )

    # MatConvNet layout: cell array of structs, kernels [W, H, in, out], found by layer name
    k1 = np.random.rand(3, 3, 3, 64).astype(np.float32)
    k2 = np.random.rand(3, 3, 64, 64).astype(np.float32)
    layers = np.empty((1, 4), dtype=object)
    for i, (name, w) in enumerate([("conv1_1", k1), ("relu1_1", None), ("conv1_2", k2), ("relu1_2", None)]):
        entry: dict = {"name": name, "type": name[:4]}
        if w is not None:
            cell = np.empty((1, 2), dtype=object)
            cell[0, 0], cell[0, 1] = w, np.arange(64, dtype=np.float32)[:, None]
            entry["weights"] = cell
        layers[0, i] = entry
    scipy.io.savemat(tmp_path / "vgg.mat", {"layers": layers})
    monkeypatch.setenv("DARKROOM_VGG19", str(tmp_path / "vgg.mat"))  # env var wins over the hub cache
    m = VGG19Features("relu1_2")
    assert m.normalization == "caffe" and m.weights_path == tmp_path / "vgg.mat"
    torch.testing.assert_close(m.layers[2].weight, torch.from_numpy(k2.transpose(3, 2, 1, 0)))
    torch.testing.assert_close(m.layers[0].bias, torch.arange(64, dtype=torch.float32))
    with pytest.raises(ValueError, match="conv2_1"):
        VGG19Features("relu2_1")  # the .mat lacks conv2_1


# --------------------------------------------------------------------------- combined objective


def test_generator_loss_weights_and_skipping(monkeypatch, tmp_path):
    monkeypatch.delenv("DARKROOM_VGG19", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty"))
    torch.manual_seed(0)
    e, d = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    logits = torch.randn(2, 2)
    with pytest.raises(FileNotFoundError):
        DPEDGeneratorLoss()  # content weight 10 needs VGG weights
    loss = DPEDGeneratorLoss(weights={"content": 0})  # no VGG needed
    assert loss.vgg is None
    out = loss(e, d, logits)
    assert set(out) == {"color", "texture", "tv", "total"}
    expected = 0.5 * color_loss(e, d) + texture_loss(logits) + 2000 * tv_loss(e)
    torch.testing.assert_close(out["total"], expected)
    with pytest.raises(ValueError, match="logits"):
        loss(e, d)
    assert set(DPEDGeneratorLoss(weights={"content": 0, "texture": 0})(e, d)) == {"color", "tv", "total"}

    alt = DPEDGeneratorLoss(preset="alternative", vgg=torch.nn.Identity())
    assert alt.weights == ALTERNATIVE_WEIGHTS
    out = alt(e, d, logits)
    manual = ((e - d) ** 2).mean() + 0.1 * out["color"] + 0.4 * out["texture"] + 400 * out["tv"]
    torch.testing.assert_close(out["total"], manual)
    with pytest.raises(ValueError):
        DPEDGeneratorLoss(weights={"colour": 1.0, "content": 0})

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf = loss(e, d, logits)
    assert out_bf["total"].dtype == torch.float32
    torch.testing.assert_close(out_bf["total"], loss(e, d, logits)["total"])


def test_generator_loss_owns_the_presets_and_is_built_from_the_term_modules():
    """DPEDGeneratorLoss is the one home of the presets: None (or a missing key) = the preset's weight."""
    from losses.dped import OFFICIAL_WEIGHTS, ColorLoss, TextureLoss, TVLoss

    assert DPEDGeneratorLoss.preset_weights("official") == OFFICIAL_WEIGHTS
    assert DPEDGeneratorLoss.preset_weights("alternative") == ALTERNATIVE_WEIGHTS
    partial = {"content": 0.0, "color": None, "texture": 2.0, "tv": None}
    assert DPEDGeneratorLoss.resolve_weights(partial, "alternative") == {"content": 0.0, "color": 0.1, "texture": 2.0,
                                                                          "tv": 400.0}
    loss = DPEDGeneratorLoss(weights=partial, preset="alternative")
    assert loss.weights == DPEDGeneratorLoss.resolve_weights(partial, "alternative") and loss.vgg is None
    assert [type(m) for m in loss.terms.values()] == [ColorLoss, TextureLoss, TVLoss]
    assert all(m.loss_weight == 1.0 for m in loss.terms.values()) and loss.state_dict() == {}
    with pytest.raises(ValueError, match="preset"):
        DPEDGeneratorLoss.preset_weights("paper")
    vgg = torch.nn.Identity()
    shared = DPEDGeneratorLoss(vgg=vgg)
    assert shared.vgg is vgg and [name for name, _ in shared.named_modules() if name.endswith("vgg")] == ["vgg"]
    features = DPEDGeneratorLoss(vgg=VGG19Features("relu1_2", pretrained=False))  # checkpoints keep ``vgg.*`` keys
    keys = list(features.state_dict())
    assert keys and all(k.startswith("vgg.") for k in keys) and features.state_dict().keys() == features.vgg.state_dict(
        prefix="vgg.").keys()

