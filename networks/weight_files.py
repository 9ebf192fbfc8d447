"""What a weights file is, judged before it is loaded, and the one error a wrong file gives.

A researcher who hands Zero-DCE the DeepFuse ``.npz``, a Git LFS pointer or a half-downloaded ``.pth`` should read
one line that names the file, says what it is and what was expected, not a zip reader's traceback. The readers call
:func:`check_weights` first; it inspects the file by its magic bytes and structure only:

* zip archives with :mod:`zipfile` (member names; ``.npy`` headers with :func:`numpy.lib.format.read_array_header_1_0`,
  never the arrays), torch files with ``torch.load(..., weights_only=True, mmap=True)`` (tensors, containers and
  plain values only: no pickled code runs, and the tensors are mapped, not read), TF1 checkpoints with
  :func:`networks.tf_checkpoint.list_tf_checkpoint` (the index only);
* then :func:`identify_weights` names the paper and variant from the tensor names and shapes (the released files are
  listed in ``../shared/data/weights/<paper>/tensors.txt``) or, for a Darkroom ``.ckpt``, from the module class it
  records and its ``state_dict`` prefixes.

A file of the right kind whose tensors fit no paper is left to the reader, whose own messages say which key or shape
is off; a file that looks like another paper's weights, or that no reader of the paper can open, raises
:class:`WeightFileError`. Nothing here suggests an unsafe load (``allow_pickle``, ``weights_only=False``).

SOURCES: zip local-file magic ``PK\\x03\\x04`` (PKWARE APPNOTE 4.3.7); torch legacy format = a pickle whose first
object is the magic number ``0x1950a86a20f9469cfc6c`` (``torch/serialization.py`` ``MAGIC_NUMBER``), zip format =
an archive with ``<name>/data.pkl`` (``torch/serialization.py`` ``_save``); NumPy ``.npy`` header
(``numpy/lib/format.py``); TF tensor bundle = SSTable footer magic ``0xdb4775248b80fb57``
(``tensorflow/core/lib/io/format.h``, :mod:`networks.tf_checkpoint`); Lightning checkpoint keys
(``lightning/pytorch/trainer/connectors/checkpoint_connector.py`` ``dump_checkpoint``).
"""

from __future__ import annotations

import pickle
import re
import struct
import warnings
import zipfile
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from networks.tf_checkpoint import _TABLE_MAGIC, list_tf_checkpoint

__all__ = ["KINDS", "OFFICIAL_WEIGHTS", "WeightFile", "WeightFileError", "check_weights", "describe_identity",
           "identify_weights", "inspect_weights", "refuses_code", "sniff_weights", "tf_checkpoint_prefix",
           "torch_error_reason", "weight_file_error"]

#: What :func:`sniff_weights` can answer.
KINDS: tuple[str, ...] = ("lightning", "torch", "npz", "tf", "text", "truncated/corrupt", "unknown")

#: identity → (paper or variant name, the file its official reader expects, the kinds that reader opens).
OFFICIAL_WEIGHTS: dict[str, tuple[str, str, frozenset[str]]] = {
    "zero_dce": ("Zero-DCE", "the official Zero-DCE .pth (torch state dict e_conv1…e_conv7)",
                 frozenset({"torch", "lightning"})),
    "zero_dce_pp": ("Zero-DCE++", "the official Zero-DCE++ .pth (torch state dict e_conv1…e_conv7 of "
                    "depth_conv/point_conv pairs)", frozenset({"torch", "lightning"})),
    "deepfuse": ("DeepFuse", "the official DeepFuse .npz (DF_model_Epoch99.npz: NumPy arrays arr_0…arr_5)",
                 frozenset({"npz"})),
    "dped": ("DPED", "an official DPED TensorFlow checkpoint prefix (<phone>_orig, beside <phone>_orig.index and "
             "<phone>_orig.data-00000-of-00001)", frozenset({"tf"})),
    "refusion": ("ReFusion", "an official ReFusion .pth (ReFusion_<TASK>.pth: torch state dict of the fusion "
                 "network)", frozenset({"torch", "lightning"})),
}

