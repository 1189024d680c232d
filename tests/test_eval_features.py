"""Feature extractors load local weights files (torchvision layout, original fine-tuned layout,
our checkpoints) and give features of the documented shape; missing / wrong files raise."""
import numpy as np
import pytest
import torch
from torchvision.models import inception_v3, vgg16

from utils.evaluation.features import DomainCNN, FeatureExtractor, load_extractor
from utils.evaluation.fine_tuning import save_classifier


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A torchvision-layout InceptionV3 state_dict (1000 classes, with aux head keys) on disk."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "inception_v3_local.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    return path


def test_inception_blocks_have_documented_dimensions(inception_file):
    images = np.random.default_rng(0).uniform(-1, 1, size=(3, 20, 20, 1)).astype(np.float32)
    net = load_extractor("inception", inception_file, resize_to=75).net
    for layer in (64, 192, 768, 2048):
        ext = FeatureExtractor(net, "inception", layer, 75, digest="")
        feats = ext.extract(images, batch_size=2, progress=False)
        assert feats.shape == (3, layer) and ext.dim == layer and feats.dtype == np.float64
        assert np.isfinite(feats).all()


def test_inception_from_original_fine_tuning_layout(tmp_path, inception_file):
    """The original saved fc as Sequential(Linear(2048, 10)): keys fc.0.*, no aux head."""
    state = torch.load(inception_file, weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(("AuxLogits.", "fc."))}
    state["fc.0.weight"], state["fc.0.bias"] = torch.randn(10, 2048), torch.randn(10)
    torch.save(state, tmp_path / "orig.tar")
    ext = load_extractor("inception", tmp_path / "orig.tar", resize_to=75)
    assert ext.net.fc.out_features == 10
    assert ext.extract(np.zeros((2, 16, 16, 3), np.float32), progress=False).shape == (2, 2048)


def test_vgg16_penultimate_features(tmp_path):
    model = vgg16(weights=None)
    model.classifier[6] = torch.nn.Linear(4096, 10)
    torch.save(model.state_dict(), tmp_path / "vgg.pth")
    ext = load_extractor("vgg16", tmp_path / "vgg.pth")
    images = np.random.default_rng(0).uniform(-1, 1, size=(2, 32, 32, 1)).astype(np.float32)
    feats = ext.extract(images, progress=False)
    assert feats.shape == (2, 4096)
    assert (feats >= 0).all()  # taken after the ReLU
    with torch.no_grad():  # equals the classifier input of the final linear layer
        logits = model.eval()(((torch.from_numpy(images).permute(0, 3, 1, 2).repeat(1, 3, 1, 1) + 1) / 2
                               - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                              / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    np.testing.assert_allclose(feats @ model.classifier[6].weight.detach().double().numpy().T
                               + model.classifier[6].bias.detach().double().numpy(), logits.numpy(), rtol=1e-4, atol=1e-4)


def test_domain_cnn_checkpoint_features_match_network(tmp_path):
    net = DomainCNN(in_channels=2, num_classes=4, width=8).eval()
    path = save_classifier(tmp_path / "classifier_best.pt", net, {"arch": "domain_cnn", "class_names": list("abcd")})
    ext = load_extractor("domain_cnn", path)
    images = np.random.default_rng(0).normal(size=(5, 16, 16, 2)).astype(np.float32)
    feats = ext.extract(images, batch_size=2, progress=False)
    assert feats.shape == (5, 64) and ext.dim == 64
    with torch.no_grad():
        direct = net.features(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(feats, direct, rtol=1e-5, atol=1e-6)


def test_missing_or_mismatched_extractor_file(tmp_path, inception_file):
    with pytest.raises(FileNotFoundError, match="extractor_path"):
        load_extractor("domain_cnn", tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="holds a 'inception'"):
        load_extractor("vgg16", inception_file)
    with pytest.raises(ValueError, match="layer=100"):
        load_extractor("inception", inception_file, layer=100)
    with pytest.raises(ValueError, match="extractor='resnet'"):
        load_extractor("resnet", inception_file)


def test_rejects_wrong_channel_count_and_nan(inception_file):
    ext = load_extractor("inception", inception_file, resize_to=75)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ext.extract(np.zeros((1, 16, 16, 2), np.float32), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        ext.extract(np.full((1, 16, 16, 1), np.nan, np.float32), progress=False)
