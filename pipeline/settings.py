"""Workspace and settings: where things live and how the pipeline is configured.

Precedence is flag > environment > `config/pipeline.toml` > built-in defaults.
Secrets come only from the environment and are never copied into settings
objects that get stored or printed: a profile names the *variable* that holds
its key.
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.configfile import read_toml
from pipeline.errors import ConfigError

PACKAGE_WORKSPACE = Path(__file__).parent / "_workspace"
SOURCE_TREE = Path(__file__).resolve().parent.parent  # prompts/ and schemas/ of a source checkout

BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "openai": {
        "kind": "openai",
        "model": "gpt-4o-mini",
        "dialect": "json_schema",
        "api_key_env": "OPENAI_API_KEY",
    },
    "local": {
        "kind": "local",
        "model": "smollm2-135m-instruct",
        "model_path": "",
        "small": True,
        "repeat_last_n": 512,
        "presence_penalty": 0.5,
    },
}
DIALECTS = ("json_schema", "json_object_schema", "json_object", "prompt")
_CHOICES = {
    "max_tokens_param": ("", "max_tokens", "max_completion_tokens"),
    "reasoning_effort": ("", "minimal", "low", "medium", "high"),
    "server": ("", "openai", "azure", "llamacpp", "vllm", "ollama", "other"),
    "profiles": ("subject", "grid"),
}


@dataclass(frozen=True)
class ProviderProfile:
    name: str
    kind: str  # "openai" (any OpenAI-compatible endpoint), "azure" (Azure OpenAI) or "local" (llama-cpp-python)
    model: str
    dialect: str = "json_schema"
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    model_path: str = ""
    n_ctx: int = 4096
    # A small model (the bundled 135M one) cannot write sound sentences about a comparison, but it
    # can choose: with small = true it selects values, ratings and supporting passages from the
    # sources, the report quotes those passages, and code composes the verdict and FAQ
    # (pipeline.generation.selection). Capable models write under the content gates.
    small: bool = False
    # Local models: how many recent tokens the repeat penalty looks at, and a presence penalty.
    # A wide window stops a small model from copying its previous rationale into the next one.
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    n_threads: int | None = None
    # What the model accepts (pipeline.providers.capabilities): detected from its name, overridable.
    reasoning: bool | None = None  # a reasoning model: max_completion_tokens, no sampling parameters
    max_tokens_param: str = ""  # "max_tokens" or "max_completion_tokens"
    sampling: bool | None = None  # send temperature / top_p / presence_penalty
    reasoning_effort: str = ""  # minimal, low, medium, high ("": the API's default)
    server: str = ""  # the server family: openai, azure, llamacpp, vllm, ollama, other (default: from base_url)
    reask_refusals: int = 0  # how many times a refusal is asked again (0: a refusal ends the item)
    # Azure OpenAI (kind = "azure"): base_url is the resource endpoint.
    api_version: str = ""
    deployment: str = ""  # default: the model name
    # Samples per generation for this profile (None: [generation] samples); see GenerationParams.
    samples: int | None = None
    # Whether the endpoint returns several choices for one request (`n`): None = by server family.
    choices: bool | None = None
    # How profiles are asked for: "subject" (one call per subject, the default) or "grid" (the subjects of
    # a category together, in calls of at most `grid_chars` characters of sources, rated side by side).
    profiles: str = "subject"
    grid_chars: int = 24_000


@dataclass(frozen=True)
class GenerationParams:
    max_attempts: int = 3
    temperature: float = 0.2
    top_p: float = 0.95
    max_tokens: int = 1400
    seed: int | None = 7
    repeat_penalty: float = 1.1
    # Answers asked for the same prompt; above 1 the published ratings are their consensus
    # (pipeline.generation.consensus) and each rating carries the samples' spread.
    samples: int = 1

    def for_cache(self) -> dict[str, Any]:
        # max_attempts does not change what one call returns, so it stays out of the key. `samples`
        # is in it only above 1, so that single-sample keys stay what they were before samples existed.
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "repeat_penalty": self.repeat_penalty,
            **({"samples": self.samples} if self.samples > 1 else {}),
        }

    def with_samples(self, samples: int | None) -> GenerationParams:
        """These parameters with `samples` (None: unchanged), checked."""
        if samples is None:
            return self
        check_samples(samples, "samples")
        return replace(self, samples=samples)


MAX_SAMPLES = 9


def check_samples(samples: int, where: str) -> None:
    if not 1 <= samples <= MAX_SAMPLES:
        raise ConfigError(f"{where} must be a whole number from 1 to {MAX_SAMPLES}, not {samples!r}")


@dataclass(frozen=True)
class TransportPolicy:
    max_retries: int = 4  # transport retries per attempt, after the first call
    deadline_s: float = 180.0  # wall-clock bound for one attempt including its retries
    timeout_s: float = 120.0  # read timeout of one HTTP call
    connect_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 20.0
    retry_after_cap_s: float = 60.0


@dataclass(frozen=True)
class BatchAPIPolicy:
    """`[batch_api]`: how `pipeline batch --via openai-batch` splits, waits and re-asks."""

    max_requests: int = 50_000  # per batch (the provider's limit); more are split into several batches
    max_bytes: int = 190_000_000  # per input file, under the provider's 200 MB limit
    completion_window: str = "24h"
    reask: str = "sync"  # invalid or failed items: "sync" (re-asked at once, full price) or "batch" (a follow-up batch)
    discount: float = 0.5  # Batch API price as a share of the price table's
    poll_s: float = 60.0  # --wait: seconds between status checks

    def with_reask(self, reask: str | None) -> BatchAPIPolicy:
        """The policy with `--reask` applied (None: as configured)."""
        return replace(self, reask=reask) if reask else self


@dataclass(frozen=True)
class PublishPolicy:
    """`[publish]`: where the reports folder is served, for canonical links and the sitemap ("" = not set)."""

    base_url: str = ""


@dataclass(frozen=True)
class GroundingPolicy:
    """`[grounding]`: an optional judge (a provider profile) that checks claims against their passages."""

    judge: str = ""


@dataclass(frozen=True)
class FetchPolicy:
    """`[fetch]`: how URL sources are fetched (and whether at all: `offline`)."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    deadline_s: float = 30.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    allow_private: bool = False
    allow_loopback: bool = False
    offline: bool = False


