"""Feature extractors for FID, precision/recall and the memorisation check.

Every network is built locally and loaded from a local file; nothing is ever downloaded.

* ``"inception"``: torchvision InceptionV3 (``aux_logits=False``); features of block 64, 192,
  768 or 2048 (the pool features), spatially averaged. Input: model units [-1, 1], grayscale
  repeated to 3 channels, bilinear resize to ``resize_to`` px (299 by default, at least 75).
  That input range is the one torchvision's ImageNet Inception weights expect after their
  ``transform_input`` step.
* ``"vgg16"``: torchvision VGG16, penultimate features (second 4096-d fully connected layer
  after its ReLU). Input: [-1, 1] mapped to [0, 1] then ImageNet mean/std normalisation,
  grayscale repeated to 3 channels, native size (at least 32 px).
* ``"domain_cnn"``: :class:`DomainCNN`, a small CNN trained from scratch on the dataset's
  classes by ``example_fine_tuning.py``, or for unlabelled data self-supervised on the training
  images (SimCLR, :mod:`utils.evaluation.contrastive`; the head is then the projection);
  features are its global-average-pooled last block. Input as stored (model units), any
  channel count.

Weights files: a checkpoint written by ``example_fine_tuning.py`` (a dict with ``arch`` and
``state_dict``), a plain torchvision state_dict (ImageNet head or any class count), or a
state_dict of the original fine-tuning code (Inception ``fc.0.*`` keys are accepted).
"""
from __future__ import annotations

import hashlib
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception_v3, vgg16
from tqdm import tqdm

from improved_diffusion.file_io import atomic_write, file_sha256, safe_torch_load

