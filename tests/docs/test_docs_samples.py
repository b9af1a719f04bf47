"""Every code sample marked to run in docs/*.md runs against a real sidecar, so the guides cannot rot.

A sample is the fenced block right after an HTML comment (the comment does not render):

    <!-- sample: run -->                     run it; it must exit 0
    <!-- sample: run expect="some text" -->  ... and print that text
    <!-- sample: run xfail="why" -->         strict xfail: the test flips when ``why`` is fixed
    <!-- sample: run database="fleet-ledger" -->  with SLUICEGATE_DATABASE_URL: a fleet ledger in a
                                             real PostgreSQL (tests/support/postgres.py), exports/
    <!-- sample: run needs="claude" -->      a bash sample calling Claude Code (``claude``)

Languages: ``python`` (the venv's python, in a subprocess), ``bash``/``sh``/``shell`` (bash -euo
pipefail, with ``curl`` failing on HTTP errors; skipped without curl when they call it), ``js``/
``javascript`` (node, with the Node SDKs pinned in tests/support/node — the ``openai`` package, the
Vercel AI SDK — npm-installed into .tools/node-sdks by tests/support/node_sdks.py; set
SLUICEGATE_DOCS_NODE=skip to skip them; they are skipped when node or npm is not installed).
``needs="claude"`` samples get Claude Code, npm-installed once per session (pinned, into a temp dir;
skipped with the reason when node, npm or the registry is unavailable), on PATH with a temp HOME.
Samples run in a fresh directory holding ``examples/`` (a link to the
repo's), against ``sluicegate render -f examples/ --offline`` served by the real sidecar: the text
``127.0.0.1:8470``/``127.0.0.1:9470`` is pointed at its API/ops ports, and ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY`` are set the way the webhook sets them in a Pod.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from sluicegate_cli.main import main as cli
from tests.support import node_sdks
from tests.support.crdvalidate import load_crds, validate
from tests.support.postgres import database_url, postgres_server
from tests.support.sidecar_harness import SidecarThread

__all__ = ["database_url", "postgres_server"]  # fixtures: samples marked database="fleet-ledger"

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MARKER = re.compile(r"^<!--\s*sample:\s*run\b(?P<attrs>.*?)-->\s*$")
ATTR = re.compile(r'(\w+)="([^"]*)"')
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
LANGS = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
LANGS |= {"js": "node", "javascript": "node", "mjs": "node"}
CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.332"  # pinned; ~1 min to install, then ~5 s a session
TIMEOUT = 90


@dataclass(frozen=True)
class Sample:
    path: Path
    line: int
    lang: str
    code: str
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """FILE:LINE of the opening fence."""
        return f"{self.path.name}:{self.line}"


def extract(path: Path) -> list[Sample]:
    """The marked samples of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    samples: list[Sample] = []
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i].strip())
        i += 1
        if not marker:
            continue
        while i < len(lines) and not lines[i].strip():
            i += 1
        opening = FENCE.match(lines[i]) if i < len(lines) else None
        if opening is None:
            raise AssertionError(f"{path.name}:{i}: a sample marker must be followed by a fenced block")
        start, body = i + 1, []  # the opening fence's line number
        i += 1
        while i < len(lines) and not lines[i].startswith(opening["fence"]):
            body.append(lines[i])
            i += 1
        lang = LANGS.get(opening["lang"].lower(), opening["lang"].lower())
        samples.append(Sample(path, start, lang, "\n".join(body) + "\n", dict(ATTR.findall(marker["attrs"]))))
        i += 1
    return samples


def all_samples() -> list[Sample]:
    return [s for path in sorted(DOCS.glob("*.md")) for s in extract(path)]


def params() -> list:
    out = []
    for sample in all_samples():
        marks = (
            [pytest.mark.xfail(strict=True, reason=sample.attrs["xfail"])] if "xfail" in sample.attrs else []
        )
        out.append(pytest.param(sample, id=sample.id, marks=marks))
    return out


@pytest.fixture(scope="session")
def docs_sidecar(tmp_path_factory) -> Iterator[SidecarThread]:
    base = tmp_path_factory.mktemp("docs-sidecar")
    assert cli(["render", "-f", str(ROOT / "examples"), "-o", str(base / "config"), "--offline"]) == 0
    with SidecarThread(base / "config", base / "ledger") as sc:
        yield sc


@pytest.fixture(scope="session")
def node_dir() -> Path:
    """A directory whose node_modules holds the pinned Node SDKs (the openai package, the Vercel AI
    SDK: tests/support/node), or a skip saying why not."""
    if os.environ.get("SLUICEGATE_DOCS_NODE") == "skip":
        pytest.skip("Node samples skipped: SLUICEGATE_DOCS_NODE=skip")
    return node_sdks.install()


@pytest.fixture(scope="session")
def claude_bin(tmp_path_factory) -> Path:
    """The directory holding Claude Code's ``claude``, or a skip saying why not."""
    if os.environ.get("SLUICEGATE_DOCS_NODE") == "skip":
        pytest.skip("Claude Code samples skipped: SLUICEGATE_DOCS_NODE=skip")
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("Claude Code samples skipped: node and npm are needed to install it")
    directory = tmp_path_factory.mktemp("docs-claude-code")
    try:
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(directory), CLAUDE_CODE],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip(f"Claude Code samples skipped: npm install {CLAUDE_CODE} timed out")
    binary = directory / "node_modules" / ".bin" / "claude"
    if done.returncode != 0 or not binary.exists():
        pytest.skip(
            f"Claude Code samples skipped: npm install {CLAUDE_CODE} failed: {done.stderr.strip()[-300:]}"
        )
    return binary.parent


