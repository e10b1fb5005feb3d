"""Samples (#20): k answers, their consensus, the spread in reports, and a diff that knows noise."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from pipeline.catalogue import load_catalogue
from pipeline.diff import diff_reports
from pipeline.errors import ConfigError
from pipeline.generation import consensus
from pipeline.models import Problem
from pipeline.settings import load_settings
from tests.conftest import PAIR, REFERENCE_DATA, REPO, TEST_KEY, cli, db, make_workspace
from tests.fakeserver import FakeLLM
from tests.noise import NoisyAnswers

DIMS = [d.name for d in PAIR.category.dimensions]


def with_ratings(ratings: dict[str, list[int]]) -> dict:
    """REFERENCE_DATA with these ratings (per side, in dimension order); values are left alone."""
    data = copy.deepcopy(REFERENCE_DATA)
    for side, values in ratings.items():
        for dim, value in zip(DIMS, values, strict=True):
            data[side]["dimensions"][dim]["rating"] = value
            data[side]["dimensions"][dim]["rationale"] = f"{side} {dim} rated {value} in this sample."
    return data


def profile_with(ratings: list[int]) -> dict:
    """Subject a's profile (of REFERENCE_DATA) with these ratings, in dimension order."""
    return with_ratings({"a": ratings})["a"]


def no_problems(_data: dict) -> list[Problem]:
    return []


# -- consensus ----------------------------------------------------------------------------------


def test_consensus_takes_the_median_cell_of_a_real_sample_and_texts_of_the_closest() -> None:
    base = [int(REFERENCE_DATA["a"]["dimensions"][d]["rating"]) for d in DIMS]
    low = [max(1, r - 2) for r in base]
    high = [min(10, r + 1) for r in base]
    samples = [profile_with(low), profile_with(base), profile_with(high)]
    samples[1]["pros"][0]["text"] = "The closest sample's own pro."
    made = consensus.build(samples, PAIR.category, 3, no_problems)
    for i, dim in enumerate(DIMS):
        cell = made.data["dimensions"][dim]
        assert cell["rating"] == base[i]
        # the rationale comes with the rating from the same sample: text and number agree
        assert cell["rationale"] == f"a {dim} rated {base[i]} in this sample."
    assert made.base == 1 and made.data["pros"][0]["text"] == "The closest sample's own pro."
    assert made.meta["method"] == "median" and made.meta["k"] == 3 and made.meta["valid"] == 3
    assert made.meta["ratings"][DIMS[0]] == [low[0], base[0], high[0]]


def test_consensus_value_is_the_most_frequent_among_cells_with_the_median_rating() -> None:
    samples = [profile_with([5] * len(DIMS)) for _ in range(3)]
    dim = DIMS[0]
    for sample, value in zip(samples, ["first", "second", "second"], strict=True):
        sample["dimensions"][dim]["value"] = value
    made = consensus.build(samples, PAIR.category, 3, no_problems)
    assert made.data["dimensions"][dim]["value"] == "second"


def test_consensus_falls_back_to_the_next_closest_then_to_the_closest_sample_whole() -> None:
    samples = [profile_with([4] * len(DIMS)), profile_with([6] * len(DIMS)), profile_with([5] * len(DIMS))]
    samples[2]["pros"][0]["text"] = "A pro the check refuses."
    seen: list[str] = []

    def refuses_that_pro(data: dict) -> list[Problem]:
        seen.append(data["pros"][0]["text"])
        refused = data["pros"][0]["text"] == "A pro the check refuses."
        return [Problem("pros[0]", "no", "consistency")] if refused else []

    made = consensus.build(samples, PAIR.category, 3, refuses_that_pro)
    assert made.meta["method"] == "median" and made.base != 2 and len(seen) == 2  # the closest, then the next
    nothing_passes = consensus.build(samples, PAIR.category, 3, lambda d: [Problem("x", "no")])
    assert nothing_passes.meta["method"] == "closest sample"
    assert nothing_passes.data == samples[nothing_passes.base]


