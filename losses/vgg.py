"""Frozen VGG-19 feature extractor for perceptual (content) losses — own layer definition, local weights only.

Layers are numbered exactly like torchvision's ``vgg19().features`` (conv/ReLU/max-pool, relu5_4 = index 35),
so its ``features.N.weight`` keys map one to one. Max-pools use ``ceil_mode=True``, which equals TF
``max_pool(…, padding='SAME')`` of the official DPED ``vgg.py`` (100 → 50 → 25 → 13 → 7: relu5_4 is 7×7×512
at 100×100).

Weights (never downloaded): the ``weights`` argument, else ``$DARKROOM_VGG19``, else the torch hub cache
``torch.hub.get_dir()/checkpoints/`` — ``imagenet-vgg-verydeep-19.mat`` (MatConvNet, the original Oxford
weights the official DPED code uses; preferred) or ``vgg19-dcbb9e9d.pth`` (torchvision's re-training).

Input normalisation depends on the weights and is done inside :meth:`VGG19Features.forward` (input: RGB in
[0, 1]):

* ``"caffe"`` (MatConvNet / official DPED ``vgg.preprocess``): ``255·x − (123.68, 116.779, 103.939)``;
* ``"imagenet"`` (torchvision): ``(x − (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)``.

The two give activations about 255× apart in scale, so loss weights tuned on one do not transfer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["VGG19_LAYERS", "VGG19Features", "default_vgg19_paths", "find_vgg19_weights"]

TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
MATCONVNET_FILE = "imagenet-vgg-verydeep-19.mat"
ENV_VAR = "DARKROOM_VGG19"

_CFG = [(3, 64), (64, 64), "M", (64, 128), (128, 128), "M"] + [(128, 256)] + [(256, 256)] * 3 + ["M"]
_CFG += [(256, 512)] + [(512, 512)] * 3 + ["M"] + [(512, 512)] * 4 + ["M"]


def _layer_names() -> list[str]:
    names: list[str] = []
    block, idx = 1, 1
    for item in _CFG:
        if item == "M":
            names.append(f"pool{block}")
            block, idx = block + 1, 1
        else:
            names += [f"conv{block}_{idx}", f"relu{block}_{idx}"]
            idx += 1
    return names


VGG19_LAYERS: list[str] = _layer_names()
"""Layer names in torchvision ``features`` order (``VGG19_LAYERS.index("relu5_4") == 35``)."""

_CAFFE_MEAN = (123.68, 116.779, 103.939)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def default_vgg19_paths() -> list[Path]:
    """Where weights are looked for when none are given: ``$DARKROOM_VGG19`` then the hub cache files."""
    paths: list[Path] = []
    if os.environ.get(ENV_VAR):
        paths.append(Path(os.environ[ENV_VAR]).expanduser())
    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    return paths + [ckpt / MATCONVNET_FILE, ckpt / TORCHVISION_FILE]


def find_vgg19_weights(weights: str | Path | None = None) -> Path:
    """Resolve the VGG-19 weight file, or raise FileNotFoundError saying exactly where to put one."""
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"VGG-19 weights not found: {p} (given as the `weights` argument)")
        return p
    candidates = default_vgg19_paths()
    for p in candidates:
        if p.is_file():
            return p
    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    raise FileNotFoundError(
        "VGG-19 weights not found; they are never downloaded at run time. Looked at: "
        + ", ".join(str(p) for p in candidates)
        + f". Put one of these files there: {ckpt / MATCONVNET_FILE} (MatConvNet "
        f"'{MATCONVNET_FILE}', the original Oxford VGG-19 that the official DPED code uses, "
        "https://www.vlfeat.org/matconvnet/pretrained/) or "
        f"{ckpt / TORCHVISION_FILE} (torchvision's VGG-19 '{TORCHVISION_FILE}'; different training and "
        f"input scale, so DPED's content weight 10 does not transfer), or set ${ENV_VAR} to the file, or "
        "pass `weights=`. Use `pretrained=False` for random weights (tests, smoke runs)."
    )


def _load_matconvnet(path: Path) -> dict[int, tuple[Tensor, Tensor]]:
    """Conv weights from a MatConvNet ``imagenet-vgg-verydeep-19.mat``: features index → (OIHW weight, bias).

    Layers are found by name (``conv1_1`` …), so both the older and the newer ``.mat`` field orders work
    (the official ``vgg.py`` indexes fields by position, DPED issue #2). Kernels are stored [W, H, in, out]
    (the official code transposes (1, 0, 2, 3) for TF HWIO); to PyTorch OIHW: axes (3, 2, 1, 0).
    """
    import numpy as np
    import scipy.io

    data = scipy.io.loadmat(str(path))
    if "layers" not in data:
        raise ValueError(f"{path}: no 'layers' entry; expected MatConvNet {MATCONVNET_FILE}")
    out: dict[int, tuple[Tensor, Tensor]] = {}
    for cell in np.ravel(data["layers"]):
        rec = cell.ravel()[0] if cell.dtype == object else cell
        rec = rec.ravel()[0]
        name = str(np.ravel(rec["name"])[0])
        if name not in VGG19_LAYERS or not name.startswith("conv"):
            continue
        weights = np.ravel(rec["weights"])
        if len(weights) == 1:  # some files nest the {kernel, bias} cell once more
            weights = np.ravel(weights[0])
        kernel, bias = weights[0], weights[1]
        w = torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (3, 2, 1, 0)), dtype=np.float32))
        b = torch.from_numpy(np.ascontiguousarray(np.ravel(bias), dtype=np.float32))
        out[VGG19_LAYERS.index(name)] = (w, b)
    return out


def _load_torch(path: Path) -> dict[int, tuple[Tensor, Tensor]]:
    """Conv weights from a torchvision ``vgg19`` state dict (``features.N.*``; also ``layers.N.*`` / ``N.*``)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    out: dict[int, tuple[Tensor, Tensor]] = {}
    for key, w in sd.items():
        parts = key.split(".")
        if (
            parts[-1] != "weight"
            or not parts[-2].isdigit()
            or parts[0] not in ("features", "layers", parts[-2])
        ):
            continue
        idx = int(parts[-2])
        b = sd[key[: -len("weight")] + "bias"]
        out[idx] = (w.float(), b.float())
    return out


class VGG19Features(nn.Module):
    """Frozen VGG-19 ``features`` up to ``layer`` (default relu5_4, the DPED content layer).

    Args:
        layer: last layer to compute, a name from :data:`VGG19_LAYERS` (``"relu5_4"``, ``"conv3_1"``, …).
        weights: weight file (``.mat`` MatConvNet or ``.pth`` torchvision state dict); default: see
            :func:`find_vgg19_weights`.
        pretrained: False builds random (Kaiming) weights without looking for any file.
        normalization: input normalisation, ``"caffe"`` or ``"imagenet"`` (see module docstring); default:
            ``"imagenet"`` for a ``.pth`` file, ``"caffe"`` otherwise (official DPED).

    Shapes:
        input N×3×H×W RGB in [0, 1]; output N×C×h×w (relu5_4: 512 × ⌈H/16⌉ × ⌈W/16⌉, e.g. 7×7 at 100×100).

    SOURCE: aiff22/DPED ``vgg.py`` (layers up to relu5_4, TF SAME max-pool, ``preprocess`` = minus RGB mean).
    """

    def __init__(
        self,
        layer: str = "relu5_4",
        weights: str | Path | None = None,
        pretrained: bool = True,
        normalization: Literal["caffe", "imagenet"] | None = None,
    ) -> None:
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise ValueError(f"unknown VGG-19 layer {layer!r}; choose one of {VGG19_LAYERS}")
        self.layer = layer
        n = VGG19_LAYERS.index(layer) + 1
        modules: list[nn.Module] = []
        convs = iter(c for c in _CFG if c != "M")
        for name in VGG19_LAYERS[:n]:
            if name.startswith("conv"):
                c_in, c_out = next(convs)
                modules.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            elif name.startswith("relu"):
                modules.append(nn.ReLU(inplace=True))
            else:
                modules.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        self.layers = nn.Sequential(*modules)

        source: Path | None = None
        if pretrained:
            source = find_vgg19_weights(weights)
            loaded = _load_matconvnet(source) if source.suffix.lower() == ".mat" else _load_torch(source)
            for idx, m in enumerate(self.layers):
                if not isinstance(m, nn.Conv2d):
                    continue
                if idx not in loaded:
                    raise ValueError(
                        f"{source}: no weights for VGG-19 layer {VGG19_LAYERS[idx]} (index {idx})"
                    )
                w, b = loaded[idx]
                if w.shape != m.weight.shape or b.shape != m.bias.shape:
                    raise ValueError(
                        f"{source}: layer {VGG19_LAYERS[idx]} has shape {tuple(w.shape)}, "
                        f"expected {tuple(m.weight.shape)}"
                    )
                with torch.no_grad():
                    m.weight.copy_(w)
                    m.bias.copy_(b)
        else:
            for m in self.layers:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        self.weights_path = source
        if normalization is None:
            normalization = "imagenet" if source is not None and source.suffix.lower() != ".mat" else "caffe"
        if normalization not in ("caffe", "imagenet"):
            raise ValueError(f"normalization must be 'caffe' or 'imagenet', got {normalization!r}")
        self.normalization = normalization
        if normalization == "caffe":
            scale, shift = torch.full((3,), 255.0), -torch.tensor(_CAFFE_MEAN)
        else:
            scale = 1.0 / torch.tensor(_IMAGENET_STD)
            shift = -torch.tensor(_IMAGENET_MEAN) / torch.tensor(_IMAGENET_STD)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        """Always stays in eval mode (frozen backbone)."""
        return super().train(False)

    def preprocess(self, x: Tensor) -> Tensor:
        """[0, 1] RGB → the network's input scale (``255·x − mean`` for ``"caffe"``)."""
        return x * self.scale + self.shift

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG19Features expects N×3×H×W RGB images in [0, 1], got {tuple(x.shape)}")
        return self.layers(self.preprocess(x))