_DARKROOM = "darkroom:"
_HEAD_BYTES = 4096
# torch/serialization.py: MAGIC_NUMBER, pickled first by the legacy format as LONG1 (opcode 0x8a, 10 bytes)
_TORCH_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_TF_DATA_SHARD = re.compile(r"^(?P<prefix>.+)\.data-\d{5}-of-\d{5}$")
# top-level modules of the released ReFusion fusion network (weights/refusion/tensors.txt; ReFusion.py class ReFusion)
_REFUSION_PARTS = frozenset({"project_in_1", "project_in_2", "encoder1", "encoder2", "FM", "decoder",
                             "project_out_0", "project_out_1"})
# Darkroom LightningModules' network attributes → paper (lightning_modules/<paper>.py ``networks``)
_DARKROOM_PREFIXES: tuple[tuple[str, str], ...] = (
    ("fusion.", "refusion"), ("loss_proposal.", "refusion"), ("reconstruction.", "refusion"),
    ("generator.", "dped"), ("discriminator.", "dped"), ("net.e_conv", "zero_dce"), ("net.pre.", "deepfuse"),
    ("net.post.", "deepfuse"))
_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation of torch.load",
                      "In PyTorch 2.6", "Re-running `torch.load`")

Shapes = dict[str, tuple[int, ...]]


class WeightFileError(ValueError):
    """A file given as weights that is not what the reader expects: another paper's weights, another format, a
    truncated or corrupt file, or (Darkroom checkpoints) a file that holds pickled code. The message is one line
    that names the file. :class:`lightning_modules.checkpoints.CheckpointError` is this class."""


@dataclass(frozen=True)
class WeightFile:
    """What :func:`inspect_weights` found.

    Attributes:
        path: the file as given (a TF checkpoint: its prefix or ``.index``).
        kind: one of :data:`KINDS`.
        what: the file in words, for messages ("a NumPy .npz", "a Git LFS pointer, not the weights …").
        tensors: tensor name → shape (a ``.ckpt``: its ``state_dict``), or ``None`` when not read.
        model_class: a Darkroom ``.ckpt``: the LightningModule class path it records.
        variant: a Darkroom ``.ckpt``: its ``hyper_parameters["variant"]``.
        identity: :func:`identify_weights`'s answer.
    """

    path: Path
    kind: str
    what: str
    tensors: Shapes | None = None
    model_class: str | None = None
    variant: str | None = None
    identity: str | None = None


# --------------------------------------------------------------------------- torch's messages


def torch_error_reason(exc: BaseException) -> str:
    """The informative line of a torch loading error (for the weights-only refusal: the line naming the refused
    global), without torch's advice on how to load the file anyway."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error:" in ln:
            rest = ln.split("WeightsUnpickler error:", 1)[1].strip() or next(iter(lines[i + 1:]), "")
            return rest.split(". Please use", 1)[0]
    for ln in lines:
        if not ln.startswith(_TORCH_BOILERPLATE) and not re.match(r"\(\d\)", ln):
            return ln
    return lines[0] if lines else ""


def refuses_code(exc: BaseException) -> bool:
    """``torch.load(weights_only=True)`` refused a global the file asks for (a function or class to call), as
    opposed to failing on garbage bytes (an unknown opcode)."""
    return (isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in str(exc)
            and not torch_error_reason(exc).startswith("Unsupported operand"))


def _first_sentence(exc: BaseException) -> str:
    """``"EOFError: Ran out of input"``: the exception type and the first sentence of its informative line."""
    reason = torch_error_reason(exc).split(". ", 1)[0].rstrip(".")
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


# --------------------------------------------------------------------------- sniffing


def _shapes(state: Any) -> Shapes:
    """Name → shape of the tensors of a (possibly wrapped) state dict."""
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        return {}
    return {str(k): tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def _is_lightning(obj: Any) -> bool:
    """A Lightning checkpoint: a dict with a ``state_dict`` and the trainer's version or step."""
    return (isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping)
            and ("pytorch-lightning_version" in obj or "global_step" in obj))