def test_spread_and_standing() -> None:
    params = {"samples": {"k": 3, "valid": 3, "method": "median",
                          "ratings": {s: {d: [5, 6, 8] for d in DIMS} for s in ("a", "b")}}}  # fmt: skip
    data = with_ratings({"a": [6] * len(DIMS), "b": [6] * len(DIMS)})
    spread = consensus.spread_of(params, data, PAIR)
    assert spread is not None
    assert spread.rating_text("a", DIMS[0]) == " (5–8)"
    assert spread.overall["a"][0] < spread.overall["a"][1]
    assert spread.standing == "tie"
    assert consensus.spread_of({"dialect": "json_schema"}, data, PAIR) is None
    # the rule: firm only when the winner's lowest score beats the other's highest by more than the tie band
    assert consensus.standing("a", {"a": (7.0, 7.5), "b": (6.0, 6.7)}, 0.25) == "firm"
    assert consensus.standing("a", {"a": (6.8, 7.5), "b": (6.0, 6.7)}, 0.25) == "leans"
    assert consensus.standing("b", {"a": (6.0, 7.0), "b": (6.5, 7.5)}, 0.25) == "leans"
    # a pinned rating has no spread; the samples' overall scores use the pinned value
    data["a"]["dimensions"][DIMS[0]]["overridden"] = ["rating"]
    pinned = consensus.spread_of(params, data, PAIR)
    assert pinned is not None and pinned.rating_text("a", DIMS[0]) == ""


# -- end to end over HTTP -----------------------------------------------------------------------


def noisy(fake: FakeLLM, ws: Path, p: float = 0.5) -> None:
    catalogue = load_catalogue(ws / "config")
    fake.noise = NoisyAnswers([catalogue.pair(PAIR.key)], p=p)


def test_samples_without_n_are_calls_with_their_own_seeds(workspace: Path, fake: FakeLLM) -> None:
    noisy(fake, workspace)
    result = cli(workspace, "run", "--pair", PAIR.key, "--samples", "3")
    assert result.returncode == 0, result.stderr
    # three samples of each profile (samples cost k per subject), then the pair's texts once
    assert [r.get("seed") for r in fake.requests] == [7, 1007, 2007, 7, 1007, 2007, 7]
    assert all("n" not in r for r in fake.requests)  # 127.0.0.1 is not a server known to take `n`
    rows = db(workspace, "SELECT sample, outcome FROM attempts WHERE pair_key = 'computer-vision/image-classification' "
                         "ORDER BY number")  # fmt: skip
    assert rows == [(1, "accepted"), (2, "accepted"), (3, "accepted")]
    shown = cli(workspace, "show", PAIR.key, "--attempts").stdout.splitlines()
    assert [line.split()[2:5] for line in shown[:3]] == [["#1", "(sample", "1)"], ["#2", "(sample", "2)"],
                                                         ["#3", "(sample", "3)"]]  # fmt: skip
    (params, prompt_tokens), = db(workspace, "SELECT params, prompt_tokens FROM generations WHERE pair_key = "
                                             "'computer-vision/image-classification'")  # fmt: skip
    assert prompt_tokens == 300  # every sample's usage counts (100 prompt tokens each)
    meta = json.loads(params)["samples"]
    assert meta["k"] == 3 and meta["valid"] == 3 and set(meta["ratings"]) == {d.name for d in PAIR.category.rated}
    doc = json.loads(
        (workspace / "reports/computer-vision/image-classification-vs-image-segmentation.json").read_text()
    )
    schema = json.loads((REPO / "schemas/report.schema.json").read_text())
    assert not list(Draft202012Validator(schema).iter_errors(doc))
    spread = doc["computed"]["spread"]
    assert spread["samples"] == 3 and spread["standing"] in ("firm", "leans", "tie")
    for side in ("a", "b"):
        for dim, (low, high) in spread["ratings"][side].items():
            assert low <= doc["data"][side]["dimensions"][dim]["rating"] <= high
    md = (workspace / "reports/computer-vision/image-classification-vs-image-segmentation.md").read_text()
    assert "The model answered 3 times (3 valid samples)" in md
    shown = [f"{doc['data'][s]['dimensions'][d]['rating']}/10 ({lo}–{hi})"
             for s in ("a", "b") for d, (lo, hi) in spread["ratings"][s].items() if lo != hi]  # fmt: skip
    assert shown and all(text in md for text in shown)


