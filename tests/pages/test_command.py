"""`shutdown-sidecar report` as a user runs it: stdin or a file, one line per pod or a page, exit 2
with one line for input of no known shape, and no server dependency imported on the way."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sidecar.cli import main
from sidecar.pages.documents import SHAPES

FIXTURES = Path(__file__).parent / "fixtures"
SERVER_PACKAGES = ("starlette", "uvicorn", "prometheus_client", "opentelemetry", "httptools")

# Runs the CLI with the server packages made unimportable, as where only the standard library is.
WITHOUT_SERVER = f"""
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVER_PACKAGES!r}:
            raise ImportError("not installed: " + name)
sys.meta_path.insert(0, Refuse())
from sidecar.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_without_server(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SERVER, *args],
        check=False,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_report_prints_one_line_per_pod_from_kubectl_on_stdin_without_server_packages() -> None:
    done = run_without_server("report", stdin=(FIXTURES / "pods.json").read_text())
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stderr  # one pod timed out
    assert [line.split()[0] for line in lines[:3]] == ["web-7d9c-a1", "web-7d9c-b2", "web-7d9c-c3"]
    assert lines[1].split()[1] == "timeout"
    assert lines[3] == "3 pods: 2 clean, 1 timeout; lowest margin 0.00 s before SIGKILL"
    assert "web-7d9c-d4" in lines[4]


def test_report_writes_a_page_without_server_packages(tmp_path: Path) -> None:
    page = tmp_path / "pods.html"
    done = run_without_server("report", str(FIXTURES / "pods.json"), "--html", str(page))
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    text = page.read_text()
    assert text.count('class="lane"') == 3
    assert "web-7d9c-b2" in text


def test_report_exits_0_when_every_pod_drained_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pods = json.loads((FIXTURES / "pods.json").read_text())
    del pods["items"][1]
    path = tmp_path / "clean.json"
    path.write_text(json.dumps(pods))
    assert main(["report", str(path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4  # two pods, their totals, the one without


def test_report_refuses_a_document_of_unknown_shape_with_exit_2_and_one_line(tmp_path: Path) -> None:
    path = tmp_path / "service.json"
    path.write_text('{"kind": "Service", "spec": {}}')
    done = run_without_server("report", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("shutdown-sidecar report: error:")
    assert all(shape in line for shape in SHAPES)


def test_report_refuses_a_missing_file_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nothing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_report_help_explains_the_shapes_and_gives_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["report", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "kubectl get pods -l app=web -o json | shutdown-sidecar report" in text
    assert all(" ".join(shape.split()) in text for shape in SHAPES)
    assert "--html OUT" in text


def test_report_of_simulate_json_prints_what_simulate_printed_and_exits_by_its_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sidecar.simulate.render import render
    from tests.simulate.pod_records import native_pod, tally
    from tests.simulate.test_render import result

    document = result([native_pod("pod-a")], tally(ok=10))
    path = tmp_path / "rehearsal.json"
    path.write_text(json.dumps(document))
    assert main(["report", str(path)]) == (0 if document["verdict"] == "pass" else 1)
    assert capsys.readouterr().out == render(document)


def key_paths(document: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every key's path in a JSON document, through lists too."""
    found: list[tuple[str | int, ...]] = []
    if isinstance(document, dict):
        for key, value in document.items():
            found += [(*prefix, key), *key_paths(value, (*prefix, key))]
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += key_paths(value, (*prefix, index))
    return found


def without(document: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    cut = copy.deepcopy(document)
    node: Any = cut
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return cut


def rehearsal() -> dict[str, Any]:
    from tests.simulate.pod_records import native_pod, tally
    from tests.simulate.test_render import result

    return result([native_pod("pod-a")], tally(ok=10))


@pytest.mark.parametrize("as_page", [False, True], ids=["text", "html"])
def test_report_of_a_simulate_json_without_a_key_exits_2_with_one_line_naming_it(tmp_path: Path, as_page: bool) -> None:
    path, page = tmp_path / "cut.json", tmp_path / "cut.html"
    path.write_text(json.dumps(without(rehearsal(), ("requests", "sent"))))
    done = run_without_server("report", str(path), *(["--html", str(page)] if as_page else []))
    assert done.returncode == 2
    assert (done.stdout, page.exists()) == ("", False)
    [line] = done.stderr.splitlines()
    assert line.startswith(f"shutdown-sidecar report: error: {path}: ")
    assert "no key 'sent'" in line


def test_report_of_a_simulate_json_with_any_key_missing_renders_or_exits_2_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = rehearsal()
    path = tmp_path / "cut.json"
    paths = key_paths(document)
    assert len(paths) > 100
    refused = 0
    for cut in paths:
        path.write_text(json.dumps(without(document, cut)))
        for page in ([], ["--html", str(tmp_path / "cut.html")]):
            status = main(["report", str(path), *page])
            error = capsys.readouterr().err
            assert status in (0, 1, 2), cut
            if status == 2:
                refused += 1
                assert len(error.splitlines()) == 1, (cut, error)
    assert refused, "some keys are needed: their absence must be named"
