"""UNet layout (parameter counts of the original configurations), attention numerics, checkpointing."""
import math

import pytest
import torch

from improved_diffusion.script_util import PRESETS, create_model_and_diffusion, with_defaults
from improved_diffusion.unet import AttentionBlock

MNIST = dict(image_size=32, num_input_channels=1, num_model_channels=128, num_res_blocks=3, class_cond=True,
             num_class=10, attention_resolutions="16,8", num_heads=4, learn_sigma=False)


def build(args, device="meta"):
    with torch.device(device):
        model, _ = create_model_and_diffusion(args)
    return model


def counts(model):
    state = model.state_dict()
    return len(state), sum(v.numel() for v in state.values())


@pytest.mark.parametrize("args, tensors, params", [
    (MNIST, 447, 52_543_489),  # docs/original.md#unet
    ({**MNIST, "image_size": 128, "num_res_blocks": 4, "learn_sigma": True}, 667, 155_138_178),
    ({**MNIST, "image_size": 256, "image_size_lr": 128, "learn_sigma": True, "class_cond": False}, 612, 164_303_618),
])
def test_original_configurations_have_the_original_size(args, tensors, params):
    assert counts(build(args)) == (tensors, params)


def test_mnist_key_shapes_match_the_original():
    state = build(MNIST).state_dict()
    expected = {"time_embed.0.weight": (512, 128), "label_emb.weight": (10, 512),
                "input_blocks.0.0.weight": (128, 1, 3, 3), "input_blocks.4.0.op.weight": (128, 128, 3, 3),
                "input_blocks.5.0.skip_connection.weight": (256, 128, 1, 1), "input_blocks.5.1.qkv.weight": (768, 256, 1),
                "middle_block.1.proj_out.weight": (256, 256, 1), "output_blocks.3.1.conv.weight": (256, 256, 3, 3),
                "output_blocks.11.0.in_layers.0.weight": (384,), "out.2.weight": (1, 128, 3, 3)}
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key


def test_super_res_first_conv_sees_twice_the_channels():
    state = build({**MNIST, "image_size": 256, "image_size_lr": 128, "class_cond": False}).state_dict()
    assert tuple(state["input_blocks.0.0.weight"].shape) == (128, 2, 3, 3)


def test_512_pixels_builds_with_integer_channels_and_runs():
    model = build({**MNIST, "image_size": 512, "num_model_channels": 64, "num_res_blocks": 1, "class_cond": False})
    x = torch.zeros(1, 1, 512, 512, device="meta")
    out = model(x, torch.zeros(1, device="meta"))
    assert out.shape == (1, 1, 512, 512)
    assert model.state_dict()["out.2.weight"].shape[1] == 32


def legacy_attention(block: AttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """The original einsum attention, written from its description (docs/original.md#unet)."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, -1)
    qkv = block.qkv(block.norm(flat)).reshape(b * block.num_heads, -1, h * w)
    ch = qkv.shape[1] // 3
    q, k, v = torch.split(qkv, ch, dim=1)
    scale = 1 / math.sqrt(math.sqrt(ch))
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale).float(), dim=-1)
    a = torch.einsum("bts,bcs->bct", weight, v).reshape(b, -1, h * w)
    return (flat + block.proj_out(a)).reshape(b, c, h, w)


def test_sdpa_attention_equals_the_legacy_formula():
    block = AttentionBlock(64, num_heads=4)
    torch.nn.init.normal_(block.proj_out.weight, std=0.1)
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), legacy_attention(block, x), rtol=1e-5, atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    args = {**PRESETS["demo"], "num_res_blocks": 1, "image_size": 32}
    torch.manual_seed(0)
    plain = build(args, "cpu")
    checkpointed = build({**args, "use_checkpoint": True}, "cpu")
    checkpointed.load_state_dict(plain.state_dict())
    for p in plain.parameters():  # make zero-initialised layers non-trivial
        p.data.add_(0.01 * torch.randn_like(p))
    checkpointed.load_state_dict(plain.state_dict())
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([10.0, 500.0])
    grads = []
    for model in (plain, checkpointed):
        model.train()
        model(x, t).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_class_labels_required_exactly_for_class_conditional_models():
    model = build({**with_defaults(PRESETS["demo"]), "class_cond": True, "num_class": 3}, "cpu")
    with pytest.raises(ValueError, match="class labels"):
        model(torch.zeros(1, 1, 32, 32), torch.zeros(1))


@pytest.mark.parametrize("key, value, fragment", [
    ("image_size", 48, "image_size: got 48"),
    ("num_model_channels", 48, "multiple of 32"),
    ("num_heads", 5, "num_heads: got 5"),
    ("noise_schedule", "quadratic", "noise_schedule: got 'quadratic'"),
    ("loss_name", "l1", "loss_name"),
    ("output_type", "v", "output_type"),
    ("attention_resolutions", "3", "attention_resolutions"),
])
def test_bad_configuration_values_name_the_key(key, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        create_model_and_diffusion({**PRESETS["demo"], key: value})
