// StreamProc's chart page. It loads both series for the chosen range from
// /api/v1/series, keeps them live with /api/v1/stream (Server-Sent Events),
// polls instead when the stream cannot be used, and says which store is up.
// A store that does not answer leaves a gap, never a line at zero. Above the
// chart, the pipeline strip shows every stage's health from the same stream
// (or /api/v1/pipeline), and the chart shades the periods a stage was
// degraded or down, links to the dead letters, and says in one line whether
// every event accepted in the range (an hour at most) is accounted for, from
// /api/v1/reconcile. Below it, one event can
// be traced by id to the store and the Kafka record that hold it.
import uPlot from "./vendor/uPlot.esm.js";

const RANGES = {
  "5m": 5 * 60_000,
  "15m": 15 * 60_000,
  "1h": 60 * 60_000,
  "6h": 6 * 60 * 60_000,
  "24h": 24 * 60 * 60_000,
};
const METRICS = {
  count: "Count",
  sum: "Sum of amounts",
  mean: "Mean amount",
};
const SERIES = ["high", "low"];
const STORE_LABEL = { high: "TimescaleDB (High)", low: "InfluxDB (Low)" };
const STORE_NAME = { timescaledb: "TimescaleDB", influxdb: "InfluxDB" };
// About one bucket per 3 px of a wide chart; the aggregator rounds the step.
const MAX_POINTS = 300;
const POLL_MS = 2_000;
const TOTALS_MS = 5_000;
// The reconciliation counts every TimescaleDB row of its range, so the page
// asks for an hour at most, and as often as for the totals.
const RECONCILE_MAX_MS = 60 * 60_000;
// A stream that has sent nothing for this long is treated as broken (some
// proxies buffer event streams until they close).
const STREAM_SILENCE_MS = 5_000;
const CHART_HEIGHT = 420;
const COUNT_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 1e7, 1e8, 1e9];

const query = new URLSearchParams(location.search);
const state = {
  range: query.get("range") in RANGES ? query.get("range") : "15m",
  metric: query.get("metric") in METRICS ? query.get("metric") : "count",
  // ?transport=polling forces the fallback, to try it out.
  wantStream: query.get("transport") !== "polling",
  transport: null,
  paused: false,
  step: null,
  end: 0,
  // Bucket start (ms) → { high: point | null, low: point | null }.
  buckets: new Map(),
  stores: {
    high: { available: null, error: null, count: null, lastTime: null },
    low: { available: null, error: null, count: null, lastTime: null },
  },
  shown: { high: true, low: true },
  updatedAt: null,
  feedError: null,
  // The newest /api/v1/pipeline answer, or why there is none.
  pipeline: null,
  pipelineError: null,
  // Period bands drawn on the chart at the last draw.
  marks: 0,
  // Bumped by every reload, so answers to an older request are dropped.
  generation: 0,
};

const $ = (id) => document.getElementById(id);
const chartElement = $("chart");
const tooltip = $("tooltip");
let chart = null;
let feed = { stop() {} };

// ---- Loading and merging data -------------------------------------------

