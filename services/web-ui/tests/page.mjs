// Drives the chart page in a real headless Chromium (Debian's, through
// playwright-core) against a running web-ui, aggregator and event-api:
// the page loads, the pipeline strip shows every stage ok, both lines plot
// what the API answers, newly posted events appear without a reload, the
// controls work, an event is traced by its receipt from the lookup box,
// the strip links to the dead letters and says every event is accounted
// for, and screenshots are kept. tests/pipeline.mjs checks the strip when a
// stage is not ok.
//
// Usage: node tests/page.mjs --url http://127.0.0.1:8080 \
//          --event-api http://127.0.0.1:9998 --screenshots DIR
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
    "event-api": { type: "string", default: "http://127.0.0.1:9998" },
    screenshots: { type: "string", default: "target/screenshots" },
  },
});

const browser = await launchBrowser();

const snapshot = (page) => page.evaluate(() => window.streamproc.snapshot());
const total = (values) => values.reduce((sum, v) => sum + (v ?? 0), 0);

/** Posts `events` to event-api; answers their receipts. */
async function postEvents(events) {
  const response = await fetch(`${args["event-api"]}/?receipts=true`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(events),
  });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return JSON.parse(text).receipts;
}

/** The chart's values equal what /api/v1/series answers for its grid. */
async function assertPlotsTheApi(page, metric) {
  const shown = await snapshot(page);
  const api = await page.evaluate(async ({ from, to, step }) => {
    const response = await fetch(`api/v1/series?from=${from}&to=${to}&step=${step / 1000}s`);
    return response.json();
  }, { from: shown.times[0], to: shown.times.at(-1) + shown.step, step: shown.step });
  assert.ok(api.high.available && api.low.available, JSON.stringify(api));
  // Counts are exact; sums may differ in the last bits, as InfluxDB adds a
  // bucket's points in no fixed order.
  const same = (a, b) => a === b || (a !== null && b !== null && Math.abs(a - b) <= 1e-9 * Math.abs(b));
  for (const name of ["high", "low"]) {
    const expected = api[name].points.map((p) => p[metric]);
    const differ = expected.findIndex((value, i) => !same(shown[name][i], value));
    assert.equal(shown[name].length, expected.length, `${name} ${metric}: bucket count`);
    assert.equal(differ, -1, `${name} ${metric} at ${shown.times[differ]}: ${shown[name][differ]} != ${expected[differ]}`);
  }
  assert.deepEqual(shown.times, api.high.points.map((p) => p.time));
  return shown;
}

