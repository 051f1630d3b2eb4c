//! `pagefork bench --plot FILE.svg`: median latency of branch creation, branch at a time,
//! restore and the full copy against data size, both axes logarithmic, as a standalone
//! SVG file (published crash-safely: temp file, fsync, rename).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::{BRANCH, BRANCH_AT_TIME, FULL_COPY, Measured, RESTORE};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// The series drawn, and their colours.
const SERIES: [(&str, &str); 4] = [
    (FULL_COPY, "#d62728"),
    (BRANCH, "#1f77b4"),
    (BRANCH_AT_TIME, "#2ca02c"),
    (RESTORE, "#9467bd"),
];

/// Sizes are drawn on powers of 4 (1 MiB, 4 MiB, 16 MiB, ...), latencies on powers of 10.
const SIZE_BASE: f64 = 4.0;
const LATENCY_BASE: f64 = 10.0;

/// Exponents of the powers of `base` spanning `low..=high` (both positive), at least two.
fn ticks(base: f64, low: f64, high: f64) -> (i32, i32) {
    let first = low.log(base).floor() as i32;
    let last = (high.log(base).ceil() as i32).max(first + 1);
    (first, last)
}

fn size_label(bytes: f64) -> String {
    bytesize::ByteSize::b(bytes as u64)
        .display()
        .iec()
        .to_string()
}

fn latency_label(seconds: f64) -> String {
    super::format_duration(std::time::Duration::from_secs_f64(seconds))
}

/// Draws the chart as SVG text.
pub(crate) fn render(results: &[Measured]) -> String {
    let points: Vec<(&str, f64, f64)> = results
        .iter()
        .filter(|measured| SERIES.iter().any(|(name, _)| *name == measured.operation))
        .map(|measured| {
            let seconds = measured.median().as_secs_f64().max(1e-9);
            (measured.operation, measured.size.max(1) as f64, seconds)
        })
        .collect();
    let sizes = points.iter().map(|(_, size, _)| *size);
    let latencies = points.iter().map(|(_, _, seconds)| *seconds);
    let (x_first, x_last) = ticks(
        SIZE_BASE,
        sizes.clone().fold(f64::MAX, f64::min) / 1.5,
        sizes.fold(1.0, f64::max) * 1.5,
    );
    let (y_first, y_last) = ticks(
        LATENCY_BASE,
        latencies.clone().fold(f64::MAX, f64::min) / 2.0,
        latencies.fold(1e-9, f64::max) * 2.0,
    );
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |size: f64| {
        LEFT + (size.log(SIZE_BASE) - f64::from(x_first)) / f64::from(x_last - x_first) * plot_w
    };
    let y = |seconds: f64| {
        TOP + plot_h
            - (seconds.log(LATENCY_BASE) - f64::from(y_first)) / f64::from(y_last - y_first)
                * plot_h
    };
    let mut svg = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">pagefork: median latency against data size (log-log)</text>"#,
        WIDTH / 2.0
    );
    for exponent in x_first..=x_last {
        let position = x(SIZE_BASE.powi(exponent));
        let _ = writeln!(
            svg,
            r##"<line x1="{position:.1}" y1="{TOP}" x2="{position:.1}" y2="{:.1}" stroke="#ddd"/><text x="{position:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            size_label(SIZE_BASE.powi(exponent))
        );
    }
    for exponent in y_first..=y_last {
        let position = y(LATENCY_BASE.powi(exponent));
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{position:.1}" x2="{:.1}" y2="{position:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            position + 4.0,
            latency_label(LATENCY_BASE.powi(exponent))
        );
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">data size</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">median latency</text>"#,
        TOP + plot_h / 2.0
    );
    for (index, (name, colour)) in SERIES.iter().enumerate() {
        let mut series: Vec<(f64, f64)> = points
            .iter()
            .filter(|(operation, _, _)| operation == name)
            .map(|(_, size, seconds)| (x(*size), y(*seconds)))
            .collect();
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = series
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        for (px, py) in &series {
            let _ = writeln!(
                svg,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="4" fill="{colour}"/>"#
            );
        }
        let legend_y = TOP + 10.0 + index as f64 * 22.0;
        let legend_x = LEFT + plot_w + 15.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{legend_x}" y1="{legend_y}" x2="{:.1}" y2="{legend_y}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            legend_x + 20.0,
            legend_x + 26.0,
            legend_y + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Writes the chart to `path` crash-safely.
pub(crate) fn write_svg(path: &Path, results: &[Measured]) -> Result<()> {
    pagefork_engine::publish_file(
        &pagefork_engine::StdFileSystem,
        path,
        render(results).as_bytes(),
    )
    .with_context(|| format!("cannot write the plot to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_chart_has_a_line_per_series_and_points_where_measured() {
        let mut results = Vec::new();
        for (size, micros) in [(1u64 << 20, 100u64), (1 << 30, 120)] {
            for (name, _) in SERIES {
                let micros = if name == FULL_COPY {
                    micros * 1000
                } else {
                    micros
                };
                let samples = vec![Duration::from_micros(micros); 3];
                results.push(Measured::new(
                    pagefork_engine::Backend::Native,
                    size,
                    name,
                    samples,
                ));
            }
        }
        let svg = render(&results);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), SERIES.len());
        assert_eq!(svg.matches("<circle").count(), SERIES.len() * 2);
        assert!(
            svg.contains(">1.0 GiB<") && svg.contains(">1.0 MiB<"),
            "{svg}"
        );
        for (name, _) in SERIES {
            assert!(svg.contains(name));
        }
    }
}
