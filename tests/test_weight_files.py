"""A wrong weights file gives one line that names the file, what it is and looks like, and what was expected
(:mod:`networks.weight_files`), before anything is loaded; the right files load as before.

The fakes are built in ``tmp_path`` with the real names and shapes of ``../shared/data/weights/*/tensors.txt``
(checked against those listings when the shared data is there): the official networks' own state dicts, the DeepFuse
arrays, and a TF1 tensor bundle written here (index SSTable + data shard) with the DPED generator's variables.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lightning_modules.checkpoints import CheckpointError
from networks.deepfuse import DeepFuseNet, load_official_deepfuse
from networks.dped import load_official_dped
from networks.refusion import FusionNet, load_official_refusion
from networks.tf_checkpoint import _TABLE_MAGIC, _masked_crc32c
from networks.weight_files import (
    KINDS,
    WeightFileError,
    check_weights,
    identify_weights,
    inspect_weights,
    sniff_weights,
)
from networks.zero_dce import DCENet, DCENetPP, load_official_weights

UNSAFE = ("allow_pickle", "weights_only=False", "pickle.load(")


# --------------------------------------------------------------------------- fakes with the real names and shapes
def zero_dce_state() -> dict[str, torch.Tensor]:
    """Zero-DCE ``Epoch99.pth``: e_conv1…e_conv7 weight/bias, e_conv7 out 24."""
    torch.manual_seed(0)
    return DCENet().state_dict()


def zero_dce_pp_state() -> dict[str, torch.Tensor]:
    """Zero-DCE++ ``Epoch99.pth``: e_conv1…e_conv7 depth_conv/point_conv, e_conv7 out 3."""
    torch.manual_seed(0)
    return DCENetPP().state_dict()


def fusion_state() -> dict[str, torch.Tensor]:
    """Darkroom's :class:`FusionNet` (a ReFusion ``.ckpt`` holds it under ``fusion.``)."""
    torch.manual_seed(0)
    return FusionNet().state_dict()


def refusion_state() -> dict[str, torch.Tensor]:
    """``ReFusion_*.pth``: the fusion net's 86 tensors, every conv weight also under ``<m>.conv.weight``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in fusion_state().items():
        out[key] = value
        if value.ndim == 4:
            out[key.removesuffix(".weight") + ".conv.weight"] = value
    return out


def deepfuse_arrays() -> dict[str, np.ndarray]:
    """``DF_model_Epoch99.npz``: arr_0 … arr_5, (out, in, kh, kw)."""
    torch.manual_seed(0)
    convs = [m for m in DeepFuseNet("official").modules() if isinstance(m, nn.Conv2d)]
    return {f"arr_{i}": c.weight.detach().numpy().copy() for i, c in enumerate(convs)}


def dped_arrays() -> dict[str, np.ndarray]:
    """``<phone>_orig``: generator/W1…W12 (HWIO), b1…b12, Variable…Variable_15 (instance-norm shifts/scales)."""
    rng = np.random.default_rng(0)
    shapes: dict[str, tuple[int, ...]] = {"generator/W1": (9, 9, 3, 64), "generator/W12": (9, 9, 64, 3),
                                          "generator/b12": (3,)}
    shapes.update({f"generator/W{i}": (3, 3, 64, 64) for i in range(2, 12)})
    shapes.update({f"generator/b{i}": (64,) for i in range(1, 12)})
    shapes.update({"generator/Variable" + (f"_{j}" if j else ""): (64,) for j in range(16)})
    return {k: (rng.standard_normal(s) * 0.01).astype(np.float32) for k, s in sorted(shapes.items())}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """One SSTable block: full keys (no prefix sharing), one restart point."""
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in entries)
    return body + struct.pack("<II", 0, 1)


def write_tf_checkpoint(prefix: Path, arrays: dict[str, np.ndarray]) -> Path:
    """A single-shard TF1 tensor bundle ``prefix.index`` + ``prefix.data-00000-of-00001`` (float32, little-endian),
    as ``tf.train.Saver`` writes it (SOURCE: tensorflow/core/util/tensor_bundle/tensor_bundle.cc, LevelDB table
    format), read back by :mod:`networks.tf_checkpoint`."""
    data, entries = bytearray(), [(b"", b"\x08\x01")]  # BundleHeaderProto {num_shards: 1}
    for name in sorted(arrays):
        raw = np.ascontiguousarray(arrays[name], "<f4").tobytes()
        shape = b"".join(_field(2, b"\x08" + _varint(d)) for d in arrays[name].shape)
        entry = (b"\x08\x01" + _field(2, shape) + b"\x20" + _varint(len(data)) + b"\x28" + _varint(len(raw))
                 + b"\x35" + struct.pack("<I", _masked_crc32c(raw)))
        entries.append((name.encode(), entry))
        data += raw
    out = bytearray()

    def put(block: bytes) -> bytes:
        handle = _varint(len(out)) + _varint(len(block))
        out.extend(block + b"\0" + struct.pack("<I", _masked_crc32c(block + b"\0")))
        return handle

    data_handle = put(_block(entries))
    meta_handle = put(_block([]))
    index_handle = put(_block([(b"\xff", data_handle)]))
    out += (meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", _TABLE_MAGIC)
    Path(f"{prefix}.index").write_bytes(bytes(out))
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))
    return prefix


def save_legacy(obj: object, path: Path) -> Path:
    """torch's pre-1.6 format (a bare pickle stream), as the released Zero-DCE ``Epoch99.pth``."""
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path


