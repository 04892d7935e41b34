//! Charts (plotters): PNG and SVG of every chart into `analysis/plots/`.
//!
//! Every chart here is lines (and optionally points) over `(f64, f64)` series, so one
//! [`LineChart`] spec and one drawing function serve them all, for both backends. Text uses
//! DejaVu Sans Condensed embedded in the binary (`assets/fonts`), so no system font is needed.

use std::collections::BTreeMap;
use std::{
    path::{Path, PathBuf},
    sync::{Mutex, Once, PoisonError},
};

use plotters::{coord::Shift, prelude::*, style::FontStyle};

use super::{Analysis, Cdf};

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansCondensed.ttf");
const SIZE: (u32, u32) = (900, 480);

/// tab10: distinct, readable on white.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Why a chart could not be written.
#[derive(Debug, thiserror::Error)]
#[error("failed to draw {name}: {why}")]
pub struct PlotError {
    pub name: String,
    pub why: String,
}

/// One chart.
#[derive(Debug, Clone)]
pub(crate) struct LineChart {
    pub name: String,
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    /// Dashed vertical lines (stage boundaries, an answer), x values.
    pub marks: Vec<f64>,
    /// Stage starts on a time axis: a vertical line at each, the stage's label beside it.
    pub stages: Vec<(f64, String)>,
    /// Text at points (a search's trial numbers).
    pub labels: Vec<(f64, f64, String)>,
    /// A dashed y = x line (achieved against offered).
    pub diagonal: bool,
    pub points: bool,
    /// Lines joining each series' points (off for a scatter).
    pub lines: bool,
    /// Upper x limit (e.g. a CDF clipped at p99.9); None = the data's maximum.
    pub x_max: Option<f64>,
    pub y_max: Option<f64>,
    /// CDFs rise to the right, so their legend goes lower right; time series' upper left (upper
    /// right with stages labelled: the first one's label is at the upper left).
    pub legend_lower_right: bool,
}

impl LineChart {
    pub(crate) fn new(
        name: impl Into<String>,
        title: impl Into<String>,
        x_desc: impl Into<String>,
        y_desc: impl Into<String>,
    ) -> Self {
        LineChart {
            name: name.into(),
            title: title.into(),
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            series: Vec::new(),
            marks: Vec::new(),
            stages: Vec::new(),
            labels: Vec::new(),
            diagonal: false,
            points: false,
            lines: true,
            x_max: None,
            y_max: None,
            legend_lower_right: false,
        }
    }

    /// For a chart of CDFs: x clipped at the series' largest p99.9, y to 1, legend lower right.
    pub(crate) fn finish_cdf(&mut self) {
        self.x_max = clip(&self.series.iter().map(|(_, s)| s).collect::<Vec<_>>());
        self.y_max = Some(1.0);
        self.legend_lower_right = true;
    }