def _from_torch(path: Path, *, zipped: bool) -> WeightFile:
    """A torch file, read with ``weights_only=True`` (and memory-mapped tensors for the zip format)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy or foreign pickle protocols, mmap notes
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - zip/pickle readers raise EOFError, RuntimeError, OSError, KeyError …
        if refuses_code(exc):  # never unpickled here; the reader refuses it in its own words
            return WeightFile(path, "torch", "a PyTorch file holding objects other than tensors (not unpickled)")
        return WeightFile(path, "truncated/corrupt", f"a truncated or corrupt PyTorch file ({_first_sentence(exc)})")
    if _is_lightning(obj):
        meta = obj.get("darkroom") if isinstance(obj.get("darkroom"), Mapping) else {}
        hparams = obj.get("hyper_parameters") if isinstance(obj.get("hyper_parameters"), Mapping) else {}
        model_class = meta.get("model_class") or hparams.get("_class_path")
        variant = hparams.get("variant")
        return WeightFile(path, "lightning", "a Lightning checkpoint", _shapes(obj),
                          model_class if isinstance(model_class, str) else None,
                          variant if isinstance(variant, str) else None)
    what = "a PyTorch state dict" if isinstance(obj, Mapping) else f"a PyTorch file holding a {type(obj).__name__}"
    return WeightFile(path, "torch", what, _shapes(obj))


def _npy_shape(zf: zipfile.ZipFile, name: str) -> tuple[int, ...]:
    """The shape in a ``.npy`` member's header (the array itself is not read)."""
    with zf.open(name) as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        return tuple(read(f)[0])


