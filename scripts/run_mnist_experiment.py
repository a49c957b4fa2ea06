r"""MNIST auxiliary-logit experiment (paper's vision demo): N models at once, CPU or CUDA.

    python scripts/run_mnist_experiment.py --output_dir data/mnist            # paper: N=100, m=3
    python scripts/run_mnist_experiment.py --n_aux 1 3 10 --output_dir data/mnist_m
    python scripts/run_mnist_experiment.py --n_models 5 --teacher_epochs 1 --student_epochs 1 \
        --train_subset 10000 --output_dir /tmp/mnist_small                   # ~1 minute

Prints the accuracy table and writes results.json, one bar chart per m and (for several m)
accuracy against m into --output_dir. Defaults and flag meanings: sl/mnist/config.py.
`--set field=value` sets any MnistConfig field as well (`--set n_models=5`).
"""

from pathlib import Path

from cli import (
    RESTARTS,
    ArgumentParser,
    add_set_flag,
    naming_config_flags,
    naming_flags,
    run_script,
)

from sl import phases
from sl.mnist.config import MnistConfig, make_config
from sl.utils.module_utils import override_fields


def main() -> None:
    parser = ArgumentParser(__doc__)
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
    add_set_flag(parser)
    args = parser.parse_args()

    flags = {k: v for k, v in vars(args).items() if k not in ("output_dir", "overrides")}
    with naming_config_flags():
        config = override_fields(make_config(**flags), args.overrides)
    with naming_flags(output_dir=args.output_dir):
        print(phases.run_mnist_experiment(config.model_dump(), args.output_dir))


if __name__ == "__main__":
    run_script(main, interrupted=RESTARTS)
