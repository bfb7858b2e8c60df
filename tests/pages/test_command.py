"""`shutdown-sidecar report` as a user runs it: stdin or a file, one line per pod or a page, exit 2
with one line for input of no known shape, and no server dependency imported on the way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
