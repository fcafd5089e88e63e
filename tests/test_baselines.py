"""Baselines: parameter counts, shapes, range, determinism, training steps, registry and YAML specs."""

from __future__ import annotations

import io

import pytest
import torch

import baselines
from baselines import ModelSpec, from_spec
from benchmark.train import Trainer

COUNTS = {"seafusion": 166_657, "u2fusion": 659_217, "pmgi": 42_017, "densefuse_e2e": 74_193, "cddfuse": 1_188_272,
          "swinfusion": 965_251, "tcmoa": 443_666}  # fmt: skip  (tcmoa: the CPU-sized 'tiny')
HEAVY = ("cddfuse", "swinfusion", "tcmoa")  # transformers: tested at a smaller odd size on the CPU


def test_swinfusion_count_is_within_one_percent_of_the_release() -> None:
    # the release's 973,681 includes two shallow convolutions it never uses (see the module docstring)
    assert abs(COUNTS["swinfusion"] - 973_700) / 973_700 < 0.01


def pair(n: int, h: int, w: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, h, w, generator=g), torch.rand(n, 1, h, w, generator=g)


def make(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return baselines.build(name)


@pytest.mark.parametrize("name,count", COUNTS.items())
def test_parameter_count_matches_the_spec(name: str, count: int) -> None:
    assert sum(p.numel() for p in make(name).parameters()) == count


@pytest.mark.parametrize(
    "name,size",
    [(n, s) for n in COUNTS for s in ((301, 497), (17, 23)) if n not in HEAVY] + [(n, s) for n in HEAVY for s in ((67, 101), (17, 23))],
)  # the transformer at 301 x 497 takes tens of seconds on a CPU; an odd size shows the same
def test_shape_and_range(name: str, size: tuple[int, int]) -> None:
    model = make(name).eval()
    ir, vis = pair(1, *size)
    with torch.no_grad():
        out = model(ir, vis)
    assert out.shape == ir.shape
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", COUNTS)
def test_deterministic_under_a_seed_and_state_dict_round_trip(name: str) -> None:
    ir, vis = pair(2, 24, 30)
    a, b = make(name, seed=3).eval(), make(name, seed=3).eval()
    with torch.no_grad():
        assert torch.equal(a(ir, vis), b(ir, vis))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    c = make(name, seed=99).eval()
    c.load_state_dict(torch.load(buffer))
    with torch.no_grad():
        assert torch.equal(a(ir, vis), c(ir, vis))


@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("arm", [None, {"type": "damgl"}])
def test_one_step_lowers_the_recipe_loss(name: str, arm: dict | None) -> None:
    """On the last phase (the one with the swappable gradient term); TC-MoA's gating noise is reseeded
    so that both evaluations see the same draw."""
    model = make(name)
    trainer = Trainer(model, model.recipe, arm, steps=10)
    last = len(model.recipe.phases) - 1
    trainer.step = trainer.phase_end[last - 1] if last else 0  # start of the last phase
    ir, vis = pair(4, 32, 32, seed=1)
    torch.manual_seed(7)
    before = trainer.train_step(ir, vis).loss
    model.train()
    torch.manual_seed(7)
    with torch.no_grad():
        fused = model(ir, vis)
        after, _ = trainer.objectives[last](fused, ir, vis, getattr(model, "aux", None))
    assert after.item() < before


def test_cddfuse_phase_one_trains_the_reconstruction_path_only() -> None:
    model = make("cddfuse")
    recipe = model.recipe
    assert [p.name for p in recipe.phases] == ["reconstruction", "fusion"] and recipe.grad_clip == 0.01
    trainer = Trainer(model, recipe, {"type": "damgl"}, steps=6)  # epochs 40 + 80: 2 steps, then 4
    assert trainer.phase_end == [2, 6]
    ir, vis = pair(2, 24, 24, seed=5)
    fusion_params = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("fuse_")}
    log = trainer.train_step(ir, vis)
    assert log.phase == "reconstruction" and set(log.parts) == {"reconstruction", "decomposition"}
    for n, p in model.named_parameters():
        if n.startswith("fuse_"):
            assert p.grad is None and torch.equal(p, fusion_params[n]), n
        else:
            assert p.grad is not None, n
    assert trainer.objectives[0].recipe.get("gradient") is None  # the arm does not touch phase I
    trainer.train_step(ir, vis)
    log = trainer.train_step(ir, vis)
    assert log.phase == "fusion" and set(log.parts) == {"intensity", "gradient", "decomposition"}
    assert trainer.objectives[1].recipe["gradient"] == {"type": "damgl", "weight": 10.0}
    assert not torch.equal(dict(model.named_parameters())["fuse_base.attn.qkv.weight"], fusion_params["fuse_base.attn.qkv.weight"])