def save_zip(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def lightning_ckpt(state: dict[str, torch.Tensor], prefix: str, path: Path, **hparams: object) -> Path:
    """A Darkroom/Lightning ``.ckpt``: ``state_dict`` under the module's network attribute, step and version."""
    torch.save({"state_dict": {prefix + k: v for k, v in state.items()}, "global_step": 3, "epoch": 0,
                "pytorch-lightning_version": "2.5.0", "hyper_parameters": dict(hparams)}, path)
    return path


class Fakes:
    """The fake files of one test, built on first use in ``tmp_path``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, name: str) -> Path:
        """The fake ``name`` (``<prefix>.index``: that file of the TF checkpoint ``<prefix>``)."""
        path = self.root / name
        if name.endswith(".index"):
            return Path(f"{self(name.removesuffix('.index'))}.index")
        if not path.exists() and not Path(f"{path}.index").exists():
            BUILDERS[name](path)
        return path


def _truncated(src: Callable[[Path], Path], keep: float) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        full = src(path.with_name("full_" + path.name))
        data = full.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
        return path
    return build


def _hostile(path: Path) -> Path:
    """A legacy-format ``.pth`` whose unpickling would run ``touch <path>.pwned``."""
    save_legacy({"e_conv1.weight": torch.zeros(1), "evil": Evil(path.with_suffix(".pwned"))}, path)
    return path


class Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "Epoch99.pth": lambda p: save_legacy(zero_dce_state(), p),
    "Epoch99_pp.pth": lambda p: save_zip(zero_dce_pp_state(), p),
    "ReFusion_IVIF.pth": lambda p: save_zip(refusion_state(), p),
    "DF_model_Epoch99.npz": lambda p: np.savez(p, *deepfuse_arrays().values()) or p,
    "iphone_orig": lambda p: write_tf_checkpoint(p, dped_arrays()),
    "zero_dce.ckpt": lambda p: lightning_ckpt(zero_dce_state(), "net.", p, variant="zero_dce"),
    "zero_dce_pp.ckpt": lambda p: lightning_ckpt(zero_dce_pp_state(), "net.", p),
    "refusion.ckpt": lambda p: lightning_ckpt(fusion_state(), "fusion.", p, task="ivif"),
    "deepfuse.ckpt": lambda p: lightning_ckpt(DeepFuseNet("official").state_dict(), "net.", p),
    "other.pth": lambda p: save_zip({"encoder.weight": torch.zeros(4, 3), "head.bias": torch.zeros(4)}, p),
    "list.pth": lambda p: save_zip([1, 2], p),
    "notes.txt": lambda p: p.write_text("Zero-DCE weights: see the README\n") or p,
    "lfs.pth": lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab12\nsize 320017\n")
    or p,
    "page.pth": lambda p: p.write_text("<!DOCTYPE html>\n<html><body>GitHub</body></html>\n") or p,
    "empty.pth": lambda p: p.write_bytes(b"") or p,
    "cut.pth": _truncated(lambda p: save_zip(refusion_state(), p), 0.5),
    "cut_legacy.pth": _truncated(lambda p: save_legacy(zero_dce_state(), p), 0.5),
    "cut.npz": _truncated(lambda p: np.savez(p, *deepfuse_arrays().values()) or p, 0.5),
    "zip_header.pth": lambda p: p.write_bytes(b"PK\x03\x04" + b"\0" * 40) or p,
    "image.pth": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64) or p,
    "random.bin": lambda p: p.write_bytes(bytes(range(256)) * 4) or p,
    "plain.pkl": lambda p: p.write_bytes(__import__("pickle").dumps({"a": 1}, protocol=4)) or p,
    "docs.zip": lambda p: zipfile.ZipFile(p, "w").writestr("README.md", "hi") or p,
    "evil.pth": _hostile,
}


@pytest.fixture
def fake(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path)


def _one_line(err: BaseException, path: Path) -> str:
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.startswith(f"{path}: "), msg
    assert not any(u in msg for u in UNSAFE), msg
    return msg


# --------------------------------------------------------------------------- sniff / identify
SNIFFED = {
    "Epoch99.pth": ("torch", "zero_dce"),
    "Epoch99_pp.pth": ("torch", "zero_dce_pp"),
    "ReFusion_IVIF.pth": ("torch", "refusion"),
    "DF_model_Epoch99.npz": ("npz", "deepfuse"),
    "iphone_orig": ("tf", "dped"),
    "zero_dce.ckpt": ("lightning", "darkroom:zero_dce"),
    "zero_dce_pp.ckpt": ("lightning", "darkroom:zero_dce_pp"),
    "refusion.ckpt": ("lightning", "darkroom:refusion"),
    "deepfuse.ckpt": ("lightning", "darkroom:deepfuse"),
    "other.pth": ("torch", None),
    "list.pth": ("torch", None),
    "notes.txt": ("text", None),
    "lfs.pth": ("text", None),
    "page.pth": ("text", None),
    "empty.pth": ("truncated/corrupt", None),
    "cut.pth": ("truncated/corrupt", None),
    "cut_legacy.pth": ("truncated/corrupt", None),
    "cut.npz": ("truncated/corrupt", None),
    "zip_header.pth": ("truncated/corrupt", None),
    "image.pth": ("unknown", None),
    "random.bin": ("unknown", None),
    "plain.pkl": ("unknown", None),
    "docs.zip": ("unknown", None),
    "evil.pth": ("torch", None),
}


@pytest.mark.parametrize("name", sorted(SNIFFED))
def test_sniff_and_identify_fakes(fake, name):
    path = fake(name)
    kind, identity = SNIFFED[name]
    assert sniff_weights(path) == kind and kind in KINDS
    assert identify_weights(path) == identity
    if name == "evil.pth":
        assert not path.with_suffix(".pwned").exists()  # inspected, never unpickled


def test_tf_checkpoint_index_and_data_shard(fake):
    prefix = fake("iphone_orig")
    for path in (prefix, Path(f"{prefix}.index"), Path(f"{prefix}.data-00000-of-00001")):
        assert (sniff_weights(path), identify_weights(path)) == ("tf", "dped")
    assert len(inspect_weights(prefix).tensors) == 40


def test_what_the_text_is(fake):
    assert "Git LFS pointer" in inspect_weights(fake("lfs.pth")).what
    assert "HTML page" in inspect_weights(fake("page.pth")).what
    assert "'Zero-DCE weights: see the README'" in inspect_weights(fake("notes.txt")).what
    assert inspect_weights(fake("empty.pth")).what == "an empty file (0 bytes)"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        sniff_weights(fake.root / "nowhere.pth")


def test_darkroom_checkpoint_identified_by_its_class(tmp_path):
    path = tmp_path / "any.ckpt"
    torch.save({"state_dict": {"net.x": torch.zeros(1)}, "global_step": 0, "darkroom": {
        "model_class": "lightning_modules.dped.DPED"}, "hyper_parameters": {}}, path)
    assert identify_weights(path) == "darkroom:dped"
    torch.save({"state_dict": {}, "global_step": 0, "hyper_parameters": {
        "_class_path": "lightning_modules.zero_dce.ZeroDCE", "variant": "zero_dce_pp"}}, path)
    assert identify_weights(path) == "darkroom:zero_dce_pp"


# --------------------------------------------------------------------------- the real files (shared data)
def _tensors_txt(path: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    """``## <file>`` section → name → shape, from a tensors.txt listing (one unnamed section when no header)."""
    sections: dict[str, dict[str, tuple[int, ...]]] = {}
    current = sections.setdefault("", {})
    for line in path.read_text().splitlines():
        if m := re.match(r"## (\S+)", line):
            current = sections.setdefault(m.group(1), {})
        elif m := re.match(r"(\S+)\s+float32\s+[\[(]([\d, ]*)[\])]", line):
            current[m.group(1)] = tuple(int(s) for s in m.group(2).replace(" ", "").split(",") if s)
    return {k: v for k, v in sections.items() if v}


REAL = {  # shared path → (kind, identity, tensors.txt, section, fake)
    "weights/zero_dce/Epoch99.pth": ("torch", "zero_dce", "weights/zero_dce/tensors.txt", "Epoch99.pth",
                                     "Epoch99.pth"),
    "weights/zero_dce_pp/Epoch99.pth": ("torch", "zero_dce_pp", "weights/zero_dce_pp/tensors.txt", "Epoch99.pth",
                                        "Epoch99_pp.pth"),
    "weights/deepfuse/DF_model_Epoch99.npz": ("npz", "deepfuse", "weights/deepfuse/tensors.txt", "",
                                              "DF_model_Epoch99.npz"),
    **{f"weights/dped/{p}_orig": ("tf", "dped", "weights/dped/tensors.txt", f"{p}_orig", "iphone_orig")
       for p in ("iphone", "sony", "blackberry")},
    **{f"weights/refusion/ReFusion_{t}.pth": ("torch", "refusion", "weights/refusion/tensors.txt",
                                              f"ReFusion_{t}.pth", "ReFusion_IVIF.pth")
       for t in ("IVIF", "MEIF", "MFIF", "MIF")},
}


@pytest.mark.parametrize("rel", sorted(REAL))
def test_real_weights_and_fakes_match_tensors_txt(rel, shared, fake):
    kind, identity, listing, section, fake_name = REAL[rel]
    real = shared(rel) if not rel.startswith("weights/dped/") else shared(rel + ".index").with_suffix("")
    found = inspect_weights(real)
    assert (found.kind, found.identity) == (kind, identity)
    expected = _tensors_txt(shared(listing))[section]
    assert found.tensors == expected  # names and shapes as listed
    assert inspect_weights(fake(fake_name)).tensors == expected  # the fakes of these tests are faithful


# --------------------------------------------------------------------------- the loaders refuse wrong files
LOADERS: dict[str, Callable[[Path], object]] = {
    "Zero-DCE": load_official_weights,
    "Zero-DCE++": lambda p: load_official_weights(p, "zero_dce_pp"),
    "DeepFuse": load_official_deepfuse,
    "DPED": load_official_dped,
    "ReFusion": load_official_refusion,
}
WRONG = [  # (loader, file, what the message says it is)
    ("Zero-DCE", "DF_model_Epoch99.npz", "a NumPy .npz (looks like the official DeepFuse weights)"),
    ("Zero-DCE", "notes.txt", "a text file, not weights (it starts 'Zero-DCE weights: see the README')"),
    ("Zero-DCE", "lfs.pth", "a Git LFS pointer, not the weights"),
    ("Zero-DCE", "ReFusion_IVIF.pth", "a PyTorch state dict (looks like the official ReFusion weights)"),
    ("Zero-DCE", "Epoch99_pp.pth", "a PyTorch state dict (looks like the official Zero-DCE++ weights)"),
    ("Zero-DCE++", "Epoch99.pth", "a PyTorch state dict (looks like the official Zero-DCE weights)"),
    ("Zero-DCE", "refusion.ckpt", "a Lightning checkpoint (looks like a Darkroom ReFusion checkpoint)"),
    ("Zero-DCE", "cut_legacy.pth", "a truncated or corrupt PyTorch file"),
    ("Zero-DCE", "empty.pth", "an empty file (0 bytes)"),
    ("Zero-DCE", "evil.pth", "a PyTorch file holding objects other than tensors (not unpickled)"),
    ("Zero-DCE", "iphone_orig.index", "a TensorFlow checkpoint index (looks like the official DPED weights)"),
    ("DeepFuse", "Epoch99.pth", "a PyTorch state dict (looks like the official Zero-DCE weights)"),
    ("DeepFuse", "ReFusion_IVIF.pth", "a PyTorch state dict (looks like the official ReFusion weights)"),
    ("DeepFuse", "evil.pth", "a PyTorch file holding objects other than tensors (not unpickled)"),
    ("DeepFuse", "cut.npz", "a truncated or corrupt zip archive ("),
    ("DeepFuse", "page.pth", "an HTML page, not the weights"),
    ("DeepFuse", "empty.pth", "an empty file (0 bytes)"),
    ("DPED", "Epoch99.pth", "a PyTorch state dict (looks like the official Zero-DCE weights)"),
    ("DPED", "DF_model_Epoch99.npz", "a NumPy .npz (looks like the official DeepFuse weights)"),
    ("DPED", "notes.txt", "a text file, not weights"),
    ("ReFusion", "Epoch99.pth", "a PyTorch state dict (looks like the official Zero-DCE weights)"),
    ("ReFusion", "DF_model_Epoch99.npz", "a NumPy .npz (looks like the official DeepFuse weights)"),
    ("ReFusion", "iphone_orig.index", "a TensorFlow checkpoint index (looks like the official DPED weights)"),
    ("ReFusion", "cut.pth", "a truncated or corrupt zip archive ("),
    ("ReFusion", "zip_header.pth", "a truncated or corrupt zip archive ("),
    ("ReFusion", "image.pth", "a PNG image, not weights"),
    ("ReFusion", "empty.pth", "an empty file (0 bytes)"),
    ("ReFusion", "evil.pth", "a PyTorch file holding objects other than tensors (not unpickled)"),
]


@pytest.mark.parametrize(("loader", "name", "what"), WRONG, ids=[f"{a}-{b}" for a, b, _ in WRONG])
def test_loaders_refuse_wrong_files_in_one_line(fake, loader, name, what):
    path = fake(name)
    with pytest.raises(WeightFileError) as err:
        LOADERS[loader](path)
    msg = _one_line(err.value, path)
    assert msg.startswith(f"{path}: {what}"), msg
    assert f", but {loader} expects " in msg
    assert not path.with_suffix(".pwned").exists()


def test_exact_messages(fake):
    npz, cut = fake("DF_model_Epoch99.npz"), fake("cut.pth")
    with pytest.raises(WeightFileError) as err:
        load_official_weights(npz)
    assert str(err.value) == (f"{npz}: a NumPy .npz (looks like the official DeepFuse weights), but Zero-DCE expects "
                              "the official Zero-DCE .pth (torch state dict e_conv1…e_conv7)")
    with pytest.raises(WeightFileError) as err:
        load_official_refusion(cut)
    assert str(err.value) == (f"{cut}: a truncated or corrupt zip archive ({cut.stat().st_size:,} bytes, no central "
                              "directory at its end: cut short?), but ReFusion expects an official ReFusion .pth "
                              "(ReFusion_<TASK>.pth: torch state dict of the fusion network)")
    hint = "; a Darkroom .ckpt loads through the module's pretrained argument"
    with pytest.raises(WeightFileError, match=re.escape(hint)):
        load_official_weights(fake("zero_dce.ckpt"))


def test_weight_file_error_is_the_checkpoint_error():
    assert CheckpointError is WeightFileError and issubclass(WeightFileError, ValueError)


# --------------------------------------------------------------------------- the right files still load
def test_right_fakes_load(fake):
    assert torch.equal(load_official_weights(fake("Epoch99.pth")).e_conv7.weight, zero_dce_state()["e_conv7.weight"])
    pp = load_official_weights(fake("Epoch99_pp.pth"), "zero_dce_pp")
    assert torch.equal(pp.e_conv1.depth_conv.weight, zero_dce_pp_state()["e_conv1.depth_conv.weight"])
    net = load_official_deepfuse(fake("DF_model_Epoch99.npz"))
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d)).weight.detach().numpy()
    np.testing.assert_array_equal(first, deepfuse_arrays()["arr_0"][:, :, ::-1, ::-1])
    ref = load_official_refusion(fake("ReFusion_IVIF.pth"))
    assert torch.equal(ref.state_dict()["FM.temperature1"], refusion_state()["FM.temperature1"])
    prefix = fake("iphone_orig")
    w1 = torch.from_numpy(dped_arrays()["generator/W1"]).permute(3, 2, 0, 1)
    for given in (prefix, Path(f"{prefix}.index"), Path(f"{prefix}.data-00000-of-00001")):
        assert torch.equal(load_official_dped(given).conv_in.weight, w1)


