"""OpenAI client construction and token accounting (shared by sampling, batches, fine-tuning)."""

from dataclasses import dataclass, field

from loguru import logger

from sl.config import Settings, get_settings, require_openai_key

# USD per 1M tokens (input, output), standard tier; the Batch API costs half.
PRICES_PER_M_TOKENS: dict[str, tuple[float, float]] = {
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
}
# Fine-tuned models are priced per base model, at fine-tuned rates (roughly 2x).
FT_PRICE_FACTOR = 2.0


def make_async_client(settings: Settings | None = None):
    """An `openai.AsyncOpenAI` for api.openai.com or OPENAI_BASE_URL; retries are ours."""
    import openai

    settings = settings or get_settings()
    return openai.AsyncOpenAI(
        api_key=require_openai_key(settings),
        base_url=settings.openai_base_url,
        max_retries=0,
        timeout=settings.openai_timeout_s,
    )


def price_per_m_tokens(model_id: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for a model id, fine-tuned ids included."""
    base = model_id.split(":")[1] if model_id.startswith("ft:") else model_id
    factor = FT_PRICE_FACTOR if model_id.startswith("ft:") else 1.0
    for name in sorted(PRICES_PER_M_TOKENS, key=len, reverse=True):
        if base.startswith(name):
            inp, out = PRICES_PER_M_TOKENS[name]
            return inp * factor, out * factor
    return None


@dataclass
class UsageTracker:
    """Counts tokens per model and estimates the cost."""

    prompt_tokens: dict[str, int] = field(default_factory=dict)
    completion_tokens: dict[str, int] = field(default_factory=dict)

    def add(self, model_id: str, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens[model_id] = self.prompt_tokens.get(model_id, 0) + prompt_tokens
        self.completion_tokens[model_id] = (
            self.completion_tokens.get(model_id, 0) + completion_tokens
        )

    def cost_usd(self, discount: float = 1.0) -> float | None:
        """Estimated cost; None if a model's price is unknown."""
        total = 0.0
        for model_id, n_in in self.prompt_tokens.items():
            price = price_per_m_tokens(model_id)
            if price is None:
                return None
            total += (n_in * price[0] + self.completion_tokens[model_id] * price[1]) / 1e6
        return total * discount

    def log(self, what: str, discount: float = 1.0) -> None:
        n_in, n_out = sum(self.prompt_tokens.values()), sum(self.completion_tokens.values())
        cost = self.cost_usd(discount)
        cost_text = f"~${cost:.4f}" if cost is not None else "cost unknown for this model"
        logger.info(f"{what}: {n_in:,} prompt + {n_out:,} completion tokens, {cost_text}")