    pub(crate) fn has_data(&self) -> bool {
        self.series.iter().any(|(_, s)| !s.is_empty())
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // A failure here shows as a drawing error naming the chart.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Whether a point can be drawn: both coordinates finite.
fn drawable(p: &(f64, f64)) -> bool {
    p.0.is_finite() && p.1.is_finite()
}

/// An axis's end: finite, and small enough for its ticks to be computed (1e300 at most).
fn axis_end(x: f64) -> f64 {
    if x.is_finite() { x.min(1e300) } else { 1.0 }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &LineChart) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("{e:?}");
    root.fill(&WHITE).map_err(e)?;
    // Points that are not finite numbers (a gauge that read NaN or +Inf) are not drawn, and the
    // axes stay finite: plotters computes an infinite axis's ticks forever.
    let all = c.series.iter().flat_map(|(_, s)| s.iter()).filter(|p| drawable(p));
    let (mut x_max, mut y_max) = all.fold((0.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    x_max = axis_end(c.x_max.unwrap_or(x_max).max(1e-9) * 1.02);
    y_max = axis_end(c.y_max.unwrap_or(y_max * 1.08).max(1e-9));
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(c.x_desc.as_str())
        .y_desc(c.y_desc.as_str())
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(246, 246, 246))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(e)?;
    for m in c.marks.iter().filter(|m| (0.0..=x_max).contains(*m)) {
        chart
            .draw_series(DashedLineSeries::new(
                vec![(*m, 0.0), (*m, y_max)],
                4,
                4,
                RGBColor(150, 150, 150).stroke_width(1),
            ))
            .map_err(e)?;
    }
    // Each stage's start: a line, and its label at the top (on three staggered rows, so that the
    // labels of short stages do not overwrite each other).
    for (i, (x, label)) in c.stages.iter().enumerate().filter(|(_, (x, _))| (0.0..=x_max).contains(x)) {
        let ink = RGBColor(90, 90, 90);
        chart
            .draw_series(DashedLineSeries::new(vec![(*x, 0.0), (*x, y_max)], 8, 3, ink.stroke_width(1)))
            .map_err(e)?;
        let at = (*x + x_max * 0.004, y_max * (0.99 - 0.055 * (i % 3) as f64));
        chart
            .draw_series(std::iter::once(Text::new(
                label.clone(),
                at,
                ("sans-serif", 12).into_font().color(&ink),
            )))
            .map_err(e)?;
    }
    for (i, (label, pts)) in c.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        // Off-chart y values are pulled to just outside the plot (plotters draws them clipped;
        // far away, their pixel coordinate overflows).
        let clipped: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| drawable(p) && p.0 <= x_max)
            .map(|&(x, y)| (x.max(-x_max), y.clamp(-y_max, 2.0 * y_max)))
            .collect();
        let width = if c.lines { 2 } else { 0 };
        chart
            .draw_series(LineSeries::new(
                if c.lines { clipped.clone() } else { Vec::new() },
                color.stroke_width(width),
            ))
            .map_err(e)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
        if c.points || !c.lines {
            chart.draw_series(clipped.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(e)?;
        }
    }
    if c.diagonal {
        let top = x_max.min(y_max);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, 0.0), (top, top)],
                6,
                4,
                RGBColor(120, 120, 120).stroke_width(1),
            ))
            .map_err(e)?;
    }
    for (x, y, text) in c.labels.iter().filter(|l| l.0 <= x_max && l.1 <= y_max) {
        chart
            .draw_series(std::iter::once(Text::new(text.clone(), (*x, *y), ("sans-serif", 14).into_font())))
            .map_err(e)?;
    }
    if c.series.len() > 1 || c.series.first().is_some_and(|(l, _)| !l.is_empty()) {
        chart
            .configure_series_labels()
            .position(if c.legend_lower_right {
                SeriesLabelPosition::LowerRight
            } else if !c.stages.is_empty() {
                // The first stage's label is at the upper left.
                SeriesLabelPosition::UpperRight
            } else {
                SeriesLabelPosition::UpperLeft
            })
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)
}

/// Writes a line chart as `NAME.svg` and `NAME.png` into `dir`.
pub(crate) fn save(dir: &Path, c: &LineChart) -> Result<Vec<PathBuf>, PlotError> {
    save_with(dir, &c.name, |root| draw(root, c), |root| draw(root, c))
}

/// A grid of coloured cells: `values[row][column]` (None: no measurement), light to dark.
#[derive(Debug, Clone)]
pub(crate) struct HeatMap {
    pub name: String,
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub columns: Vec<String>,
    pub rows: Vec<String>,
    pub values: Vec<Vec<Option<f64>>>,
}