def test_recipes_record_paper_settings() -> None:
    sea = baselines.MODELS["seafusion"].recipe
    assert sea.schedule == {"type": "step", "every_epochs": 1, "gamma": 0.75}
    assert sea.optimizer == {"type": "adam", "lr": 1e-3} and sea.batch_size == 16
    assert sea.output_normalisation == "batch_minmax"
    objective = sea.objective(0, {"type": "damgl", "sign": False}).recipe
    assert objective == {"intensity": {"type": "max_l1", "weight": 1.0},
                         "gradient": {"type": "damgl", "sign": False, "weight": 10.0}}  # fmt: skip
    pmgi = baselines.MODELS["pmgi"].recipe
    assert pmgi.objective(0).recipe["gradient"] == {"type": "laplacian_l2", "weight": 100.0}
    assert pmgi.objective(0, {"type": "magnitude"}).recipe["gradient"]["weight"] == 10.0
    assert "gradient" in baselines.MODELS["u2fusion"].recipe.objective(0, {"type": "damgl"}).recipe


def test_registry_errors() -> None:
    assert baselines.names() == ["seafusion", "u2fusion", "pmgi", "densefuse_e2e", "cddfuse", "swinfusion", "tcmoa"]
    with pytest.raises(ValueError, match=r"unknown model 'seafuison' \(did you mean 'seafusion'\?\); valid: seafusion"):
        baselines.build("seafuison")
    with pytest.raises(ValueError, match=r"densefuse_e2e: unknown key 'rule'.*allowed: fusion_rule"):
        baselines.build("densefuse_e2e", rule="add")
    with pytest.raises(ValueError, match=r"fusion_rule: 'max' is not one of \['add', 'l1norm'\]"):
        baselines.build("densefuse_e2e", fusion_rule="max")


def test_yaml_spec_by_name_with_kwargs_and_recipe_override() -> None:
    spec = from_spec("dense", {"type": "densefuse_e2e", "fusion_rule": "l1norm", "recipe": {"batch_size": 4}})
    assert isinstance(spec, ModelSpec) and spec.kwargs == {"fusion_rule": "l1norm"}
    assert spec.recipe.batch_size == 4 and spec.recipe.patch_size == 128
    with pytest.raises(ValueError, match=r"recipe: unknown key\(s\) \['batchsize'\]"):
        from_spec("dense", {"type": "densefuse_e2e", "recipe": {"batchsize": 4}})


def test_yaml_spec_by_import_path_trains_through_the_trainer() -> None:
    spec = from_spec("tiny", {"class": "examples.tiny_fusion:TinyFusion", "kwargs": {"width": 4}})
    torch.manual_seed(0)
    model = spec.build()
    trainer = Trainer(model, spec.recipe, {"type": "damgl"}, steps=30, lr=1e-2)
    ir, vis = pair(8, 32, 32, seed=2)
    first = trainer.train_step(ir, vis).loss
    for _ in range(28):
        last = trainer.train_step(ir, vis).loss
    assert last < 0.8 * first


class TwoOutputs(torch.nn.Module):
    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return torch.cat([ir, vis], 1)