def test_near_misses_keep_the_readers_own_messages(fake, tmp_path):
    """A file of the right kind whose tensors fit no paper is judged by the reader (which key, which shape)."""
    with pytest.raises(ValueError, match="state dict") as err:
        load_official_weights(fake("list.pth"))
    assert not isinstance(err.value, WeightFileError)
    with pytest.raises(ValueError, match="does not fit the official zero_dce network"):
        load_official_weights(fake("other.pth"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, *[np.zeros((2, 2, 3, 3), np.float32)] * 6)
    with pytest.raises(ValueError, match="arr_0 has shape"):
        load_official_deepfuse(bad)
    assert check_weights(fake.root / "absent.pth", "zero_dce") is None  # the reader says which file is missing


# --------------------------------------------------------------------------- the modules' pretrained=
def _zero_dce(path: Path):
    from lightning_modules.zero_dce import ZeroDCE
    return ZeroDCE(pretrained=str(path))


def _zero_dce_pp(path: Path):
    from lightning_modules.zero_dce import ZeroDCE
    return ZeroDCE(variant="zero_dce_pp", pretrained=str(path))


def _deepfuse(path: Path):
    from lightning_modules.deepfuse import DeepFuse
    return DeepFuse(net=DeepFuseNet("official"), pretrained=str(path))


def _dped(path: Path):
    from lightning_modules.dped import DPED, DPEDDiscriminator, DPEDGenerator
    return DPED(pretrained=str(path), generator=DPEDGenerator(), discriminator=DPEDDiscriminator(width=0.125))


def _refusion(path: Path):
    from lightning_modules.refusion import ReFusion
    return ReFusion(pretrained=str(path))


MODULES = {"Zero-DCE": _zero_dce, "Zero-DCE++": _zero_dce_pp, "DeepFuse": _deepfuse, "DPED": _dped,
           "ReFusion": _refusion}
MODULE_WRONG = [
    ("Zero-DCE", "DF_model_Epoch99.npz", "a NumPy .npz (looks like the official DeepFuse weights)"),
    ("Zero-DCE", "refusion.ckpt", "a Lightning checkpoint (looks like a Darkroom ReFusion checkpoint)"),
    ("Zero-DCE", "ReFusion_IVIF.pth", "a PyTorch state dict (looks like the official ReFusion weights)"),
    ("Zero-DCE++", "Epoch99.pth", "a PyTorch state dict (looks like the official Zero-DCE weights)"),
    ("Zero-DCE", "deepfuse.ckpt", "a Lightning checkpoint (looks like a Darkroom DeepFuse checkpoint)"),
    ("Zero-DCE", "notes.txt", "a text file, not weights"),
    ("Zero-DCE", "iphone_orig", "a TensorFlow checkpoint (looks like the official DPED weights)"),
    ("DeepFuse", "Epoch99.pth", "a PyTorch state dict (looks like the official Zero-DCE weights)"),
    ("DeepFuse", "zero_dce.ckpt", "a Lightning checkpoint (looks like a Darkroom Zero-DCE checkpoint)"),
    ("DPED", "ReFusion_IVIF.pth", "a PyTorch state dict (looks like the official ReFusion weights)"),
    ("DPED", "empty.pth", "an empty file (0 bytes)"),
    ("ReFusion", "DF_model_Epoch99.npz", "a NumPy .npz (looks like the official DeepFuse weights)"),
    ("ReFusion", "cut.pth", "a truncated or corrupt zip archive ("),
    ("Zero-DCE", "evil.pth", "a PyTorch file holding objects other than tensors (not unpickled)"),
]


@pytest.mark.parametrize(("module", "name", "what"), MODULE_WRONG, ids=[f"{a}-{b}" for a, b, _ in MODULE_WRONG])
def test_modules_refuse_wrong_files_in_one_line(fake, module, name, what):
    path = fake(name)
    with pytest.raises(WeightFileError) as err:
        MODULES[module](path)
    msg = _one_line(err.value, path)
    assert msg.startswith(f"{path}: {what}") and f", but {module} expects " in msg, msg
    assert msg.endswith(" or a Darkroom .ckpt"), msg


def test_module_message_exact(fake):
    npz = fake("DF_model_Epoch99.npz")
    with pytest.raises(WeightFileError) as err:
        _zero_dce(npz)
    assert str(err.value) == (f"{npz}: a NumPy .npz (looks like the official DeepFuse weights), but Zero-DCE expects "
                              "the official Zero-DCE .pth (torch state dict e_conv1…e_conv7) or a Darkroom .ckpt")


def test_modules_load_right_files(fake, tmp_path):
    """Official fakes and Darkroom checkpoints of the paper load; a Lightning checkpoint named .pth is read as one."""
    official = _zero_dce(fake("Epoch99.pth"))
    assert torch.equal(official.net.e_conv7.bias, zero_dce_state()["e_conv7.bias"])
    from_ckpt = _zero_dce(fake("zero_dce.ckpt"))
    assert torch.equal(from_ckpt.net.e_conv7.bias, zero_dce_state()["e_conv7.bias"])
    renamed = tmp_path / "last.pth"
    renamed.write_bytes(fake("zero_dce.ckpt").read_bytes())
    assert torch.equal(_zero_dce(renamed).net.e_conv1.weight, zero_dce_state()["e_conv1.weight"])
    assert torch.equal(_refusion(fake("refusion.ckpt")).fusion.state_dict()["FM.temperature1"],
                       refusion_state()["FM.temperature1"])


def test_truncated_ckpt_keeps_the_checkpoint_readers_message(fake, tmp_path):
    cut = tmp_path / "cut.ckpt"
    data = fake("zero_dce.ckpt").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightFileError, match=re.escape(f"{cut}: not a readable Darkroom checkpoint (truncated or "
                                                        "corrupt: ")):
        _zero_dce(cut)


def test_cli_pretrained_wrong_file_is_the_one_line(fake, sice_root, tmp_path):
    """``darkroom test --model.init_args.pretrained <the DeepFuse .npz>``: the one line, not jsonargparse's wall."""
    from helpers import fast_args, zero_dce_args

    from experiments.cli import cli_main

    npz = fake("DF_model_Epoch99.npz")
    config = Path(__file__).resolve().parents[1] / "experiments" / "zero_dce" / "paper.yaml"
    with pytest.raises(WeightFileError) as err:
        cli_main(["test", "-c", str(config), *zero_dce_args(sice_root, val=False),
                  *fast_args(tmp_path, val=None, summary=False), "--model.init_args.pretrained", str(npz)])
    assert _one_line(err.value, npz).endswith("but Zero-DCE expects the official Zero-DCE .pth (torch state dict "
                                              "e_conv1…e_conv7) or a Darkroom .ckpt")