def environment(sc: SidecarThread) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PORTKEY_", "ANTHROPIC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["OPENAI_BASE_URL"] = sc.base_url
    env["OPENAI_API_KEY"] = "sluicegate-placeholder"
    env["ANTHROPIC_BASE_URL"] = sc.root_url
    env["ANTHROPIC_API_KEY"] = "sluicegate-placeholder"
    return env


def pointed(code: str, sc: SidecarThread) -> str:
    return code.replace("127.0.0.1:8470", f"127.0.0.1:{sc.port}").replace(
        "127.0.0.1:9470", f"127.0.0.1:{sc.ops_port}"
    )


BASH_PREAMBLE = """set -euo pipefail
curl() { command curl --fail-with-body --silent --show-error "$@"; }
"""


def command_for(sample: Sample, code: str, workdir: Path, request) -> list[str]:
    if sample.lang == "python":
        script = workdir / "sample.py"
        script.write_text(code)
        return [sys.executable, str(script)]
    if sample.lang == "bash":
        if re.search(r"(^|[\s;|(])curl\s", code) and shutil.which("curl") is None:
            pytest.skip("curl is not installed")
        preamble = BASH_PREAMBLE
        if sample.attrs.get("needs") == "claude":
            tools: Path = request.getfixturevalue("claude_bin")
            (workdir / "home").mkdir()
            preamble += f'export PATH="{tools}:$PATH" HOME="{workdir / "home"}"\n'
        script = workdir / "sample.sh"
        script.write_text(preamble + code)
        return ["bash", str(script)]
    if sample.lang == "node":
        modules: Path = request.getfixturevalue("node_dir")
        script = modules / f"sample-{sample.path.stem}-{sample.line}.mjs"
        script.write_text(code)
        return ["node", str(script)]
    raise AssertionError(f"{sample.id}: no runner for language {sample.lang!r}")


def fleet_ledger_database(request, workdir: Path) -> str:
    """For ``database="fleet-ledger"`` samples: a PostgreSQL fleet ledger holding the two report test
    ledgers as two sidecars' streams (with a price book), and their provider exports in ``exports/``."""
    from tests.reports.test_reports_database import record_book
    from tests.support.ledger_db import load_ledgers

    url: str = request.getfixturevalue("database_url")
    data = ROOT / "tests" / "reports" / "data"
    load_ledgers(url, {"sidecar-a": data / "recon-ledger", "sidecar-b": data / "savings-ledger"})
    record_book(url)
    (workdir / "exports").symlink_to(data, target_is_directory=True)
    return url


@pytest.mark.parametrize("sample", params())
def test_docs_sample_runs_against_the_sidecar(sample: Sample, docs_sidecar, tmp_path: Path, request) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    argv = command_for(sample, pointed(sample.code, docs_sidecar), tmp_path, request)
    env = environment(docs_sidecar)
    if sample.attrs.get("database") == "fleet-ledger":
        env["SLUICEGATE_DATABASE_URL"] = fleet_ledger_database(request, tmp_path)
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    shown = f"{sample.id} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, shown
    if "expect" in sample.attrs:
        assert sample.attrs["expect"] in done.stdout, shown


MINE = ("README.md", "quickstart-local.md", "concepts.md")
GUIDES = ("migrate-portkey.md", "migrate-hiway2llm.md", "migrate-tolvyn.md", "migrate-litellm.md")


@pytest.mark.parametrize("guide", GUIDES)
def test_every_migration_guide_runs_its_python_node_and_curl_samples(guide: str) -> None:
    samples = extract(DOCS / guide)
    assert {"python", "node"} <= {s.lang for s in samples}
    assert any(s.lang == "bash" and "curl " in s.code for s in samples)


def test_marked_samples_are_in_languages_the_suite_can_run() -> None:
    assert {s.lang for s in all_samples()} <= {"python", "bash", "node"}


def test_the_extractor_reads_marked_blocks_only(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        'Intro\n\n```python\nprint("not marked")\n```\n\n<!-- sample: run expect="hi" -->\n'
        '```python title="after"\nprint("hi")\n```\n'
    )
    [sample] = extract(page)
    assert (sample.lang, sample.code, sample.attrs, sample.line) == (
        "python",
        'print("hi")\n',
        {"expect": "hi"},
        8,
    )


def resource_blocks(path: Path) -> list[tuple[int, dict]]:
    """The sluicegate.io resources shown in a page's yaml blocks, with their line numbers."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M):
        line = text[: match.start()].count("\n") + 1
        for doc in yaml.safe_load_all(match.group(1)):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("sluicegate.io/"):
                found.append((line, doc))
    return found


def test_every_resource_shown_in_these_docs_passes_crd_validation() -> None:
    crds = load_crds(ROOT / "crds")
    shown = [(name, line, doc) for name in (*MINE, *GUIDES) for line, doc in resource_blocks(DOCS / name)]
    assert len(shown) >= 4
    for name, line, doc in shown:
        assert validate(doc, crds) == [], f"{name}:{line}"
