// What the browser tests share: Debian's Chromium through playwright-core,
// numbered checks, and polling. CHROMIUM_BIN overrides /usr/bin/chromium.
import { chromium } from "playwright-core";

/** A headless Chromium; as root and without outside network it needs these flags. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

let checks = 0;
/** Reports one passed check, numbered. */
export function ok(what) {
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
}

/** Checks passed so far. */
export const checksPassed = () => checks;

/** Polls `probe` in Node until it returns a truthy value. */
export async function until(what, probe, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last)}`);
}
