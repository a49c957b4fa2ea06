"""OpenAI failure paths, as a user meets them, side by side for two versions of sl.

    .venv/bin/python bench/bench_openai_failures.py                    # this tree only
    .venv/bin/python bench/bench_openai_failures.py --baseline HEAD~5  # and another commit
    .venv/bin/python bench/bench_openai_failures.py --only dead,refused --timeout 300

Each scenario runs the real scripts in subprocesses against the loopback OpenAI server
(test/helpers/openai_server.py), with sl's default settings unless named:

- `ft_kill` / `batch_kill`: the create request of a fine-tuning job / batch is answered late;
  the script is killed (SIGKILL) while it waits, then rerun to the end. Counts the jobs /
  batches the server created (goal 1).
- `dead N`: N prompts against a port nothing listens on: seconds to the error (goal < 60).
- `refused`: 300 prompts with a key the server refuses (401): seconds and requests sent.
- `slow_start`: 20 prompts at OPENAI_START_RPS=0.01, against a server advertising 50 req/s
  (`x-ratelimit-*` headers) and one advertising nothing: seconds.
- `garbage_url`: OPENAI_BASE_URL=not-a-url with 50 prompts: seconds and requests.

`--baseline REV` extracts `sl/` and `scripts/` of that commit into a temporary folder and runs
the same scenarios with it (the server is this tree's), printing both columns.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test" / "helpers"))

from openai_server import FakeOpenAIServer  # noqa: E402
from script_runner import CONFIG, TEST_API_KEY, cli_args, responder  # noqa: E402

Result = str


class Tree:
    """A version of sl: the folder holding its `sl/` and `scripts/`."""

    def __init__(self, root: Path, timeout: float) -> None:
        self.root, self.timeout = root, timeout

    def env(self, server_url: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        env.update(SL_NO_DOTENV="1", PYTHONPATH=str(self.root), OPENAI_API_KEY=TEST_API_KEY)
        env.update(OPENAI_BASE_URL=server_url, **extra)
        return env

    def start(self, script: str, args: list, env: dict[str, str]) -> subprocess.Popen:
        command = [sys.executable, str(self.root / "scripts" / script), *map(str, args)]
        return subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )

    def run(self, script: str, args: list, env: dict[str, str]) -> tuple[float, int, str]:
        """(seconds, exit code, last stderr line) of running `script` to its end."""
        start = time.perf_counter()
        proc = self.start(script, args, env)
        try:
            _, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return time.perf_counter() - start, -9, f"(killed after {self.timeout:g} s)"
        last = (err.strip().splitlines() or [""])[-1]
        return time.perf_counter() - start, proc.returncode, last


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(folder: Path, size: int) -> Path:
    path = folder / f"cfg_{size}.py"
    text = CONFIG.format(size=size)
    text += "batch_cfg = dataset_cfg.model_copy(update={'use_batch_api': True})\n"
    path.write_text(text)
    return path


def _generate(tree: Tree, folder: Path, size: int, env: dict[str, str], var="dataset_cfg"):
    raw, filtered = folder / f"raw_{var}_{size}.jsonl", folder / f"filtered_{var}_{size}.jsonl"
    for path in (raw, filtered):
        path.unlink(missing_ok=True)
    args = cli_args(
        _config(folder, size), var, raw_dataset_path=raw, filtered_dataset_path=filtered
    )
    return tree.run("generate_dataset.py", args, env)


def _kill_during_create(
    tree: Tree, folder: Path, route: str, script: str, args: list, count: Callable
) -> Result:
    """Start `script`, kill it while `route` (a create call) waits for its late answer, rerun."""
    with FakeOpenAIServer() as server:
        server.responder = responder
        env = tree.env(server.base_url, OPENAI_POLL_INTERVAL_S="0.01")
        server.answer_late_next(route, 1, delay_s=30.0)
        proc = tree.start(script, args, env)
        deadline = time.monotonic() + 60
        while count(server) < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(0.2)  # the answer is on its way: kill before it arrives
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seconds, code, last = tree.run(script, args, env)
        return f"{count(server)} created (rerun exit {code})"


def ft_kill(tree: Tree, folder: Path) -> Result:
    data = folder / "ft_data.jsonl"
    data.write_text("".join(f'{{"prompt": "p{i}", "completion": "1, 2"}}\n' for i in range(40)))
    out = folder / "model.json"
    for stale in (out, out.with_name(out.name + ".job.json")):
        stale.unlink(missing_ok=True)
    args = cli_args(_config(folder, 10), "ft_job", dataset_path=data, output_path=out)
    return _kill_during_create(
        tree,
        folder,
        "POST /v1/fine_tuning/jobs",
        "run_finetuning_job.py",
        args,
        lambda s: s.ft_jobs_created,
    )


def batch_kill(tree: Tree, folder: Path) -> Result:
    raw, filtered = folder / "raw_batch.jsonl", folder / "filtered_batch.jsonl"
    for stale in (raw, filtered, raw.with_name(raw.name + ".batch.json")):
        stale.unlink(missing_ok=True)
    args = cli_args(
        _config(folder, 20), "batch_cfg", raw_dataset_path=raw, filtered_dataset_path=filtered
    )
    return _kill_during_create(
        tree, folder, "POST /v1/batches", "generate_dataset.py", args, lambda s: s.batches_created
    )


def dead(size: int) -> Callable[[Tree, Path], Result]:
    def scenario(tree: Tree, folder: Path) -> Result:
        env = tree.env(f"http://127.0.0.1:{_closed_port()}/v1")
        seconds, code, last = _generate(tree, folder, size, env)
        return f"{seconds:.1f} s (exit {code}) {last[:70]!r}"

    return scenario


def refused(tree: Tree, folder: Path) -> Result:
    with FakeOpenAIServer(require_api_key="another-key") as server:
        seconds, code, last = _generate(tree, folder, 300, tree.env(server.base_url))
        sent = server.endpoint_counts.get("POST /v1/chat/completions", 0)
        return f"{seconds:.1f} s, {sent} requests (exit {code}) {last[:50]!r}"


def slow_start(tree: Tree, folder: Path) -> Result:
    parts = []
    for label, rps in (("advertised", 50.0), ("silent", None)):
        with FakeOpenAIServer(rate_limit_rps=rps) as server:
            server.responder = responder
            env = tree.env(server.base_url, OPENAI_START_RPS="0.01")
            seconds, code, _ = _generate(tree, folder, 20, env)
            parts.append(f"{label} {seconds:.1f} s (exit {code})")
    return ", ".join(parts)


def garbage_url(tree: Tree, folder: Path) -> Result:
    seconds, code, last = _generate(tree, folder, 50, tree.env("not-a-url"))
    return f"{seconds:.1f} s (exit {code}) {last[:60]!r}"


SCENARIOS: dict[str, Callable[[Tree, Path], Result]] = {
    "ft_kill": ft_kill,
    "batch_kill": batch_kill,
    "dead300": dead(300),
    "dead1200": dead(1200),
    "refused": refused,
    "slow_start": slow_start,
    "garbage_url": garbage_url,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", help="a git revision to compare with (e.g. HEAD~3)")
    parser.add_argument("--only", help=f"comma-separated scenarios of {', '.join(SCENARIOS)}")
    parser.add_argument("--timeout", type=float, default=1200.0, help="per script run, seconds")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SCENARIOS)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": Tree(ROOT, args.timeout)}
        if args.baseline:
            base = Path(tmp) / "baseline"
            base.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.baseline, "sl", "scripts"],
                check=True,
                capture_output=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            trees = {args.baseline: Tree(base, args.timeout), **trees}
        for name in names:
            cells = []
            for label, tree in trees.items():
                folder = Path(tmp) / label.replace(" ", "_").replace("~", "_") / name
                folder.mkdir(parents=True, exist_ok=True)
                cells.append(f"{label}: {SCENARIOS[name](tree, folder)}")
            print(f"{name:<12} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
