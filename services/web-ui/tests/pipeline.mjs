// The pipeline strip in a real headless Chromium, against a running
// pipeline in which one stage is not ok (crates/e2e stops a consumer first):
// the strip lists every stage in pipeline order, colours the stage that is
// behind, says the problem in words, the chart shades the period, and all
// of it stays readable on a narrow screen and in the dark theme. Saves
// pipeline-degraded.png (the README's screenshot) and
// pipeline-degraded-narrow-dark.png.
//
// Usage: node tests/pipeline.mjs --url http://127.0.0.1:8080 \
//          --stage consumer-high --screenshots DIR [--hold SECONDS]
// --hold waits that long after the stage shows, before the screenshot, so
// that the shaded period is wide enough to see (scripts/screenshot_pipeline.sh).
// Exits non-zero on the first failed check. CHROMIUM_BIN overrides
// /usr/bin/chromium.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { checksPassed, launchBrowser, ok, until } from "./browser.mjs";

const { values: args } = parseArgs({
  options: {
    url: { type: "string", default: "http://127.0.0.1:8080" },
    stage: { type: "string", default: "consumer-high" },
    screenshots: { type: "string", default: "target/screenshots" },
    hold: { type: "string", default: "0" },
  },
});
const STAGES = ["event-api", "kafka", "consumer-high", "consumer-low", "timescaledb", "influxdb"];

const browser = await launchBrowser();

const pipeline = async (page) => (await page.evaluate(() => window.streamproc.snapshot())).pipeline;
// "consumer-high: 12 400 events behind, 38 s" (spaces group the thousands).
const PROBLEM = new RegExp(`${args.stage}: \\d[\\d ]* events? behind, \\d+ s`);

try {
  mkdirSync(args.screenshots, { recursive: true });
  const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(`${args.url}/?range=5m`);

  const shown = await until(`${args.stage} not ok in the strip`, async () => {
    const p = await pipeline(page);
    const stage = p.stages.find((s) => s.name === args.stage);
    return stage && stage.status !== "ok" && stage.status !== "unknown" && p;
  });
  assert.deepEqual(shown.stages.map((s) => s.name), STAGES, "pipeline order");
  for (const stage of shown.stages) {
    assert.notEqual(stage.status, "unknown", `${stage.name} has a status`);
  }
  const others = shown.stages.filter((s) => s.name !== args.stage && s.name !== "consumer-low");
  assert.deepEqual(others.map((s) => s.status), others.map(() => "ok"), JSON.stringify(shown.stages));
  const item = page.locator(`#stages [data-stage="${args.stage}"]`);
  assert.match(await item.innerText(), /lag \d[\d\u202f]* · \d+ s/);
  ok(`the strip lists the stages in order; ${args.stage} is ${shown.stages.find((s) => s.name === args.stage).status} with its lag`);

  const words = await page.locator("#pipeline-problems").innerText();
  assert.match(words, PROBLEM);
  ok(`the problem in words: "${words.split("\n")[0]}"`);

  // The same colours as the status: amber for degraded, red for down.
  const colours = await item.evaluate((li) => {
    const probe = (variable) => {
      const span = document.createElement("span");
      span.style.color = `var(${variable})`;
      document.body.append(span);
      const colour = getComputedStyle(span).color;
      span.remove();
      return colour;
    };
    return {
      border: getComputedStyle(li).borderLeftColor,
      expected: probe(li.dataset.status === "down" ? "--down" : "--warn"),
    };
  });
  assert.equal(colours.border, colours.expected);
  assert.match(await item.getAttribute("aria-label"), new RegExp(`^${args.stage}: (degraded|down); `));
  ok("the stage is coloured by its status, and says it to screen readers");

  const marked = await until("the period shaded on the chart", async () => {
    const p = await pipeline(page);
    const open = p.periods.find((period) => period.stage === args.stage && period.to === null);
    return open && p.marks > 0 && p;
  });
  assert.ok(marked.marks >= 1);
  ok(`the chart shades ${marked.marks} period(s), ${args.stage}'s still open`);
  await new Promise((resolve) => setTimeout(resolve, Number(args.hold) * 1000));
  await page.screenshot({ path: join(args.screenshots, "pipeline-degraded.png") });

  // A phone in the dark: the strip wraps, nothing runs off the side.
  const narrow = await browser.newPage({ viewport: { width: 380, height: 800 }, colorScheme: "dark" });
  narrow.on("pageerror", (error) => errors.push(error.message));
  await narrow.goto(`${args.url}/?range=5m`);
  await until("the strip on a narrow screen", async () => {
    const p = await pipeline(narrow);
    return p.stages.find((s) => s.name === args.stage)?.status !== "unknown" && PROBLEM.test(p.problems);
  });
  const layout = await narrow.evaluate(() => {
    const strip = document.getElementById("stages").getBoundingClientRect();
    const items = [...document.querySelectorAll("#stages li")].map((li) => li.getBoundingClientRect());
    return {
      pageWidth: document.documentElement.scrollWidth,
      viewport: window.innerWidth,
      stripRight: strip.right,
      rightmost: Math.max(...items.map((r) => r.right)),
      rows: new Set(items.map((r) => Math.round(r.top))).size,
      background: getComputedStyle(document.body).backgroundColor,
      problemColour: getComputedStyle(document.getElementById("pipeline-problems")).color,
    };
  });
  assert.ok(layout.pageWidth <= layout.viewport, `no sideways scrolling: ${JSON.stringify(layout)}`);
  assert.ok(layout.rightmost <= layout.viewport, `every stage within the screen: ${JSON.stringify(layout)}`);
  assert.ok(layout.rows >= 3, `the strip wraps into rows: ${JSON.stringify(layout)}`);
  assert.equal(layout.background, "rgb(13, 17, 23)", "dark colours");
  assert.notEqual(layout.problemColour, layout.background);
  await narrow.screenshot({ path: join(args.screenshots, "pipeline-degraded-narrow-dark.png"), fullPage: true });
  ok("readable on a narrow screen in the dark theme");

  assert.deepEqual(errors, [], "no script errors on the page");
  ok("no script errors");
  console.log(`pipeline page: ${checksPassed()} passed, 0 failed`);
} catch (error) {
  console.error(`not ok - ${error.stack ?? error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