class OneInput(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize(
    "block,message",
    [
        ({"class": "examples.nowhere:Net"}, "cannot import module 'examples.nowhere'"),
        ({"class": "examples.tiny_fusion:Missing"}, "module 'examples.tiny_fusion' has no attribute 'Missing'"),
        ({"class": "examples.tiny_fusion"}, "is not of the form 'package.module:ClassName'"),
        ({"class": "tests.test_baselines:TwoOutputs", "recipe": {"phases": [{"name": "f", "objective": {}}],
          "gradient_weight": 1, "optimizer": {"lr": 1}}}, r"must return \(N, 1, H, W\) = \(2, 1, 33, 37\).*got \(2, 2, 33, 37\)"),
        ({"class": "tests.test_baselines:OneInput", "recipe": {"phases": [{"name": "f", "objective": {}}],
          "gradient_weight": 1, "optimizer": {"lr": 1}}}, r"forward must take exactly two required arguments \(ir, vis\)"),
        ({"class": "tests.test_baselines:OneInput"}, "has no 'recipe' attribute"),
        ({"class": "examples.tiny_fusion:TinyFusion", "kwargs": {"widht": 3}}, r"unknown key 'widht' \(did you mean 'width'\?\)"),
        ({"type": "seafusion", "depth": 3}, "models.m: unknown key 'depth'"),
        ({"kwargs": {}}, "expected 'type'"),
    ],
)  # fmt: skip
def test_yaml_spec_errors(block: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_spec("m", block)


def test_straight_through_clamp() -> None:
    from baselines.common import clamp_straight_through

    x = torch.tensor([-0.5, 0.3, 1.7], requires_grad=True)
    y = clamp_straight_through(x)
    y.sum().backward()
    assert y.tolist() == pytest.approx([0.0, 0.3, 1.0]) and x.grad.tolist() == [1.0, 1.0, 1.0]


def mae_state_dict(dim: int, depth: int, ddim: int, ddepth: int, patch: int = 16) -> dict[str, torch.Tensor]:
    """Every key of an MAE checkpoint (facebookresearch/mae, ``models_mae.py``) with its shape, filled with a
    distinct constant per key so that a loaded value can be traced to its key."""
    shapes = {"cls_token": (1, 1, dim), "pos_embed": (1, 197, dim), "patch_embed.proj.weight": (dim, 3, patch, patch),
              "patch_embed.proj.bias": (dim,), "norm.weight": (dim,), "norm.bias": (dim,), "mask_token": (1, 1, ddim),
              "decoder_embed.weight": (ddim, dim), "decoder_embed.bias": (ddim,), "decoder_pos_embed": (1, 197, ddim),
              "decoder_norm.weight": (ddim,), "decoder_norm.bias": (ddim,),
              "decoder_pred.weight": (patch * patch * 3, ddim), "decoder_pred.bias": (patch * patch * 3,)}  # fmt: skip
    for prefix, width, count in (("blocks", dim, depth), ("decoder_blocks", ddim, ddepth)):
        for i in range(count):
            for part, shape in {"norm1.weight": (width,), "norm1.bias": (width,), "attn.qkv.weight": (3 * width, width),
                                "attn.qkv.bias": (3 * width,), "attn.proj.weight": (width, width), "attn.proj.bias": (width,),
                                "norm2.weight": (width,), "norm2.bias": (width,), "mlp.fc1.weight": (4 * width, width),
                                "mlp.fc1.bias": (4 * width,), "mlp.fc2.weight": (width, 4 * width),
                                "mlp.fc2.bias": (width,)}.items():  # fmt: skip
                shapes[f"{prefix}.{i}.{part}"] = shape
    return {k: torch.full(shape, 1e-3 * (i + 1)) for i, (k, shape) in enumerate(shapes.items())}


def test_tcmoa_loads_an_mae_vit_b_checkpoint_by_its_key_names(tmp_path) -> None:
    state = mae_state_dict(768, 12, 512, 8)
    assert len(state) == 254
    torch.save({"model": state}, tmp_path / "mae_vit_base.pth")
    model = baselines.build("tcmoa", size="base", backbone_checkpoint=str(tmp_path / "mae_vit_base.pth"))
    report = model.checkpoint_report
    assert sorted(report["unused"]) == ["cls_token", "decoder_pos_embed", "mask_token", "pos_embed"]
    assert len(report["loaded"]) + len(report["unused"]) == len(state)  # every key consumed
    own = model.state_dict()
    for key in report["loaded"]:  # nothing of the encoder and decoder is left at its random initialisation
        assert torch.equal(own[key], state[key]), key
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == set(report["loaded"])  # the backbone is frozen, the TC-MoA modules train
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 3_759_397 and len(model.blocks_moa) == 3 and len(model.decoder_blocks_moa) == 2
    bad = dict(state, **{"blocks.0.attn.qkv.weight": torch.zeros(10, 768)})
    with pytest.raises(ValueError, match=r"checkpoint key 'blocks.0.attn.qkv.weight': shape \(10, 768\), expected \(2304, 768\)"):
        model.load_mae(bad)
    with pytest.raises(ValueError, match="lacks 1 backbone key"):
        model.load_mae({k: v for k, v in state.items() if k != "norm.bias"})
    with pytest.raises(ValueError, match="'head.weight' is not an MAE encoder/decoder key"):
        model.load_mae(dict(state, **{"head.weight": torch.zeros(1)}))


def test_tcmoa_large_has_about_11m_trainable_parameters_and_six_plus_two_modules() -> None:
    with torch.device("meta"):
        model = baselines.build("tcmoa", size="large", freeze_backbone=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 11_144_584 and abs(trainable - 11e6) / 11e6 < 0.02  # the spec: about 11M on ViT-L
    assert len(model.blocks) == 24 and len(model.blocks_moa) == 6 and len(model.decoder_blocks_moa) == 2
    with pytest.raises(ValueError, match="size: 'huge' is not one of"):
        baselines.build("tcmoa", size="huge")


def test_tcmoa_gating_keeps_two_experts_per_token_and_balances_load() -> None:
    from baselines.tcmoa import NoisyTopKExperts, cv_squared

    torch.manual_seed(0)
    moe = NoisyTopKExperts(16, 4)
    torch.nn.init.normal_(moe.w_gate)
    x = torch.randn(50, 16)
    out, balance = moe.eval()(x)
    assert out.shape == (50, 16) and torch.isfinite(out).all()
    gates = torch.zeros(50, 4).scatter(1, (x @ moe.w_gate).topk(2, dim=1).indices, 1.0)
    load = gates.sum(0)
    importance = torch.softmax((x @ moe.w_gate).topk(2, dim=1).values, dim=1).sum(0)
    by_hand = torch.zeros(4).index_add(0, (x @ moe.w_gate).topk(2, dim=1).indices.flatten(),
                                       torch.softmax((x @ moe.w_gate).topk(2, dim=1).values, dim=1).flatten())  # fmt: skip
    assert torch.allclose(balance, cv_squared(by_hand) + cv_squared(load), atol=1e-6)
    assert importance.sum().item() == pytest.approx(50.0, abs=1e-4)  # two gates per token summing to one
    assert cv_squared(torch.ones(4)).item() == 0.0
