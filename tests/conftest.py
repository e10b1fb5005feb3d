from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner, Result

from pipeline.catalogue import load_catalogue
from pipeline.cli import cli as cli_group
from pipeline.generation.gates import VERSION as GATES
from pipeline.models import Comparison, PassageText, SourceRecord, Usage
from pipeline.settings import FetchPolicy
from tests.fakeserver import FakeLLM

REPO = Path(__file__).resolve().parent.parent
# The tests' own catalogue and briefs (a frozen copy): tests never depend on what the live catalogue holds.
FIXTURE = Path(__file__).resolve().parent / "data" / "workspace"
TEST_KEY = "sk-test-DO-NOT-LEAK-3f9a7c1e"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's keys, endpoints or pipeline settings."""
    for var in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "PIPELINE_WORKSPACE",
        "PIPELINE_STORE",
        "PIPELINE_PROVIDER",
        "PIPELINE_MODEL",
        "PIPELINE_LOCK_TIMEOUT",
        "PIPELINE_JUDGE",
        "PIPELINE_OFFLINE",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    yield server
    server.stop()
    # Every request the pipeline sent, and every answer the server gave, follows OpenAI's published types.
    assert not server.violations, "\n".join(dict.fromkeys(server.violations))


def make_workspace(root: Path, base_url: str | None = None, extra: str = "") -> Path:
    shutil.copytree(FIXTURE / "config", root / "config")
    for name in ("prompts", "schemas"):
        shutil.copytree(REPO / name, root / name)
    profile = ""
    if base_url:
        profile = f"""
provider = "fake"

[providers.fake]
kind = "openai"
base_url = "{base_url}"
model = "fake-model"
dialect = "json_schema"
api_key_env = "PIPELINE_TEST_KEY"
"""
    # `extra` comes first: its top-level keys must precede every table.
    (root / "config" / "pipeline.toml").write_text(
        extra
        + profile
        + """
[transport]
max_retries = 3
deadline_s = 20
timeout_s = 5
connect_timeout_s = 2
backoff_initial_s = 0.01
backoff_max_s = 0.05
retry_after_cap_s = 2
""",
        encoding="utf-8",
    )
    return root


@pytest.fixture
def workspace(tmp_path: Path, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIPELINE_TEST_KEY", TEST_KEY)
    return make_workspace(tmp_path / "ws", fake.base_url)


@pytest.fixture
def run_cli(workspace: Path) -> Iterator[object]:
    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli_group, ["--workspace", str(workspace), *args], catch_exceptions=False)

    yield invoke


