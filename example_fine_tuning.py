"""Train the network used as feature extractor by utils_FID.py and the evaluation report.

* ``arch="domain_cnn"`` (default, fully offline): a small CNN trained from scratch on the
  class-labelled images (SAR classes F..O, MNIST digits, ...).
* ``arch="vgg16"`` / ``"inception"``: torchvision networks initialised from a *local*
  weights file (``weights_path``: a torchvision state_dict, e.g. ImageNet, or a previous
  checkpoint of this script); the final layer is replaced when the class count differs and,
  unless ``train_all_layers``, only that layer is trained.
* ``unlabelled_data=...`` (domain_cnn only, for unlabelled data such as InSAR fields; the
  recommended extractor there): self-supervised SimCLR training on the user's own training
  data (``utils/evaluation/contrastive.py``: crops, rotations, flips; no intensity changes), a
  few minutes on CPU. ``data_val_dir`` (optional, same format) selects the epoch with the lowest
  validation loss. HDF5 data are mapped to model units with ``metadata_json``, the same mapping
  the evaluation applies, so the extractor sees what it will score; masked pixels (NaN) follow
  ``nan_policy`` as in ``utils_FID.py`` ('fill': 0 in model units, as training; 'drop': images
  with holes left out), recorded in the checkpoint (``nan_policy``, ``masked_pixels``):

      python example_fine_tuning.py --out_folder models_data/domain_cnn_insar_mixture \
          --unlabelled_data data/insar_mixture/train --data_val_dir data/insar_mixture/val \
          --key_data unwrap --metadata_json models_data/demo_mixture/metadata.json

* ``random_init=True`` (domain_cnn only): no training; writes a seeded random-initialised
  DomainCNN. Its features are random local filter-response statistics that barely separate a
  good model from a poor one; kept for comparison with earlier results.

Writes ``{out_folder}/classifier_best.pt`` (best validation accuracy, or lowest validation
contrastive loss), ``options.json``, ``history.json`` and (classifiers) tensorboard logs. Every
evaluation records the file's sha256 digest (``extractor.weights_sha256``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from improved_diffusion.checkpoint import read_metadata
from improved_diffusion.file_io import atomic_write_text, check_free
from utils.evaluation.array_io import load_image_set
from utils.evaluation.comparable import NAN_POLICIES, apply_nan_policy
from utils.evaluation.contrastive import train_contrastive
from utils.evaluation.features import ARCHS, build_classifier, load_classifier, replace_head
from utils.evaluation.fine_tuning import BEST_NAME, labelled_datasets, save_classifier, train_classifier

# what to run on the built-in data (after `make demo`): the contrastive extractor of the main job's fields
HINT = ("for unlabelled data such as the built-in InSAR fields: --unlabelled_data data/insar_mixture/train "
        "--data_val_dir data/insar_mixture/val --key_data unwrap "
        "--metadata_json models_data/demo_mixture/metadata.json --out_folder models_data/domain_cnn_insar_mixture "
        "(after make demo)")


def _start_run(out: Path, options: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "options.json", json.dumps(options, indent=1))


def _train_unlabelled(out: Path, options: dict, meta: dict) -> dict:
    """Contrastive training of a DomainCNN on ``options["unlabelled_data"]`` (see the module doc)."""
    norm = read_metadata(options["metadata_json"]).get("data_normalization") if options["metadata_json"] else None

    def load(source: str):
        images = load_image_set(source, key_data=options["key_data"], data_normalization=norm,
                                num_channels=options["num_channels"]).images
        images, _, record = apply_nan_policy(images, None, options["nan_policy"], seed=options["seed"],
                                             sources=(source, ""))
        return images, record["real"]
    images, masked = load(options["unlabelled_data"])
    val = None if options["data_val_dir"] is None else load(options["data_val_dir"])[0]
    _start_run(out, options)
    meta = {**meta, "data_channels": images.shape[-1], "image_size": images.shape[1], "data_normalization": norm,
            "nan_policy": options["nan_policy"], "masked_pixels": masked}
    return train_contrastive(images, out, val_images=val, meta=meta,
                             width=8 if options["width"] is None else options["width"],
                             crop_fraction=options["crop_fraction"], temperature=options["temperature"],
                             num_epochs=options["num_epochs"], batch_size=options["batch_size"], lr=options["lr"],
                             seed=options["seed"], device=options["device"])


def main(
    out_folder: str = "models_data/feature_cnn",  # folder for classifier_best.pt, logs and options (created)
    data_train_dir: str | None = None,  # class-labelled image folder (class = name up to first "_")
    data_val_dir: str | None = None,    # validation image folder, same classes
    arch: str = "domain_cnn",           # "domain_cnn", "vgg16" or "inception"
    weights_path: str | None = None,    # local weights file to start from (required for vgg16/inception)
    random_init: bool = False,          # domain_cnn only: write a seeded random-init network, no training
    unlabelled_data: str | None = None,  # domain_cnn only: unlabelled images/HDF5/.npz -> contrastive training
    key_data: str | None = None,        # HDF5 dataset name of unlabelled_data / data_val_dir
    metadata_json: str | None = None,   # training metadata.json: its data_normalization maps HDF5 data
    nan_policy: str = "error",          # unlabelled NaN pixels: 'error', 'fill' (0 in model units) or 'drop'
    crop_fraction: float = 0.75,        # contrastive views: crop side as a fraction of the image side
    temperature: float = 0.5,           # contrastive NT-Xent temperature
    num_channels: int = 1,              # image channels read from the files (1 grayscale, 3 RGB)
    image_size: int = 32,               # training size in px (resize, or random crop when crop=True)
    crop: bool = False,                 # random crops of image_size (centre crops for validation)
    resize_to: int = 299,               # inception only: network input size in px (>= 75)
    width: int | None = None,           # domain_cnn: first-block channels, features = 8 * width (32; 8 unlabelled)
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
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy={nan_policy!r}; expected one of {NAN_POLICIES}")
    if (random_init or unlabelled_data is not None) and arch != "domain_cnn":
        raise ValueError(f"random_init / unlabelled_data need arch='domain_cnn', got arch={arch!r}")
    if random_init and unlabelled_data is not None:
        raise ValueError("random_init=True and unlabelled_data: choose one (random_init does not train)")
    if arch != "domain_cnn" and weights_path is None:
        raise ValueError(f"weights_path=None: arch={arch!r} starts from a local weights file "
                         "(no download is possible); use arch='domain_cnn' to train from scratch")
    if num_epochs < 1 or batch_size < 1 or image_size < 1:
        raise ValueError(f"num_epochs={num_epochs}, batch_size={batch_size}, image_size={image_size}: "
                         "expected positive integers")
    torch.manual_seed(seed)
    meta = {"arch": arch, "data_channels": num_channels, "image_size": image_size, "resize_to": resize_to}
    if unlabelled_data is not None:
        return {"options": options, **_train_unlabelled(out, options, meta)}
    width = 32 if width is None else width
    if random_init:
        _start_run(out, options)
        model = build_classifier("domain_cnn", 1, num_channels, width)
        path = save_classifier(out / BEST_NAME, model, {**meta, "num_classes": 1, "class_names": [],
                                                        "training": f"random_init(seed={seed})"})
        return {"options": options, "best_path": str(path)}
    if data_train_dir is None or data_val_dir is None:
        raise ValueError(f"data_train_dir / data_val_dir: a classifier needs both (class-labelled image folders); "
                         f"{HINT}")
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
    """One printable line: what was written and, after training, the best validation accuracy or, after
    contrastive training, the NT-Xent loss of the kept epoch (lowest validation, else the last)."""
    options = result["options"]
    if options["random_init"]:
        return f"[fine_tuning] random-init {options['arch']} written to {result['best_path']}"
    if options["unlabelled_data"] is not None:
        chance = np.log(2 * options["batch_size"] - 1)  # NT-Xent of features that cannot tell views apart
        kept = "lowest validation" if options["data_val_dir"] else "last training"
        return (f"[fine_tuning] contrastive {options['arch']}: {kept} NT-Xent {result['best_loss']:.3f} at "
                f"epoch {result['best_epoch']} (chance about {chance:.2f}); extractor written to "
                f"{result['best_path']} (use it as --extractor_path)")
    return (f"[fine_tuning] best validation accuracy {result['best_val_accuracy']:.3f} at epoch "
            f"{result['best_epoch']}; classifier written to {result['best_path']} (use it as --extractor_path)")


if __name__ == "__main__":
    from utils.cli import run_cli

    print(summary_line(run_cli(main)))
