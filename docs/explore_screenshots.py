"""The README's explorer screenshots: the pages over real runs, driven in Chromium.

  python docs/explore_screenshots.py --generator runs/stylegan --text runs/t2f \\
      --pix2pix runs/pix2pix --sketch runs/sketch_rnn --out docs/images

Starts the explorer in process on a free localhost port, plays with each page as a
person would (a slider, a clicked feature tile, a drawing) and saves one PNG per page.
"""

import argparse
import math
import os
import shutil
import socket
import threading
import time

import uvicorn
from playwright.sync_api import sync_playwright

from zoo.explore import backends as B
from zoo.explore import server as S


def draw(page, selector, points):
  box = page.locator(selector).bounding_box()
  page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
  page.mouse.down()
  for x, y in points[1:]:
    page.mouse.move(box["x"] + x, box["y"] + y, steps=3)
  page.mouse.up()


def ellipse(cx, cy, rx, ry, n=40, start=0.0, end=2 * math.pi):
  return [
    (
      cx + rx * math.cos(start + (end - start) * i / n),
      cy + ry * math.sin(start + (end - start) * i / n),
    )
    for i in range(n + 1)
  ]


def settle(page, selector):
  page.wait_for_function("s => Number(document.querySelector(s).dataset.version) > 0", arg=selector)
  time.sleep(1.0)


def main():
  p = argparse.ArgumentParser()
  for k in ("generator", "text", "pix2pix", "sketch"):
    p.add_argument(f"--{k}", default="")
  p.add_argument("--out", default="docs/images")
  a = p.parse_args()
  runs = {k: getattr(a, k) for k in ("generator", "text", "pix2pix", "sketch") if getattr(a, k)}
  loaded = {k: B.load_backend(w, log=print) for k, w in runs.items()}
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  srv = uvicorn.Server(uvicorn.Config(S.create_app(loaded), port=port, log_level="error"))
  threading.Thread(target=srv.run, daemon=True).start()
  while not srv.started:
    time.sleep(0.05)
  url = f"http://127.0.0.1:{port}"
  chromium = shutil.which("chromium") or shutil.which("chromium-browser")
  os.makedirs(a.out, exist_ok=True)
  with sync_playwright() as pw:
    browser = pw.chromium.launch(
      executable_path=chromium,
      args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )
    page = browser.new_page(viewport={"width": 1200, "height": 980})
    page.set_default_timeout(300_000)
    if "generator" in runs:
      page.goto(f"{url}/?run=generator")
      settle(page, "#gen-image")
      page.fill("#seed", "11")
      page.dispatch_event("#seed", "change")
      sliders = page.locator("#attributes input")
      if sliders.count():
        names = [sliders.nth(i).get_attribute("data-name") for i in range(sliders.count())]
        pick = next((i for i, n in enumerate(names) if n.startswith("hair_color")), 0)
        sliders.nth(pick).fill("1.5")
      if page.is_visible("#features-section"):
        page.wait_for_selector("#tiles img.tile")
        page.locator("#edit-strength").fill("12")
        # Drag a box over the mouth on one channel's tile: add its pattern there.
        box = page.locator("#tiles img.tile").nth(4).bounding_box()
        page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.5 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.7 * box["width"], box["y"] + 0.8 * box["height"], steps=5)
        page.mouse.up()
      page.click("#interp-go")
      page.wait_for_function("document.querySelectorAll('#interp-strip img').length === 8")
      time.sleep(1.5)
      page.screenshot(path=os.path.join(a.out, "explore_generator.png"), full_page=True)
    if "text" in runs:
      page.goto(f"{url}/?run=text")
      settle(page, "#gen-image")
      v = int(page.get_attribute("#gen-image", "data-version"))
      page.fill("#caption", "a smiling person with long blond hair and round glasses")
      page.wait_for_function(
        "v => Number(document.querySelector('#gen-image').dataset.version) > v", arg=v
      )
      page.click("#interp-go")
      page.wait_for_function("document.querySelectorAll('#interp-strip img').length === 8")
      time.sleep(1.5)
      page.screenshot(path=os.path.join(a.out, "explore_caption.png"), full_page=False)
    if "pix2pix" in runs:
      page.goto(f"{url}/?run=pix2pix")
      settle(page, "#translated")
      page.locator("#brush").fill("4")
      # A portrait as the edge maps draw one: head, neck and shoulders, eyes, mouth.
      draw(page, "#draw-canvas", ellipse(128, 100, 64, 82))
      draw(page, "#draw-canvas", [(108, 178), (128, 212), (148, 178)])
      draw(page, "#draw-canvas", [(18, 256), (40, 222), (90, 205), (128, 212)])
      draw(page, "#draw-canvas", [(128, 212), (166, 205), (216, 222), (238, 256)])
      draw(page, "#draw-canvas", ellipse(102, 98, 13, 11))
      draw(page, "#draw-canvas", ellipse(154, 98, 13, 11))
      draw(page, "#draw-canvas", ellipse(128, 145, 22, 12, start=0.2, end=math.pi - 0.2))
      time.sleep(2.0)
      page.screenshot(path=os.path.join(a.out, "explore_pix2pix.png"), full_page=False)
    if "sketch" in runs:
      page.goto(f"{url}/?run=sketch")
      page.wait_for_selector("nav button.active[data-run='sketch']")
      draw(page, "#sketch-canvas", ellipse(180, 180, 90, 90, n=24, start=0, end=math.pi))
      page.wait_for_function(
        "document.querySelectorAll('#completions canvas').length === 4 && [...document."
        "querySelectorAll('#completions canvas')].every(c => c.dataset.done === '1')"
      )
      time.sleep(0.5)
      page.screenshot(path=os.path.join(a.out, "explore_sketch.png"), full_page=False)
    browser.close()
  srv.should_exit = True


if __name__ == "__main__":
  main()