def _from_zip(path: Path) -> WeightFile:
    """A zip archive: a NumPy ``.npz`` (only ``.npy`` members), a torch zip (``…/data.pkl``) or something else."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if names and all(n.endswith(".npy") for n in names):
                shapes = {n.removesuffix(".npy"): _npy_shape(zf, n) for n in names}
                return WeightFile(path, "npz", "a NumPy .npz", shapes)
    except zipfile.BadZipFile as exc:
        why = (f"{path.stat().st_size:,} bytes, no central directory at its end: cut short?"
               if "not a zip file" in str(exc) else f"BadZipFile: {str(exc).rstrip('.')}")
        return WeightFile(path, "truncated/corrupt", f"a truncated or corrupt zip archive ({why})")
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        return WeightFile(path, "truncated/corrupt",
                          f"a truncated or corrupt zip archive ({type(exc).__name__}: {str(exc).rstrip('.')})")
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return _from_torch(path, zipped=True)
    listed = ", ".join(repr(n) for n in names[:3]) + (" …" if len(names) > 3 else "")
    return WeightFile(path, "unknown", f"a zip archive of other files ({listed or 'empty'})")


def _from_tf(path: Path, prefix: Path, what: str) -> WeightFile:
    """A TF1 tensor bundle, read from its index."""
    try:
        infos = list_tf_checkpoint(prefix)
    except (ValueError, KeyError, IndexError, struct.error, OSError) as exc:
        return WeightFile(path, "truncated/corrupt", f"a truncated or corrupt TensorFlow checkpoint index ({exc})")
    return WeightFile(path, "tf", what, {name: tuple(info.shape) for name, info in infos.items()})


def _text(head: bytes) -> str | None:
    """The file in words when its first bytes are text (UTF-8, no NUL), else ``None``."""
    if b"\0" in head:
        return None
    for cut in range(4):  # the head may end inside a multi-byte character
        try:
            text = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    if sum(c.isprintable() or c.isspace() for c in text) < 0.95 * len(text):
        return None
    first = text.strip().splitlines()[0] if text.strip() else ""
    if first.startswith("version https://git-lfs"):
        return "a Git LFS pointer, not the weights (fetch them: git lfs pull)"
    if first.lower().startswith(("<!doctype html", "<html")):
        return "an HTML page, not the weights (a web page was saved instead of the raw file?)"
    excerpt = first[:40] + ("…" if len(first) > 40 else "")
    return f"a text file, not weights (it starts {excerpt!r})" if excerpt else "a text file of blanks, not weights"


def _unknown(head: bytes) -> str:
    """The file in words when no weights format fits."""
    if head.startswith(b"\x89PNG"):
        return "a PNG image, not weights"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image, not weights"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle that is not a torch.save file (not unpickled)"
    return f"a file of an unknown format (first bytes {head[:8].hex(' ')})"


def _is_tf_index(path: Path, size: int) -> bool:
    """The last 8 bytes are the SSTable footer magic."""
    if size < 8:
        return False
    with path.open("rb") as f:
        f.seek(size - 8)
        return struct.unpack("<Q", f.read(8))[0] == _TABLE_MAGIC


def tf_checkpoint_prefix(path: str | Path) -> Path | None:
    """The prefix ``P`` of the TF1 checkpoint named by ``P``, ``P.index`` or ``P.data-00000-of-00001``, or ``None``
    when ``P.index`` is not a file."""
    path = Path(path)
    shard = _TF_DATA_SHARD.match(path.name)
    prefix = (path.with_suffix("") if path.suffix == ".index"
              else path.parent / shard["prefix"] if shard else path)
    return prefix if Path(f"{prefix}.index").is_file() else None


def inspect_weights(path: str | Path) -> WeightFile:
    """Inspect a weights file by its magic bytes and structure (no code is unpickled; tensors are not read).

    Args:
        path: a file, or a TensorFlow checkpoint prefix (``…/iphone_orig`` beside ``iphone_orig.index``).

    Raises:
        FileNotFoundError: nothing at ``path`` (and no ``<path>.index``).
    """
    path = Path(path)
    prefix = tf_checkpoint_prefix(path)
    if not path.exists():
        if prefix is not None:
            return _identified(_from_tf(path, prefix, "a TensorFlow checkpoint"))
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        return WeightFile(path, "unknown", "a folder, not a file")
    size = path.stat().st_size
    if size == 0:
        return WeightFile(path, "truncated/corrupt", "an empty file (0 bytes)")
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        found = _from_zip(path)
    elif head[:1] == b"\x80" and _TORCH_LEGACY_MAGIC in head[:32]:
        found = _from_torch(path, zipped=False)
    elif _is_tf_index(path, size):
        found = _from_tf(path, path.with_suffix("") if path.suffix == ".index" else path,
                         "a TensorFlow checkpoint index")
    elif prefix is not None and _TF_DATA_SHARD.match(path.name):
        found = _from_tf(path, prefix, "the data shard of a TensorFlow checkpoint")
    elif (text := _text(head)) is not None:
        found = WeightFile(path, "text", text)
    else:
        found = WeightFile(path, "unknown", _unknown(head))
    return _identified(found)


def sniff_weights(path: str | Path) -> str:
    """The format of a weights file, one of :data:`KINDS`, judged by magic bytes and structure before any load.

    ``"lightning"``: a torch file whose top-level dict has a ``state_dict`` and ``pytorch-lightning_version`` or
    ``global_step``; ``"torch"``: any other ``torch.save`` file (zip or legacy pickle); ``"npz"``: a zip of ``.npy``
    members; ``"tf"``: a TF1 checkpoint (its prefix, ``.index`` or data shard); ``"text"``; ``"truncated/corrupt"``:
    empty, or a zip/torch/TF file that does not open; ``"unknown"``: anything else.

    Raises:
        FileNotFoundError: nothing at ``path``.
    """
    return inspect_weights(path).kind


# --------------------------------------------------------------------------- identifying


def _zero_dce(t: Shapes) -> str | None:
    """``zero_dce``: plain e_conv1…e_conv7, e_conv7 out 24 (8 iterations × RGB); ``zero_dce_pp``: depthwise-
    separable e_conv1…e_conv7, e_conv7 out 3 (weights/zero_dce*/tensors.txt)."""
    layers = {f"e_conv{i}" for i in range(1, 8)}
    if {k.split(".", 1)[0] for k in t} != layers:
        return None
    if all(re.fullmatch(r"e_conv\d\.(weight|bias)", k) for k in t):
        return "zero_dce" if t.get("e_conv7.weight", ())[:1] == (24,) else None
    if all(re.fullmatch(r"e_conv\d\.(depth_conv|point_conv)\.(weight|bias)", k) for k in t):
        return "zero_dce_pp" if t.get("e_conv7.point_conv.weight", ())[:1] == (3,) else None
    return None


def _deepfuse(t: Shapes) -> str | None:
    """arr_0…arr_5, 4-D (out, in, kh, kw), a chain from 1 channel (Y) to 1 (weights/deepfuse/tensors.txt)."""
    if set(t) != {f"arr_{i}" for i in range(6)} or any(len(s) != 4 for s in t.values()):
        return None
    chained = all(t[f"arr_{i}"][1] == t[f"arr_{i - 1}"][0] for i in range(1, 6))  # the branch sum keeps channels
    return "deepfuse" if chained and t["arr_0"][1] == 1 and t["arr_5"][0] == 1 else None


def _dped(t: Shapes) -> str | None:
    """generator/W1 … generator/W12 with biases (weights/dped/tensors.txt)."""
    ok = all(k.startswith("generator/") for k in t) and {"generator/W1", "generator/W12"} <= set(t)
    return "dped" if ok and t["generator/W1"][2:3] == (3,) else None


def _refusion(t: Shapes) -> str | None:
    """The fusion network's top-level modules only, encoder1 among them (weights/refusion/tensors.txt)."""
    parts = {k.split(".", 1)[0] for k in t}
    return "refusion" if t and parts <= _REFUSION_PARTS and "encoder1" in parts else None


