"""The link checker finds each kind of broken link, passes good ones, and the repo's docs pass."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import check_links

ROOT = Path(__file__).resolve().parents[2]

PAGE = """# Title

## Two `commands` and more!

## Repeated

## Repeated

<a id="custom"></a>

[own](#two-commands-and-more) [second](#repeated-1) [html](#custom)
![plot](pic.svg) [other](sub/other.md#deep-heading) [folder](sub) [web](https://example.org/x)
[mail](mailto:a@example.org) [titled](sub/other.md "a title")
`[in code](missing-in-span.md)`

```
[in a fence](missing-in-fence.md)
```
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "pic.svg").write_text("<svg/>", encoding="utf-8")
    (tmp_path / "sub" / "other.md").write_text("# Other\n\n### Deep heading\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(PAGE, encoding="utf-8")
    return tmp_path


def test_the_repository_docs_have_no_broken_link(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_links.main([str(ROOT)]) == 0
    out = capsys.readouterr().out
    pages = int(out.split(": ")[1].split()[0])
    assert pages >= 8  # README, the docs pages, the role READMEs


def test_good_links_pass(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_links.main([str(tree)]) == 0
    assert "2 pages" in capsys.readouterr().out


@pytest.mark.parametrize(("link", "message"), [
    ("[x](missing.md)", "no such file"),
    ("[x](#no-such-heading)", "README.md has no heading or anchor #no-such-heading"),
    ("[x](sub/other.md#other-heading)", "other.md has no heading or anchor #other-heading"),
    ("[x](#repeated-2)", "has no heading or anchor #repeated-2"),
    ("![x](gone.svg)", "no such file"),
])
def test_each_kind_of_broken_link_is_found(tree: Path, capsys: pytest.CaptureFixture[str],
                                           link: str, message: str) -> None:
    page = tree / "README.md"
    page.write_text(PAGE + f"\nsee {link}\n", encoding="utf-8")
    assert check_links.main([str(page)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{page}:{PAGE.count(chr(10)) + 2}: ")
    assert message in lines[0]
    assert "1 broken" in captured.out


def test_slugs_follow_github() -> None:
    assert check_links.slug("Incident runbook: `playbooks/rollback.yml`") == \
        "incident-runbook-playbooksrollbackyml"
    assert check_links.slug("Retention: `agentmon prune` (step 7)") == \
        "retention-agentmon-prune-step-7"
    assert check_links.slug("Serve: HTTP, auth and TLS") == "serve-http-auth-and-tls"


def test_folders_under_dot_and_build_are_not_searched(tree: Path) -> None:
    for hidden in (".venv", "build", "x.egg-info"):
        (tree / hidden).mkdir()
        (tree / hidden / "bad.md").write_text("[x](missing.md)\n", encoding="utf-8")
    assert check_links.main([str(tree)]) == 0
