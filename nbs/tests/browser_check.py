"""Open JupyterLab in headless Chromium, run nbs/00_revisit.ipynb (smoke profile, its defaults) through the Run menu,
and save a screenshot in which the ipywidgets explorer is rendered. Fails if a cell errors or the widgets never
appear. JupyterLab runs on a temporary copy of the project, so its autosave cannot touch nbs/.

    python nbs/tests/browser_check.py SCREENSHOT.png [--data DIR]

Needs Debian's chromium (/usr/bin/chromium), jupyterlab and playwright (pip). CIFAR-10 comes from --data, $DBD_DATA
or ../shared/data beside the project."""
import argparse, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync']


def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def wait_http(url, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try: urllib.request.urlopen(url, timeout=5); return
        except OSError: time.sleep(1)
    raise TimeoutError(f'JupyterLab did not answer at {url} within {timeout} s')


def main(argv=None):
    ap = argparse.ArgumentParser(); ap.add_argument('screenshot', type=Path); ap.add_argument('--data', default=None)
    ap.add_argument('--timeout', type=float, default=900, help='seconds allowed for the notebook to run')
    a = ap.parse_args(argv)
    data = a.data or os.environ.get('DBD_DATA') or str(ROOT.parent / 'shared' / 'data')
    if not (Path(data) / 'cifar10-jpeg.tar.gz').exists(): sys.exit(f'browser_check: no CIFAR-10 archive under {data}')
    from playwright.sync_api import sync_playwright
    work = Path(tempfile.mkdtemp(prefix='dbd_lab_'))
    for p in ('settings.ini', 'params', 'nbs'):
        (shutil.copytree if (ROOT / p).is_dir() else shutil.copy)(ROOT / p, work / p)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != 'DBD_HEADLESS'}
    env.update(DBD_DATA=str(Path(data).resolve()), MPLBACKEND='module://matplotlib_inline.backend_inline')
    lab = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', f'--port={port}', '--ServerApp.token=',
                            '--ServerApp.password=', '--allow-root', f'--ServerApp.root_dir={work}', '--ServerApp.ip=127.0.0.1',
                            f'--LabApp.workspaces_dir={work / ".ws"}', f'--LabApp.user_settings_dir={work / ".settings"}'],
                           cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=open(work / 'lab.log', 'w'))
    try:
        wait_http(f'http://127.0.0.1:{port}/lab')
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path='/usr/bin/chromium', headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={'width': 1400, 'height': 1000})
            page.goto(f'http://127.0.0.1:{port}/lab/tree/nbs/00_revisit.ipynb?reset', wait_until='domcontentloaded')
            page.wait_for_selector('.jp-Notebook .jp-Cell', timeout=120_000)
            page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
            started = lambda: page.locator('.jp-InputPrompt:has-text("[1]"), .jp-InputPrompt:has-text("[*]")').count() > 0
            for attempt in range(5):                     # the menu sometimes swallows the first click while the page settles
                page.locator('.jp-Notebook').first.click(position=dict(x=5, y=5))
                page.click('.lm-MenuBar-itemLabel:text-is("Run")')
                page.click('.lm-Menu-itemLabel:text-is("Run All Cells")')
                t_click = time.time()
                while not started() and time.time() - t_click < 20: time.sleep(0.5)
                if started(): break
            else: page.screenshot(path=str(a.screenshot)); sys.exit('browser_check: Run All Cells did not start the notebook')
            t0 = time.time()
            while True:
                if page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]').count():
                    err = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]').first.inner_text()
                    page.screenshot(path=str(a.screenshot)); sys.exit(f'browser_check: a cell failed:\n{err[-2000:]}')
                if page.locator('.widget-dropdown select, .jupyter-widgets .widget-slider').count() >= 2 and \
                        page.locator('.jupyter-widgets .jp-OutputArea-output img, .widget-output img').count(): break
                if time.time() - t0 > a.timeout: page.screenshot(path=str(a.screenshot)); sys.exit('browser_check: the widget explorer never rendered')
                time.sleep(2)
            for b in page.locator('.jp-toast-button:text-is("No")').all(): b.click()        # the news pop-up
            page.locator('.widget-dropdown').first.evaluate("e => e.scrollIntoView({block: 'center'})"); time.sleep(2)
            a.screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(a.screenshot))
            browser.close()
        print(f'browser_check: widget explorer rendered in JupyterLab after {time.time() - t0:.0f} s; screenshot {a.screenshot}')
    finally:
        lab.terminate(); lab.wait(timeout=30); shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__': main()