def cli(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`pipeline --workspace WS ARGS...` run in this process, as a finished process would report it.

    An exception the command did not handle is a crash: its traceback lands on stderr and the
    exit code is 1, as for `python -m pipeline`. Tests that need a real process (signals, kills,
    several processes at once, what a fresh interpreter imports) use `cli_process`.
    """
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = CliRunner().invoke(cli_group, ["--workspace", str(ws), *args], catch_exceptions=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    stderr = result.stderr
    code = result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(*result.exc_info))
        code = 1
    return subprocess.CompletedProcess(["pipeline", *args], code, result.stdout, stderr)


def cli_process(ws: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline --workspace WS ARGS...` in a new process."""
    return subprocess.run([sys.executable, "-m", "pipeline", "--workspace", str(ws), *args],
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def db(ws: Path, sql: str) -> list[tuple]:
    """Rows of a query on the workspace's store, opened read-only."""
    con = duckdb.connect(str(ws / ".pipeline/store.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def refused(config: Path) -> str:
    """Why the catalogue under `config` left a file out (a bad file fails only its own category)."""
    catalogue = load_catalogue(config)
    assert catalogue.broken, "expected a catalogue file to be refused"
    assert catalogue.categories, "the other categories must still load"
    return " ".join(catalogue.broken.values())


def add_category(ws: Path, subjects: int = 11) -> None:
    """A `widgets` category of `subjects` made-up subjects (11: 55 pairs)."""
    lines = ['[category]\nid = "widgets"\nname = "Widgets"\n',
             '[[category.dimensions]]\nname = "Speed"\nkind = "level"\nlevels = ["Slow", "Fast"]\n',
             '[[category.dimensions]]\nname = "Notes"\nkind = "text"\n']  # fmt: skip
    for i in range(subjects):
        lines.append(
            f'[[subjects]]\nid = "widget-{i:02d}"\nname = "Widget {i:02d}"\nvendor = "Acme"\n'
            f'description = "Widget number {i} is a test subject."\n'
        )
    (ws / "config/catalogue/widgets.toml").write_text("\n".join(lines))


# -- the reference case: the seed page's content as a capable model returns it ---------------------

GOLDEN = Path(__file__).parent / "golden"
CAT = load_catalogue(FIXTURE / "config")
PAIR = CAT.pair("image-classification,image-segmentation")


def rating(value, r: int, why: str, cite: str) -> dict:
    return {"value": value, "rating": r, "rationale": why, "sources": [cite]}


def points(*items: tuple[str, str]) -> list[dict]:
    return [{"text": text, "sources": [cite]} for text, cite in items]


# The reference page's own content, as a capable model would return it under the content gates:
# ratings that agree with their values, sentences, each subject citing its own passages.
REFERENCE_DATA = {
    "a": {
        "subject": "Image Classification",
        "dimensions": {
            "Accuracy": rating(90, 9, "Modern classifiers reach about 90% top-1 accuracy on ImageNet.", "P2"),
            "Complexity": rating("Low", 3, "A pretrained model can be fine-tuned in a few lines of code.", "P3"),
            "Speed": rating("Fast", 7, "One forward pass gives the label, so inference is quick.", "P3"),
            "Applications": rating(["Photo Tagging", "Content Moderation"], 4,
                                   "It is used for photo tagging and content moderation.", "P4"),
            "Data Requirements": rating("Small", 3, "It needs comparatively little labelled data.", "P4"),
            "Real-world Impact": rating("Moderate", 4, "It is common in products but limited in depth.", "P2"),
        },
        "pros": points(("Easy to implement.", "P3"), ("Requires less computational power.", "P3"),
                       ("Can be used for simple tagging tasks.", "P4")),
        "cons": points(("Less accurate than image segmentation.", "P2"), ("Gives no location for objects.", "P4"),
                       ("May not provide detailed results.", "P4")),
    },
    "b": {
        "subject": "Image Segmentation",
        "dimensions": {
            "Accuracy": rating(95, 10, "Segmentation models reach about 95% pixel accuracy on standard benchmarks.",
                               "P6"),
            "Complexity": rating("High", 7, "It is complex because it predicts a label for every pixel.", "P7"),
            "Speed": rating("Slow", 3, "Dense per-pixel predictions make it slow.", "P7"),
            "Applications": rating(["Medical Imaging", "Autonomous Vehicles"], 10,
                                   "It is used in medical imaging and autonomous vehicles.", "P8"),
            "Data Requirements": rating("Large", 7, "It needs large amounts of pixel-level labelled data.", "P7"),
            "Real-world Impact": rating("High", 9, "Its real-world impact is high in medicine and driving.", "P6"),
        },
        "pros": points(("Provides more detailed and accurate results.", "P6"),
                       ("Can be used in complex applications such as medical imaging.", "P8"),
                       ("Gives the precise shape of every object.", "P8")),
        "cons": points(("More complex to implement.", "P7"), ("Slow, because it predicts every pixel.", "P7"),
                       ("May require large amounts of labelled data.", "P7")),
    },
    "verdict": {
        "winner": "Image Segmentation",
        "reasoning": "Image Segmentation is the winner due to its higher accuracy and real-world impact, making it "
        "a better choice for complex applications such as medical imaging and autonomous vehicles.",
    },
    "faq": [
        {"question": "What is the main difference between image classification and image segmentation?",
         "answer": "Image classification assigns a label to a whole image, while image segmentation labels every "
         "pixel of it."},
        {"question": "Which one is more accurate?",
         "answer": "Image segmentation, at about 95% pixel accuracy against about 90% top-1 accuracy."},
    ],
    "alternatives": ["Object Detection", "Keypoint Detection"],
}  # fmt: skip

SOURCES = (
    ("image-classification", "description", [("P1", CAT.subjects["image-classification"].description)]),
    ("image-classification", "brief", [
        ("P2", "Modern classifiers reach about 90% top-1 accuracy on ImageNet, and classification is common in "
               "products."),
        ("P3", "A pretrained model can be fine-tuned in a few lines of code, and one forward pass gives the label "
               "quickly, with less computational power than dense prediction."),
        ("P4", "Classification needs comparatively little labelled data and is used for photo tagging and content "
               "moderation, but it gives no location for objects."),
    ]),
    ("image-segmentation", "description", [("P5", CAT.subjects["image-segmentation"].description)]),
    ("image-segmentation", "brief", [
        ("P6", "Segmentation models reach about 95% pixel accuracy on standard benchmarks, with more detailed "
               "results and a high real-world impact in medicine and driving."),
        ("P7", "Segmentation is complex and slow to run: it predicts every pixel and needs large amounts of "
               "pixel-level labelled data."),
        ("P8", "It is used in complex applications such as medical imaging and autonomous vehicles, where the "
               "precise shape of every object matters."),
    ]),
)  # fmt: skip


def make(data: dict = REFERENCE_DATA, provider: str = "openai", model: str = "gpt-4o-mini") -> Comparison:
    sources = tuple(
        SourceRecord(subject, label, "text" if label == "description" else "brief",
                     "catalogue" if label == "description" else f"config/sources/{subject}.md",
                     (subject[6] + label[0]) * 32, passages=tuple(PassageText(pid, text) for pid, text in passages))
        for subject, label, passages in SOURCES
    )  # fmt: skip
    return Comparison(
        generation_id="0123456789abcdef", pair_key=PAIR.key, category=PAIR.category.id, data=data,
        generated_at="2026-06-15T09:30:00Z", provider=provider, model=model, cache_key="c" * 64,
        prompt_sha256="p" * 64, schema_sha256="s" * 64, sources=sources, attempts=1, usage=Usage(1200, 800),
        params={"dialect": "json_schema", "mode": "write", "gates": GATES}, template_sha256="t" * 64,
    )  # fmt: skip


EXISTING = frozenset({PAIR.key, "image-classification,object-detection"})

# A fetch policy for the tests' own servers on 127.0.0.1.
LOOPBACK = FetchPolicy(allow_loopback=True, read_timeout_s=1.0, connect_timeout_s=1.0, max_bytes=1_000_000)
