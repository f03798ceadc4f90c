//! The status page's pictures as inline SVG (no script, no external asset): health bars
//! of coloured cells and a sync-latency line chart. Every text inside is escaped.

use std::fmt::Write as _;

use crate::model::escape::escape_html;

/// A cell's colour by its success ratio (`None`: nothing ran).
pub fn colour(ratio: Option<f64>) -> &'static str {
    match ratio {
        None => "#c9ced6",
        Some(r) if r >= 0.999_5 => "#2e9e44",
        Some(r) if r >= 0.9 => "#e0a21a",
        Some(_) => "#d0342c",
    }
}

/// One cell of a bar: its ratio and the tooltip (plain text, escaped here).
pub struct Cell {
    pub ratio: Option<f64>,
    pub title: String,
}

/// A bar of equal cells, oldest left; `label` names it for screen readers.
pub fn bar(cells: &[Cell], label: &str) -> String {
    let n = cells.len().max(1);
    // 1000 user units wide, a 1-unit gap between cells (scaled with the page).
    let w = 1000.0 / n as f64;
    let mut out = format!(
        "<svg class=\"bar\" viewBox=\"0 0 1000 24\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\">",
        escape_html(label)
    );
    for (i, c) in cells.iter().enumerate() {
        let _ = write!(
            out,
            "<rect x=\"{:.2}\" y=\"0\" width=\"{:.2}\" height=\"24\" rx=\"1\" fill=\"{}\"><title>{}</title></rect>",
            i as f64 * w,
            (w - if n > 120 { 0.0 } else { 1.5 }).max(0.5),
            colour(c.ratio),
            escape_html(&c.title)
        );
    }
    out.push_str("</svg>");
    out
}

/// One line of a chart: a name, its colour, and `(x, y)` points, x in `[0, 1]`.
pub struct Line<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// A line chart of latencies in milliseconds: y from 0 (bottom) to the largest value
/// rounded up by [`nice_ceiling`] (top). Its labels are the page's text, not the
/// picture's, so they stay readable when the chart shrinks to a phone's width.
pub fn lines(lines: &[Line<'_>], label: &str) -> String {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    const TOP: f64 = 4.0;
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let top = nice_ceiling(max);
    let y = |v: f64| TOP + (H - TOP) * (1.0 - (v / top).clamp(0.0, 1.0));
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"{}\">",
        H + 2.0,
        escape_html(label)
    );
    let _ = write!(
        out,
        "<line x1=\"0\" y1=\"{H}\" x2=\"{W}\" y2=\"{H}\" stroke=\"#8a919c\" stroke-width=\"1\"/>\
         <line x1=\"0\" y1=\"{TOP}\" x2=\"{W}\" y2=\"{TOP}\" stroke=\"#dde1e6\" stroke-dasharray=\"4 4\"/>"
    );
    for l in lines {
        if l.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = l
            .points
            .iter()
            .map(|(x, v)| format!("{:.1},{:.1}", x.clamp(0.0, 1.0) * W, y(*v)))
            .collect();
        if pts.len() == 1 {
            let (x, v) = l.points[0];
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"><title>{}</title></circle>",
                x.clamp(0.0, 1.0) * W,
                y(v),
                l.colour,
                escape_html(l.name)
            );
        } else {
            let _ = write!(
                out,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
                l.colour,
                pts.join(" "),
                escape_html(l.name)
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// The smallest of 1, 2, 5 × 10ⁿ (ms) at or above `v` (at least 10 ms).
pub fn nice_ceiling(v: f64) -> f64 {
    let mut base = 10.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * base >= v {
                return m * base;
            }
        }
        base *= 10.0;
        if base > 1e12 {
            return v.max(10.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_coloured_by_ratio_and_their_titles_escaped() {
        let svg = bar(
            &[
                Cell {
                    ratio: Some(1.0),
                    title: "ok".into(),
                },
                Cell {
                    ratio: Some(0.5),
                    title: "<script>alert(1)</script>".into(),
                },
                Cell {
                    ratio: None,
                    title: "no runs".into(),
                },
            ],
            "90 days",
        );
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("#2e9e44") && svg.contains("#d0342c") && svg.contains("#c9ced6"));
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }

    #[test]
    fn the_chart_scale_is_a_round_figure_above_the_largest_value() {
        assert_eq!(nice_ceiling(0.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(4_200.0), 5_000.0);
        assert_eq!(nice_ceiling(120_000.0), 200_000.0);
        let svg = lines(
            &[
                Line {
                    name: "p50",
                    colour: "#1f6feb",
                    points: vec![(0.0, 1_000.0), (1.0, 2_000.0)],
                },
                Line {
                    name: "p95",
                    colour: "#d0342c",
                    points: vec![(0.5, 4_200.0)],
                },
            ],
            "sync latency",
        );
        assert!(svg.contains("<polyline"), "{svg}");
        assert!(svg.contains("<circle"), "a single point is drawn as a dot");
        // y: 1000 of 5000 → 4 + 116 × 0.8.
        assert!(svg.contains("0.0,96.8"), "{svg}");
    }
}
