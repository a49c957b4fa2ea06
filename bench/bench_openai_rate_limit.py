"""sl's OpenAI driver vs a naive asyncio.gather client, side by side, against a rate limit.

    .venv/bin/python bench/bench_openai_rate_limit.py            # 3,000 samples, 50 req/s
    .venv/bin/python bench/bench_openai_rate_limit.py --n 500    # quicker

Both clients send the same requests to the loopback OpenAI server (test/helpers/openai_server.py)
limited to `--rps` requests/s with `--latency` s per request. Prints achieved throughput as
a fraction of the limit (goal >= 0.95), 429s received and rows lost (must be 0). Measured
figures: docs/benchmarks.md.
"""

import argparse
import asyncio
import time

from openai_bench import MODEL, loopback_server, sl_answered  # puts test/helpers on sys.path
from openai_server import FakeOpenAIServer


def prompts(n: int) -> list[str]:
    return [f"Continue: {i}, {i + 1}. Add 3 numbers." for i in range(n)]


async def run_naive(base_url: str, n: int, concurrency: int) -> int:
    """What a quick script does: gather everything behind a big semaphore, SDK retries."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=2)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> bool:
        async with semaphore:
            try:
                await client.chat.completions.create(
                    model=MODEL.id, messages=[{"role": "user", "content": prompt}]
                )
                return True
            except openai.APIError:
                return False

    results = await asyncio.gather(*(one(p) for p in prompts(n)))
    await client.close()
    return sum(results)


def measure(name: str, server: FakeOpenAIServer, n: int, rps: float, coro_factory) -> None:
    server.rate_limit_rps = rps  # refills the bucket: both start equal
    server.reset_stats()
    start = time.perf_counter()
    ok = asyncio.run(coro_factory())
    elapsed = time.perf_counter() - start
    throughput = ok / elapsed
    print(
        f"{name:<28} {ok:>6} ok {n - ok:>5} lost {server.n_429:>6} x 429 "
        f"{elapsed:>7.1f} s {throughput:>7.1f} req/s  throughput/limit = {throughput / rps:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rps", type=float, default=50.0)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--naive_concurrency", type=int, default=200)
    args = parser.parse_args()
    with loopback_server(latency_s=args.latency) as server:
        print(f"{args.n} requests, limit {args.rps} req/s, latency {args.latency} s")
        asked = prompts(args.n)
        measure("sl (adaptive pacing)", server, args.n, args.rps, lambda: sl_answered(asked))
        measure(
            f"naive gather (sem {args.naive_concurrency})",
            server,
            args.n,
            args.rps,
            lambda: run_naive(server.base_url, args.n, args.naive_concurrency),
        )


if __name__ == "__main__":
    main()
