"""Render a tgo report in headless Chromium, save a screenshot, and check every figure loaded.

    python scripts/check_report.py REPORT_DIR/index.html [--screenshot shot.png]

Exit 0 when every <img> decoded (naturalWidth > 0), 1 otherwise; prints the counts.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=5000"]
PROBE = """<script>window.addEventListener('load',()=>{const imgs=[...document.images];
const ok=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;
document.body.setAttribute('data-images',ok+'/'+imgs.length);});</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def check(page: Path, screenshot: Path | None = None) -> tuple[int, int]:
    """(images that loaded, images on the page), using a probe copy of the page."""
    browser = chromium()
    if browser is None:
        raise RuntimeError("no chromium on PATH: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        profile = [f"--user-data-dir={tmp}/profile"]
        dom = subprocess.run([browser, *FLAGS, *profile, "--dump-dom", probe.as_uri()], capture_output=True,
                             text=True, timeout=120).stdout
        if screenshot is not None:
            subprocess.run([browser, *FLAGS, *profile, f"--screenshot={screenshot}", "--window-size=1280,2400",
                            page.resolve().as_uri()], capture_output=True, timeout=120, check=False)
    match = re.search(r'data-images="(\d+)/(\d+)"', dom)
    if not match:
        raise RuntimeError("the page did not finish loading in Chromium")
    return int(match.group(1)), int(match.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    loaded, total = check(args.page, args.screenshot)
    print(f"{loaded}/{total} figures loaded")
    return 0 if total > 0 and loaded == total else 1


if __name__ == "__main__":
    sys.exit(main())
