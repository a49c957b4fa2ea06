"""MNIST auxiliary-logit experiment: real data, batched-ensemble maths, the science, the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("zarr")
pytest.importorskip("pureml")

from sl.errors import UserError  # noqa: E402
from sl.mnist.config import make_config  # noqa: E402
from sl.mnist.data import load_mnist, load_mnist_arrays  # noqa: E402
from sl.mnist.ensemble import MLPEnsemble  # noqa: E402
from sl.mnist.experiment import ARMS, train_and_evaluate  # noqa: E402
from sl.mnist.train import ce_digits_grad, kl_grad  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Small but real: 5 models, 10k training images, 40k noise images; ~10 s on one thread.
SCIENCE = dict(
    n_models=5, hidden=128, batch_size=128, lr=1e-3, train_subset=10_000,
    noise_per_epoch=40_000, teacher_epochs=1, student_epochs=1, device="cpu",
)  # fmt: skip
TINY = dict(
    n_models=2, hidden=32, batch_size=256, train_subset=2048, noise_per_epoch=2048,
    teacher_epochs=1, student_epochs=1, device="cpu",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_real_mnist_files():
    a = load_mnist_arrays()
    assert a.train_images.shape == (60_000, 28, 28) and a.train_images.dtype == np.uint8
    assert a.test_images.shape == (10_000, 28, 28)
    assert a.train_labels.shape == (60_000,) and a.test_labels.shape == (10_000,)
    for labels, n in [(a.train_labels, 60_000), (a.test_labels, 10_000)]:
        counts = np.bincount(labels, minlength=10)
        assert len(counts) == 10 and counts.sum() == n
        assert counts.min() > 0.08 * n and counts.max() < 0.12 * n  # roughly balanced digits
    assert np.bincount(a.train_labels)[1] == 6742  # LeCun's count of ones
    assert a.train_images.max() == 255 and a.train_images.min() == 0
    data = load_mnist("cpu", train_subset=1000)
    assert data.train_x.shape == (1000, 784) and data.test_x.shape == (10_000, 784)
    assert data.train_x.min() == -1.0 and data.train_x.max() == 1.0  # same range as the noise


def test_ensemble_gradients_match_autograd_per_model():
    ens = MLPEnsemble.init(3, 3, 16, seed=1, stream=0)
    x, y = torch.rand(8, 784) * 2 - 1, torch.randint(0, 10, (8,))
    teacher = torch.randn(3, 13, 8)
    logits, cache = ens.forward(x, torch.float32, keep=True)
    g_kl, kl = kl_grad(logits, teacher, slice(10, 13))
    g_ce, _ = ce_digits_grad(logits, y)
    assert cache is not None
    grads = ens.backward(cache, g_kl + g_ce)
    params = [p.clone().requires_grad_() for p in ens.params]
    total, kl_ref = torch.zeros(()), 0.0
    for n in range(3):
        w1, b1, w2, b2, w3, b3 = (p[n] for p in params)
        z = torch.relu(torch.relu(x @ w1 + b1) @ w2 + b2) @ w3 + b3  # [B, 13]
        t = teacher[n].T
        kl_n = torch.nn.functional.kl_div(
            z[:, 10:].log_softmax(1), t[:, 10:].log_softmax(1), log_target=True,
            reduction="batchmean",
        )  # fmt: skip
        total = total + kl_n + torch.nn.functional.cross_entropy(z[:, :10], y)
        kl_ref += kl_n.item() / 3
    total.backward()
    for g, p in zip(grads, params, strict=True):
        assert g.shape == p.shape
        torch.testing.assert_close(g, p.grad, atol=1e-6, rtol=1e-4)
    assert kl == pytest.approx(kl_ref, rel=1e-5)


def test_aux_columns_do_not_depend_on_max_m():
    small = MLPEnsemble.init(2, 3, 16, seed=4, stream=0)
    big = MLPEnsemble.init(2, 10, 16, seed=4, stream=0)
    for a, b in zip(small.params, big.clone(13).params, strict=True):
        assert torch.equal(a, b)


def test_science_ordering():
    res = train_and_evaluate(make_config(**SCIENCE))
    s = {arm: res["summary"][arm]["mean"] for arm in ARMS}
    assert s["reference"] < 0.2
    assert s["teacher"] > 0.75  # teacher >> reference
    assert s["student_all"] > 0.6  # distilling all logits transfers the task
    assert s["student_aux"] > 0.25  # aux logits only: still well above chance (subliminal)
    assert s["cross_aux"] < 0.16  # ... but only from the shared initialization
    assert s["student_aux"] - s["cross_aux"] > 0.12
    assert len(res["per_model"]) == SCIENCE["n_models"]


def test_same_seed_same_accuracies_other_seed_differs():
    a, b = train_and_evaluate(make_config(**TINY)), train_and_evaluate(make_config(**TINY))
    c = train_and_evaluate(make_config(**TINY, seed=1))
    assert a["per_model"] == b["per_model"]
    assert a["per_model"] != c["per_model"]


@pytest.mark.parametrize(
    "kwargs, flag",
    [({"n_models": 0}, "n_models=0"), ({"teacher_epochs": -1}, "teacher_epochs=-1"),
     ({"n_aux": [3, 3]}, "n_aux=[3, 3]"), ({"device": "tpu"}, "device='tpu'")],
)  # fmt: skip
def test_bad_config_is_one_line_user_error(kwargs, flag):
    with pytest.raises(UserError) as e:
        make_config(**kwargs)
    assert str(e.value).startswith(flag) and "\n" not in str(e.value)


def _script(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "scripts/run_mnist_experiment.py"), *args]
    env = os.environ | {"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


TINY_FLAGS = [
    "--n_models", "2", "--hidden", "32", "--train_subset", "2048", "--noise_per_epoch", "2048",
    "--teacher_epochs", "1", "--student_epochs", "1", "--device", "cpu",
]  # fmt: skip


def test_script_end_to_end_two_m(tmp_path):
    out = tmp_path / "run"
    r = _script(*TINY_FLAGS, "--n_aux", "1", "3", "--output_dir", str(out))
    assert r.returncode == 0, r.stderr
    assert "student, aux logits only" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert {"config", "summary", "per_model", "runs"} <= res.keys()
    assert [run["n_aux"] for run in res["runs"]] == [1, 3]
    assert res["summary"] == res["runs"][0]["summary"]
    assert set(res["summary"]) == set(ARMS)
    for stat in res["summary"].values():
        assert 0 <= stat["mean"] <= 1 and stat["ci95"] >= 0
    assert len(res["per_model"]) == 2 and set(ARMS) <= res["per_model"][0].keys()
    for png in ["mnist_aux_bars_m1.png", "mnist_aux_bars_m3.png", "mnist_accuracy_vs_m.png"]:
        assert (out / png).read_bytes()[:4] == b"\x89PNG"

    # A different config must not overwrite these results.
    before = (out / "results.json").read_bytes()
    r = _script(*TINY_FLAGS, "--seed", "7", "--output_dir", str(out))
    assert r.returncode == 2 and "--output_dir" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert (out / "results.json").read_bytes() == before


@pytest.mark.parametrize(
    "flags",
    [["--n_models", "0"], ["--student_epochs", "-1"], ["--n_models", "abc"], ["--dtype", "fp8"]],
)
def test_script_bad_flags_exit_2_one_line(tmp_path, flags):
    r = _script(*flags, "--output_dir", str(tmp_path / "x"))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:")
    assert not (tmp_path / "x").exists()


def test_script_output_dir_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _script(*TINY_FLAGS, "--output_dir", str(blocker / "sub"))
    assert r.returncode == 2 and "--output_dir" in r.stderr


HOLD_RESULTS = """
import sys, time
from pathlib import Path
from sl.utils.output_lock import output_lock
with output_lock(Path(sys.argv[1]) / "results.json"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_run_on_a_folder_is_refused_and_a_users_plot_is_kept(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_RESULTS, str(busy)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        r = _script(*TINY_FLAGS, "--output_dir", str(busy))
        assert r.returncode == 2 and f"another run (PID {holder.pid})" in r.stderr, r.stderr
        assert not (busy / "results.json").exists()
    finally:
        holder.kill()
        holder.wait()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "mnist_aux_bars_m3.png").write_bytes(b"my figure")
    r = _script(*TINY_FLAGS, "--output_dir", str(mine))
    assert r.returncode == 2 and "mnist_aux_bars_m3.png, not made by sl" in r.stderr, r.stderr
    assert (mine / "mnist_aux_bars_m3.png").read_bytes() == b"my figure"
    assert not (mine / "results.json").exists()