def _darkroom(found: WeightFile) -> str | None:
    """A Darkroom ``.ckpt``'s paper (variant for Zero-DCE), from its recorded class or its ``state_dict`` prefixes."""
    paper = None
    m = re.match(r"lightning_modules\.(\w+)\.", found.model_class or "")
    if m and m.group(1) in OFFICIAL_WEIGHTS:
        paper = m.group(1)
    keys = list(found.tensors or {})
    if paper is None:
        paper = next((p for prefix, p in _DARKROOM_PREFIXES if any(k.startswith(prefix) for k in keys)), None)
    if paper == "zero_dce" and (found.variant == "zero_dce_pp" or (
            found.variant is None and any(k.startswith("net.e_conv") and ".depth_conv." in k for k in keys))):
        paper = "zero_dce_pp"
    return None if paper is None else _DARKROOM + paper


def _identify(found: WeightFile) -> str | None:
    t = found.tensors or {}
    if found.kind == "npz":
        return _deepfuse(t)
    if found.kind == "tf":
        return _dped(t)
    if found.kind not in ("torch", "lightning"):
        return None
    official = _zero_dce(t) or _refusion(t)
    if found.kind == "torch" and official:
        return official
    return _darkroom(found) or official


def _identified(found: WeightFile) -> WeightFile:
    return WeightFile(found.path, found.kind, found.what, found.tensors, found.model_class, found.variant,
                      _identify(found))


def identify_weights(path: str | Path) -> str | None:
    """Which paper and variant a weights file looks like, from its tensor names and shapes.

    Returns:
        an official file: ``"zero_dce"``, ``"zero_dce_pp"``, ``"deepfuse"``, ``"dped"`` or ``"refusion"``; a Darkroom
        ``.ckpt``: ``"darkroom:<paper>"`` (``"darkroom:zero_dce_pp"`` for the Zero-DCE++ variant); ``None`` when the
        file fits none of them (or was not readable).

    Raises:
        FileNotFoundError: nothing at ``path``.
    """
    return inspect_weights(path).identity


