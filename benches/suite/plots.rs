//! The plots (SVG, with plotters) of a run: written beside `results.json`, each only when the
//! run measured what it shows. BENCHMARKS.md shows a full run's copies from `docs/bench/`.

use std::path::Path;

use plotters::prelude::*;

use crate::Results;

type Drawn = Result<bool, Box<dyn std::error::Error>>;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];
const BACKENDS: [&str; 9] = ["memory", "sqlite", "postgres", "mysql", "redis", "zk", "s3", "azure", "localfs"];

/// Draws every plot the results have data for into `dir`; returns how many.
pub(crate) fn draw(results: &Results, dir: &Path) -> Result<usize, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let drawn = [
        propagation_cdf(results, &dir.join("propagation_cdf.svg"))?,
        fanout(results, &dir.join("fanout.svg"))?,
        memory_vs_value_size(results, &dir.join("memory_vs_value_size.svg"))?,
        sync_vs_dict_size(results, &dir.join("sync_vs_dict_size.svg"))?,
    ];
    Ok(drawn.iter().filter(|drawn| **drawn).count())
}

/// One line of a plot: its label, points, colour, and whether it is drawn thin.
type Line = (String, Vec<(f64, f64)>, RGBColor, bool);

/// Lines on log-log axes.
struct Lines {
    title: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    lines: Vec<Line>,
}

impl Lines {
    fn draw(self, path: &Path) -> Drawn {
        let lines: Vec<_> = self.lines.into_iter().filter(|line| !line.1.is_empty()).collect();
        if lines.is_empty() {
            return Ok(false);
        }
        let (xs, ys): (Vec<f64>, Vec<f64>) = lines.iter().flat_map(|line| line.1.iter().copied()).unzip();
        let span = |values: &[f64]| {
            let low = values.iter().copied().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
            let high = values.iter().copied().fold(0.0, f64::max);
            (low / 1.5, high * 1.5)
        };
        let (x_low, x_high) = span(&xs);
        let (y_low, y_high) = span(&ys);
        let root = SVGBackend::new(path, (820, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((x_low..x_high).log_scale(), (y_low..y_high).log_scale())?;
        chart.configure_mesh().x_desc(self.x_desc).y_desc(self.y_desc).draw()?;
        for (label, points, color, thin) in lines {
            let style = color.stroke_width(if thin { 1 } else { 2 });
            chart
                .draw_series(LineSeries::new(points.clone(), style))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
            chart.draw_series(points.iter().map(|point| Circle::new(*point, 3, color.filled())))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present()?;
        Ok(true)
    }
}

/// The series' labels in a box at `position`.
fn legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    chart.configure_series_labels().position(position).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    Ok(())
}

/// The share of changes that reached the other dict within x µs, per backend.
fn propagation_cdf(results: &Results, path: &Path) -> Drawn {
    let mut lines = Vec::new();
    for (i, backend) in BACKENDS.iter().enumerate() {
        let Some(samples) = results.1.get(&format!("{backend}.propagation")) else { continue };
        let n = samples.len() as f64;
        let points = samples.iter().enumerate().map(|(j, us)| (us.max(1.0), (j + 1) as f64 / n)).collect();
        lines.push((backend.to_string(), points, COLORS[i % COLORS.len()], false));
    }
    if lines.is_empty() {
        return Ok(false);
    }
    // A log x axis for latencies that span decades, a linear share on y.
    let (xs, _): (Vec<f64>, Vec<f64>) = lines.iter().flat_map(|line: &Line| line.1.iter().copied()).unzip();
    let low = xs.iter().copied().fold(f64::INFINITY, f64::min) / 1.5;
    let high = xs.iter().copied().fold(0.0, f64::max) * 1.5;
    let root = SVGBackend::new(path, (820, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Propagation: a write in one dict to the change event in another", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((low..high).log_scale(), 0.0..1.0)?;
    chart.configure_mesh().x_desc("µs (log)").y_desc("share of changes").draw()?;
    for (label, points, color, _) in lines {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(true)
}

/// p50 and p99 until every subscriber has a change, against the number of subscribers: all
/// in one process, and spread over 10 processes.
fn fanout(results: &Results, path: &Path) -> Drawn {
    let figure = |name: String| results.0.get(&name).copied();
    let mut lines = Vec::new();
    for (i, backend) in ["redis", "postgres"].iter().enumerate() {
        for (percentile, dashed) in [("p99", false), ("p50", true)] {
            let one: Vec<(f64, f64)> = [1usize, 10, 100, 1000]
                .iter()
                .filter_map(|&n| {
                    let name = if n == 1 {
                        format!("{backend}.propagation_{percentile}_us")
                    } else {
                        format!("{backend}.propagation_{percentile}_us_{n}subscribers")
                    };
                    figure(name).map(|us| (n as f64, us.max(1.0)))
                })
                .collect();
            let many: Vec<(f64, f64)> = [10usize, 100, 1000]
                .iter()
                .filter_map(|&n| {
                    figure(format!("{backend}.propagation_{percentile}_us_{n}subscribers_10processes"))
                        .map(|us| (n as f64, us.max(1.0)))
                })
                .collect();
            lines.push((format!("{backend} {percentile}, one process"), one, COLORS[i * 2], dashed));
            lines.push((format!("{backend} {percentile}, 10 processes"), many, COLORS[i * 2 + 1], dashed));
        }
    }
    Lines {
        title: "Fan-out: until every subscriber has the change (thin: p50)",
        x_desc: "subscribers (log)",
        y_desc: "µs (log)",
        lines,
    }
    .draw(path)
}

/// Heap per entry against the value's size (10,000 `String`s), beside the raw bytes.
fn memory_vs_value_size(results: &Results, path: &Path) -> Drawn {
    let sizes = [16usize, 64, 256, 1024, 4096];
    let series = |prefix: &str| -> Vec<(f64, f64)> {
        sizes
            .iter()
            .filter_map(|size| results.0.get(&format!("{prefix}_{size}b_string")).map(|bytes| (*size as f64, *bytes)))
            .collect()
    };
    Lines {
        title: "Memory per entry against value size (10,000 String values)",
        x_desc: "value bytes (log)",
        y_desc: "heap bytes per entry (log)",
        lines: vec![
            ("the dict's heap".into(), series("memory.snapshot_bytes_per_entry"), COLORS[0], false),
            ("raw: key + encoded value".into(), series("memory.raw_bytes_per_entry"), COLORS[1], true),
        ],
    }
    .draw(path)
}

/// A one-key delta sync and a full reload against the dict's size, per backend.
fn sync_vs_dict_size(results: &Results, path: &Path) -> Drawn {
    let sizes = [(1_000usize, "1k"), (10_000, "10k"), (100_000, "100k")];
    let mut lines = Vec::new();
    for (i, backend) in BACKENDS.iter().enumerate() {
        for (kind, dashed) in [("delta", false), ("full", true)] {
            let points: Vec<(f64, f64)> = sizes
                .iter()
                .filter_map(|(n, label)| {
                    results.0.get(&format!("{backend}.sync_{kind}_us_{label}")).map(|us| (*n as f64, us.max(0.1)))
                })
                .collect();
            let label = if kind == "delta" { "one-key delta" } else { "full reload" };
            lines.push((format!("{backend}, {label}"), points, COLORS[i % COLORS.len()], dashed));
        }
    }
    Lines { title: "Sync cost against dict size (thin: full reload)", x_desc: "keys (log)", y_desc: "µs (log)", lines }
        .draw(path)
}
