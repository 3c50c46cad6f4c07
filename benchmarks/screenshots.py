"""Full-page screenshots of every page of the built book, and a list of what overflows its column.

Builds nothing: run `make book` first. For each page of _build/html and each width it writes
<out>/<page>-<width>.png (the whole page, not just the window) and prints every element of the article that
is wider than its box (a table or printed output that scrolls or is cut off) and every printed output whose lines
the column wraps, also saved as <out>/overflow.json.

    .venv/bin/python benchmarks/screenshots.py [--html _build/html] [--out /tmp/shots] [--widths 1280 800]

Needs Debian's chromium; talks to it over the DevTools protocol (tornado's websocket client, which Jupyter
already installs), because `chromium --screenshot` captures only the window.
"""

import argparse
import base64
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--remote-debugging-port=0"]

# Elements of the article wider than their box: they scroll (overflow auto/scroll) or are cut (hidden), or run
# past the article's right edge. Tiny MathJax overhangs (< 2 px) are ignored.
OVERFLOW_JS = r"""
(() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const right = article.getBoundingClientRect().right;
  const out = [];
  const describe = el => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    if (el.className && typeof el.className === 'string') s += '.' + el.className.trim().split(/\s+/).slice(0, 3).join('.');
    const text = (el.innerText || '').trim().replace(/\s+/g, ' ').slice(0, 80);
    let heading = '';
    for (let n = el; n && !heading; n = n.previousElementSibling || n.parentElement) {
      const h = n.matches && n.matches('h1,h2,h3') ? n : null;
      if (h) heading = h.innerText.replace(/#$/, '').trim();
    }
    return {element: s, section: heading, text: text};
  };
  for (const el of article.querySelectorAll('*')) {
    if (el.closest('mjx-container') || el.closest('.cell_input') || el.matches('span.math')) continue;  // inline math overhangs by design
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;
    if (el.scrollWidth > el.clientWidth + 2 && ['auto', 'scroll', 'hidden'].includes(style.overflowX))
      out.push({...describe(el), kind: style.overflowX === 'hidden' ? 'cut' : 'scrolls',
                width: el.scrollWidth, box: el.clientWidth});
    else if (box.right > right + 2 && !el.closest('table') && !el.closest('.output'))
      out.push({...describe(el), kind: 'past the column', width: Math.round(box.width), box: Math.round(right - box.left)});
  }
  // printed output whose lines are longer than the column: the browser wraps them raggedly
  for (const pre of article.querySelectorAll('div.cell_output pre')) {
    const style = getComputedStyle(pre);
    const lines = pre.innerText.split('\n').length;  // a trailing newline shows as a last, empty line
    const content = pre.clientHeight - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom);
    const shown = Math.round(content / parseFloat(style.lineHeight));
    if (shown > lines) out.push({...describe(pre), kind: 'printed lines wrap', width: shown, box: lines});
  }
  return JSON.stringify(out);
})()
"""


class Browser:
    def __init__(self, ws):
        self.ws, self.n = ws, 0

    async def call(self, method, session=None, **params):
        self.n += 1
        msg = {"id": self.n, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        await self.ws.write_message(json.dumps(msg))
        while True:
            reply = json.loads(await self.ws.read_message())
            if reply.get("id") == self.n:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]


async def shoot(url, pages, out, width, settle):
    browser = Browser(await websocket_connect(url, max_message_size=1 << 30))
    target = (await browser.call("Target.createTarget", url="about:blank"))["targetId"]
    session = (await browser.call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
    report = {}
    for page, name in pages:
        await browser.call("Emulation.clearDeviceMetricsOverride", session)  # the window's size again
        await browser.call("Page.navigate", session, url=page.as_uri())
        for _ in range(100):  # until loaded and MathJax has typeset (its promise settles)
            state = await browser.call("Runtime.evaluate", session, returnByValue=True, awaitPromise=True,
                                       expression="document.readyState === 'complete' && (!window.MathJax || "
                                                  "!MathJax.startup || MathJax.startup.promise.then(() => true))")
            if state["result"].get("value") is True:
                break
            time.sleep(0.1)
        time.sleep(settle)
        height = (await browser.call("Runtime.evaluate", session, returnByValue=True,
                                     expression="document.documentElement.scrollHeight"))["result"]["value"]
        # a viewport as tall as the page, then an ordinary capture: captureBeyondViewport shifts this theme's layout
        await browser.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height,
                           deviceScaleFactor=1, mobile=False)
        time.sleep(settle)
        shot = await browser.call("Page.captureScreenshot", session, format="png")
        (out / f"{name}-{width}.png").write_bytes(base64.b64decode(shot["data"]))
        found = json.loads((await browser.call("Runtime.evaluate", session, returnByValue=True,
                                               expression=OVERFLOW_JS))["result"]["value"])
        report[f"{name}-{width}"] = found
        print(f"{name}-{width}.png: {width} x {height} px, {len(found)} overflowing", flush=True)
        for f in found:
            size = (f"{f['box']} lines shown as {f['width']}" if f["kind"] == "printed lines wrap"
                    else f"{f['width']} px in {f['box']}")
            print(f"    {f['kind']}: {f['element']} ({size}) in '{f['section']}': {f['text'][:60]!r}")
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", default="_build/html", help="the built book (default _build/html)")
    ap.add_argument("--out", default="/tmp/shots", help="where the PNGs go (default /tmp/shots; not the repository)")
    ap.add_argument("--widths", type=int, nargs="+", default=[1280, 800])
    ap.add_argument("--pages", nargs="*", help="page names (e.g. intro rid_algorithm); default every page")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds to wait for layout after load")
    args = ap.parse_args()
    html, out = Path(args.html).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pages = [(p, p.stem) for p in sorted((html / "book").glob("*.html"))
             if not args.pages or p.stem in args.pages]
    if not pages:
        raise SystemExit(f"no pages under {html / 'book'}: run `make book` first")
    report = {}
    for width in args.widths:  # one browser per width: its window, not an emulated viewport, sets the layout
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:  # chromium may still be exiting
            proc = subprocess.Popen(["chromium", *FLAGS, f"--window-size={width},900", f"--user-data-dir={profile}"],
                                    stderr=subprocess.PIPE, text=True)
            try:
                for line in proc.stderr:
                    if m := re.search(r"DevTools listening on (ws://\S+)", line):
                        break
                else:
                    raise SystemExit("chromium did not start its DevTools endpoint")
                report.update(IOLoop.current().run_sync(lambda: shoot(m.group(1), pages, out, width, args.settle)))
            finally:
                proc.terminate()
                proc.wait()
    (out / "overflow.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