@dataclass(frozen=True)
class Settings:
    workspace: Path
    store_path: Path
    reports_dir: Path
    lock_timeout_s: float
    max_source_chars: int
    profiles: dict[str, ProviderProfile]
    default_provider: str
    generation: GenerationParams = field(default_factory=GenerationParams)
    transport: TransportPolicy = field(default_factory=TransportPolicy)
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    batch_api: BatchAPIPolicy = field(default_factory=BatchAPIPolicy)
    grounding: GroundingPolicy = field(default_factory=GroundingPolicy)
    publish: PublishPolicy = field(default_factory=PublishPolicy)

    @property
    def config_dir(self) -> Path:
        return self.workspace / "config"

    def data_dir(self, name: str) -> Path:
        """`prompts` or `schemas`: the workspace's own copy, else the one shipped in the package (a built
        wheel carries them in `pipeline/_workspace/`; a source checkout, `pip install -e`, has them beside
        the package)."""
        own = self.workspace / name
        if own.is_dir():
            return own
        shipped = PACKAGE_WORKSPACE / name
        return shipped if shipped.is_dir() else SOURCE_TREE / name


def resolve_workspace(flag: str | None) -> Path:
    """The workspace: `--workspace`, else PIPELINE_WORKSPACE, else the current folder or the nearest
    folder above it that is one (as git finds its repository from a subfolder)."""
    raw = flag or os.environ.get("PIPELINE_WORKSPACE")
    if raw:
        path = Path(raw).expanduser().resolve()
        if not _is_workspace(path):
            raise ConfigError(
                f"{path} is not a pipeline workspace (no config/catalogue/ or config/pipeline.toml); "
                "pass the folder that holds config/"
            )
        return path
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if _is_workspace(folder):
            return folder
    raise ConfigError(
        f"{here} is not inside a pipeline workspace (no folder with config/catalogue/ or config/pipeline.toml "
        "here or above); run from the workspace or pass --workspace DIR"
    )


def _is_workspace(path: Path) -> bool:
    return (path / "config" / "catalogue").is_dir() or (path / "config" / "pipeline.toml").is_file()


