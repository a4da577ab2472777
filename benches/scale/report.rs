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

/// Memory (MiB, resident after settling) of the three processes against keys, log x axis.
pub fn svg(rows: &BTreeMap<u64, Vec<String>>) -> String {
    let series = [
        ("controller", "controller_rss_mib", "#1f77b4"),
        ("verifier", "verifier_rss_mib", "#2ca02c"),
        ("devcluster (API server)", "devcluster_rss_mib", "#d62728"),
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
    let max_y = rows
        .values()
        .flat_map(|cells| series.iter().filter_map(|(_, c, _)| value(cells, c)))
        .fold(1.0_f64, f64::max);
    let step = nice_step(max_y / 5.0);
    let top_y = (max_y / step).ceil() * step;
    let x = |keys: f64| left + (keys.log10() - min_x) / (max_x - min_x) * plot_w;
    let y = |mib: f64| top + plot_h - mib / top_y * plot_h;

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
    let mut tick = 0.0;
    while tick <= top_y + step / 2.0 {
        let ty = y(tick);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{tick:.0}</text>"##,
            left + plot_w,
            left - 6.0,
            ty + 4.0
        );
        tick += step;
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
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">MiB</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    for (i, (name, column, colour)) in series.iter().enumerate() {
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
        let ly = top + 20.0 + i as f64 * 20.0;
        let lx = left + plot_w + 14.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power)
}

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
