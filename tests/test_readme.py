"""The README and every page under docs/ say only what runs: each command parses with the parser it
names (and its config, `--set` keys and values load), each Python snippet runs as written on a tiny
model in its place, every config key named exists, every relative link and repository path
resolves, and what the commands write lands under an ignored folder."""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import importlib
import json
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import EVAL, tiny_config
from tritemporal.model import TriTemporalModel
from tritemporal.train import train

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]

# where a documented command may write: folders git ignores, committed result records that a
# command regenerates on purpose, scratch space, and placeholders the reader fills in
WRITABLE = ("runs/", "demo/", "docs/results/", "docs/bench/", "/tmp/", "$OUT")
SHIPPED = "tritemporal/pretrained/"  # the shipped base's folder, rewritten by its own recipe
PLACEHOLDER = re.compile(r"^(\.\.\.|[A-Z][A-Z_0-9]*)(/.*)?$")  # ..., DIR, RUN, OUT/x
REPO_FOLDERS = ("adapters", "heads", "objectives", "scripts", "tests", "tritemporal", "configs")


def rel(page: Path) -> str:
    return str(page.relative_to(REPO))


def fenced(text: str, lang: str) -> list[str]:
    """The bodies of the ```lang blocks of a page."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def prose(text: str) -> str:
    """A page without its fenced blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def inline_code(text: str) -> list[str]:
    """The `inline code` spans of a page's prose, line breaks inside a span joined."""
    return [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", prose(text))]


def section(page: Path, heading: str) -> str:
    """The text under a heading (any level) up to the next heading of that level or above."""
    text = page.read_text()
    level = heading.split(" ", 1)[0]
    body = text.split(f"\n{heading}\n", 1)[1]
    return re.split(rf"\n#{{1,{len(level)}}} ", body, maxsplit=1)[0]


# ---------------------------------------------------------------------------------------------
# Shell commands


@dataclass(frozen=True)
class Command:
    page: str
    line: str
    fenced: bool  # a line of a ```bash block (parsed whole) or an inline mention

    def __str__(self) -> str:
        return f"{self.page}: {self.line}"


def bash_lines(block: str) -> Iterator[str]:
    """Logical lines of a bash block: continuations joined, comments dropped, and each line split
    at `&&`, `;` and `|` into the commands it runs."""
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(re.sub(r"\$s\b", "0", line), comments=True)  # `for s in 0 1 2`
        words = [w for w in words if not re.match(r"\d*[<>]", w)]  # redirections: 2>&1
        command: list[str] = []
        for word in [*words, ";"]:
            if word in ("&&", ";", "|", "||") or word.endswith(";"):
                if word.endswith(";") and word != ";":
                    command.append(word[:-1])
                if command:
                    yield shlex.join(command)
                command = []
            else:
                command.append(word)


def commands() -> list[Command]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for block in fenced(text, "bash"):
            found += [Command(rel(page), line, True) for line in bash_lines(block)]
        for span in inline_code(text):
            if re.match(r"(tritemporal \S|python3? (-m \S+|\S*scripts/\S+\.py)( |$))", span):
                found.append(Command(rel(page), span, False))
    return found


def tritemporal_argv(argv: list[str]) -> list[str] | None:
    """The arguments after `tritemporal` (or `-m tritemporal.cli`, `$(which tritemporal)`)."""
    for i, word in enumerate(argv):
        if word == "tritemporal" or (word == "tritemporal)" and argv[i - 1] == "$(which"):
            return argv[i + 1 :]
        if word == "tritemporal.cli" and argv[i - 1] == "-m":
            return argv[i + 1 :]
    return None


def script_argv(argv: list[str]) -> tuple[Path, list[str]] | None:
    """The scripts/*.py a `python scripts/X.py ...` line runs, and its arguments."""
    for i, word in enumerate(argv[:3]):
        match = re.search(r"(?:^|/)(scripts/[\w.]+\.py)$", word)
        if match:
            return REPO / match[1], argv[i + 1 :]
    return None


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        self.namespace = namespace


def parse_script(path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse `args` with the script's own argparse parser without running it (scripts without a
    parser take positional arguments and are only checked to exist)."""
    source = path.read_text()
    if "ArgumentParser" not in source:
        return
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        self.allow_abbrev = False
        raise _Parsed(original(self, args, namespace))

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        m.setattr(sys, "argv", [str(path), *args])
        module = runpy.run_path(str(path), run_name="documented_command")
        with pytest.raises(_Parsed):
            module["main"]()


def placeholder(value: str) -> bool:
    return bool(PLACEHOLDER.match(value)) or value.startswith("$")


def written_paths(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """What a parsed command writes (merge's `out` is positional, under the same name)."""
    paths = [getattr(args, name, None) for name in ("out", "plot", "json", "run_dir")]
    paths += [o.split("=", 1)[1] for o in overrides if o.startswith("train.run_dir=")]
    return [str(p) for p in paths if p is not None]


def check_tritemporal(command: Command, argv: list[str]) -> None:
    from tritemporal.cli import build_parser, overrides_from_args
    from tritemporal.config import load_config

    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for each in (parser, *subcommands.values()):
        each.allow_abbrev = False  # a page names each flag in full
    if not command.fenced:
        # an inline mention names a subcommand and some of its flags, often not a whole line
        assert argv and argv[0] in subcommands, f"{command}: no subcommand {argv[:1]}"
        flags = subcommands[argv[0]]._option_string_actions
        unknown = [w.split("=")[0] for w in argv[1:] if w.startswith("--")]
        assert all(f in flags for f in unknown), f"{command}: unknown flags {unknown}"
        if "[" in command.line or "..." in argv:
            return  # a usage synopsis (`--out DIR [--notes FILE.md]`, `compare ...`)
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            return  # a partial mention (`bench --mode`): its flags exist, that is all it claims
    else:
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{command}: does not parse")
    overrides = overrides_from_args(args) if hasattr(args, "overrides") else []
    config = getattr(args, "config", None)
    if config is not None and not placeholder(config):
        assert (REPO / config).is_file(), f"{command}: no config {config}"
    if hasattr(args, "overrides"):  # train, bench, import, label: the keys and values load
        path = REPO / config if config is not None and not placeholder(config) else None
        loaded = load_config(path, [o for o in overrides if "$" not in o])
        if args.command == "train" and "train.run_dir" not in " ".join(overrides):
            overrides.append(f"train.run_dir={loaded.train.run_dir}")
    for path in written_paths(args, overrides):
        shipped = path.startswith(SHIPPED) and command.page.startswith("docs/results/")
        assert path.startswith(WRITABLE) or placeholder(path) or shipped, f"{command}: {path}"


@pytest.mark.parametrize("command", commands(), ids=str)
def test_documented_command_parses_and_writes_under_an_ignored_folder(
    command: Command, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = shlex.split(command.line)
    args = tritemporal_argv(argv)
    if args is not None:
        check_tritemporal(command, args)
        return
    script = script_argv(argv)
    if script is not None:
        assert script[0].is_file(), f"{command}: no {script[0]}"
        parse_script(*script, monkeypatch)
        return
    if argv[:2] in (["python", "-m"], ["python3", "-m"]):
        module = argv[2]
        if module.startswith(("tests.", "tritemporal")):
            found = (REPO / module.replace(".", "/")).with_suffix(".py")
            assert found.is_file() or (REPO / module.replace(".", "/")).is_dir(), str(command)


def test_commands_are_found_on_every_page_that_has_them() -> None:
    pages = {c.page for c in commands() if c.fenced}
    expected = ["README.md", "docs/data.md", "docs/evaluation.md", "docs/training.md"]
    assert set(expected) <= pages, sorted(pages)
    assert len([c for c in commands() if c.fenced]) >= 60


def test_gitignore_covers_the_folders_commands_write() -> None:
    ignored = (REPO / ".gitignore").read_text().split()
    assert "runs/" in ignored and "demo/" in ignored  # nothing lands untracked in the repo root


def test_readme_evaluate_commands_use_the_held_out_clips_under_runs() -> None:
    block = fenced(section(README, "## Evaluate: `eval` and `compare`"), "bash")[0]
    make_clips, *uses = bash_lines(block)
    assert "--out runs/eval_clips" in make_clips
    assert uses and all("--data runs/eval_clips" in line for line in uses)


def test_the_shipped_base_is_reproduced_with_the_validation_clips_its_config_reads() -> None:
    block = fenced(section(DOCS / "models.md", "## The shipped base: `vit-tiny-drive`"), "bash")[0]
    make_clips = shlex.split(next(bash_lines(block)))
    config = yaml.safe_load((REPO / "configs" / "pretrain_small.yaml").read_text())
    assert make_clips[make_clips.index("--out") + 1] == config["eval"]["data"]


# ---------------------------------------------------------------------------------------------
# Config keys, YAML and JSON snippets


def dotted_keys() -> list[str]:
    from tritemporal.config import TriTemporalConfig, _dotted_keys

    return _dotted_keys(TriTemporalConfig)


def key_exists(key: str) -> bool:
    return any(fnmatch.fnmatchcase(k, key) or k.startswith(f"{key}.") for k in dotted_keys())


def key_mentions(text: str) -> list[str]:
    """`section.key` spans of a page's prose (`data.cache`, `data.hflip: true`, `optim.lr=3e-4`),
    not module or file names."""
    from tritemporal.config import TriTemporalConfig

    sections = tuple(f"{s}." for s in TriTemporalConfig.__dataclass_fields__)
    keys = []
    for span in inline_code(text):
        key = re.split(r"[=:]| ", span, maxsplit=1)[0]
        if key.startswith(sections) and "/" not in key and not code_name(key):
            keys.append(key)
    return keys


def code_name(name: str) -> bool:
    """`train.train_step`, `train.py`: a function or file of the module of the same name."""
    module, _, attribute = name.partition(".")
    if attribute in ("py", "md"):
        return True
    try:
        return hasattr(importlib.import_module(f"tritemporal.{module}"), attribute)
    except ImportError:
        return False


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_config_key_a_page_names_exists(page: Path) -> None:
    missing = [k for k in key_mentions(page.read_text()) if not key_exists(k)]
    assert not missing, f"{rel(page)} names keys the config does not have: {missing}"


def test_every_key_of_the_configuration_table_exists() -> None:
    rows = [r for r in (DOCS / "configuration.md").read_text().splitlines() if r.startswith("| `")]
    assert len(rows) >= 30
    for row in rows[: -len([r for r in rows if r.startswith("| `configs/")]) or None]:
        names = re.findall(r"`([^`]+)`", row.split("|")[1])
        first = names[0]
        prefix = first.rsplit(".", 1)[0]
        for name in names:
            key = name if "." in name else f"{prefix}.{name}"
            assert key_exists(key), f"configuration.md: {key} is not a config key ({row[:60]})"


def test_yaml_snippets_load_as_config() -> None:
    from tritemporal.config import load_config

    snippets = [(p, s) for p in PAGES for s in fenced(p.read_text(), "yaml")]
    assert len(snippets) >= 2
    for _, snippet in snippets:
        data = yaml.safe_load(snippet)
        overrides = [f"{s}.{k}={v}" for s, values in data.items() for k, v in values.items()]
        load_config(REPO / "configs" / "quickstart.yaml", overrides)  # keys and values valid


def test_annotation_example_parses_with_the_schema() -> None:
    from tritemporal.data.annotations import parse_annotation

    (example,) = [s for p in PAGES for s in fenced(p.read_text(), "json")]
    annotation = parse_annotation(json.loads(example), Path("clip_0001.json"))
    assert [e.maneuver for e in annotation.events] == ["lane_change_left", "brake"]


# ---------------------------------------------------------------------------------------------
# Links and repository paths


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#+ (.*)$", prose(page.read_text()), flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_relative_link_points_to_an_existing_file(page: Path) -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", prose(page.read_text()))
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # https:, mailto:
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{rel(page)}: link {link} points to nothing"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{rel(page)}: no heading #{anchor} in {target}"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_repository_path_a_page_names_exists(page: Path) -> None:
    spans = inline_code(page.read_text())
    paths = [s for s in spans if re.fullmatch(rf"(?:{'|'.join(REPO_FOLDERS)}|docs)/[\w./-]*", s)]
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"{rel(page)} names paths that do not exist: {missing}"


def test_the_readme_links_every_docs_page() -> None:
    linked = {
        (REPO / link).resolve() for link in re.findall(r"\]\((docs/[^)#\s]+)", README.read_text())
    }
    pages = [*DOCS.glob("*.md"), *(DOCS / "results").glob("*.md")]
    assert pages and not [rel(p) for p in pages if p.resolve() not in linked]


def test_readme_stays_short() -> None:
    assert len(README.read_text().splitlines()) <= 260


# ---------------------------------------------------------------------------------------------
# Python snippets: each runs as written, on a tiny model in the place it names

# the first line of every ```python block of the README and the docs -> where it is run
SNIPPETS = {
    'base = TriTemporalModel.from_pretrained("vit-tiny-drive")': "test_shipped_base_snippet_runs",
    'model = TriTemporalModel.from_pretrained("runs/quickstart")': "test_python_snippet_runs",
    'model = TriTemporalModel.from_pretrained("me/vjepa2-driving")': "test_hub_snippet_runs",
    'model = TriTemporalModel.from_pretrained("runs/quickstart_actions")': (
        "tests/test_action.py::test_docs_action_snippet_runs_as_written"
    ),
}


def python_snippets() -> list[tuple[Path, str]]:
    return [(p, s) for p in PAGES for s in fenced(p.read_text(), "python")]


def snippet(first_line: str) -> list[str]:
    return [s for _, s in python_snippets() if first_line in s]


def run(code: str, name: str) -> dict:
    namespace: dict = {}
    exec(compile(code, name, "exec"), namespace)
    return namespace


def test_every_python_snippet_is_run_by_a_test() -> None:
    for page, code in python_snippets():
        assert any(line in code for line in SNIPPETS), f"{rel(page)}: untested snippet\n{code}"
    for line, test in SNIPPETS.items():
        assert snippet(line), f"{test} runs a snippet no page has any more: {line}"
        path, _, name = test.rpartition("::")
        assert f"def {name}(" in (REPO / (path or "tests/test_readme.py")).read_text(), test


def test_shipped_base_snippet_runs() -> None:
    codes = snippet('base = TriTemporalModel.from_pretrained("vit-tiny-drive")')
    assert len(codes) == 2  # the README and docs/models.md
    for code in codes:
        assert isinstance(run(code, "shipped base")["base"], TriTemporalModel)


def test_python_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    train(tiny_config("train.run_dir=runs/quickstart", "train.steps=1"))
    (code,) = snippet('model = TriTemporalModel.from_pretrained("runs/quickstart")')
    namespace = run(code, str(README))
    assert set(namespace["out"]) == {"now", "soon", "eventually"}
    assert (tmp_path / "runs" / "my-model" / "model.safetensors").is_file()  # runs/: ignored
    TriTemporalModel.from_pretrained(tmp_path / "runs" / "my-model")


def test_hub_snippet_runs(
    vjepa2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/models.md's download, save and push, with a tiny V-JEPA 2 LoRA model standing in for
    the Hub repo and the network faked; then its peft claim about the saved adapter."""
    import huggingface_hub.hub_mixin
    from peft import PeftModel
    from transformers import VJEPA2Model

    import tritemporal.hub
    import tritemporal.model
    from tests.conftest import vjepa2_overrides
    from tests.test_hub import LORA, FakeHub
    from tritemporal.hub import ADAPTER_DIR

    hub_copy = tmp_path / "hub" / "me--vjepa2-driving"
    TriTemporalModel(tiny_config(*vjepa2_overrides(vjepa2_dir, *LORA))).save_pretrained(hub_copy)
    asked = []
    monkeypatch.setattr(
        tritemporal.hub, "snapshot_download", lambda repo, **kw: asked.append(repo) or hub_copy
    )
    FakeHub.calls, FakeHub.keep = [], tmp_path
    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", FakeHub)
    monkeypatch.setattr(tritemporal.model, "HfApi", FakeHub)
    monkeypatch.setattr(tritemporal.hub, "get_token", lambda: "hf_fake")
    monkeypatch.chdir(tmp_path)
    (code,) = snippet('model = TriTemporalModel.from_pretrained("me/vjepa2-driving")')
    run(code, "docs/models.md")
    assert asked == ["me/vjepa2-driving"]
    assert (tmp_path / "runs" / "vjepa2-driving" / ADAPTER_DIR / "adapter_config.json").is_file()
    assert ("create_repo", "me/vjepa2-driving", True, True) in FakeHub.calls
    assert (tmp_path / "uploaded" / ADAPTER_DIR).is_dir()
    (claim,) = [s for s in inline_code((DOCS / "models.md").read_text()) if "PeftModel" in s]
    peft_model = eval(
        claim, {"PeftModel": PeftModel, "VJEPA2Model": VJEPA2Model, "base": vjepa2_dir}
    )
    assert isinstance(peft_model, PeftModel)


# ---------------------------------------------------------------------------------------------
# Commands that are run, not only parsed


def test_cpu_torch_line_comes_before_the_package_install() -> None:
    text = README.read_text()
    cpu = text.index("pip install torch --index-url https://download.pytorch.org/whl/cpu")
    package = text.index("\npip install -e . && tritemporal train")  # the first command
    assert cpu < package, "a literal reader would pull the CUDA build first"
    assert "torch==" not in text  # no version pin of one machine's setup


def test_readme_test_command_is_the_one_ci_runs() -> None:
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    block = fenced(section(README, "## Install and run"), "bash")[1]
    assert ci in block and 'pip install -e ".[dev]"' in block


def test_curves_command_draws_metrics_the_quickstart_logs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    eval_clips: Path,
) -> None:
    from tritemporal.cli import main
    from tritemporal.config import load_config

    (command,) = {c.line for c in commands() if c.line.startswith("tritemporal curves ")}
    quickstart = load_config(REPO / "configs" / "quickstart.yaml")
    losses = [f"loss.{k}={v}" for k, v in dataclasses.asdict(quickstart.loss).items()]
    data = ["data.source=videos", f"data.root={eval_clips}", *EVAL, "train.batch_size=4"]
    tiny = tiny_config("train.run_dir=runs/quickstart", "train.steps=2", *data, *losses)
    # the tiny run logs what the quickstart logs: the same objectives, no eval hook
    assert quickstart.loss == tiny.loss and quickstart.eval.every == tiny.eval.every == 0
    monkeypatch.chdir(tmp_path)
    train(tiny)
    argv = shlex.split(command)
    assert main(argv[1:]) == 0, command
    assert "never logged" not in caplog.text
    assert (tmp_path / "runs" / "quickstart" / "curves.png").is_file()
    assert main(["curves", "runs/quickstart", "--keys", "eval/now_rankme", "loss"]) == 0
    assert "skipped ['eval/now_rankme']: never logged" in caplog.text
    assert main(["curves", "runs/quickstart", "--keys", "eval/now_rankme"]) == 2  # none at all


def worked_example_commands() -> list[str]:
    """The bash block of docs/data.md's worked example, continuation lines joined."""
    heading = "## Worked example: from a download to `train` and `eval`"
    (block,) = fenced(section(DOCS / "data.md", heading), "bash")
    return list(bash_lines(block))


@pytest.mark.slow
def test_import_worked_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import TINY
    from tests.dataset_fixtures import write_demo
    from tritemporal.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    commands = worked_example_commands()
    assert commands[0] == "python -m tests.dataset_fixtures demo"
    write_demo(tmp_path / "demo")
    for command in commands[1:]:
        argv = shlex.split(command)
        assert argv[0] == "tritemporal", command
        extra = []  # the tiny model in place of the quickstart's, to keep the suite fast
        if argv[1] == "train":
            extra = [a for s in TINY if not s.startswith("train.steps") for a in ("--set", s)]
        elif argv[1] == "eval":
            extra = ["--max-samples", "24", "--out", str(tmp_path / "eval")]
        assert main([*argv[1:], *extra]) == 0, command
    assert len(list((tmp_path / "demo" / "bdd_train" / "videos").rglob("*.mov"))) == 8
    assert (tmp_path / "demo" / "comma" / "videos").is_dir()
    assert (tmp_path / "eval" / "report.json").is_file()
