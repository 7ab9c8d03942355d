//! Results: each metric's raw samples for both shims, its summary, the sluice/stock ratio and
//! its target; printed as a table, written as JSON and as an SVG bar chart of the ratios.

use serde_json::{json, Value};

/// How a metric's samples are summarised into one value per shim.
#[derive(Clone, Copy, Debug)]
pub enum Agg {
    Median,
    P99,
    /// Sum of the samples divided by `per` (e.g. CPU seconds per exec).
    SumPer(f64),
}

/// What the ratio sluice/stock (or sluice's own value) has to meet.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// ratio ≤ x (times, CPU, latency).
    RatioMax(f64),
    /// ratio ≥ x (throughput).
    RatioMin(f64),
    /// sluice's value ≤ x in the metric's unit (memory growth); the stock value is reported.
    SluiceMax(f64),
    /// Reported for context only.
    None,
}

pub struct Metric {
    pub workload: &'static str,
    pub name: String,
    pub unit: &'static str,
    pub agg: Agg,
    pub target: Target,
    pub stock: Vec<f64>,
    pub sluice: Vec<f64>,
}

fn summarise(xs: &[f64], agg: Agg) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut s = xs.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match agg {
        Agg::Median => {
            let n = s.len();
            if n % 2 == 1 {
                s[n / 2]
            } else {
                (s[n / 2 - 1] + s[n / 2]) / 2.0
            }
        }
        // Nearest rank: the smallest sample with at least 99% of them at or below it.
        Agg::P99 => s[((0.99 * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1],
        Agg::SumPer(per) => s.iter().sum::<f64>() / per,
    }
}

impl Metric {
    pub fn stock_value(&self) -> f64 {
        summarise(&self.stock, self.agg)
    }

    pub fn sluice_value(&self) -> f64 {
        summarise(&self.sluice, self.agg)
    }

    pub fn ratio(&self) -> f64 {
        self.sluice_value() / self.stock_value()
    }

    /// `None` when a value is missing (NaN) or the ratio is undefined.
    pub fn met(&self) -> Option<bool> {
        let r = self.ratio();
        match self.target {
            Target::RatioMax(x) => r.is_finite().then_some(r <= x),
            Target::RatioMin(x) => r.is_finite().then_some(r >= x),
            Target::SluiceMax(x) => {
                let v = self.sluice_value();
                (!v.is_nan()).then_some(v <= x)
            }
            Target::None => None,
        }
    }

    fn target_text(&self) -> String {
        match self.target {
            Target::RatioMax(x) => format!("<= {x}x"),
            Target::RatioMin(x) => format!(">= {x}x"),
            Target::SluiceMax(x) => format!("sluice <= {x} {}", self.unit),
            Target::None => "-".into(),
        }
    }

    fn to_json(&self) -> Value {
        let num = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        json!({
            "workload": self.workload,
            "metric": self.name,
            "unit": self.unit,
            "aggregate": format!("{:?}", self.agg),
            "stock": num(self.stock_value()),
            "sluice": num(self.sluice_value()),
            "ratio": num(self.ratio()),
            "target": self.target_text(),
            "met": self.met(),
            "samples": {"stock": self.stock, "sluice": self.sluice},
        })
    }
}

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// The result table (Markdown, so it can go into bench/README.md as printed).
pub fn table(metrics: &[Metric]) -> String {
    let mut rows = vec![[
        "workload".to_string(),
        "metric".into(),
        "stock".into(),
        "sluice".into(),
        "ratio".into(),
        "target".into(),
        "met?".into(),
    ]];
    for m in metrics {
        rows.push([
            m.workload.to_string(),
            format!("{} ({})", m.name, m.unit),
            fmt_value(m.stock_value()),
            fmt_value(m.sluice_value()),
            if m.ratio().is_finite() {
                format!("{:.2}x", m.ratio())
            } else {
                "-".into()
            },
            m.target_text(),
            match m.met() {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None if matches!(m.target, Target::None) => "-".into(),
                None => "?".into(),
            },
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String; 7]| {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = line(&rows[0]);
    let dashes: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", dashes.join("-|-")));
    for r in &rows[1..] {
        out.push_str(&line(r));
    }
    out
}

pub fn json(metrics: &[Metric], meta: Value) -> Value {
    json!({
        "meta": meta,
        "metrics": metrics.iter().map(Metric::to_json).collect::<Vec<_>>(),
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar per metric: its sluice/stock ratio, a line at 1.0 and a tick at the target.
/// Green when the target is met, red when not. Absolute targets (memory growth) have no
/// ratio target to draw; their bar is coloured by the absolute target.
pub fn svg(metrics: &[Metric], title: &str) -> String {
    let (label_w, bar_w, row_h, top) = (330.0, 420.0, 22.0, 40.0);
    let max_ratio = metrics
        .iter()
        .map(Metric::ratio)
        .filter(|r| r.is_finite())
        .fold(2.0_f64, f64::max)
        .min(10.0);
    let x = |r: f64| label_w + bar_w * (r.clamp(0.0, max_ratio) / max_ratio);
    let height = top + row_h * metrics.len() as f64 + 30.0;
    let width = label_w + bar_w + 90.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">{}</text>\n",
        xml_escape(title)
    );
    for (i, m) in metrics.iter().enumerate() {
        let y = top + row_h * i as f64;
        let r = m.ratio();
        let colour = match m.met() {
            Some(true) => "#4a9a4a",
            Some(false) => "#c84040",
            None => "#999999",
        };
        s.push_str(&format!(
            "<text x=\"10\" y=\"{:.1}\">{}</text>\n",
            y + 14.0,
            xml_escape(&format!("{}: {}", m.workload, m.name))
        ));
        if r.is_finite() {
            s.push_str(&format!(
                "<rect x=\"{label_w}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"/>\n\
                 <text x=\"{:.1}\" y=\"{:.1}\">{r:.2}x</text>\n",
                y + 3.0,
                x(r) - label_w,
                row_h - 6.0,
                x(r) + 4.0,
                y + 14.0
            ));
        }
        let target = match m.target {
            Target::RatioMax(t) | Target::RatioMin(t) => Some(t),
            Target::SluiceMax(_) | Target::None => None,
        };
        if let Some(t) = target {
            s.push_str(&format!(
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"black\" \
                 stroke-width=\"2\"/>\n",
                x(t),
                y + 1.0,
                y + row_h - 1.0
            ));
        }
    }
    let bottom = top + row_h * metrics.len() as f64;
    s.push_str(&format!(
        "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{top}\" y2=\"{bottom}\" stroke=\"#333\" \
         stroke-dasharray=\"4 3\"/>\n\
         <text x=\"{0:.1}\" y=\"{1:.1}\" text-anchor=\"middle\">1.0 (stock)</text>\n\
         <text x=\"10\" y=\"{1:.1}\">sluice/stock; black tick: target</text>\n</svg>\n",
        x(1.0),
        bottom + 18.0
    ));
    s
}
