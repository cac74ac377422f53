"""Take the README's screenshot of the map: start `transit demo`, log in with its ops
token in headless Chromium (Debian's /usr/bin/chromium), save docs/map.png.

    .venv/bin/python docs/make_screenshot.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def main() -> None:
    workdir = tempfile.mkdtemp(prefix="transit-shot-")
    transit = str(Path(sys.executable).parent / "transit")
    demo = subprocess.Popen([transit, "demo", "--time-scale", "4"], cwd=workdir,
                            stdout=subprocess.PIPE, text=True)
    assert demo.stdout is not None
    lines = [demo.stdout.readline().strip() for _ in range(4)]
    url = lines[0].removeprefix("map: ")
    token = lines[2].removeprefix("ops token: ")
    try:
        time.sleep(25)  # let the buses spread out along their routes
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.goto(url)
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_selector(".bus.live", timeout=30_000)
            time.sleep(3)
            page.locator(".bus.live").first.click()
            page.wait_for_selector(".popup", timeout=10_000)
            time.sleep(1)
            page.screenshot(path=str(HERE / "map.png"))
            browser.close()
    finally:
        demo.send_signal(2)
        demo.wait(timeout=30)
    print(f"wrote {HERE / 'map.png'}")


if __name__ == "__main__":
    main()
