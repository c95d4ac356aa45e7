// Copies the charting library from node_modules into assets/vendor/, where
// web-ui serves it: the page needs no CDN and no bundler. Runs on `npm ci`.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "assets", "vendor");
mkdirSync(target, { recursive: true });
for (const file of ["uPlot.esm.js", "uPlot.min.css"]) {
  copyFileSync(join(here, "node_modules", "uplot", "dist", file), join(target, file));
}
console.log(`uPlot copied to ${target}`);
