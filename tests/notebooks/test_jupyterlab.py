"""The notebooks run where students open them: JupyterLab in a browser.

The test starts JupyterLab on 127.0.0.1 (a free port, no token) over a copy of the notebooks, opens
notebook 1 from its ``.py`` (Jupytext pairing) and notebook 2 from its ``.ipynb``, runs all cells
through JupyterLab's own command, waits for the kernel to go idle, and checks that no cell shows an
error and that the figures are rendered. The kernel runs in quick mode with MNIST and checkpoints
from the same places as the rest of the test run (a loopback mirror of the published checkpoints
when none is configured). Screenshots go to the artifacts folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest

from support.browser import (
    VIEWPORT,
    artifacts_dir,
    free_port,
    launched_chromium,
    need_modules,
    serve,
)

ROOT = Path(__file__).resolve().parents[2]
# The environment the test run was started with, before any test's fixture changes it: the kernel
# takes its data and checkpoint sources from here, as the notebooks under nbval do.
RUN_ENVIRONMENT = dict(os.environ)
NOTEBOOK_1_PY = "01_flows_and_dequantization.py"
NOTEBOOK_2_IPYNB = "02_coupling_and_multiscale.ipynb"
RUN_TIMEOUT_S = 900  # per notebook; quick mode takes well under this on a 2-core CPU

# JupyterLab settings for the test's own settings folder: every cell stays in the page (not only the
# ones scrolled into view), so rendered figures can be counted; no news fetched from the internet.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}

OPEN_JS = """async ([path, factory]) => {
  const app = window.jupyterapp;
  await app.restored;
  const widget = await app.commands.execute('docmanager:open', {path, factory});
  await widget.context.ready;
  await widget.sessionContext.ready;
  app.shell.activateById(widget.id);
  window.__notebook = widget;
  window.__runResult = undefined;
  app.commands.execute('notebook:run-all-cells').then(
    ok => { window.__runResult = String(ok); },
    err => { window.__runResult = 'command failed: ' + err; });
  return widget.context.path;
}"""

FINISHED_JS = """() => {
  const nb = window.__notebook;
  const kernel = nb && nb.sessionContext.session && nb.sessionContext.session.kernel;
  return window.__runResult !== undefined && kernel && kernel.status === 'idle';
}"""

REPORT_JS = """() => {
  const nb = window.__notebook;
  const cells = nb.content.widgets.filter(c => c.model.type === 'code');
  const outputs = cells.map(c => c.model.outputs.toJSON());
  const images = Array.from(nb.content.node.querySelectorAll('.jp-OutputArea-output img'));
  return {
    runResult: window.__runResult,
    jupytextFormats: (nb.context.model.getMetadata('jupytext') || {}).formats || null,
    codeCells: cells.length,
    executed: cells.filter(c => c.model.executionCount !== null).length,
    errors: outputs.flat().filter(o => o.output_type === 'error').map(o => `${o.ename}: ${o.evalue}`),
    pngOutputs: outputs.flat().filter(o => o.data && o.data['image/png']).length,
    renderedImages: images.filter(i => i.complete && i.naturalWidth > 0).length,
    brokenImages: images.filter(i => !(i.complete && i.naturalWidth > 0)).length,
  };
}"""


def _wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with status {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer at {url} within {timeout_s} s:\n{log.read_text()[-3000:]}")


def _kernel_environment(stack: ExitStack, tmp: Path, mnist: Path, published: Path) -> dict[str, str]:
    """The test run's environment in quick mode, with MNIST and the published checkpoints as the package found them."""
    env = dict(RUN_ENVIRONMENT, NFLOWS_TUTORIAL_QUICK="1", PATH_CHECKPOINT=str(tmp / "checkpoints"))
    env["PATH_DATASETS"] = str(mnist)
    if "NFLOWS_TUTORIAL_CHECKPOINT_URL" not in env:
        env["NFLOWS_TUTORIAL_CHECKPOINT_URL"] = stack.enter_context(serve(published))
    # Keep JupyterLab's state (settings, workspaces, runtime files) inside the test's folder.
    settings = tmp / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "lab-workspaces"),
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
    )
    return env


