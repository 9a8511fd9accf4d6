//! Charts as SVG text, drawn here (no browser, no plotting crate): cumulative distributions of
//! latencies, one line per series, and bar charts of one figure per run. Axes are linear,
//! with five ticks on each, rounded to a readable step.

use std::fmt::Write as _;

const WIDTH: f64 = 780.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Line colours, one per series (repeated after eight).
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// XML-escapes `text`.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step of about `span / 5`: 1, 2 or 5 times a power of ten.
fn step(span: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

/// The upper end of an axis from 0 holding `max`: a whole number of steps.
fn axis_top(max: f64) -> (f64, f64) {
    let s = step(max.max(1.0));
    ((max.max(1.0) / s).ceil() * s, s)
}

fn frame(title: &str, x_label: &str, y_label: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>
"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        escape(title),
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 14.0,
        escape(x_label),
        (TOP + HEIGHT - BOTTOM) / 2.0,
        (TOP + HEIGHT - BOTTOM) / 2.0,
        escape(y_label),
    );
    out
}

/// Ticks and grid of both axes; `x_top`/`y_top` are the axes' upper ends.
fn axes(out: &mut String, x_top: f64, x_step: f64, y_top: f64, y_step: f64, y_percent: bool) {
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="#333"/>"##
    );
    let mut v = 0.0;
    while v <= x_top + x_step / 2.0 {
        let x = LEFT + v / x_top * w;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            TOP + h,
            TOP + h + 16.0,
            number(v)
        );
        v += x_step;
    }
    let mut v = 0.0;
    while v <= y_top + y_step / 2.0 {
        let y = TOP + h - v / y_top * h;
        let label = if y_percent {
            format!("{}%", number(v * 100.0))
        } else {
            number(v)
        };
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            LEFT + w,
            LEFT - 6.0,
            y + 4.0
        );
        v += y_step;
    }
}

fn number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round())
    } else {
        format!("{v:.2}")
    }
}

fn legend(out: &mut String, i: usize, name: &str, colour: &str) {
    let y = TOP + 10.0 + i as f64 * 18.0;
    let x = WIDTH - RIGHT + 12.0;
    let _ = writeln!(
        out,
        r#"<rect x="{x}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
        y - 10.0,
        x + 18.0,
        y,
        escape(name)
    );
}

/// Cumulative distributions of `series` (name, values), one line each: the share of values at
/// most x. A series without values is left out of the lines but named in the legend.
pub fn cdf(title: &str, x_label: &str, series: &[(String, Vec<u64>)]) -> String {
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .max()
        .unwrap_or(0);
    let (x_top, x_step) = axis_top(max as f64);
    let mut out = frame(title, x_label, "share of values at most x");
    axes(&mut out, x_top, x_step, 1.0, 0.2, true);
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    for (i, (name, values)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        legend(&mut out, i, &format!("{name} ({})", values.len()), colour);
        if values.is_empty() {
            continue;
        }
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let n = sorted.len() as f64;
        let mut points = format!("{LEFT:.1},{:.1}", TOP + h);
        for (k, v) in sorted.iter().enumerate() {
            let x = LEFT + *v as f64 / x_top * w;
            let before = TOP + h - k as f64 / n * h;
            let after = TOP + h - (k + 1) as f64 / n * h;
            let _ = write!(points, " {x:.1},{before:.1} {x:.1},{after:.1}");
        }
        let _ = writeln!(
            out,
            r#"<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.5"/>"#
        );
    }
    out.push_str("</svg>\n");
    out
}

/// One bar per `(label, value)`, in order.
pub fn bars(title: &str, x_label: &str, y_label: &str, bars: &[(String, f64)]) -> String {
    let max = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let (y_top, y_step) = axis_top(max);
    let mut out = frame(title, x_label, y_label);
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="none" stroke="#333"/>"##
    );
    let mut v = 0.0;
    while v <= y_top + y_step / 2.0 {
        let y = TOP + h - v / y_top * h;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + w,
            LEFT - 6.0,
            y + 4.0,
            number(v)
        );
        v += y_step;
    }
    let slot = w / bars.len().max(1) as f64;
    // Label every bar while they fit, else about twenty of them.
    let label_every = (bars.len() / 20).max(1);
    for (i, (label, value)) in bars.iter().enumerate() {
        let bar_h = value / y_top * h;
        let x = LEFT + i as f64 * slot + slot * 0.15;
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bar_h:.1}" fill="{}"><title>{}: {}</title></rect>"#,
            TOP + h - bar_h,
            slot * 0.7,
            COLOURS[0],
            escape(label),
            number(*value)
        );
        if i % label_every == 0 {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x + slot * 0.35,
                TOP + h + 16.0,
                escape(label)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(step(100.0), 20.0);
        assert_eq!(step(7.0), 2.0);
        assert_eq!(step(2400.0), 500.0);
        assert_eq!(axis_top(2400.0), (2500.0, 500.0));
        assert_eq!(axis_top(0.0), (1.0, 0.2));
    }

    #[test]
    fn a_cdf_has_one_line_per_series_with_values_and_escapes_names() {
        let svg = cdf(
            "commit <latency>",
            "ms",
            &[
                ("a&b".to_owned(), vec![5, 1, 3]),
                ("empty".to_owned(), Vec::new()),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("commit &lt;latency&gt;") && svg.contains("a&amp;b (3)"));
        // The line ends at the largest value, at 100 %.
        assert!(svg.contains(&format!(
            "{:.1},{:.1}\"",
            LEFT + 5.0 / 5.0 * (WIDTH - LEFT - RIGHT),
            TOP
        )));
    }

    #[test]
    fn bars_are_drawn_one_per_value() {
        let svg = bars(
            "convergence",
            "seed",
            "ms",
            &[("1".to_owned(), 1200.0), ("2".to_owned(), 800.0)],
        );
        assert_eq!(svg.matches("<title>").count(), 2);
        assert!(svg.contains("<title>1: 1200</title>"));
    }
}