def describe_identity(identity: str) -> str:
    """``"the official DeepFuse weights"``, ``"a Darkroom ReFusion checkpoint"``."""
    if identity.startswith(_DARKROOM):
        return f"a Darkroom {OFFICIAL_WEIGHTS[identity[len(_DARKROOM):]][0]} checkpoint"
    return f"the official {OFFICIAL_WEIGHTS[identity][0]} weights"


# --------------------------------------------------------------------------- checking


def _paper(identity: str) -> str:
    key = identity.removeprefix(_DARKROOM)
    return "zero_dce" if key == "zero_dce_pp" else key


def _fits(identity: str, expected: str, darkroom_ckpt: bool) -> bool:
    if identity.startswith(_DARKROOM):  # a checkpoint's own network is checked by load_state_dict
        return darkroom_ckpt and _paper(identity) == _paper(expected)
    return identity == expected


def _looks(found: WeightFile) -> str:
    if found.identity:
        return f" (looks like {describe_identity(found.identity)})"
    if found.tensors:
        names = ", ".join(list(found.tensors)[:3]) + (" …" if len(found.tensors) > 3 else "")
        return f" ({len(found.tensors)} tensors that fit none of the papers: {names})"
    return ""


def weight_file_error(found: WeightFile, expected: str, darkroom_ckpt: bool = False) -> WeightFileError:
    """The one-line error: the file, what it is and looks like, what was expected."""
    name, wanted, _ = OFFICIAL_WEIGHTS[expected]
    wanted += " or a Darkroom .ckpt" if darkroom_ckpt else ""
    hint = ("; a Darkroom .ckpt loads through the module's pretrained argument"
            if not darkroom_ckpt and found.identity and found.identity.startswith(_DARKROOM) else "")
    message = f"{found.path}: {found.what}{_looks(found)}, but {name} expects {wanted}{hint}"
    return WeightFileError(message.replace("\r", " ").replace("\n", " "))


def check_weights(path: str | Path, expected: str, *, darkroom_ckpt: bool = False,
                  also_accept: Collection[str] = ()) -> WeightFile | None:
    """Raise :class:`WeightFileError` when ``path`` is plainly not ``expected``'s weights; call before loading.

    A file passes when its kind is one the reader opens (:data:`OFFICIAL_WEIGHTS`; ``"lightning"`` too with
    ``darkroom_ckpt``; any of ``also_accept``) and it does not look like other weights (a Darkroom checkpoint fits
    when it is of the same paper). A torch file that holds pickled objects other than tensors is refused here (never
    unpickled), unless ``"torch"`` is in ``also_accept``. A file of the right kind whose tensors fit no paper passes: the reader's own
    checks then name the missing key or wrong shape.

    Args:
        path: the file (or TF checkpoint prefix).
        expected: a key of :data:`OFFICIAL_WEIGHTS` (``"zero_dce_pp"`` for Zero-DCE++).
        darkroom_ckpt: the caller also reads Darkroom ``.ckpt`` files (``DarkroomModule.load_pretrained``).
        also_accept: further kinds the caller reads itself (it gives its own message for them).

    Returns:
        what :func:`inspect_weights` found, or ``None`` when nothing is at ``path`` (the reader says which file is
        missing and where it comes from).
    """
    try:
        found = inspect_weights(path)
    except FileNotFoundError:
        return None
    readable = OFFICIAL_WEIGHTS[expected][2] | ({"lightning"} if darkroom_ckpt else set()) | set(also_accept)
    refused = found.kind == "torch" and found.tensors is None and "torch" not in also_accept  # pickled code
    other = found.identity is not None and not _fits(found.identity, expected, darkroom_ckpt)
    if refused or other or found.kind not in readable:
        raise weight_file_error(found, expected, darkroom_ckpt)
    return found