def test_samples_come_from_one_request_with_n_where_the_server_takes_it(
    tmp_path: Path, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_TEST_KEY", TEST_KEY)
    ws = make_workspace(tmp_path / "ws", fake.base_url)
    config = ws / "config/pipeline.toml"
    config.write_text(config.read_text().replace('dialect = "json_schema"', 'dialect = "json_schema"\nchoices = true'))
    noisy(fake, ws)
    assert cli(ws, "run", "--pair", PAIR.key, "--samples", "3").returncode == 0
    assert fake.calls == 3 and fake.requests[0]["n"] == 3 and "n" not in fake.requests[2]  # the texts: one answer
    unit = "computer-vision/image-classification"
    assert db(ws, f"SELECT sample, prompt_tokens FROM attempts WHERE pair_key = '{unit}' ORDER BY number") == [
        (1, 100), (2, 0), (3, 0)]  # fmt: skip
    assert db(ws, f"SELECT prompt_tokens FROM generations WHERE pair_key = '{unit}'") == [(100,)]  # billed once


def test_the_cache_key_includes_samples(workspace: Path, fake: FakeLLM) -> None:
    assert cli(workspace, "run", "--pair", PAIR.key).returncode == 0
    assert cli(workspace, "run", "--pair", PAIR.key, "--samples", "2").returncode == 0
    # one sample each, then two fresh samples of each profile and new texts: a single sample is not a consensus
    assert fake.calls == 3 + 5
    again = cli(workspace, "run", "--pair", PAIR.key, "--samples", "2")
    assert again.stdout.count("cache hit") == 3 and fake.calls == 8
    keys = {row[0] for row in db(workspace, "SELECT cache_key FROM generations WHERE kind = 'profile'")}
    assert len(keys) == 4


def test_a_majority_of_valid_samples_is_enough_and_a_minority_fails(workspace: Path, fake: FakeLLM) -> None:
    config = workspace / "config/pipeline.toml"
    config.write_text(config.read_text() + "\n[generation]\nmax_attempts = 1\nsamples = 3\n")
    unit = "computer-vision/image-classification"
    fake.push({"kind": "schema_invalid"})
    assert cli(workspace, "run", "--pair", PAIR.key).returncode == 0
    (params,), = db(workspace, f"SELECT params FROM generations WHERE pair_key = '{unit}'")  # fmt: skip
    assert json.loads(params)["samples"]["valid"] == 2
    fake.push({"kind": "schema_invalid"}, {"kind": "schema_invalid"})
    failed = cli(workspace, "run", "--pair", PAIR.key, "--force")
    assert failed.returncode != 0
    assert "in too many of 3 samples (1 valid, a majority needed)" in failed.stderr
    assert db(workspace, f"SELECT count(*) FROM generations WHERE pair_key = '{unit}'") == [(1,)]


def test_samples_settings_are_checked(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", extra="[generation]\nsamples = 0\n")
    with pytest.raises(ConfigError, match=r"\[generation\] samples must be a whole number from 1 to 9, not 0"):
        load_settings(ws)
    batch = tmp_path / "b.toml"
    batch.write_text(f'pairs = ["{PAIR.key}"]\n[generation]\nsamples = 12\n')
    from pipeline.batch import load_batch

    with pytest.raises(ConfigError, match="samples must be a whole number from 1 to 9"):
        load_batch(batch)
    batch.write_text(f'pairs = ["{PAIR.key}"]\n[generation]\ntemperature = 3\n')
    with pytest.raises(ConfigError, match=r"b\.toml:3: \[generation\]: unknown key `temperature`"):
        load_batch(batch)
    batch.write_text(f'pairs = ["{PAIR.key}"]\n[generation]\nseed = 3\n')
    assert load_batch(batch).seed == 3
    batch.write_text(f'pairs = ["{PAIR.key}"]\n[generation]\nsamples = 3\n')
    assert load_batch(batch).samples == 3


def test_a_batch_file_sets_samples_and_the_flag_wins(workspace: Path, fake: FakeLLM) -> None:
    batch = workspace / "b.toml"
    batch.write_text(f'pairs = ["{PAIR.key}"]\n[generation]\nsamples = 2\n')
    assert cli(workspace, "batch", str(batch)).returncode == 0
    assert fake.calls == 5  # two samples of each profile, the texts once
    assert cli(workspace, "batch", str(batch), "--force", "--samples", "3").returncode == 0
    assert fake.calls == 5 + 7
    refused = cli(workspace, "batch", str(batch), "--via", "openai-batch")
    assert refused.returncode == 2 and "not supported with --via openai-batch" in refused.stderr


# -- the diff -----------------------------------------------------------------------------------


def report(ratings: dict[str, list[int]], spread: dict[str, list[list[int]]] | None, winner: str = "tie") -> dict:
    data = with_ratings(ratings)
    doc = {"data": data, "subjects": {"a": {"name": PAIR.a.name}, "b": {"name": PAIR.b.name}},
           "computed": {"overall": {"a": 6.0, "b": 6.0}, "winner_name": winner},
           "provenance": {"generated_at": "2026-12-01T00:00:00Z", "model": "m", "generation_id": "g",
                          "sources": []}}  # fmt: skip
    if spread is not None:
        doc["computed"]["spread"] = {
            "ratings": {s: dict(zip(DIMS, spread[s], strict=True)) for s in ("a", "b")},
            "overall": {"a": [5.5, 6.5], "b": [5.5, 6.5]},
            "standing": "tie",
        }
    return doc


def test_diff_marks_moves_within_the_spread_as_noise_and_the_threshold_still_applies() -> None:
    n = len(DIMS)
    old = report({"a": [6] * n, "b": [6] * n}, {"a": [[5, 7]] * n, "b": [[6, 6]] * n})
    new = report({"a": [7] * n, "b": [8] * n}, {"a": [[6, 7]] * n, "b": [[7, 8]] * n})
    changes = {c.where: c for c in diff_reports(old, new).changes if c.kind == "rating"}
    inside = changes[f"{DIMS[0]} / {PAIR.a.name}"]
    assert not inside.material and "spreads overlap (5–7 before, 6–7 now): noise, not material" in inside.note
    outside = changes[f"{DIMS[0]} / {PAIR.b.name}"]  # 6 → 8, the old range 6–6, the new 7–8
    assert outside.material and "noise" not in outside.note
    # `--threshold` on top: a move of 2 under a threshold of 3 is not material either
    assert not any(c.material for c in diff_reports(old, new, threshold=3).changes if c.kind == "rating")
    # the previous value inside the new spread is noise too
    back = {c.where: c for c in diff_reports(new, old).changes if c.kind == "rating"}
    assert not back[f"{DIMS[0]} / {PAIR.a.name}"].material
    # ranges that overlap without either value inside the other's: 5 (5–6) then 7 (6–7) is noise,
    # 5 (5–6) then 8 (7–8) is not
    apart = report({"a": [5] * n, "b": [5] * n}, {"a": [[5, 6]] * n, "b": [[5, 6]] * n})
    later = report({"a": [7] * n, "b": [8] * n}, {"a": [[6, 7]] * n, "b": [[7, 8]] * n})
    moved = {c.where: c for c in diff_reports(apart, later).changes if c.kind == "rating"}
    assert not moved[f"{DIMS[0]} / {PAIR.a.name}"].material
    assert moved[f"{DIMS[0]} / {PAIR.b.name}"].material
    # one side without samples counts as its one value: 6 then 7 (6–7) is noise, 6 then 8 (7–8) is not
    single = report({"a": [6] * n, "b": [6] * n}, None)
    onto = {c.where: c for c in diff_reports(single, new).changes if c.kind == "rating"}
    assert (
        not onto[f"{DIMS[0]} / {PAIR.a.name}"].material
        and "6 before, 6–7 now" in onto[f"{DIMS[0]} / {PAIR.a.name}"].note
    )
    assert onto[f"{DIMS[0]} / {PAIR.b.name}"].material
    # without samples every move is material, as before
    plain = diff_reports(report({"a": [6] * n, "b": [6] * n}, None), report({"a": [7] * n, "b": [6] * n}, None))
    assert all(c.material for c in plain.changes if c.kind == "rating")


def test_diff_counts_a_winner_flip_between_close_calls_as_noise() -> None:
    n = len(DIMS)
    spread = {"a": [[5, 7]] * n, "b": [[5, 7]] * n}
    old, new = (
        report({"a": [6] * n, "b": [6] * n}, spread, PAIR.a.name),
        report({"a": [6] * n, "b": [6] * n}, spread, PAIR.b.name),
    )
    old["computed"]["spread"]["standing"] = new["computed"]["spread"]["standing"] = "leans"
    flip = next(c for c in diff_reports(old, new).changes if c.kind == "winner")
    assert not flip.material and "close calls" in flip.note
    new["computed"]["spread"]["standing"] = "firm"
    assert next(c for c in diff_reports(old, new).changes if c.kind == "winner").material


def test_an_overall_move_made_only_of_noise_is_not_material() -> None:
    n = len(DIMS)
    old = report({"a": [6] * n, "b": [6] * n}, {"a": [[5, 7]] * n, "b": [[6, 6]] * n})
    new = report({"a": [7] * n, "b": [6] * n}, {"a": [[7, 7]] * n, "b": [[6, 6]] * n})
    old["computed"]["spread"]["overall"] = {"a": [6.0, 6.0], "b": [6.0, 6.0]}
    new["computed"]["spread"]["overall"] = {"a": [7.0, 7.0], "b": [6.0, 6.0]}
    new["computed"]["overall"]["a"] = 7.0
    moved = next(c for c in diff_reports(old, new).changes if c.kind == "overall")
    assert not moved.material and "every rating move behind it is noise" in moved.note
    # once a rating behind it moved materially, so did the overall score
    new["data"]["a"]["dimensions"][DIMS[0]]["rating"] = 9
    new["computed"]["spread"]["ratings"]["a"][DIMS[0]] = [8, 9]
    assert next(c for c in diff_reports(old, new).changes if c.kind == "overall").material


def test_the_estimate_counts_every_sample(workspace: Path, fake: FakeLLM) -> None:
    batch = workspace / "b.toml"
    batch.write_text(f'pairs = ["{PAIR.key}"]\n')
    one = cli(workspace, "batch", str(batch), "--dry-run").stdout
    three = cli(workspace, "batch", str(batch), "--dry-run", "--samples", "3").stdout
    tokens = [[int(w) for w in line.split("estimated ")[1].split() if w.isdigit()] for line in (one, three)]
    # three samples of each profile; the pair's texts (counted at a fixed size) are written once
    later = 1500, 700  # LATER_PROMPT_TOKENS and half of max_tokens
    assert [t - x for t, x in zip(tokens[1], later, strict=True)] == [
        3 * (t - x) for t, x in zip(tokens[0], later, strict=True)
    ]
    assert fake.calls == 0


def test_a_report_shows_the_spread_and_a_leaning_winner(tmp_path: Path) -> None:
    from dataclasses import replace

    from pipeline.render import Renderer
    from pipeline.scoring import winner
    from tests.conftest import CAT, EXISTING, make

    won, _, _ = winner(REFERENCE_DATA, PAIR.category)
    assert won != "tie"
    ratings = {s: {d: [min(10, max(1, int(REFERENCE_DATA[s]["dimensions"][d]["rating"]) + step)) for step in (-2, 0, 2)]
                   for d in DIMS} for s in ("a", "b")}  # fmt: skip
    base = make()
    c = replace(base, params={**base.params, "samples": {"k": 3, "valid": 3, "method": "median", "ratings": ratings}})
    files = Renderer(CAT, tmp_path).render(c, EXISTING).files
    name = PAIR.a.name if won == "a" else PAIR.b.name
    assert f"**Leans: {name}**" in files["md"] and f"{name} leans ahead" in files["md"]
    assert f"<strong>Leans: {name}</strong>" in files["html"]
    first = ratings["a"][DIMS[0]]
    assert f"{first[1]}/10 ({first[0]}–{first[2]})" in files["md"]
    doc = json.loads(files["json"])
    schema = json.loads((REPO / "schemas/report.schema.json").read_text())
    assert not list(Draft202012Validator(schema).iter_errors(doc))
    assert doc["computed"]["spread"]["standing"] == "leans"
    # the same comparison from one sample: a firm winner, no ranges, as before samples existed
    plain = Renderer(CAT, tmp_path / "plain").render(base, EXISTING).files
    assert f"**Winner: {name}**" in plain["md"] and "spread" not in json.loads(plain["json"])["computed"]


def test_a_value_one_of_the_other_generations_samples_gave_is_noise() -> None:
    n = len(DIMS)
    old = report({"a": [6] * n, "b": [6] * n}, {"a": [[6, 6]] * n, "b": [[6, 6]] * n})
    new = copy.deepcopy(old)
    dim = DIMS[0]
    old_value = old["data"]["a"]["dimensions"][dim]["value"]
    new["data"]["a"]["dimensions"][dim]["value"] = "Another value"
    changed = next(c for c in diff_reports(old, new).changes if c.kind == "value")
    assert changed.material  # no sample gave it
    new["computed"]["spread"]["values"] = {"a": {dim: ["Another value", old_value]}, "b": {}}
    changed = next(c for c in diff_reports(old, new).changes if c.kind == "value")
    assert not changed.material and "noise, not material" in changed.note


def test_regenerations_differ_by_noise_only_until_the_inputs_change(workspace: Path, fake: FakeLLM) -> None:
    """Over HTTP with the seeded noise model: a new seed moves ratings within the samples' spread
    (no material change), and a real change (a cell's true rating moved) is material, alone."""
    noisy(fake, workspace, p=0.2)
    config = workspace / "config/pipeline.toml"
    base = config.read_text()

    def regenerate(seed: int) -> None:
        config.write_text(base + f"\n[generation]\nseed = {seed}\n")
        result = cli(workspace, "run", "--pair", PAIR.key, "--samples", "3", "--force")
        assert result.returncode == 0, result.stderr

    def diff() -> tuple[int, list[dict]]:
        result = cli(workspace, "diff", PAIR.key, "--format", "json")
        return result.returncode, json.loads(result.stdout)["changes"]

    regenerate(7)
    moves = 0
    for seed in (8, 9):
        regenerate(seed)
        code, changes = diff()
        ratings = [c for c in changes if c["kind"] == "rating"]
        assert code == 0 and not any(c["material"] for c in changes)
        assert all("noise, not material" in c["note"] for c in ratings)
        moves += len(ratings)
    assert moves  # the noise did move ratings: there was something to tell apart
    assert isinstance(fake.noise, NoisyAnswers)
    fake.noise.displaced = {(PAIR.a.id, DIMS[0])}
    regenerate(10)
    code, changes = diff()
    material = [c["where"] for c in changes if c["material"] and c["kind"] == "rating"]
    assert code != 0 and material == [f"{DIMS[0]} / {PAIR.a.name}"]