/// A heat map's axis label: the cell's name at its centre, nothing elsewhere.
fn cell_label(names: &[String], at: f64) -> String {
    if (at - at.floor() - 0.5).abs() < 0.01 {
        names.get(at.floor() as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

fn draw_heat<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, h: &HeatMap) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("{e:?}");
    root.fill(&WHITE).map_err(e)?;
    let (nx, ny) = (h.columns.len().max(1), h.rows.len().max(1));
    let mut chart = ChartBuilder::on(root)
        .caption(&h.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(190)
        .build_cartesian_2d(0f64..nx as f64, 0f64..ny as f64)
        .map_err(e)?;
    let (cols, rows) = (h.columns.clone(), h.rows.clone());
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(h.x_desc.as_str())
        .y_desc(h.y_desc.as_str())
        .x_labels(nx * 2 + 1)
        .y_labels(ny * 2 + 1)
        .x_label_formatter(&|x| cell_label(&cols, *x))
        .y_label_formatter(&|y| cell_label(&rows, *y))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(e)?;
    let all: Vec<f64> = h.values.iter().flatten().flatten().copied().collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for (r, row) in h.values.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let (x, y) = (c as f64, r as f64);
            let fill = match v {
                Some(v) => {
                    let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                    // White → tab10 blue.
                    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
                    RGBColor(mix(240.0, 31.0), mix(246.0, 119.0), mix(252.0, 180.0))
                }
                None => RGBColor(230, 230, 230),
            };
            chart
                .draw_series(std::iter::once(Rectangle::new([(x, y), (x + 1.0, y + 1.0)], fill.filled())))
                .map_err(e)?;
            if let Some(v) = v {
                let text = if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") };
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                let color = if t > 0.55 { WHITE } else { BLACK };
                chart
                    .draw_series(std::iter::once(Text::new(
                        text,
                        (x + 0.42, y + 0.45),
                        ("sans-serif", 14).into_font().color(&color),
                    )))
                    .map_err(e)?;
            }
        }
    }
    root.present().map_err(e)
}

/// Writes a heat map as `NAME.svg` and `NAME.png` into `dir`.
pub(crate) fn save_heatmap(dir: &Path, h: &HeatMap) -> Result<Vec<PathBuf>, PlotError> {
    save_with(dir, &h.name, |root| draw_heat(root, h), |root| draw_heat(root, h))
}

type Svg<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Bitmap<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn save_with(
    dir: &Path,
    name: &str,
    svg_draw: impl Fn(&Svg) -> Result<(), String>,
    png_draw: impl Fn(&Bitmap) -> Result<(), String>,
) -> Result<Vec<PathBuf>, PlotError> {
    register_font();
    let err = |why: String| PlotError { name: name.to_string(), why };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        svg_draw(&root).map_err(err)?;
    }
    let mut written = vec![put(dir, name, "svg", svg.as_bytes())?];
    if !pngs_later(dir) {
        written.push(put(dir, name, "png", &png(name, png_draw)?)?);
    }
    Ok(written)
}

/// A chart drawn as a PNG.
fn png(name: &str, png_draw: impl Fn(&Bitmap) -> Result<(), String>) -> Result<Vec<u8>, PlotError> {
    register_font();
    let err = |why: String| PlotError { name: name.to_string(), why };
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        png_draw(&root).map_err(err)?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // zlib level 1 with adaptive row filters: charts are mostly flat colour, so this is
        // several times faster than the default level at nearly the same size.
        enc.set_deflate_compression(png::DeflateCompression::Level(1));
        enc.set_filter(png::Filter::Adaptive);
        let mut writer = enc.write_header().map_err(|e| err(e.to_string()))?;
        writer.write_image_data(&rgb).map_err(|e| err(e.to_string()))?;
    }
    Ok(png_bytes)
}