async function getJson(path) {
  const response = await fetch(path, { headers: { accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch {
    throw new Error(`${path}: HTTP ${response.status}`);
  }
  return body;
}

/** Fetches the whole range again, then follows it live. */
async function reload() {
  const generation = ++state.generation;
  feed.stop();
  const params = new URLSearchParams({
    from: `now-${state.range}`,
    to: "now",
    max_points: String(MAX_POINTS),
  });
  let body;
  try {
    body = await getJson(`api/v1/series?${params}`);
  } catch (error) {
    body = { message: error.message };
  }
  if (generation !== state.generation) return;
  if (!body || typeof body.step !== "number") {
    // The aggregator itself is unreachable (web-ui answers 502).
    state.feedError = body?.message ?? "no answer";
    renderStatus();
    setTimeout(() => generation === state.generation && reload(), POLL_MS);
    return;
  }
  state.feedError = null;
  state.step = body.step;
  state.end = 0;
  state.buckets = new Map();
  merge(body);
  draw();
  if (!state.paused) {
    feed = state.wantStream && "EventSource" in window ? streamFeed(generation) : pollingFeed(generation);
  }
}

/** Adds an answer's buckets. Returns true when a store that was down
 *  answered again: the buckets it missed call for a reload. */
function merge(body) {
  let recovered = false;
  for (const name of SERIES) {
    const part = body[name];
    const store = state.stores[name];
    if (part.available && store.available === false) recovered = true;
    store.available = part.available;
    store.error = part.error ?? null;
    if (!part.available) continue;
    for (const point of part.points) {
      const entry = state.buckets.get(point.time) ?? { high: null, low: null };
      entry[name] = point;
      state.buckets.set(point.time, entry);
    }
  }
  state.end = Math.max(state.end, body.to);
  const oldest = state.end - RANGES[state.range] - state.step;
  for (const time of state.buckets.keys()) {
    if (time < oldest) state.buckets.delete(time);
  }
  state.updatedAt = new Date();
  return recovered;
}

function onUpdate(generation, body) {
  if (generation !== state.generation || state.paused || body.step !== state.step) return;
  state.feedError = null;
  if (merge(body)) {
    reload();
  } else {
    draw();
  }
}

/** Buckets of the newest few steps: enough to cover a missed update. */
function recentBuckets() {
  return Math.max(3, Math.ceil(STREAM_SILENCE_MS / state.step) + 1);
}

function streamFeed(generation) {
  const step = `${state.step / 1000}s`;
  const source = new EventSource(`api/v1/stream?step=${step}&last=${recentBuckets()}`);
  let silence = null;
  let fallback = null;
  const watch = () => {
    clearTimeout(silence);
    silence = setTimeout(() => giveUp("the stream went silent"), STREAM_SILENCE_MS);
  };
  const giveUp = (why) => {
    source.close();
    clearTimeout(silence);
    if (generation !== state.generation) return;
    state.feedError = `${why}; polling instead`;
    fallback = pollingFeed(generation);
  };
  source.addEventListener("series", (event) => {
    watch();
    state.transport = "stream";
    onUpdate(generation, JSON.parse(event.data));
  });
  source.addEventListener("pipeline", (event) => {
    if (generation === state.generation) onPipeline(JSON.parse(event.data));
  });
  // EventSource reconnects by itself after a dropped connection; it closes
  // for good on an HTTP error, and then polling takes over.
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) giveUp("the stream was refused");
  };
  watch();
  return {
    stop() {
      source.close();
      clearTimeout(silence);
      fallback?.stop();
    },
  };
}

function pollingFeed(generation) {
  state.transport = "polling";
  let timer = null;
  const poll = async () => {
    const params = new URLSearchParams({
      from: `now-${(recentBuckets() - 1) * state.step}ms`,
      to: "now",
      step: `${state.step / 1000}s`,
    });
    try {
      onUpdate(generation, await getJson(`api/v1/series?${params}`));
    } catch (error) {
      state.feedError = error.message;
      renderStatus();
    }
    await refreshPipeline();
    if (generation === state.generation) timer = setTimeout(poll, POLL_MS);
  };
  timer = setTimeout(poll, POLL_MS);
  return { stop: () => clearTimeout(timer) };
}

async function refreshTotals() {
  try {
    const body = await getJson("api/v1/totals");
    for (const name of SERIES) {
      const part = body[name];
      if (!part) continue;
      Object.assign(state.stores[name], {
        count: part.available ? part.count : state.stores[name].count,
        lastTime: part.available ? part.last_time : state.stores[name].lastTime,
      });
    }
  } catch {
    // The series requests report the aggregator's absence already.
  }
  renderStatus();
}

// ---- Pipeline health ----------------------------------------------------

function onPipeline(snapshot) {
  state.pipeline = snapshot;
  state.pipelineError = null;
  renderPipeline();
  // The bands follow the periods.
  chart?.redraw(false, false);
}

async function refreshPipeline() {
  try {
    const body = await getJson("api/v1/pipeline");
    if (Array.isArray(body?.stages)) onPipeline(body);
    else {
      state.pipelineError = body?.message ?? "no answer";
      renderPipeline();
    }
  } catch (error) {
    state.pipelineError = error.message;
    renderPipeline();
  }
}

/** 12400 → "12 400" (narrow no-break spaces, as the problems say it). */
function grouped(number) {
  return Math.round(number).toLocaleString("en-US").replaceAll(",", "\u202f");
}

function perSecond(rate) {
  if (rate == null) return "–/s";
  return rate >= 100 ? `${grouped(rate)}/s` : `${rate.toFixed(1)}/s`;
}

/** The short figures under a stage's name, a line each: its rate, and its
 *  lag or size. */
function stageFigure(stage) {
  const f = stage.figures ?? {};
  switch (stage.name) {
    case "event-api": {
      let text = `${perSecond(stage.events_per_second)} accepted`;
      if (f.shed_per_second > 0) text += `\n${perSecond(f.shed_per_second)} shed`;
      if (f.replicas > 1) text += `\n${f.ready}/${f.replicas} ready`;
      return stage.status === "down" ? "not ready" : text;
    }
    case "kafka":
      return stage.status === "down" ? "not reachable" : `${perSecond(stage.events_per_second)} in\n${grouped(f.records ?? 0)} records`;
    case "consumer-high":
    case "consumer-low": {
      // Replicas are shown once there are several, or some are not ready.
      const replicas = f.replicas > 1 || f.ready < f.replicas ? `\n${f.ready}/${f.replicas} ready` : "";
      if (stage.lag_events == null) return `lag unknown${replicas}`;
      return `${perSecond(stage.events_per_second)} stored\nlag ${grouped(stage.lag_events)} · ${Math.floor(stage.lag_seconds ?? 0)} s${replicas}`;
    }
    default:
      return stage.status === "down" ? "not reachable" : `${Math.round(f.latency_ms ?? 0)} ms`;
  }
}

function renderPipeline() {
  const section = $("pipeline");
  const problems = $("pipeline-problems");
  const snapshot = state.pipeline;
  if (!snapshot) {
    section.dataset.state = "unknown";
    problems.textContent = `pipeline: ${state.pipelineError ?? "…"}`;
    return;
  }
  section.dataset.state = snapshot.status;
  for (const stage of snapshot.stages) {
    const item = section.querySelector(`[data-stage="${stage.name}"]`);
    if (!item) continue;
    item.dataset.status = stage.status;
    item.querySelector(".figure").textContent = stageFigure(stage);
    item.title = stage.reason ? `${stage.name} ${stage.status}: ${stage.reason}` : `${stage.name}: ok`;
    // The colour in words, for screen readers.
    item.setAttribute("aria-label", `${stage.name}: ${stage.status}; ${item.querySelector(".figure").textContent.replaceAll("\n", ", ")}`);
  }
  const dead = snapshot.stages.find((s) => s.name === "kafka")?.figures?.dead_lettered;
  $("dead-letters").textContent = dead == null ? "dead letters" : `${grouped(dead)} dead letter${dead === 1 ? "" : "s"}`;
  if (snapshot.problems.length === 0) {
    problems.textContent = "All stages ok.";
  } else {
    problems.replaceChildren(
      ...snapshot.problems.map((text) => {
        const line = document.createElement("span");
        line.textContent = text;
        return line;
      }),
    );
  }
  if (state.pipelineError) problems.append(` (${state.pipelineError})`);
}

/** The reconciliation of the chosen range (an hour at most), in one line. */
async function refreshReconcile() {
  const line = $("reconcile");
  const span = Math.min(RANGES[state.range], RECONCILE_MAX_MS);
  const now = Date.now();
  const window = span === RANGES[state.range] ? `last ${state.range}` : "last 1h";
  try {
    const body = await getJson(`api/v1/reconcile?from=${now - span}&to=${now}&max_points=60`);
    line.dataset.state = body.status ?? "unknown";
    line.textContent = body.summary ? `${body.summary} (${window})` : `reconciliation: ${body.message ?? "no answer"}`;
  } catch (error) {
    line.dataset.state = "unknown";
    line.textContent = `reconciliation: ${error.message}`;
  }
}

// ---- Tracing one event --------------------------------------------------

const iso = (ms) => new Date(ms).toISOString();

/** What /api/v1/events/{id} answered, a line per place. */
function describeTrace(status, body) {
  if (status !== 200) return [body?.message ?? `HTTP ${status}`];
  const lines = body.stored.map((s) => {
    const origin = s.partition == null ? "its record unknown (stored before records were kept)" : `from partition ${s.partition}, offset ${s.offset}`;
    const written = s.stored_at == null ? "" : `, written ${iso(s.stored_at)}`;
    return `${STORE_NAME[s.store] ?? s.store}: amount ${s.amount} at ${iso(s.time)}, ${origin}${written}`;
  });
  for (const d of body.dead_letters) {
    lines.push(`Dead-lettered ${iso(d.time)} (dead letter ${d.partition}:${d.offset}): ${d.reason}`);
  }
  for (const n of body.not_searched) lines.push(`Not searched in ${n.in}: ${n.reason}`);
  return lines;
}

async function lookUp(event) {
  event.preventDefault();
  const id = $("lookup-id").value.trim();
  const time = $("lookup-time").value.trim();
  const result = $("lookup-result");
  if (!id) return;
  result.textContent = "looking…";
  const query = time ? `?${new URLSearchParams({ time })}` : "";
  let status;
  let body = null;
  try {
    const response = await fetch(`api/v1/events/${encodeURIComponent(id)}${query}`, { headers: { accept: "application/json" } });
    status = response.status;
    body = await response.json().catch(() => null);
  } catch (error) {
    result.textContent = error.message;
    return;
  }
  result.dataset.status = String(status);
  result.replaceChildren(
    ...describeTrace(status, body).map((text) => {
      const line = document.createElement("span");
      line.textContent = text;
      return line;
    }),
  );
}

/** Shades, under the lines, each period a stage was degraded or down. */
function drawPeriods(u) {
  const periods = state.pipeline?.periods ?? [];
  const [min, max] = [u.scales.x.min, u.scales.x.max];
  let marks = 0;
  if (min == null || max == null) return;
  const colors = { degraded: cssColor("--warn-band"), down: cssColor("--down-band") };
  const { ctx } = u;
  ctx.save();
  for (const period of periods) {
    const from = Math.max(period.from, min);
    const to = Math.min(period.to ?? state.pipeline.time, max);
    if (!(to > from) || !colors[period.status]) continue;
    const left = u.valToPos(from, "x", true);
    const right = Math.max(u.valToPos(to, "x", true), left + 2);
    ctx.fillStyle = colors[period.status];
    ctx.fillRect(left, u.bbox.top, right - left, u.bbox.height);
    marks += 1;
  }
  ctx.restore();
  state.marks = marks;
}

/** The periods covering `time`, for the tooltip. */
function periodsAt(time) {
  return (state.pipeline?.periods ?? []).filter(
    (p) => p.from <= time + (state.step ?? 0) && (p.to ?? Infinity) >= time,
  );
}

// ---- Drawing ------------------------------------------------------------

function value(point) {
  if (!point) return null;
  return state.metric === "mean" ? point.mean : point[state.metric];
}

function chartData() {
  const times = [...state.buckets.keys()].sort((a, b) => a - b);
  const series = (name) => times.map((time) => value(state.buckets.get(time)[name]));
  return [times, series("high"), series("low")];
}

/** Resolves a CSS colour variable (light-dark() included) for the canvas. */
function cssColor(variable) {
  const probe = document.createElement("span");
  probe.style.color = `var(${variable})`;
  document.body.append(probe);
  const color = getComputedStyle(probe).color;
  probe.remove();
  return color;
}

function createChart() {
  chart?.destroy();
  const axis = {
    stroke: cssColor("--fg"),
    grid: { stroke: cssColor("--grid"), width: 1 },
    ticks: { stroke: cssColor("--grid"), width: 1 },
  };
  const line = (label, color, name) => ({
    label,
    stroke: color,
    width: 2,
    show: state.shown[name],
    points: { show: false },
  });
  chart = new uPlot(
    {
      width: chartElement.clientWidth || 800,
      height: CHART_HEIGHT,
      ms: 1,
      legend: { show: false },
      scales: {
        x: { time: true },
        y: { range: (u, min, max) => [Math.min(0, min ?? 0), max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        axis,
        {
          ...axis,
          label: METRICS[state.metric],
          size: 70,
          // Counts are whole: no ticks at 0.5.
          ...(state.metric === "count" ? { incrs: COUNT_TICKS } : {}),
        },
      ],
      series: [{}, line("High", cssColor("--high"), "high"), line("Low", cssColor("--low"), "low")],
      hooks: { setCursor: [showTooltip], drawClear: [drawPeriods] },
    },
    chartData(),
    chartElement,
  );
}

function draw() {
  if (!chart) createChart();
  else chart.setData(chartData());
  const step = state.step ? `${state.step / 1000} s` : "…";
  $("caption").textContent =
    `${METRICS[state.metric]} per ${step} bucket over the last ${state.range}, at each bucket's start; ` +
    "the last bucket is still filling. A gap means the store did not answer " +
    "(or, for the mean, that the bucket is empty). Shaded: a stage was degraded (amber) or down (red).";
  renderStatus();
}

function formatNumber(number) {
  if (number == null) return "–";
  return Number.isInteger(number) ? String(number) : number.toFixed(6).replace(/0+$/, "");
}

function showTooltip(u) {
  const index = u.cursor.idx;
  if (index == null || u.cursor.left < 0) {
    tooltip.hidden = true;
    return;
  }
  const time = u.data[0][index];
  const entry = state.buckets.get(time);
  const lines = [`${new Date(time).toLocaleString()} (+${state.step / 1000} s)`];
  for (const name of SERIES) {
    if (!state.shown[name]) continue;
    const point = entry?.[name];
    const label = name === "high" ? "High" : "Low";
    lines.push(
      point
        ? `${label}: count ${point.count} · sum ${formatNumber(point.sum)} · mean ${formatNumber(point.mean)}`
        : `${label}: no data (store unavailable)`,
    );
  }
  for (const period of periodsAt(time)) {
    lines.push(`${period.stage} ${period.status}: ${period.reason}`);
  }
  tooltip.replaceChildren(
    ...lines.map((text, i) => {
      const div = document.createElement("div");
      div.textContent = text;
      if (i > 0) div.className = text.startsWith("High") ? "high" : text.startsWith("Low") ? "low" : "period";
      return div;
    }),
  );
  tooltip.hidden = false;
  const left = u.over.offsetLeft + u.cursor.left;
  const flip = left > chartElement.clientWidth / 2;
  tooltip.style.left = flip ? "" : `${left + 12}px`;
  tooltip.style.right = flip ? `${chartElement.clientWidth - left + 12}px` : "";
  tooltip.style.top = `${u.over.offsetTop + u.cursor.top + 12}px`;
}

function renderStatus() {
  for (const name of SERIES) {
    const store = state.stores[name];
    const element = $(`status-${name}`);
    const status = store.available === null ? "unknown" : store.available ? "up" : "down";
    element.dataset.state = status;
    let text = `${STORE_LABEL[name]}: ${status}`;
    if (store.available === false && store.error) text += ` (${store.error})`;
    if (store.count != null) text += ` · ${store.count.toLocaleString()} events`;
    if (store.lastTime != null) text += ` · last event ${new Date(store.lastTime).toLocaleTimeString()}`;
    element.querySelector(".text").textContent = text;
  }
  let feedText;
  if (state.paused) feedText = "paused";
  else if (state.feedError) feedText = `aggregator: ${state.feedError}`;
  else if (state.transport === "stream") feedText = "live (stream)";
  else if (state.transport === "polling") feedText = `live (polling every ${POLL_MS / 1000} s)`;
  else feedText = "connecting…";
  if (state.updatedAt) feedText += ` · updated ${state.updatedAt.toLocaleTimeString()}`;
  $("status-feed").textContent = feedText;
}

// ---- Controls -----------------------------------------------------------

function pressed(group, attribute, chosen) {
  for (const button of $(group).querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset[attribute] === chosen));
  }
}

function remember() {
  const params = new URLSearchParams(location.search);
  params.set("range", state.range);
  params.set("metric", state.metric);
  history.replaceState(null, "", `?${params}`);
}

function setRange(range) {
  state.range = range;
  pressed("ranges", "range", range);
  remember();
  reload();
}

function setMetric(metric) {
  state.metric = metric;
  pressed("metrics", "metric", metric);
  remember();
  createChart();
  draw();
}

function toggleSeries(name) {
  state.shown[name] = !state.shown[name];
  $("legend").querySelector(`[data-series="${name}"]`).setAttribute("aria-pressed", String(state.shown[name]));
  chart?.setSeries(SERIES.indexOf(name) + 1, { show: state.shown[name] });
}

function togglePause() {
  state.paused = !state.paused;
  const button = $("pause");
  button.setAttribute("aria-pressed", String(state.paused));
  button.textContent = state.paused ? "Resume" : "Pause";
  if (state.paused) {
    state.generation++;
    feed.stop();
    renderStatus();
  } else {
    reload();
  }
}

const THEMES = ["auto", "light", "dark"];

function applyTheme(theme) {
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  $("theme").textContent = `Theme: ${theme}`;
  localStorage.setItem("streamproc-theme", theme);
  createChart();
}

function nextTheme() {
  const current = document.documentElement.dataset.theme ?? "auto";
  applyTheme(THEMES[(THEMES.indexOf(current) + 1) % THEMES.length]);
}

const KEYS = {
  1: () => setRange("5m"),
  2: () => setRange("15m"),
  3: () => setRange("1h"),
  4: () => setRange("6h"),
  5: () => setRange("24h"),
  c: () => setMetric("count"),
  s: () => setMetric("sum"),
  m: () => setMetric("mean"),
  h: () => toggleSeries("high"),
  l: () => toggleSeries("low"),
  p: togglePause,
  t: nextTheme,
};

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  // Letters typed into the lookup box are not shortcuts.
  if (event.target.closest?.("input")) return;
  // Space on a focused button presses that button; elsewhere it pauses.
  if (event.key === " " && event.target === document.body) {
    event.preventDefault();
    togglePause();
    return;
  }
  KEYS[event.key.toLowerCase()]?.();
}