ARCHS = ("inception", "vgg16", "domain_cnn")
INCEPTION_BLOCK_ENDS = {64: "maxpool1", 192: "maxpool2", 768: "Mixed_6e", 2048: "Mixed_7c"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DomainCNN(nn.Module):
    """Four conv blocks (3x3 conv, BatchNorm, ReLU, x2), max-pool between blocks, global
    average pooling -> a ``8 * width`` feature vector, linear head -> class logits."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()
        blocks, c_in = [], in_channels
        for i in range(4):
            c_out = width * 2 ** i
            blocks.append(nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.MaxPool2d(2) if i < 3 else nn.Identity()))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, num_classes)
        self.feature_dim = c_in

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, 8 * width) pooled features."""
        return self.blocks(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def head_of(model: nn.Module, arch: str) -> nn.Linear:
    """The final linear layer (class logits) of a classifier."""
    layers = {"inception": lambda: model.fc, "vgg16": lambda: model.classifier[6], "domain_cnn": lambda: model.head}
    return layers[arch]()


def replace_head(model: nn.Module, arch: str, num_classes: int) -> nn.Module:
    """Give ``model`` a freshly initialised final linear layer with ``num_classes`` outputs."""
    new = nn.Linear(head_of(model, arch).in_features, num_classes)
    if arch == "inception":
        model.fc = new
    elif arch == "vgg16":
        model.classifier[6] = new
    else:
        model.head = new
    return model


def build_classifier(arch: str, num_classes: int, in_channels: int = 1, width: int = 32) -> nn.Module:
    """A randomly initialised classifier of the given architecture and class count."""
    if arch == "inception":
        # weights always come from a file for this architecture: skip the slow random init
        return replace_head(inception_v3(weights=None, aux_logits=False, init_weights=False), arch, num_classes)
    if arch == "vgg16":
        return replace_head(vgg16(weights=None), arch, num_classes)
    if arch == "domain_cnn":
        return DomainCNN(in_channels, num_classes, width)
    raise ValueError(f"arch={arch!r}: expected one of {ARCHS}")


def prepare_input(x: torch.Tensor, arch: str, resize_to: int = 299) -> torch.Tensor:
    """Map a (N, C, H, W) batch in model units to what ``arch`` expects (see module doc)."""
    if arch == "domain_cnn":
        return x
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    elif x.shape[1] != 3:
        raise ValueError(f"arch={arch!r} needs 1 or 3 channels, got a batch with {x.shape[1]}")
    if arch == "inception":
        if resize_to < 75:
            raise ValueError(f"resize_to={resize_to!r}: InceptionV3 needs at least 75 px")
        return F.interpolate(x, size=(resize_to, resize_to), mode="bilinear", align_corners=False)
    if min(x.shape[2:]) < 32:
        raise ValueError(f"arch='vgg16' needs at least 32 px, got {tuple(x.shape[2:])}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


def _infer_arch(state_dict: dict) -> str:
    if any(k.startswith("Mixed_7c.") for k in state_dict):
        return "inception"
    if "classifier.6.weight" in state_dict:
        return "vgg16"
    if "head.weight" in state_dict:
        return "domain_cnn"
    raise ValueError("weights file: not an InceptionV3, VGG16 or DomainCNN state_dict")


def load_classifier(path: str | Path, arch: str | None = None) -> tuple[nn.Module, dict]:
    """Load a classifier from a local weights file (formats in the module doc).

    Returns ``(model in eval mode, metadata dict)``; the metadata holds ``arch``,
    ``num_classes``, ``in_channels`` and, for our checkpoints, ``class_names`` etc.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"extractor_path={str(path)!r}: no such file (train one with "
                                "example_fine_tuning.py or give a local torchvision weights file)")
    saved = safe_torch_load(path)
    if isinstance(saved, dict) and "state_dict" in saved:
        meta = {k: v for k, v in saved.items() if k != "state_dict"}
        state = saved["state_dict"]
    else:
        state, meta = saved, {}
    state = {k.replace("fc.0.", "fc.", 1) if k.startswith("fc.0.") else k: v for k, v in state.items()
             if not k.startswith("AuxLogits.")}
    found = meta.get("arch") or _infer_arch(state)
    if arch is not None and arch != found:
        raise ValueError(f"extractor={arch!r} but {str(path)!r} holds a {found!r} network")
    head = {"inception": "fc.weight", "vgg16": "classifier.6.weight", "domain_cnn": "head.weight"}[found]
    num_classes = int(state[head].shape[0])
    in_channels, width = 3, 32
    if found == "domain_cnn":
        width, in_channels = (int(n) for n in state["blocks.0.0.weight"].shape[:2])
    model = build_classifier(found, num_classes, in_channels, width)
    model.load_state_dict(state)
    model.eval()
    meta.update(arch=found, num_classes=num_classes, in_channels=in_channels)
    return model, meta


class FeatureExtractor(nn.Module):
    """(N, C, H, W) batch in model units -> (N, dim) features; see :func:`load_extractor`."""

    def __init__(self, classifier: nn.Module, arch: str, layer: int | None, resize_to: int, digest: str):
        super().__init__()
        self.net, self.arch, self.resize_to, self.digest = classifier, arch, resize_to, digest
        if arch == "inception":
            layer = 2048 if layer is None else layer
            if layer not in INCEPTION_BLOCK_ENDS:
                raise ValueError(f"layer={layer!r}: InceptionV3 blocks are {sorted(INCEPTION_BLOCK_ENDS)}")
        elif layer is not None:
            raise ValueError(f"layer={layer!r}: only the InceptionV3 extractor has layers (pass None)")
        self.layer = layer
        self.dim = {"inception": layer, "vgg16": 4096, "domain_cnn": getattr(classifier, "feature_dim", 0)}[arch]
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = prepare_input(x, self.arch, self.resize_to)
        if self.arch == "domain_cnn":
            return self.net.features(x)
        if self.arch == "vgg16":
            h = torch.flatten(self.net.avgpool(self.net.features(x)), 1)
            return self.net.classifier[:5](h)
        end = INCEPTION_BLOCK_ENDS[self.layer]
        for name, module in self.net.named_children():
            x = module(x)
            if name == end:
                break
        return x.mean(dim=(2, 3))

    @torch.no_grad()
    def extract(self, images: np.ndarray, batch_size: int = 64, device: str = "cpu",
                progress: bool = True) -> np.ndarray:
        """Features of NHWC float images (model units) as an (N, dim) float64 array."""
        if images.ndim != 4:
            raise ValueError(f"images: shape {images.shape}, expected NHWC")
        if np.isnan(images).any():
            raise ValueError("images contain NaN: fill or drop masked pixels before extracting features")
        self.to(device).eval()
        out = []
        for start in tqdm(range(0, len(images), batch_size), desc=f"features ({self.arch})",
                          disable=not progress, leave=False):
            batch = torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2).to(device)
            out.append(self(batch.float()).double().cpu().numpy())
        return np.concatenate(out)

    def description(self) -> dict:
        """What identifies these features (used in cache keys and reports)."""
        resize_to = self.resize_to if self.arch == "inception" else None
        return {"arch": self.arch, "layer": self.layer, "resize_to": resize_to,
                "weights_sha256": self.digest, "dim": self.dim, "precision": "float32"}


def load_extractor(extractor: str, extractor_path: str | Path, layer: int | None = None,
                   resize_to: int = 299) -> FeatureExtractor:
    """Build a feature extractor of kind ``extractor`` (one of ``ARCHS``) from a local file.

    ``layer``: InceptionV3 block dimension (64, 192, 768, 2048; default 2048), None otherwise.
    ``resize_to``: InceptionV3 input size in px (>= 75).
    """
    if extractor not in ARCHS:
        raise ValueError(f"extractor={extractor!r}: expected one of {ARCHS}")
    model, _ = load_classifier(extractor_path, arch=extractor)
    return FeatureExtractor(model, extractor, layer, resize_to, file_sha256(extractor_path))


def extract_cached(extractor: FeatureExtractor, images: np.ndarray, cache_dir: str | Path | None = None,
                   batch_size: int = 64, device: str = "cpu", progress: bool = True) -> np.ndarray:
    """:meth:`FeatureExtractor.extract`, reusing features saved under ``cache_dir``.

    The cache file is named by a hash of the image bytes and shape (hence the data and the
    sample count), the extractor weights digest, its layer, input size and precision, so a changed
    dataset, extractor or subset never reuses stale features.
    """
    if cache_dir is None:
        return extractor.extract(images, batch_size, device, progress)
    images = np.ascontiguousarray(images, dtype=np.float32)
    h = hashlib.sha256(json.dumps(extractor.description(), sort_keys=True).encode())
    h.update(str(images.shape).encode())
    h.update(images.tobytes())
    path = Path(cache_dir) / f"features_{h.hexdigest()[:32]}.npz"
    cached = _read_feature_cache(path, len(images))
    if cached is not None:
        return cached
    features = extractor.extract(images, batch_size, device, progress)
    _write_feature_cache(path, features, extractor.description())
    return features


def _write_feature_cache(path: Path, features: np.ndarray, description: dict) -> None:
    """Save (N, D) features and the extractor's description to the cache file `path` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def save(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, features=features, description=json.dumps(description))
    atomic_write(path, save)


def _read_feature_cache(path: Path, num_images: int) -> np.ndarray | None:
    """Features (num_images, D) of a cache file; None when there is none, or (with a warning naming the file)
    when it is unreadable (e.g. truncated by a killed run), so that the caller rebuilds it."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as saved:
            features = saved["features"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        warnings.warn(f"feature cache {path} is unreadable ({type(err).__name__}: {err}); rebuilding it",
                      stacklevel=3)
        return None
    if features.ndim != 2 or len(features) != num_images:
        warnings.warn(f"feature cache {path} holds features of shape {features.shape}, expected ({num_images}, D); "
                      "rebuilding it", stacklevel=3)
        return None
    return features
