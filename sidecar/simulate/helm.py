"""Rendering a Helm chart for `simulate --chart`: with the real Helm engine (helm-python-sdk,
the `chart` extra) or else a `helm` executable, into the Kubernetes objects it would apply.
Reads the chart and values; runs nothing else."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

from sidecar.simulate.lifeline import parent_death_prefix

RELEASE_NAME: Final = "simulate"
NAMESPACE: Final = "default"
INSTALL_HINT: Final = "pip install 'shutdown-sidecar[chart]', or put a helm executable on PATH"
HELM_TIMEOUT_SECONDS: Final = 60.0
MESSAGE_LIMIT: Final = 600  # characters of Helm's message kept: a schema error can list every violation


class ChartError(Exception):
    """A chart the simulator cannot render or rehearse. The message is one line naming --chart or --values."""


def render_chart(chart_dir: Path, values_file: Path | None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (release name 'simulate', namespace 'default'),
    with helm-python-sdk (the `chart` extra) or else `helm template` (up to HELM_TIMEOUT_SECONDS).
    Raises ChartError when the chart or values cannot be read, or Helm refuses to render them."""
    try:
        import yaml
    except ImportError:
        # Needed with either engine: `helm template` prints YAML too.
        raise ChartError("--chart needs PyYAML: pip install 'shutdown-sidecar[chart]'") from None
    if not chart_dir.exists():
        raise ChartError(f"--chart: {chart_dir} does not exist")
    if chart_dir.is_dir() and not (chart_dir / "Chart.yaml").is_file():
        raise ChartError(f"--chart: {chart_dir} is not a Helm chart (no Chart.yaml)")
    values_yaml = None if values_file is None else _read_values(values_file)
    documents = _render(chart_dir, values_file, values_yaml)
    try:
        return [obj for text in documents for obj in yaml.safe_load_all(text) if isinstance(obj, dict)]
    except yaml.YAMLError as error:
        raise ChartError(f"--chart: {chart_dir} renders invalid YAML: {_one_line(str(error))}") from None


def _read_values(values_file: Path) -> str:
    import yaml

    try:
        text = values_file.read_text(encoding="utf-8")
        values = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as error:
        raise ChartError(f"--values: cannot read {values_file}: {error}") from None
    except yaml.YAMLError as error:
        raise ChartError(f"--values: {values_file} is not valid YAML: {_one_line(str(error))}") from None
    if values is not None and not isinstance(values, dict):
        raise ChartError(f"--values: {values_file} must hold a mapping of chart values, not {type(values).__name__}")
    return text


def _render(chart_dir: Path, values_file: Path | None, values_yaml: str | None) -> list[str]:
    """The text of each rendered manifest file; NOTES.txt left out, as `helm template` does."""
    failed = f"--chart: {chart_dir}" + (f" with --values {values_file}" if values_file else "") + " does not render"
    try:
        import helm_python as helm
    except ImportError:
        executable = shutil.which("helm")
        if executable is None:
            raise ChartError(f"--chart needs a Helm engine: {INSTALL_HINT}") from None
        return [_run_helm_template(executable, chart_dir, values_file, failed)]
    try:
        # Helm's own YAML reader, as `helm template -f` uses: PyYAML reads some scalars differently.
        values = None if values_yaml is None else helm.values_from_yaml(values_yaml)
        with helm.Chart.load(chart_dir) as chart:
            rendered = chart.render(values, name=RELEASE_NAME, namespace=NAMESPACE)
    except helm.HelmError as error:
        raise ChartError(f"{failed}: {_one_line(str(error))}") from None
    return [text for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")]


def _run_helm_template(executable: str, chart_dir: Path, values_file: Path | None, failed: str) -> str:
    command = [executable, "template", RELEASE_NAME, str(chart_dir), "--namespace", NAMESPACE]
    if values_file is not None:
        command += ["--values", str(values_file)]
    try:
        result = subprocess.run(  # noqa: S603 - no shell; the user's own paths
            # Killed with the rehearsal, SIGKILLed or not (called from the thread that runs it).
            [*parent_death_prefix(), *command],
            capture_output=True,
            text=True,
            timeout=HELM_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ChartError(f"{failed}: helm template did not finish in {HELM_TIMEOUT_SECONDS:g} s") from None
    except OSError as error:
        raise ChartError(f"--chart: cannot run {executable}: {error}") from None
    if result.returncode != 0:
        # Warnings may come first; the reason starts at Helm's "Error: ".
        _, marker, reason = result.stderr.partition("Error: ")
        raise ChartError(f"{failed}: {_one_line(reason if marker else result.stderr)}")
    return result.stdout


def _one_line(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= MESSAGE_LIMIT else line[: MESSAGE_LIMIT - 1] + "…"
