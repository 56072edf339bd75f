// Compare runs: one uPlot chart per metric name, one coloured series per fine-tune job, drawn from
// the JSON the server embeds (the jobs' stored metrics events, as the job page replays them).
// Metrics reported once per run (eval loss before/after) stay in the "Last values" table.

const CHART_HEIGHT = 220;
const PALETTE = ["#4f46e5", "#db2777", "#059669", "#d97706", "#0891b2", "#7c3aed", "#dc2626", "#65a30d"];

const $ = (id) => document.getElementById(id);
const holder = $("cmp-charts");

function readData() {
  try {
    return JSON.parse($("cmp-data")?.textContent ?? "null");
  } catch {
    return null;
  }
}

// Learning rates live around 1e-4: uPlot's default ticks would all read "0".
function formatNumber(v) {
  if (v == null || !Number.isFinite(v)) return "--";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return Number(v.toPrecision(3)).toExponential();
  return String(Number(v.toPrecision(4)));
}

/** The runs' points of one metric on a shared x axis (steps), null where a run has no point. */
function aligned(jobs, perJob) {
  const steps = new Set();
  for (const job of jobs) for (const [x] of perJob[String(job.id)] ?? []) steps.add(Number(x));
  const xs = [...steps].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = jobs.map((job) => {
    const ys = new Array(xs.length).fill(null);
    for (const [x, y] of perJob[String(job.id)] ?? []) ys[index.get(Number(x))] = Number(y);
    return ys;
  });
  return [xs, ...columns];
}

function colourLegend(jobs) {
  jobs.forEach((job, i) => {
    const item = document.querySelector(`#cmp-legend [data-job-id="${job.id}"]`);
    if (!item) return;
    const swatch = document.createElement("span");
    swatch.className = "ds-swatch";
    swatch.setAttribute("aria-hidden", "true");
    swatch.style.background = PALETTE[i % PALETTE.length]; // CSSOM, allowed by the CSP
    item.prepend(swatch, " ");
  });
}

function drawChart(name, jobs, perJob) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.dataset.metric = name;
  const caption = document.createElement("figcaption");
  caption.textContent = name;
  const box = document.createElement("div");
  figure.append(caption, box);
  holder.append(figure);
  const data = aligned(jobs, perJob);
  const plot = new window.uPlot(
    {
      width: Math.max(box.clientWidth, 240),
      height: CHART_HEIGHT,
      scales: { x: { time: false } },
      series: [
        { label: holder.dataset.stepLabel || "step" },
        ...jobs.map((job, i) => ({
          label: job.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.5,
          spanGaps: true, // eval points every N steps: join them across the steps between
          points: { show: data[0].length < 60 },
          value: (u, v) => formatNumber(v),
        })),
      ],
      axes: [{}, { size: 64, values: (u, ticks) => ticks.map(formatNumber) }],
      legend: { live: true },
    },
    data,
    box,
  );
  new ResizeObserver(() => {
    const width = Math.max(box.clientWidth, 240);
    if (width !== plot.width) plot.setSize({ width, height: CHART_HEIGHT });
  }).observe(box);
}

const data = readData();
if (holder && data && typeof window.uPlot === "function") {
  colourLegend(data.jobs);
  for (const [name, perJob] of Object.entries(data.metrics)) {
    // A metric with at most one point per run is a figure, not a curve: the table shows it.
    if (!Object.values(perJob).some((points) => points.length > 1)) continue;
    drawChart(name, data.jobs, perJob);
  }
}