/// Writes `dir/NAME.EXT` under a temporary name first: a failed chart never leaves a partial
/// file.
fn put(dir: &Path, name: &str, ext: &str, bytes: &[u8]) -> Result<PathBuf, PlotError> {
    let path = dir.join(format!("{name}.{ext}"));
    let tmp = dir.join(format!(".{name}.{ext}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| PlotError { name: name.to_string(), why: e.to_string() })?;
    Ok(path)
}

/// Directories (and what is under them) whose charts are drawn as SVG only (inlined in their
/// reports): an experiment's points. With `true`, their PNGs are drawn later: the experiment
/// draws them when its points are done ([`missing_pngs`]), off the time between two points'
/// load; with `false`, not at all (the file did not ask for them).
static PNGS_LATER: Mutex<Vec<(PathBuf, bool)>> = Mutex::new(Vec::new());

fn pngs_later(dir: &Path) -> bool {
    PNGS_LATER.lock().unwrap_or_else(PoisonError::into_inner).iter().any(|(r, _)| dir.starts_with(r))
}

/// Whether the charts drawn in `dir` have (or will have) their PNG beside their SVG.
pub(crate) fn pngs_drawn(dir: &Path) -> bool {
    let all = PNGS_LATER.lock().unwrap_or_else(PoisonError::into_inner);
    all.iter().filter(|(r, _)| dir.starts_with(r)).all(|(_, later)| *later)
}

/// While it lives, the charts drawn under its directory are drawn as SVG only; their PNGs are
/// left to [`draw_missing_pngs`] when `later`, else never drawn.
#[derive(Debug)]
pub(crate) struct PngsLater {
    root: PathBuf,
}

impl PngsLater {
    pub(crate) fn begin(root: &Path, later: bool) -> PngsLater {
        PNGS_LATER.lock().unwrap_or_else(PoisonError::into_inner).push((root.to_path_buf(), later));
        PngsLater { root: root.to_path_buf() }
    }
}

impl Drop for PngsLater {
    fn drop(&mut self) {
        let mut all = PNGS_LATER.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = all.iter().position(|(r, _)| *r == self.root) {
            all.remove(i);
        }
    }
}

/// The charts of `a` whose SVG is in `dir` and whose PNG is not.
pub(crate) fn missing_pngs(dir: &Path, a: &Analysis) -> Vec<LineChart> {
    let mut out = charts(a);
    out.retain(|c| {
        dir.join(format!("{}.svg", c.name)).is_file() && !dir.join(format!("{}.png", c.name)).exists()
    });
    out
}

/// Draws the PNG of each chart in `charts` into `dir`.
pub(crate) fn draw_pngs(dir: &Path, charts: &[LineChart]) -> Result<(), PlotError> {
    for c in charts {
        put(dir, &c.name, "png", &png(&c.name, |root| draw(root, c))?)?;
    }
    Ok(())
}

/// Whether some chart in `dir` has its SVG and not its PNG.
pub(crate) fn lacks_pngs(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            let p = e.path();
            p.extension().is_some_and(|x| x == "svg") && !p.with_extension("png").exists()
        })
    })
}

/// The p99.9 of the CDFs (in ms), to clip long tails off the x axis.
fn clip(cdfs: &[&Cdf]) -> Option<f64> {
    cdfs.iter().filter_map(|c| c.iter().find(|(_, f)| *f >= 0.999).map(|(x, _)| *x)).reduce(f64::max)
}

fn cdf_chart(a: &Analysis, name: &str, what: &str, pick: fn(&super::StageSeries) -> &Cdf) -> LineChart {
    let mut c = LineChart::new(
        name,
        format!("{what}: cumulative distribution (x clipped at p99.9)"),
        "milliseconds",
        "fraction of requests",
    );
    for s in &a.series.stages {
        c.series.push((format!("stage {}: {}", s.stage, s.label), pick(s).clone()));
    }
    c.finish_cdf();
    c
}