def load_settings(workspace: Path, *, store: str | None = None) -> Settings:
    cfg_path = workspace / "config" / "pipeline.toml"
    cfg = read_toml(cfg_path) if cfg_path.exists() else {}
    paths = _value(cfg, "paths", dict, cfg_path, {})
    store_raw = (
        store or os.environ.get("PIPELINE_STORE") or _value(paths, "store", str, cfg_path, ".pipeline/store.duckdb")
    )
    profiles = _profiles(cfg.get("providers", {}), cfg_path)
    default = os.environ.get("PIPELINE_PROVIDER") or _value(cfg, "provider", str, cfg_path, "auto")
    if default != "auto" and default not in profiles:
        raise ConfigError(f"unknown provider {default!r}; known: auto, {', '.join(sorted(profiles))}")
    lock = os.environ.get("PIPELINE_LOCK_TIMEOUT") or _value(
        _value(cfg, "store", dict, cfg_path, {}), "lock_timeout_s", float, cfg_path, 30.0
    )
    try:
        lock_timeout = float(lock)
    except ValueError:
        raise ConfigError(f"PIPELINE_LOCK_TIMEOUT must be a number of seconds, not {lock!r}") from None
    max_chars = _value(_value(cfg, "sources", dict, cfg_path, {}), "max_chars", int, cfg_path, 6000)
    if not 100 <= max_chars <= 1_000_000:
        raise ConfigError(f"{cfg_path}: [sources] max_chars must be from 100 to 1,000,000")
    return Settings(
        workspace=workspace,
        store_path=_under(workspace, store_raw),
        reports_dir=_under(workspace, _value(paths, "reports", str, cfg_path, "reports")),
        lock_timeout_s=lock_timeout,
        max_source_chars=max_chars,
        profiles=profiles,
        default_provider=default,
        generation=_generation(cfg.get("generation", {}), cfg_path),
        transport=_dataclass_from(TransportPolicy, cfg.get("transport", {}), cfg_path, "transport"),
        fetch=_fetch_policy(cfg.get("fetch", {}), cfg_path),
        batch_api=_batch_api_policy(cfg.get("batch_api", {}), cfg_path),
        grounding=_grounding_policy(cfg.get("grounding", {}), cfg_path, profiles),
        publish=_publish_policy(cfg.get("publish", {}), cfg_path),
    )


def _generation(raw: dict[str, Any], cfg_path: Path) -> GenerationParams:
    params: GenerationParams = _dataclass_from(GenerationParams, raw, cfg_path, "generation")
    check_samples(params.samples, f"{cfg_path}: [generation] samples")
    return params


def _publish_policy(raw: dict[str, Any], cfg_path: Path) -> PublishPolicy:
    policy: PublishPolicy = _dataclass_from(PublishPolicy, raw, cfg_path, "publish")
    url = policy.base_url.strip().rstrip("/")
    if url and (not url.startswith(("https://", "http://")) or any(ch in url for ch in " <>\"'?#")):
        raise ConfigError(
            f'{cfg_path}: [publish] base_url must be an http(s) URL such as "https://example.org/reports"'
        )
    return replace(policy, base_url=url)


def _grounding_policy(raw: dict[str, Any], cfg_path: Path, profiles: dict[str, ProviderProfile]) -> GroundingPolicy:
    policy: GroundingPolicy = _dataclass_from(GroundingPolicy, raw, cfg_path, "grounding")
    judge = os.environ.get("PIPELINE_JUDGE", policy.judge)
    if judge and judge not in profiles:
        raise ConfigError(
            f"{cfg_path}: [grounding] judge {judge!r} is not a provider profile; known: {', '.join(sorted(profiles))}"
        )
    if judge and profiles[judge].small:
        raise ConfigError(
            f"{cfg_path}: [grounding] judge {judge!r} is a small model (small = true); name a capable one"
        )
    return replace(policy, judge=judge)


def _batch_api_policy(raw: dict[str, Any], cfg_path: Path) -> BatchAPIPolicy:
    policy: BatchAPIPolicy = _dataclass_from(BatchAPIPolicy, raw, cfg_path, "batch_api")
    if policy.reask not in ("sync", "batch"):
        raise ConfigError(f'{cfg_path}: [batch_api] reask must be "sync" or "batch", not {policy.reask!r}')
    if policy.max_requests < 1 or policy.max_bytes < 1024:
        raise ConfigError(f"{cfg_path}: [batch_api] max_requests must be ≥ 1 and max_bytes ≥ 1024")
    return policy


def _fetch_policy(raw: dict[str, Any], cfg_path: Path) -> FetchPolicy:
    policy: FetchPolicy = _dataclass_from(FetchPolicy, raw, cfg_path, "fetch")
    if os.environ.get("PIPELINE_OFFLINE", "") not in ("", "0"):
        policy = replace(policy, offline=True)
    return policy


def choose_profile(settings: Settings, name: str | None, model: str | None) -> tuple[ProviderProfile, str]:
    """Pick the provider profile; returns it and a one-line note on why it was chosen."""
    chosen = name or settings.default_provider
    reason = "selected"
    if chosen == "auto":
        if os.environ.get("OPENAI_API_KEY"):
            chosen, reason = "openai", "OPENAI_API_KEY is set"
        else:
            chosen = "local"
            reason = (
                "no provider configured and no OPENAI_API_KEY: using the bundled demo model "
                "SmolLM2-135M-Instruct (set OPENAI_API_KEY or --provider for a capable model)"
            )
    if chosen not in settings.profiles:
        raise ConfigError(f"unknown provider {chosen!r}; known: auto, {', '.join(sorted(settings.profiles))}")
    profile = settings.profiles[chosen]
    model = model or os.environ.get("PIPELINE_MODEL")
    if model and profile.kind == "local" and model.endswith(".gguf"):
        # `--provider local --model path/to/model.gguf`: another GGUF file, in-process.
        profile = replace(profile, model=Path(model).stem.lower(), model_path=model)
    elif model:
        profile = replace(profile, model=model)
    return profile, reason


