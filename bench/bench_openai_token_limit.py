"""sl's OpenAI driver against a server that limits tokens per minute (and not requests).

    .venv/bin/python bench/bench_openai_token_limit.py             # 1,500 requests, 3,000 tok/s
    .venv/bin/python bench/bench_openai_token_limit.py --n 400     # quicker

The loopback OpenAI server (test/helpers/openai_server.py) admits a request only while its token
bucket (`--tps` tokens per second, one second of burst) holds the request's estimate and
charges the real prompt + completion tokens after answering. Prompts and answers vary in
length, so the driver must learn the token cost per request from the `usage` it gets back
and pace by the `x-ratelimit-*-tokens` headers. Prints the share of the token budget used
(tokens answered / (limit x run time); goal >= 0.90), 429s received and requests that failed
(must be 0). Measured figures: docs/benchmarks.md.
"""

import argparse
import asyncio
import random
import time

from openai_bench import loopback_server, sl_answered


def prompts(n: int, seed: int = 0) -> list[str]:
    """Numbers prompts of 10..60 words asking for 3..30 numbers."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        examples = ", ".join(str(rng.randint(100, 999)) for _ in range(rng.randint(3, 50)))
        out.append(f"Look at {examples}. Add up to {rng.randint(3, 30)} new numbers. {i}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--tps", type=float, default=3000.0, help="token limit per second")
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    with loopback_server(latency_s=args.latency, token_limit_tps=args.tps) as server:
        import openai  # noqa: F401  (imported before the clock starts: we time pacing)

        server.reset_stats()
        start = time.perf_counter()
        ok = asyncio.run(sl_answered(prompts(args.n)))
        elapsed = time.perf_counter() - start
        budget = args.tps * elapsed  # the limit over the run's duration
        used = server.tokens_used
        print(
            f"{args.n} requests, limit {args.tps:g} tokens/s, latency {args.latency} s: "
            f"{ok} ok, {args.n - ok} failed, {server.n_429} x 429, {used:,} tokens in "
            f"{elapsed:.1f} s"
        )
        print(f"tokens used / token budget = {used / budget:.3f}")


if __name__ == "__main__":
    main()