@pytest.fixture(scope="module")
def lab(tmp_path_factory, mnist_root, published_dir):
    """A browser page on a JupyterLab served over a copy of the notebooks; yields (page, notebooks folder)."""
    need_modules("jupyterlab", "jupytext", "ipykernel", extra="lab")
    tmp = tmp_path_factory.mktemp("lab")
    course = tmp / "course"
    (course / "notebooks").mkdir(parents=True)
    shutil.copy2(ROOT / "jupytext.toml", course / "jupytext.toml")  # the pairing, as in the repository
    for notebook in (ROOT / "notebooks").glob("[0-9]*"):
        shutil.copy2(notebook, course / "notebooks" / notebook.name)
    with ExitStack() as stack, launched_chromium() as browser:
        env = _kernel_environment(stack, tmp, mnist_root, published_dir)
        port = free_port()
        log = tmp / "jupyterlab.log"
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--allow-root",  # CI containers run as root
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={course / 'notebooks'}",
            "--LabApp.expose_app_in_browser=True",
        ]
        with open(log, "w") as log_file:
            server = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}/"
            _wait_until_serving(base + "api/status", server, log)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(base + "lab")
            page.wait_for_function("() => window.jupyterapp !== undefined", timeout=120_000)
            yield page, course / "notebooks"
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
            print(f"JupyterLab log: {log}")


def _run_in_lab(page, path: str, factory: str, screenshot: str) -> dict:
    """Open ``path`` with ``factory``, run all cells, wait for the kernel, screenshot; return the report."""
    start = time.perf_counter()
    opened = page.evaluate(OPEN_JS, [path, factory])
    assert opened == path
    page.wait_for_function(FINISHED_JS, timeout=RUN_TIMEOUT_S * 1000, polling=1000)
    report = page.evaluate(REPORT_JS)
    report["seconds"] = time.perf_counter() - start
    page.evaluate("""() => {
      const figure = window.__notebook.content.node.querySelector('.jp-OutputArea-output img');
      if (figure) figure.scrollIntoView({block: 'center'});
    }""")
    page.screenshot(path=str(artifacts_dir() / screenshot))
    print(f"{path}: {report}")
    return report


def _check(report: dict, path: str) -> None:
    assert report["runResult"] == "true", f"{path}: run-all did not finish cleanly ({report['runResult']})"
    assert not report["errors"], f"{path}: cells show errors: {report['errors']}"
    assert report["executed"] == report["codeCells"] > 0, (
        f"{path}: {report['executed']} of {report['codeCells']} code cells ran"
    )
    assert report["pngOutputs"] >= 2, f"{path}: only {report['pngOutputs']} figures produced"
    assert report["renderedImages"] == report["pngOutputs"] and not report["brokenImages"], (
        f"{path}: {report['renderedImages']} of {report['pngOutputs']} figures rendered, {report['brokenImages']} broken"
    )


def test_notebook_1_from_its_py_runs_in_jupyterlab(lab):
    page, _ = lab
    report = _run_in_lab(page, NOTEBOOK_1_PY, "Notebook", "jupyterlab-notebook1-from-py.png")
    assert report["jupytextFormats"] == "ipynb,py:percent", (
        f"{NOTEBOOK_1_PY} was not opened through Jupytext's pairing (formats: {report['jupytextFormats']})"
    )
    _check(report, NOTEBOOK_1_PY)


def test_notebook_2_from_its_ipynb_runs_in_jupyterlab(lab):
    page, _ = lab
    _check(_run_in_lab(page, NOTEBOOK_2_IPYNB, "Notebook", "jupyterlab-notebook2.png"), NOTEBOOK_2_IPYNB)