def _profiles(raw: dict[str, Any], where: Path) -> dict[str, ProviderProfile]:
    merged = {name: dict(p) for name, p in BUILTIN_PROFILES.items()}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [providers] must hold tables ([providers.<name>])")
    for name, body in raw.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: providers.{name} must be a table, not {body!r}"[:200])
        merged[name] = {**merged.get(name, {}), **body}
    out: dict[str, ProviderProfile] = {}
    for name, body in merged.items():
        if body.get("kind") not in ("openai", "azure", "local"):
            raise ConfigError(f"{where}: providers.{name}.kind must be 'openai', 'azure' or 'local'")
        if body.get("kind") == "azure":
            body.setdefault("api_key_env", "AZURE_OPENAI_API_KEY")
            if not body.get("base_url") or not body.get("api_version"):
                raise ConfigError(
                    f"{where}: providers.{name} (azure) needs base_url (https://<resource>.openai.azure.com) "
                    'and api_version (e.g. "2024-10-21")'
                )
        for key, allowed in _CHOICES.items():
            if body.get(key, allowed[0]) not in allowed:
                raise ConfigError(
                    f"{where}: providers.{name}.{key} must be one of {', '.join(a for a in allowed if a)}"
                )
        if "api_key" in body:
            raise ConfigError(
                f"{where}: providers.{name} has api_key; keys come only from the environment, "
                "name the variable with api_key_env instead"
            )
        if body.get("dialect", "json_schema") not in DIALECTS:
            raise ConfigError(f"{where}: providers.{name}.dialect must be one of {', '.join(DIALECTS)}")
        if "compact_schema" in body:
            raise ConfigError(
                f"{where}: providers.{name}.compact_schema is gone (it cut texts short); "
                "set small = true for a small model's selection mode, or remove it"
            )
        fields = ProviderProfile.__dataclass_fields__
        unknown = set(body) - set(fields)
        if unknown:
            raise ConfigError(f"{where}: providers.{name} has unknown keys: {', '.join(sorted(unknown))}")
        hints = typing.get_type_hints(ProviderProfile)
        for key, value in body.items():
            _check_type(value, hints[key], f"{where}: providers.{name}.{key}")
        if body.get("samples") is not None:
            check_samples(body["samples"], f"{where}: providers.{name}.samples")
        if body.get("profiles") == "grid" and body.get("small"):
            raise ConfigError(f"{where}: providers.{name}: a small model chooses per subject (selection mode); "
                              'grid mode is for capable models: remove profiles = "grid" or small = true')  # fmt: skip
        if not 2_000 <= int(body.get("grid_chars", 24_000)) <= 1_000_000:
            raise ConfigError(f"{where}: providers.{name}.grid_chars must be from 2,000 to 1,000,000 characters")
        out[name] = ProviderProfile(name=name, **body)
    return out


def _value(table: dict[str, Any], key: str, kind: type, where: Path, default: Any) -> Any:
    """One setting of the expected type (a table, a string, a number), or a one-line error."""
    value = table.get(key, default)
    if kind is not dict:
        _check_type(value, kind, f"{where}: {key}")
    elif not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table, not {value!r}"[:200])
    return value


def _dataclass_from(cls: Any, raw: Any, where: Path, table: str) -> Any:
    """A settings dataclass from a TOML table: unknown keys and wrong types are one-line errors."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [{table}] must be a table, not {raw!r}"[:200])
    unknown = set(raw) - set(cls.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"{where}: [{table}] has unknown keys: {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(cls)
    for key, value in raw.items():
        _check_type(value, hints[key], f"{where}: [{table}] {key}")
    return cls(**raw)


def _check_type(value: Any, hint: Any, where: str) -> None:
    """`value` as TOML gave it against a field's annotation (str, int, float, bool, X | None)."""
    allowed = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_args(hint) else [hint]
    for kind in allowed:
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            if value != value or value in (float("inf"), float("-inf")):
                break
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind in (str, bool) and isinstance(value, kind):
            return
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}
    expected = " or ".join(names.get(k, getattr(k, "__name__", str(k))) for k in allowed)
    raise ConfigError(f"{where} must be {expected}, not {value!r}"[:200])


def _under(workspace: Path, raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else workspace / path
