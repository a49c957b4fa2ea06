r"""MNIST auxiliary-logit experiment (paper's vision demo): N models at once, CPU or CUDA.

    python scripts/run_mnist_experiment.py --output_dir data/mnist            # paper: N=100, m=3
    python scripts/run_mnist_experiment.py --n_aux 1 3 10 --output_dir data/mnist_m
    python scripts/run_mnist_experiment.py --n_models 5 --teacher_epochs 1 --student_epochs 1 \
        --train_subset 10000 --output_dir /tmp/mnist_small                   # ~1 minute

Prints the accuracy table and writes results.json, one bar chart per m and (for several m)
accuracy against m into --output_dir. Defaults and flag meanings: sl/mnist/config.py.
"""

import argparse
import sys
from pathlib import Path

from sl.mnist.config import MnistConfig
from sl.utils.cli import RESTARTS, run_script


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        print(f"error: {message}", file=sys.stderr)  # one line, no usage dump
        sys.exit(2)


def main() -> None:
    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    fields = MnistConfig.model_fields

    def doc(name: str) -> str:
        return f"{fields[name].description} Default: {fields[name].default}."

    for name, typ in [
        ("n_models", int), ("teacher_epochs", int), ("student_epochs", int), ("seed", int),
        ("hidden", int), ("batch_size", int), ("lr", float), ("train_subset", int),
        ("noise_per_epoch", int), ("device", str),
    ]:  # fmt: skip
        parser.add_argument(f"--{name}", type=typ, help=doc(name))
    parser.add_argument("--n_aux", type=int, nargs="+", help=doc("n_aux"))
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], help=doc("dtype"))
    parser.add_argument("--output_dir", type=Path, default=Path("data/mnist"))
    args = parser.parse_args()

    from sl.mnist.config import make_config, resolve_device
    from sl.mnist.experiment import format_table, run_experiment
    from sl.mnist.outputs import prepare_output_dir, write_outputs

    flags = {k: v for k, v in vars(args).items() if k != "output_dir"}
    cfg = make_config(**flags)
    resolve_device(cfg)  # fail on --device cuda without CUDA before touching --output_dir
    prepare_output_dir(args.output_dir, cfg)
    results = run_experiment(cfg)
    print(format_table(results))
    for path in write_outputs(results, args.output_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    run_script(main, interrupted=RESTARTS)