function start() {
  $("ranges").addEventListener("click", (e) => e.target.closest("button") && setRange(e.target.closest("button").dataset.range));
  $("metrics").addEventListener("click", (e) => e.target.closest("button") && setMetric(e.target.closest("button").dataset.metric));
  $("legend").addEventListener("click", (e) => e.target.closest("button") && toggleSeries(e.target.closest("button").dataset.series));
  $("pause").addEventListener("click", togglePause);
  $("theme").addEventListener("click", nextTheme);
  $("lookup").addEventListener("submit", lookUp);
  document.addEventListener("keydown", onKey);
  chartElement.addEventListener("mouseleave", () => (tooltip.hidden = true));
  new ResizeObserver(() => chart?.setSize({ width: chartElement.clientWidth, height: CHART_HEIGHT })).observe(chartElement);
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", createChart);

  pressed("ranges", "range", state.range);
  pressed("metrics", "metric", state.metric);
  applyTheme(localStorage.getItem("streamproc-theme") ?? "auto");
  reload();
  refreshTotals();
  setInterval(refreshTotals, TOTALS_MS);
  refreshReconcile();
  setInterval(refreshReconcile, TOTALS_MS);
  // At once, rather than at the stream's first tick.
  refreshPipeline();
}

// What the browser test reads: the values the chart plots right now.
window.streamproc = {
  snapshot() {
    const [times, high, low] = chart ? chart.data : [[], [], []];
    return {
      range: state.range,
      metric: state.metric,
      step: state.step,
      transport: state.transport,
      paused: state.paused,
      stores: structuredClone(state.stores),
      shown: { high: chart?.series[1].show ?? false, low: chart?.series[2].show ?? false },
      times: [...times],
      high: [...high],
      low: [...low],
      pipeline: {
        status: state.pipeline?.status ?? null,
        stages: [...document.querySelectorAll("#stages li")].map((li) => ({
          name: li.dataset.stage,
          status: li.dataset.status,
          figure: li.querySelector(".figure").textContent,
        })),
        problems: $("pipeline-problems").textContent,
        periods: structuredClone(state.pipeline?.periods ?? []),
        marks: state.marks,
      },
    };
  },
};

start();