try {
  mkdirSync(args.screenshots, { recursive: true });
  const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  // Script errors and console errors both fail the test: a resource the
  // CSP blocks, or one that answers 404, shows only as a console error.
  const errors = [];
  const watch = (p) => {
    p.on("pageerror", (error) => errors.push(error.message));
    p.on("console", (message) => {
      // A lookup of an event that is nowhere is answered 404 by design;
      // Chromium logs every 404 fetch as an error.
      const lookup = message.location().url.includes("/api/v1/events/");
      if (message.type() === "error" && !lookup) errors.push(message.text());
    });
  };
  watch(page);

  const loaded = await page.goto(`${args.url}/?range=5m`);
  assert.match(loaded.headers()["content-security-policy"] ?? "", /default-src 'none'/, "the page is served under its CSP");
  const first = await until("both stores up and the stream live", async () => {
    const s = await snapshot(page);
    return s.transport === "stream" && s.stores.high.available && s.stores.low.available && s.times.length > 0 && s;
  }, 10_000);
  assert.equal(first.step, 1000, "5 minutes in 300 points: 1 s buckets");
  ok("page loads; both stores up; live over the stream");

  const strip = await until("the pipeline strip, every stage ok", async () => {
    const p = (await snapshot(page)).pipeline;
    return p.stages.every((s) => s.status === "ok") && p;
  });
  assert.deepEqual(
    strip.stages.map((s) => s.name),
    ["event-api", "kafka", "consumer-high", "consumer-low", "timescaledb", "influxdb"],
  );
  assert.equal(strip.problems, "All stages ok.");
  assert.match(strip.stages[2].figure, /stored\nlag 0 · 0 s/);
  ok("the pipeline strip lists every stage in order, all ok");

  await assertPlotsTheApi(page, "count");
  const before = await snapshot(page);
  assert.ok(total(before.high) > 0 && total(before.low) > 0, "both lines hold events");
  ok(`both lines plot the API's counts (${total(before.high)} high, ${total(before.low)} low)`);

  // Without a reload: a marker set on this document must survive.
  await page.evaluate(() => (window.sameDocument = true));
  await postEvents([
    { time: Date.now(), amount: 7.25 },
    { time: Date.now(), amount: 2.5 },
  ]);
  await until("the posted events on the chart", async () => {
    const s = await snapshot(page);
    return total(s.high) === total(before.high) + 1 && total(s.low) === total(before.low) + 1;
  });
  assert.equal(await page.evaluate(() => window.sameDocument), true, "no reload");
  ok("newly posted events appear without a reload");

  await page.getByRole("button", { name: "Sum" }).click();
  assert.equal((await snapshot(page)).metric, "sum");
  await assertPlotsTheApi(page, "sum");
  ok("the Sum button plots sums");

  await page.locator("body").focus();
  await page.keyboard.press("m");
  assert.equal((await snapshot(page)).metric, "mean");
  await assertPlotsTheApi(page, "mean");
  assert.equal(await page.getByRole("button", { name: "Mean" }).getAttribute("aria-pressed"), "true");
  ok("the m key plots means");

  await page.getByRole("button", { name: "1 h" }).click();
  const hour = await until("the 1 h range", async () => {
    const s = await snapshot(page);
    return s.range === "1h" && s.step === 15_000 && s.transport === "stream" && s;
  });
  assert.ok(hour.times.at(-1) - hour.times[0] >= 3_600_000 - 15_000, "an hour of buckets");
  await assertPlotsTheApi(page, "mean");
  assert.match(page.url(), /range=1h/);
  ok("the 1 h preset reloads the hour in 15 s buckets");

  await page.keyboard.press("c");
  await page.getByRole("button", { name: "High" }).click();
  assert.equal(await page.getByRole("button", { name: "High" }).getAttribute("aria-pressed"), "false");
  assert.equal(await page.evaluate(() => window.streamproc.snapshot().shown.high), false);
  await page.keyboard.press("h");
  assert.equal(await page.evaluate(() => window.streamproc.snapshot().shown.high), true);
  ok("legend buttons and keys hide and show a line");

  const box = await page.locator("#chart .u-over").boundingBox();
  await page.mouse.move(box.x + box.width - 5, box.y + box.height / 2);
  const tip = page.locator("#tooltip");
  await tip.waitFor({ state: "visible" });
  assert.match(await tip.innerText(), /High: count \d+ · sum/);
  ok("the tooltip shows exact values");

  await page.screenshot({ path: join(args.screenshots, "web-ui.png") });
  await page.mouse.move(0, 0);

  await page.keyboard.press("p");
  assert.equal((await snapshot(page)).paused, true);
  assert.match(await page.locator("#status-feed").innerText(), /paused/);
  await page.keyboard.press("p");
  await until("live again after resume", async () => (await snapshot(page)).transport === "stream");
  ok("pause and resume");

  const dark = await browser.newPage({ viewport: { width: 1200, height: 760 }, colorScheme: "dark" });
  watch(dark);
  await dark.goto(`${args.url}/?range=15m&transport=polling`);
  await until("the polling fallback live", async () => {
    const s = await snapshot(dark);
    return s.transport === "polling" && s.times.length > 0;
  });
  const polled = await snapshot(dark);
  await postEvents([{ time: Date.now(), amount: 9.5 }]);
  await until("a posted event seen by polling", async () => total((await snapshot(dark)).high) === total(polled.high) + 1);
  const background = await dark.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(background, "rgb(13, 17, 23)", "dark colours");
  await dark.screenshot({ path: join(args.screenshots, "web-ui-dark.png") });
  ok("polling fallback keeps the chart live; dark mode");

  // The lookup box, with the receipt of an event just posted: the page
  // names its store and the very record event-api wrote.
  const [receipt] = await postEvents([{ time: Date.now(), amount: 8.5 }]);
  await page.fill("#lookup-id", receipt.id);
  await page.fill("#lookup-time", String(receipt.time));
  const traced = await until("the posted event traced on the page", async () => {
    await page.getByRole("button", { name: "Find" }).click();
    const text = await page.locator("#lookup-result").innerText();
    return text.includes(`partition ${receipt.partition}, offset ${receipt.offset}`) && text;
  });
  assert.match(traced, /^TimescaleDB: amount 8\.5 at /);
  await page.fill("#lookup-id", "no-such-event");
  await page.getByRole("button", { name: "Find" }).click();
  await until("a missing event said so", async () =>
    (await page.locator("#lookup-result").innerText()).startsWith("not found in either store or the dead letters"));
  const link = page.locator("#dead-letters");
  assert.match(await link.innerText(), /^\d[\d\u202f]* dead letters?$/);
  const listed = await page.evaluate(async (href) => (await fetch(href)).json(), await link.getAttribute("href"));
  assert.ok(Array.isArray(listed.dead_letters), JSON.stringify(listed));
  ok("the lookup box traces an event by its receipt; the strip links to the dead letters");

  // The reconciliation line: every event posted in the range accounted for
  // once the pipeline has settled.
  const reconciled = await until("the reconciliation line says all are accounted for", async () => {
    const text = await page.locator("#reconcile").innerText();
    return /^all \d+ events accounted for \(last \d+[mh]\)$/.test(text) && text;
  });
  assert.equal(await page.locator("#reconcile").getAttribute("data-state"), "accounted", reconciled);
  ok("the pipeline strip says every event is accounted for");

  const icon = await page.evaluate(async () => (await fetch(document.querySelector("link[rel=icon]").href)).status);
  assert.equal(icon, 200, "the page's icon");
  assert.deepEqual(errors, [], "no script or console errors (CSP violations, 404s) on the page");
  ok("no script or console errors under the CSP; the icon loads");
  console.log(`page: ${checksPassed()} passed, 0 failed`);
} catch (error) {
  console.error(`not ok - ${error.stack ?? error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
