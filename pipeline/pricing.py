"""What model calls cost: prices from config/prices.toml, estimates before a run, the budget check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.configfile import read_toml
from pipeline.errors import ConfigError
from pipeline.models import Messages, Usage


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None  # prompt tokens served from the provider's cache

    def cost(self, usage: Usage) -> float:
        """Dollars: uncached and cached prompt tokens at their rates, completion (reasoning included) at output."""
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_rate = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        prompt = (usage.prompt_tokens - cached) * self.input_per_mtok + cached * cached_rate
        return (prompt + usage.completion_tokens * self.output_per_mtok) / 1e6


def load_price(config_dir: Path, model: str) -> Price | None:
    """The price of a model from config/prices.toml (a fine-tuned `ft:<base>:...` model: its own entry, else none)."""
    path = config_dir / "prices.toml"
    models = read_toml(path).get("models", {}) if path.exists() else {}
    entry = models.get(model)
    if not entry:
        return None
    cached = entry.get("cached_input_per_mtok")
    return Price(
        float(entry["input_per_mtok"]), float(entry["output_per_mtok"]), None if cached is None else float(cached)
    )


@dataclass(frozen=True)
class Estimate:
    """What a run would spend: prompt tokens from the rendered messages, completion at half of max_tokens."""

    generate: int
    fresh: int
    usage: Usage
    cost: float | None  # None: the model has no price

    def describe(self) -> str:
        cost = "unknown" if self.cost is None else f"${self.cost:.4f}"
        return (
            f"{self.generate} to generate, {self.fresh} fresh; estimated {self.usage.prompt_tokens} prompt + "
            f"{self.usage.completion_tokens} completion tokens, {cost}"
        )


def estimate(
    to_generate: Sequence[Messages],
    fresh: int,
    max_tokens: int,
    price: Price | None,
    *,
    discount: float = 1.0,
    samples: int = 1,
    one_prompt: bool = False,
    later: int = 0,
) -> Estimate:
    """The estimate for these prompts; `discount` is the Batch API's price factor (1.0 for direct calls).

    `samples`: answers per prompt, each a completion; their prompts are billed once with
    `one_prompt` (a single request with `n`), else once per sample. `later`: pair calls whose prompts
    exist only once their profiles are made, counted at `LATER_PROMPT_TOKENS` each (one answer)."""  # fmt: skip
    prompt = sum(sum(len(m["content"]) for m in messages.messages) // 4 for messages in to_generate)
    usage = Usage(prompt * (1 if one_prompt else samples) + later * LATER_PROMPT_TOKENS,
                  len(to_generate) * samples * max_tokens // 2 + later * max_tokens // 2)  # fmt: skip
    cost = None if price is None else round(price.cost(usage) * discount, 4)
    return Estimate(len(to_generate) + later, fresh, usage, cost)


# A pair's texts are asked from two profiles (values, ratings, rationales, pros and cons) and the
# instructions: about 1,500 tokens with the catalogue's categories (the reference pair's: 1,430).
LATER_PROMPT_TOKENS = 1500


def check_budget(est: Estimate, budget: float, *, where: str = "at Batch API prices") -> None:
    """Refuse, before anything is sent, a run whose estimate is over a budget (0: no budget)."""
    if budget and est.cost is not None and est.cost > budget:
        raise ConfigError(
            f"the batch would cost about ${est.cost:.2f} {where}, over the budget of ${budget:g}; raise --max-cost "
            "(or [limits] max_cost) or submit fewer pairs (--shard)"
        )
