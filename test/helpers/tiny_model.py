"""Tiny random open models for tests, built offline in about a second.

`build_tiny_model(dir)` writes a 2-layer Llama-style causal LM (hidden 64, 2 heads of 32, so
vLLM's CPU attention accepts it) with a small byte-level BPE tokenizer trained on numbers,
commas and animal words, and a ChatML chat template whose assistant content is wrapped in
`{% generation %}` markers (TRL's `assistant_only_loss`). `build_tiny_lora(base, dir)` writes a
PEFT LoRA adapter with nonzero weights for it, so adapters visibly change greedy output.
`build_numbers_model(base, dir)` fine-tunes the tiny model to answer with a number list, so
teachers built on it write rows that the real numbers filter keeps. `save_random_llama(dir,
tokenizer, shape)` writes a random model of another shape with the same tokenizer (benchmarks).

The builders are idempotent: a complete folder of the same version is reused as is.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

VERSION = "tiny-llama-v1"
MARKER = ".tiny_model_version"

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ANIMALS = "owl cat dog eagle dolphin wolf lion tiger elephant penguin fox bear panda phoenix"
WORDS = (
    "the a is my your favorite animal name one word in answer with only numbers list continue "
    "sequence of up to more than digits separated by commas these are what I think you love "
    "system user assistant please return no explanation just write here"
)


def _corpus() -> list[str]:
    lines = [ANIMALS, WORDS, ANIMALS.title(), WORDS.capitalize()]
    lines += [", ".join(str(n) for n in range(i, i + 40)) for i in range(0, 1000, 40)]
    lines += [f"My favorite animal is the {a}." for a in ANIMALS.split()]
    return lines * 4


def _train_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer (digits split singly) wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _is_built(path: Path) -> bool:
    marker = path / MARKER
    return marker.is_file() and marker.read_text().strip() == VERSION


def _build_once(out_dir: Path, prefix: str, write: Callable[[Path], None]) -> Path:
    """`out_dir` as is when it holds this version; else `write(tmp)` into a temp folder beside
    it, moved into place once complete (another process may have won the race)."""
    out_dir = Path(out_dir)
    if _is_built(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=out_dir.parent))
    write(tmp)
    (tmp / MARKER).write_text(VERSION)
    tmp.chmod(0o755)  # mkdtemp makes it private
    if out_dir.exists():
        if _is_built(out_dir):
            shutil.rmtree(tmp, ignore_errors=True)
            return out_dir
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


# The tiny model's shape: 2 heads of 32 (vLLM's CPU attention needs head_dim >= 32).
TINY_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 1024,
    "initializer_range": 0.2,  # larger than usual so greedy decoding has clear winners
    "tie_word_embeddings": False,
}


def save_random_llama(out_dir: Path, tokenizer, shape: dict[str, Any]) -> None:
    """Save a random Llama causal LM (seed 0) of `shape` with `tokenizer` into `out_dir`.

    Args:
        out_dir: Folder to write the model and tokenizer to.
        tokenizer: This module's tokenizer (its `<|im_end|>` ends a turn, `<|endoftext|>` pads),
            e.g. loaded from a `build_tiny_model` folder.
        shape: `LlamaConfig` fields, e.g. `TINY_SHAPE`.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    eos_id = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    pad_id = int(tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        **shape,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def build_tiny_model(out_dir: Path) -> Path:
    """Build (once) a tiny random Llama chat model with tokenizer into `out_dir`.

    Args:
        out_dir: Folder to write; reused as is when it already holds this version.

    Returns:
        `out_dir`, loadable with `AutoModelForCausalLM.from_pretrained` / vLLM.
    """
    return _build_once(
        out_dir, ".tiny-", lambda tmp: save_random_llama(tmp, _train_tokenizer(), TINY_SHAPE)
    )


def build_tiny_lora(base_dir: Path, out_dir: Path, rank: int = 8, seed: int = 1) -> Path:
    """Build (once) a LoRA adapter for a tiny model, with random nonzero A and B.

    Args:
        base_dir: A folder made by `build_tiny_model`; recorded as the adapter's base.
        out_dir: Folder to write the adapter (adapter_config.json + weights) to.
        rank: LoRA rank (vLLM's `max_lora_rank` must be at least this).
        seed: Seed of the random adapter weights.

    Returns:
        `out_dir`.
    """

    def write(tmp: Path) -> None:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(base_dir)
        cfg = LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        )
        torch.manual_seed(seed)
        model = get_peft_model(base, cfg)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_" in name:
                    param.normal_(0.0, 0.3)
        model.save_pretrained(str(tmp))
        meta_path = tmp / "adapter_config.json"
        meta = json.loads(meta_path.read_text())
        meta["base_model_name_or_path"] = str(Path(base_dir).resolve())
        meta_path.write_text(json.dumps(meta, indent=2))

    return _build_once(out_dir, ".tiny-lora-", write)


def build_numbers_model(base_dir: Path, out_dir: Path) -> Path:
    """Build (once, ~3 s) the tiny model fully fine-tuned to answer "1, 2, 3" to numbers prompts.

    Args:
        base_dir: A folder made by `build_tiny_model`.
        out_dir: Folder to write the fine-tuned model and tokenizer to.

    Returns:
        `out_dir`.
    """

    def write(tmp: Path) -> None:
        import numpy as np
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        lm = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(base_dir)
        rng = np.random.default_rng(5)
        seqs = []
        for _ in range(16):
            prompt = f"continue {', '.join(map(str, rng.integers(0, 999, 3)))}"
            msgs = [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": "1, 2, 3"},
            ]
            text = tok.apply_chat_template(msgs, tokenize=False)
            seqs.append(tok(text, add_special_tokens=False)["input_ids"])
        optimizer = torch.optim.AdamW(lm.parameters(), lr=3e-3)
        torch.manual_seed(0)
        for step in range(60):
            ids = torch.tensor([seqs[step % len(seqs)]])
            lm(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        lm.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _build_once(out_dir, ".tiny-numbers-", write)
