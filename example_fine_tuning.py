"""Train the network used as feature extractor by utils_FID.py and the evaluation report.

* ``arch="domain_cnn"`` (default, fully offline): a small CNN trained from scratch on the
  class-labelled images (SAR classes F..O, MNIST digits, ...).
* ``arch="vgg16"`` / ``"inception"``: torchvision networks initialised from a *local*
  weights file (``weights_path``: a torchvision state_dict, e.g. ImageNet, or a previous
  checkpoint of this script); the final layer is replaced when the class count differs and,
  unless ``train_all_layers``, only that layer is trained.
* ``random_init=True`` (domain_cnn only, for unlabelled data such as InSAR fields): no
  training; writes a seeded random-initialised DomainCNN. Its features are random local
  filter-response statistics: FID/precision/recall with it compare texture statistics of the
  two sets, carry no semantic meaning, and are comparable only between evaluations that use
  the same checkpoint file.

Writes ``{out_folder}/classifier_best.pt`` (best validation accuracy), ``options.json``,
``history.json`` and tensorboard logs.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from improved_diffusion.checkpoint import check_free
from utils.evaluation.features import ARCHS, build_classifier, load_classifier, replace_head
from utils.evaluation.fine_tuning import BEST_NAME, labelled_datasets, save_classifier, train_classifier


def _start_run(out: Path, options: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "options.json").write_text(json.dumps(options, indent=1))


def main(
    out_folder: str = "models_data/feature_cnn",  # folder for classifier_best.pt, logs and options (created)
    data_train_dir: str | None = None,  # class-labelled image folder (class = name up to first "_")
    data_val_dir: str | None = None,    # validation image folder, same classes
    arch: str = "domain_cnn",           # "domain_cnn", "vgg16" or "inception"
    weights_path: str | None = None,    # local weights file to start from (required for vgg16/inception)
    random_init: bool = False,          # domain_cnn only: write a seeded random-init network, no training
    num_channels: int = 1,              # image channels read from the files (1 grayscale, 3 RGB)
    image_size: int = 32,               # training size in px (resize, or random crop when crop=True)
    crop: bool = False,                 # random crops of image_size (centre crops for validation)
    resize_to: int = 299,               # inception only: network input size in px (>= 75)
    width: int = 32,                    # domain_cnn: channels of the first block (features = 8 * width)
    batch_size: int = 64,               # images per optimisation step
    lr: float = 1e-3,                   # Adam learning rate (halved on a 5-epoch val-loss plateau)
    num_epochs: int = 20,               # training epochs
    train_all_layers: bool = False,     # vgg16/inception: also train the pretrained layers
    seed: int = 0,                      # seed of initialisation, shuffling and crops
    num_workers: int = 0,               # data loader worker processes
    device: str = "cpu",                # torch device
    overwrite: bool = False,            # allow replacing an existing classifier_best.pt
) -> dict:
    """Train (or random-initialise) a classifier; returns the resolved options and results."""
    options = dict(locals())
    out = Path(out_folder)
    if arch not in ARCHS:
        raise ValueError(f"arch={arch!r}: expected one of {ARCHS}")
    check_free([out / BEST_NAME], overwrite, key="out_folder")
    if random_init and arch != "domain_cnn":
        raise ValueError(f"random_init=True needs arch='domain_cnn', got arch={arch!r}")
    if arch != "domain_cnn" and weights_path is None:
        raise ValueError(f"weights_path=None: arch={arch!r} starts from a local weights file "
                         "(no download is possible); use arch='domain_cnn' to train from scratch")
    if num_epochs < 1 or batch_size < 1 or image_size < 1:
        raise ValueError(f"num_epochs={num_epochs}, batch_size={batch_size}, image_size={image_size}: "
                         "expected positive integers")
    torch.manual_seed(seed)
    meta = {"arch": arch, "data_channels": num_channels, "image_size": image_size, "resize_to": resize_to}
    if random_init:
        _start_run(out, options)
        model = build_classifier("domain_cnn", 1, num_channels, width)
        path = save_classifier(out / BEST_NAME, model, {**meta, "num_classes": 1, "class_names": [],
                                                        "training": f"random_init(seed={seed})"})
        return {"options": options, "best_path": str(path)}
    if data_train_dir is None or data_val_dir is None:
        raise ValueError("data_train_dir / data_val_dir: both are required unless random_init=True")
    train_set, val_set, class_names = labelled_datasets(data_train_dir, data_val_dir, num_channels, image_size, crop)
    if weights_path is None:
        model, training = build_classifier(arch, len(class_names), num_channels, width), "from_scratch"
    else:
        model, loaded = load_classifier(weights_path, arch=arch)
        if loaded["num_classes"] != len(class_names):
            model = replace_head(model, arch, len(class_names))
        training = f"fine_tuned_from:{Path(weights_path).name}"
    meta.update(num_classes=len(class_names), class_names=class_names, training=training)
    _start_run(out, options)
    result = train_classifier(model, arch, train_set, val_set, out, meta=meta, num_epochs=num_epochs, lr=lr,
                              batch_size=batch_size, train_all_layers=train_all_layers or arch == "domain_cnn",
                              resize_to=resize_to, device=device, num_workers=num_workers, seed=seed)
    return {"options": options, **result}


def summary_line(result: dict) -> str:
    """One printable line: what was written and, after training, the best validation accuracy."""
    if "best_val_accuracy" not in result:
        return f"[fine_tuning] random-init {result['options']['arch']} written to {result['best_path']}"
    return (f"[fine_tuning] best validation accuracy {result['best_val_accuracy']:.3f} at epoch "
            f"{result['best_epoch']}; classifier written to {result['best_path']} (use it as --extractor_path)")


if __name__ == "__main__":
    from utils.cli import run_cli

    print(summary_line(run_cli(main)))
