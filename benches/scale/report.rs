//! The scale figures as CSV (`target/scale/scale.csv`, one row per size, merged across runs)
//! and as a hand-written SVG line chart of memory against keys (`docs/scale.svg`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Column names of the CSV, in order.
pub const COLUMNS: [&str; 17] = [
    "keys",
    "controller_rss_mib",
    "controller_peak_mib",
    "controller_after_restart_rss_mib",
    "verifier_rss_mib",
    "verifier_peak_mib",
    "devcluster_rss_mib",
    "devcluster_peak_mib",
    "create_seconds",
    "issue_seconds",
    "restart_reconciled_seconds",
    "restart_ready_seconds",
    "restart_requests_per_key",
    "verifier_ready_seconds",
    "idle_requests_per_key_per_10min",
    "check_p50_us",
    "check_p99_us",
];

/// One size's figures, by column name.
pub type Row = BTreeMap<&'static str, f64>;

/// Reads the rows already in `path` (other sizes from earlier runs), keyed by key count.
pub fn read(path: &Path) -> BTreeMap<u64, Vec<String>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some(COLUMNS.join(",").as_str()) {
        // why: a file from an older column set is replaced rather than misread.
        return BTreeMap::new();
    }
    lines
        .filter_map(|line| {
            let cells: Vec<String> = line.split(',').map(str::to_string).collect();
            Some((cells.first()?.parse().ok()?, cells))
        })
        .collect()
}

/// Writes `rows` (earlier sizes replaced by this run's) to `path`.
pub fn write(path: &Path, rows: &BTreeMap<u64, Vec<String>>) -> anyhow::Result<()> {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for cells in rows.values() {
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, out)?;
    Ok(())
}

/// The CSV cells of one row.
pub fn cells(row: &Row) -> Vec<String> {
    COLUMNS
        .iter()
        .map(|c| {
            let v = row.get(c).copied().unwrap_or(f64::NAN);
            if *c == "keys" {
                format!("{v:.0}")
            } else {
                format!("{v:.3}")
            }
        })
        .collect()
}

/// Value of `column` in a CSV row.
fn value(cells: &[String], column: &str) -> Option<f64> {
    let i = COLUMNS.iter().position(|c| *c == column)?;
    cells.get(i)?.parse().ok().filter(|v: &f64| v.is_finite())
}

/// Memory (MiB, resident after settling) of the three processes against keys, both axes
/// logarithmic (devcluster holds ~30 times what the controller does), with the goals at
/// 100,000 keys as dashed lines.
pub fn svg(rows: &BTreeMap<u64, Vec<String>>) -> String {
    let series = [
        ("controller", "controller_rss_mib", "#1f77b4", Some(300.0)),
        ("verifier", "verifier_rss_mib", "#2ca02c", Some(100.0)),
        (
            "devcluster (API server)",
            "devcluster_rss_mib",
            "#d62728",
            None,
        ),
    ];
    let (width, height) = (640.0, 400.0);
    let (left, right, top, bottom) = (70.0, 190.0, 30.0, 50.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let keys: Vec<f64> = rows.keys().map(|&k| k as f64).collect();
    let min_x = keys.first().copied().unwrap_or(1000.0).log10().floor();
    let max_x = keys
        .last()
        .copied()
        .unwrap_or(100_000.0)
        .log10()
        .ceil()
        .max(min_x + 1.0);
    let values: Vec<f64> = rows
        .values()
        .flat_map(|cells| series.iter().filter_map(|(_, c, _, _)| value(cells, c)))
        .chain(series.iter().filter_map(|(_, _, _, goal)| *goal))
        .filter(|v| *v > 0.0)
        .collect();
    let min_y = values
        .iter()
        .copied()
        .fold(10.0_f64, f64::min)
        .log10()
        .floor();
    let max_y = values
        .iter()
        .copied()
        .fold(100.0_f64, f64::max)
        .log10()
        .ceil()
        .max(min_y + 1.0);
    let x = |keys: f64| left + (keys.log10() - min_x) / (max_x - min_x) * plot_w;
    let y = |mib: f64| top + plot_h - (mib.log10() - min_y) / (max_y - min_y) * plot_h;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">Resident memory (MiB) by issued keys</text>"#,
        left + plot_w / 2.0
    );
    let mut decade = min_y;
    while decade <= max_y {
        for multiple in [1.0, 2.0, 5.0] {
            let tick = multiple * 10f64.powf(decade);
            if tick.log10() > max_y + 1e-9 {
                break;
            }
            let ty = y(tick);
            let _ = writeln!(
                out,
                r##"<line x1="{left}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                left + plot_w,
                left - 6.0,
                ty + 4.0,
                thousands(tick)
            );
        }
        decade += 1.0;
    }
    let mut decade = min_x;
    while decade <= max_x {
        let tx = x(10f64.powf(decade));
        let _ = writeln!(
            out,
            r##"<line x1="{tx:.1}" y1="{top}" x2="{tx:.1}" y2="{:.1}" stroke="#e0e0e0"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + plot_h,
            top + plot_h + 16.0,
            thousands(10f64.powf(decade))
        );
        decade += 1.0;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#808080"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">keys (log scale)</text>"#,
        left + plot_w / 2.0,
        height - 12.0
    );
    let _ = writeln!(
        out,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">MiB (log scale)</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    let mut legend = 0;
    for (name, column, colour, goal) in &series {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|(&k, cells)| Some((x(k as f64), y(value(cells, column)?))))
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (px, py) in &points {
            let _ = writeln!(
                out,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{colour}"/>"#
            );
        }
        // why: one legend row per series, and one more for its goal's dashed line.
        let mut legend_row = |style: &str, text: &str| {
            let (lx, ly) = (left + plot_w + 14.0, top + 20.0 + legend as f64 * 20.0);
            legend += 1;
            let _ = writeln!(
                out,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" {style}/><text x="{}" y="{}">{text}</text>"#,
                lx + 20.0,
                lx + 26.0,
                ly + 4.0
            );
        };
        legend_row(r#"stroke-width="2""#, name);
        if let Some(goal) = goal {
            legend_row(DASHED, &format!("its goal, {goal:.0} MiB"));
            let gy = y(*goal);
            let _ = writeln!(
                out,
                r#"<line x1="{left}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="{colour}" {DASHED}/>"#,
                left + plot_w
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// The style of a goal's line.
const DASHED: &str = r#"stroke-width="1" stroke-dasharray="6 4""#;

/// `100000` as `100,000`.
fn thousands(v: f64) -> String {
    let digits = format!("{v:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
