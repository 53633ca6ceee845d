"""Open the built documentation in headless Chromium and check what a reader sees.

Run by ``.ci/docs`` after the build::

    python .ci/browser_check.py [--build docs/_build/html] [PAGE.html ...]

It serves the built site on 127.0.0.1 (a thread of this process), opens each
page in headless Chromium through Selenium (the Debian ``chromium`` and
``chromium-driver`` packages, installed with apt-get when missing; Selenium
Manager never downloads a browser or a driver: the driver is
``/usr/bin/chromedriver``) and fails when a page shows

* raw TeX in its rendered text (MathJax missing or broken);
* a ``pre`` or ``table`` wider than its box (clipped or scrolling sideways);
* an image that did not load, or one displayed at under half its natural width
  without a link to the full-size file;
* a request to any host other than 127.0.0.1 (from Chrome's performance log);
* a ``figure`` without a caption, or an image in a hand-written page outside a
  captioned figure;
* a failed local request (HTTP status >= 400 or a network error).

A full-page screenshot of each page is saved under ``<build>/_browser_check/``
for people to look at, with ``report.json`` listing every finding. Exit status
1 when anything was found, 0 otherwise.
"""

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]

#: Pages opened by default: the landing page, getting started, every
#: hand-written page, one API page per kind and the gallery.
KEY_PAGES = [
    "index.html",
    "getting_started.html",
    "scan.html",
    "monitoring.html",
    "benchmarks.html",
    "extraction.html",
    "models.html",
    "scaling.html",
    "user_guide/index.html",
    "user_guide/method.html",
    "user_guide/estimation.html",
    "user_guide/choosing.html",
    "use_cases/index.html",
    "use_cases/noise_level_selection.html",
    "use_cases/shrinkage.html",
    "use_cases/training_monitor.html",
    "api/index.html",
    "api/generated/skicr.monitoring.ICRMonitor.html",
    "api/generated/skicr.metrics.icr_score.html",
    "auto_examples/index.html",
    "auto_examples/plot_noise_level_selection.html",
]
#: Hand-written pages also collected from the source tree, so that a new page
#: is checked without editing this list.
SOURCE_GLOBS = ["*.md", "*.rst", "user_guide/*.rst", "use_cases/*.rst", "user_guide/*.md",
                "use_cases/*.md", "auto_examples/plot_*.rst"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1280, 900
MAX_SCREENSHOT_HEIGHT = 16000


def ensure_chromium():
    """Install Debian's chromium and chromium-driver when they are missing."""
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    if shutil.which("apt-get") is None:
        sys.exit(f"browser check: {CHROMIUM} / {CHROMEDRIVER} missing and no apt-get to install them")
    print("browser check: installing chromium and chromium-driver with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
                   check=True, env=env, stdout=subprocess.DEVNULL)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def serve(directory):
    """Serve ``directory`` on 127.0.0.1 (a free port) from a daemon thread."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_driver():
    # Selenium Manager would look for (and try to download) a driver and a
    # browser; naming both binaries switches it off.
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={WIDTH},{HEIGHT}", "--force-device-scale-factor=1",
                 "--hide-scrollbars", "--disable-background-networking",
                 "--disable-component-update", "--disable-default-apps", "--disable-sync",
                 "--no-first-run", "--disable-extensions", "--mute-audio",
                 "--disable-features=Translate,OptimizationHints,MediaRouter"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


# The in-page checks. Returns a list of {"check", "detail"} findings.
PAGE_CHECKS_JS = r"""
const findings = [];
const add = (check, detail) => findings.push({check, detail});
const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
const describe = el => {
  const text = (el.innerText || el.alt || el.getAttribute('src') || '').trim().replace(/\s+/g, ' ');
  const section = el.closest('section[id]');
  return (section ? '#' + section.id + ': ' : '') + text.slice(0, 90);
};
const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const column = article.getBoundingClientRect();

// 1. raw TeX in the rendered text (outside code, scripts and rendered math)
const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {
  acceptNode: n => n.parentElement.closest('pre, code, kbd, samp, script, style, mjx-container, .highlight, .sig, textarea')
    ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
const tex = /\\(frac|mathrm|mathbf|operatorname|sum|lambda|Sigma|sigma|xi|tau|qquad|quad|left|right|begin|end|text|tr|bar|overline|hat|top|in|le|ge|cdot|mid|[\[\]()])(?![a-zA-Z])|\$\$/;
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const m = n.textContent.match(tex);
  if (m && visible(n.parentElement)) {
    add('raw TeX', describe(n.parentElement) + '  [' + m[0] + ']');
  }
}

// 2. pre and table wider than their box
for (const el of article.querySelectorAll('pre, table')) {
  if (!visible(el)) continue;
  const box = el.getBoundingClientRect();
  const parent = el.parentElement;
  const scrolls = el.scrollWidth > el.clientWidth + 1;
  const sticksOut = box.right > column.right + 1;
  const inScroller = parent && parent.scrollWidth > parent.clientWidth + 1;
  if (scrolls || sticksOut || inScroller) {
    add(el.tagName.toLowerCase() + ' overflows',
        `${describe(el)} (content ${Math.max(el.scrollWidth, parent.scrollWidth)} px, box ${Math.min(el.clientWidth, parent.clientWidth)} px, column ${Math.round(column.width)} px)`);
  }
}

// 3. images: loaded, readable or linked to the full size
for (const img of document.querySelectorAll('img')) {
  if (!visible(img)) continue;
  const src = img.currentSrc || img.src;
  if (!img.complete || (img.naturalWidth === 0 && !src.endsWith('.svg'))) {
    add('image failed to load', src);
    continue;
  }
  const link = img.closest('a[href]');
  const thumbnail = img.closest('.sphx-glr-thumbcontainer, .navbar-brand, .bd-header');
  if (!thumbnail && img.naturalWidth > 0 && img.clientWidth < 0.5 * img.naturalWidth && !link) {
    add('image shrunk below half its width without a link to it',
        `${src.split('/').pop()}: ${img.clientWidth} of ${img.naturalWidth} px`);
  }
}

// 4. figures have captions; hand-written content images sit in figures
for (const fig of article.querySelectorAll('figure')) {
  const cap = fig.querySelector('figcaption');
  if (!cap || !cap.innerText.trim()) add('figure without caption', describe(fig.querySelector('img') || fig));
}
for (const img of article.querySelectorAll('img')) {
  if (!visible(img) || img.closest('figure')) continue;
  if (img.matches('.sphx-glr-single-img, .sphx-glr-multi-img') || img.closest('.sphx-glr-thumbcontainer, .sphx-glr-script-out, .sphx-glr-horizontal')) continue;
  add('image outside a captioned figure', (img.currentSrc || img.src).split('/').pop());
}
return findings;
"""

WAIT_FOR_RENDERING_JS = r"""
const done = arguments[arguments.length - 1];
const images = Array.from(document.images).map(img => img.complete ? null :
  new Promise(r => { img.onload = img.onerror = r; }));
const math = (window.MathJax && MathJax.startup && MathJax.startup.promise) || null;
Promise.all([...images, math, document.fonts ? document.fonts.ready : null].filter(Boolean))
  .then(() => done(true), () => done(false));
setTimeout(() => done(false), 20000);
"""


def network_findings(log_entries, host):
    """Requests to other hosts and failed local requests, from the performance log."""
    findings = []
    failed_ids = {}
    urls = {}
    for entry in log_entries:
        message = json.loads(entry["message"])["message"]
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            urls[params["requestId"]] = url
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob", "about", "chrome", "chrome-extension", "devtools"):
                continue
            if parts.hostname != host:
                findings.append({"check": "request to another host", "detail": url})
        elif method == "Network.responseReceived":
            status = params["response"]["status"]
            if status >= 400:
                failed_ids[params["requestId"]] = f"HTTP {status}"
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            failed_ids[params["requestId"]] = params.get("errorText", "failed")
    for request_id, why in failed_ids.items():
        url = urls.get(request_id, "?")
        if urlsplit(url).hostname == host:
            findings.append({"check": "local request failed", "detail": f"{url} ({why})"})
    return findings


def full_page_screenshot(driver, path):
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    height = min(int(size["height"]), MAX_SCREENSHOT_HEIGHT)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1}})
    import base64

    path.write_bytes(base64.b64decode(shot["data"]))


def source_pages(build):
    """Built pages of the hand-written sources (and gallery examples) found in docs/."""
    docs = ROOT / "docs"
    pages = []
    for pattern in SOURCE_GLOBS:
        for source in sorted(docs.glob(pattern)):
            page = source.relative_to(docs).with_suffix(".html").as_posix()
            if (build / page).exists():
                pages.append(page)
    return pages


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", help="pages relative to the build folder (default: the key pages)")
    parser.add_argument("--build", default=str(ROOT / "docs" / "_build" / "html"))
    parser.add_argument("--no-screenshots", action="store_true")
    args = parser.parse_args(argv)
    build = Path(args.build).resolve()
    if not (build / "index.html").exists():
        sys.exit(f"browser check: no built site in {build}")
    pages = args.pages or list(dict.fromkeys(KEY_PAGES + source_pages(build)))
    missing = [p for p in pages if not (build / p).exists()]
    ensure_chromium()
    out = build / "_browser_check"
    out.mkdir(parents=True, exist_ok=True)

    server = serve(build)
    host, port = server.server_address[:2]
    driver = make_driver()
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    report = {page: [{"check": "page missing", "detail": page}] for page in missing}
    start = time.perf_counter()
    try:
        for page in pages:
            if page in missing:
                continue
            driver.get_log("performance")  # drop what came before
            driver.get(f"http://{host}:{port}/{page}")
            driver.execute_async_script(WAIT_FOR_RENDERING_JS)
            time.sleep(0.3)  # layout after the last font and typesetting
            findings = driver.execute_script(PAGE_CHECKS_JS)
            findings += network_findings(driver.get_log("performance"), host)
            report[page] = findings
            if not args.no_screenshots:
                full_page_screenshot(driver, out / (page.replace("/", "__").removesuffix(".html") + ".png"))
    finally:
        driver.quit()
        server.shutdown()

    (out / "report.json").write_text(json.dumps(report, indent=1))
    total = sum(len(f) for f in report.values())
    for page, findings in report.items():
        for finding in findings:
            print(f"{page}: {finding['check']}: {finding['detail']}")
    print(f"browser check: {len(report)} pages in {time.perf_counter() - start:.0f} s, "
          f"{total} finding(s); screenshots in {out}")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