/// A stage's label on a time chart: `2: rate=4/s`, cut at 32 characters.
fn stage_tag(stage: u32, label: &str) -> String {
    let text = format!("{stage}: {label}");
    match text.char_indices().nth(32) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// Builds every chart the analysis supports.
pub(crate) fn charts(a: &Analysis) -> Vec<LineChart> {
    let mut out = vec![
        cdf_chart(a, "ttft_cdf", "Time to first token", |s| &s.ttft),
        cdf_chart(a, "e2el_cdf", "End-to-end latency", |s| &s.e2el),
        cdf_chart(a, "itl_cdf", "Inter-token latency (per chunk)", |s| &s.itl),
    ];
    if let Some(c) = out.get_mut(2) {
        c.y_desc = "fraction of chunk gaps".into();
    }
    // Stage starts labelled; an end marked where the next stage does not start.
    let starts: Vec<(f64, String)> =
        a.stages.iter().map(|s| (s.window.0, stage_tag(s.stage, &s.label))).collect();
    let marks: Vec<f64> = a
        .series
        .windows
        .iter()
        .map(|(_, e, _)| *e)
        .filter(|e| !starts.iter().any(|(s, _)| (s - e).abs() < 1e-3))
        .collect();
    let per_s = |v: &[f64]| v.iter().enumerate().map(|(i, y)| (i as f64 + 0.5, *y)).collect::<Vec<_>>();
    let mut t = LineChart::new("throughput", "Throughput over time", "run time (s)", "per second");
    t.series.push(("output tokens/s".into(), per_s(&a.series.tokens_per_s)));
    t.marks = marks.clone();
    t.stages = starts.clone();
    out.push(t);
    let mut r =
        LineChart::new("requests", "Completed requests and requests in flight", "run time (s)", "requests");
    r.series.push(("completed per second".into(), per_s(&a.series.completions_per_s)));
    r.series.push((
        "in flight".into(),
        a.series.in_flight.iter().enumerate().map(|(i, y)| (i as f64 / 10.0, *y)).collect(),
    ));
    r.marks = marks.clone();
    r.stages = starts.clone();
    out.push(r);
    let server = &a.series.server;
    if let Some(kv) =
        server.get("vllm:kv_cache_usage_perc").or_else(|| server.get("vllm:gpu_cache_usage_perc"))
    {
        let mut c = LineChart::new(
            "server_kv_cache",
            "Server KV-cache usage",
            "run time (s)",
            "percent of KV blocks",
        );
        c.series.push(("KV cache usage".into(), kv.iter().map(|(t, v)| (*t, v * 100.0)).collect()));
        c.y_max = Some(100.0);
        c.marks = marks.clone();
        c.stages = starts.clone();
        out.push(c);
    }
    let mut q =
        LineChart::new("server_queue", "Server requests running and waiting", "run time (s)", "requests");
    for (name, label) in [("vllm:num_requests_running", "running"), ("vllm:num_requests_waiting", "waiting")]
    {
        if let Some(v) = server.get(name) {
            q.series.push((label.into(), v.clone()));
        }
    }
    q.marks = marks.clone();
    q.stages = starts.clone();
    out.push(q);
    for c in replica_charts(&a.series.replicas).into_iter().chain(gpu_charts(&a.series.gpu)) {
        out.push(LineChart { marks: marks.clone(), stages: starts.clone(), ..c });
    }
    if a.stages.len() > 1 {
        let mut c = LineChart::new(
            "latency_vs_throughput",
            "Latency against achieved throughput, one point per stage",
            "achieved requests/s",
            "milliseconds",
        );
        let pts = |f: fn(&super::StageStats) -> f64| {
            a.stages.iter().map(|s| (s.request_throughput, f(s))).collect::<Vec<_>>()
        };
        c.series.push(("TTFT p50".into(), pts(|s| s.ttft.median)));
        c.series.push(("TTFT p99".into(), pts(|s| s.ttft.p(99.0))));
        c.series.push(("E2EL p50".into(), pts(|s| s.e2el.median)));
        c.points = true;
        out.push(c);
    }
    out.retain(LineChart::has_data);
    out
}

/// Behind a router: requests finished and the prefix-cache hit rate of each engine over the run
/// (counters since the first scrape).
fn replica_charts(replicas: &BTreeMap<String, super::Metrics>) -> Vec<LineChart> {
    if replicas.is_empty() {
        return Vec::new();
    }
    let since_start = |s: Option<&Vec<(f64, f64)>>| -> Vec<(f64, f64)> {
        let s = s.map(Vec::as_slice).unwrap_or_default();
        let first = s.first().map_or(0.0, |p| p.1);
        s.iter().map(|(t, v)| (*t, v - first)).collect()
    };
    let mut requests = LineChart::new(
        "replica_requests",
        "Requests finished per replica",
        "run time (s)",
        "requests since the start",
    );
    let mut hits = LineChart::new(
        "replica_prefix_cache",
        "Prefix-cache hit rate per replica (since the start)",
        "run time (s)",
        "percent of prompt tokens",
    );
    for (name, series) in replicas {
        requests.series.push((name.clone(), since_start(series.get("vllm:request_success_total"))));
        let q = since_start(series.get("vllm:prefix_cache_queries_total"));
        let h = since_start(series.get("vllm:prefix_cache_hits_total"));
        let rate = q
            .iter()
            .zip(&h)
            .filter(|((_, q), _)| *q > 0.0)
            .map(|((t, q), (_, h))| (*t, 100.0 * h / q))
            .collect();
        hits.series.push((name.clone(), rate));
    }
    hits.y_max = Some(100.0);
    vec![requests, hits]
}

/// GPU telemetry: utilisation and memory in use of each GPU over the run, stage boundaries
/// marked.
fn gpu_charts(gpus: &super::gpu::GpuSeries) -> Vec<LineChart> {
    if gpus.is_empty() {
        return Vec::new();
    }
    let mut util =
        LineChart::new("gpu_utilization", "GPU utilisation", "run time (s)", "percent of time busy");
    let mut mem = LineChart::new("gpu_memory", "GPU memory in use", "run time (s)", "GiB");
    for (gpu, m) in gpus {
        if let Some(u) = m.get("utilization_pct") {
            util.series.push((format!("GPU {gpu}"), u.clone()));
        }
        if let Some(u) = m.get("memory_used_bytes") {
            mem.series.push((format!("GPU {gpu}"), u.iter().map(|(t, v)| (*t, v / 1073741824.0)).collect()));
        }
    }
    util.y_max = Some(100.0);
    vec![util, mem]
}

/// Renders every chart into `dir`; returns the charts drawn.
pub(crate) fn render(dir: &Path, a: &Analysis) -> Result<Vec<LineChart>, PlotError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| PlotError { name: dir.display().to_string(), why: e.to_string() })?;
    let charts = charts(a);
    for c in &charts {
        save(dir, c)?;
    }
    Ok(charts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gauge that read NaN or +Inf, or values near f64's limit, are left off the chart and the
    /// chart is drawn (plotters never returns on an infinite axis: the analysis hung on it).
    #[test]
    fn points_that_are_not_finite_are_left_off_and_the_chart_drawn() {
        let dir = std::env::temp_dir().join(format!("bf-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hostile = [
            (f64::INFINITY, 1.0),
            (1.0, f64::INFINITY),
            (f64::NAN, 2.0),
            (2.0, f64::NEG_INFINITY),
            (f64::MAX, f64::MAX),
            (1e308, 1e307),
            (1.0, 1e300),
            (-1e300, -1e300),
        ];
        for (i, p) in hostile.iter().enumerate() {
            let mut c = LineChart::new(format!("c{i}"), "t", "x", "y");
            c.series.push(("s".into(), vec![(0.0, 0.0), *p, (3.0, 1.0)]));
            c.marks.push(p.0);
            if i % 2 == 0 {
                // Axes fixed by the chart (a CDF's y to 1), points far beyond them.
                c.y_max = Some(1.0);
                c.x_max = Some(3.0);
            }
            let files = save(&dir, &c).unwrap();
            assert!(!files.is_empty() && files.iter().all(|f| f.is_file()), "{p:?}");
        }
        assert!(drawable(&(1.0, 2.0)) && !drawable(&(f64::NAN, 0.0)));
        assert_eq!((axis_end(f64::INFINITY), axis_end(f64::MAX), axis_end(2.0)), (1.0, 1e300, 2.0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
