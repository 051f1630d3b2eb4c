//! The benchmark's chart: one horizontal bar per measured row (seconds until the copy or
//! the recovered database answers), pagefork's in blue, the others in grey, as a
//! standalone SVG file published crash-safely.

use std::fmt::Write as _;
use std::path::Path;

const WIDTH: f64 = 940.0;
const LABEL: f64 = 440.0;
const BAR_HEIGHT: f64 = 18.0;
const GAP: f64 = 6.0;
const TOP: f64 = 46.0;
const BOTTOM: f64 = 40.0;
const RIGHT: f64 = 70.0;

/// One bar.
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) seconds: f64,
    pub(crate) pagefork: bool,
}

/// Draws `bars` under `title` and publishes the SVG at `path`.
pub(crate) fn write(path: &Path, title: &str, bars: &[Bar]) {
    let longest = bars.iter().map(|bar| bar.seconds).fold(0.1, f64::max);
    let scale = (WIDTH - LABEL - RIGHT) / longest;
    let height = TOP + BOTTOM + bars.len() as f64 * (BAR_HEIGHT + GAP);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="12" y="24" font-size="15">{}</text>"#,
        escape(title)
    );
    for (row, bar) in bars.iter().enumerate() {
        let y = TOP + row as f64 * (BAR_HEIGHT + GAP);
        let width = (bar.seconds * scale).max(1.0);
        let colour = if bar.pagefork { "#1f77b4" } else { "#9a9a9a" };
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{LABEL}" y="{y}" width="{width:.1}" height="{BAR_HEIGHT}" fill="{colour}"/><text x="{:.1}" y="{}">{:.2} s</text>"##,
            LABEL - 8.0,
            y + BAR_HEIGHT - 5.0,
            escape(&bar.label),
            LABEL + width + 6.0,
            y + BAR_HEIGHT - 5.0,
            bar.seconds
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{LABEL}" y="{}" fill="#555">seconds until the copy answers a query (shorter is better)</text></svg>"##,
        height - 14.0
    );
    pagefork_engine::publish_file(&pagefork_engine::StdFileSystem, path, svg.as_bytes()).unwrap();
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
