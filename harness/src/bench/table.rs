//! Plain-text tables (Markdown pipe tables, readable in a terminal and
//! pasteable into BENCHMARKS.md) and number formatting.

/// A table: a title, column headers and rows of cells.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Printed above the table.
    pub title: String,
    /// Column headers.
    pub columns: Vec<String>,
    /// Rows; a row shorter than the header is padded with empty cells.
    pub rows: Vec<Vec<String>>,
    /// Leading columns holding text (left-aligned); the rest are numbers.
    pub text_columns: usize,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(title: &str, columns: &[&str]) -> Table {
        Table {
            title: title.to_string(),
            columns: columns.iter().map(|c| (*c).to_string()).collect(),
            rows: Vec::new(),
            text_columns: 1,
        }
    }

    /// Sets how many leading columns are text (left-aligned).
    pub fn with_text_columns(mut self, n: usize) -> Table {
        self.text_columns = n;
        self
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders a Markdown table with aligned columns: text columns
    /// left-aligned, the others (numbers) right-aligned.
    pub fn render(&self) -> String {
        let n = self.columns.len();
        let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for row in &self.rows {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(cell(row, i).chars().count()).max(3);
            }
        }
        let line = |cells: Vec<String>| -> String {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let pad = widths[i].saturating_sub(c.chars().count());
                    if i < self.text_columns {
                        format!("{c}{}", " ".repeat(pad))
                    } else {
                        format!("{}{c}", " ".repeat(pad))
                    }
                })
                .collect();
            format!("| {} |\n", parts.join(" | "))
        };
        let mut out = String::new();
        if !self.title.is_empty() {
            out.push_str(&format!("{}\n\n", self.title));
        }
        out.push_str(&line(self.columns.clone()));
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i < self.text_columns {
                    "-".repeat(*w)
                } else {
                    format!("{}:", "-".repeat(w.saturating_sub(1)))
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", rule.join(" | ")));
        for row in &self.rows {
            out.push_str(&line((0..n).map(|i| cell(row, i)).collect()));
        }
        out
    }
}

/// A duration in ns with a unit, three significant digits (`270 ns`, `12.3 µs`).
pub fn duration_ns(ns: f64) -> String {
    let sig3 = |v: f64, unit: &str| {
        if v < 10.0 {
            format!("{v:.2} {unit}")
        } else if v < 100.0 {
            format!("{v:.1} {unit}")
        } else {
            format!("{v:.0} {unit}")
        }
    };
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        sig3(ns / 1_000.0, "µs")
    } else if ns < 1_000_000_000.0 {
        sig3(ns / 1_000_000.0, "ms")
    } else {
        sig3(ns / 1_000_000_000.0, "s")
    }
}

/// A signed difference in ns (`+157 ns`, `-3 ns`).
pub fn signed_ns(ns: f64) -> String {
    if ns < 0.0 {
        format!("-{}", duration_ns(-ns))
    } else {
        format!("+{}", duration_ns(ns))
    }
}

/// Requests per second (`3.71 M/s`, `12.4 k/s`, `812 /s`).
pub fn rate(per_second: f64) -> String {
    if per_second >= 1_000_000.0 {
        format!("{:.2} M/s", per_second / 1_000_000.0)
    } else if per_second >= 1_000.0 {
        format!("{:.1} k/s", per_second / 1_000.0)
    } else {
        format!("{per_second:.0} /s")
    }
}

/// A byte count (`512 B`, `1.5 KiB`, `2.00 MiB`); negative values keep their sign.
pub fn bytes(n: f64) -> String {
    let sign = if n < 0.0 { "-" } else { "" };
    let n = n.abs();
    if n < 1024.0 {
        format!("{sign}{n:.0} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{sign}{:.1} KiB", n / 1024.0)
    } else {
        format!("{sign}{:.2} MiB", n / (1024.0 * 1024.0))
    }
}

/// A ratio with two decimals (`0.62`).
pub fn times(r: f64) -> String {
    format!("{r:.2}")
}

/// A per-request count with one decimal where it is not whole.
pub fn count(n: f64) -> String {
    if (n - n.round()).abs() < 0.05 {
        format!("{:.0}", n.round())
    } else {
        format!("{n:.1}")
    }
}

/// A per-request count the harness could not take (`-`).
pub fn allocs(n: Option<f64>) -> String {
    n.map_or_else(|| "-".to_string(), count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_text_left_and_numbers_right() {
        let mut t = Table::new("Latency", &["filter", "median"]);
        t.row(vec!["response-header".into(), "270 ns".into()]);
        t.row(vec!["jwt".into()]);
        assert_eq!(
            t.render(),
            "Latency\n\n\
             | filter          | median |\n\
             | --------------- | -----: |\n\
             | response-header | 270 ns |\n\
             | jwt             |        |\n"
        );
    }

    #[test]
    fn numbers_get_readable_units() {
        assert_eq!(duration_ns(270.4), "270 ns");
        assert_eq!(duration_ns(12_340.0), "12.3 µs");
        assert_eq!(duration_ns(2_000.0), "2.00 µs");
        assert_eq!(duration_ns(250_000.0), "250 µs");
        assert_eq!(duration_ns(1_500_000.0), "1.50 ms");
        assert_eq!(duration_ns(2.5e9), "2.50 s");
        assert_eq!(signed_ns(157.0), "+157 ns");
        assert_eq!(signed_ns(-3.0), "-3 ns");
        assert_eq!(rate(3_712_000.0), "3.71 M/s");
        assert_eq!(rate(12_400.0), "12.4 k/s");
        assert_eq!(rate(812.2), "812 /s");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(-2.0 * 1024.0 * 1024.0), "-2.00 MiB");
        assert_eq!(times(0.6249), "0.62");
        assert_eq!(count(7.0), "7");
        assert_eq!(count(2.5), "2.5");
    }
}
