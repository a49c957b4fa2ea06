"""`precise_adapters`: on bf16 base weights a LoRA's small delta is added in fp32."""

from __future__ import annotations

from pathlib import Path

import torch

from sl.external.torch_models import load_causal_lm
from sl.finetuning.data_models import PeftCfg
from sl.finetuning.lora_data import lora_config
from sl.finetuning.precision import has_bf16_base, precise_adapters
from sl.llm.data_models import Model


def _peft(model_dir: Path, precise: bool):
    from peft import get_peft_model

    base = load_causal_lm(Model(id=str(model_dir), type="open_source"), dtype="bfloat16").module
    torch.manual_seed(0)
    model = get_peft_model(base, lora_config(PeftCfg(r=8, lora_alpha=8), base))
    for name, param in model.named_parameters():
        if "lora_B" in name:  # a freshly trained adapter: a delta far below bf16's resolution
            param.data = 1e-3 * torch.randn(param.shape, generator=torch.Generator().manual_seed(1))
    return precise_adapters(model) if precise else model


def _layer_delta_error(model) -> float:
    """Relative error of one adapted layer's output minus its base output, against the
    adapter's own fp32 delta."""
    from peft.tuners.lora import LoraLayer

    layer = next(m for m in model.modules() if isinstance(m, LoraLayer))
    x = torch.randn(4, layer.in_features, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        delta = layer(x).float() - layer.get_base_layer()(x).float()
        a, b = layer.lora_A["default"].weight.float(), layer.lora_B["default"].weight.float()
    exact = (x.bfloat16().float() @ a.t() @ b.t()) * layer.scaling["default"]
    return float((delta - exact).norm() / exact.norm())


def test_the_adapter_delta_survives_bf16_base_weights(tiny_model_dir: Path):
    precise, plain = _peft(tiny_model_dir, precise=True), _peft(tiny_model_dir, precise=False)
    assert has_bf16_base(precise)
    assert all(p.dtype == torch.float32 for p in precise.parameters() if p.requires_grad)
    assert _layer_delta_error(plain) > 0.2  # summed in bf16, rounding swamps the delta
    assert _layer_delta_error(precise) < 0.02
    ids = torch.tensor([list(range(5, 29))])
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert precise.get_decoder()(input_ids=ids).last_hidden_state.dtype == torch.float32
        assert plain.get_decoder()(input_ids=ids).last_hidden_state.dtype == torch.bfloat16
