//! The Markdown summary: the original service's fixed opening and feature list, then a compact,
//! capped statistics section.

use super::column::format_float;
use super::Profile;
use serde_json::Value as Json;
use std::borrow::Cow;
use std::fmt::Write;

/// Lines per statistics list, so a 300-column file stays readable.
const MAX_LISTED: usize = 15;

impl Profile {
    /// Markdown summary. The opening is byte-for-byte the original's f-string output.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "The dataset has **{} rows** and **{} columns**.\n\nIt contains the following features:\n\n",
            self.row_count, self.column_count
        );
        let features: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("- **{}**: `{}`", one_line(&c.name), c.dtype))
            .collect();
        s.push_str(&features.join("\n"));
        if self.row_count == 0 || self.columns.is_empty() {
            return s;
        }

        s.push_str("\n\n## Statistics\n\n");
        if let Some(sheet) = &self.sheet {
            let others: Vec<String> = self
                .sheets
                .iter()
                .filter(|sh| &sh.name != sheet)
                .take(MAX_LISTED)
                .map(|sh| format!("**{}** ({} rows × {} columns)", sh.name, sh.rows, sh.columns))
                .collect();
            let _ = write!(s, "The table is the workbook's sheet **{sheet}**.");
            if !others.is_empty() {
                let _ = write!(s, " Other sheets: {}.", others.join(", "));
            }
            s.push_str("\n\n");
        }
        if self.header_line == 0 {
            s.push_str("The file has no header row; its columns are numbered from 0.\n\n");
        } else if self.header_line > 1 {
            let _ = writeln!(
                s,
                "The header is on line {}; the lines above it are not part of the table.\n",
                self.header_line
            );
        }
        if let Some(groups) = &self.header_groups {
            let mut spans: Vec<(String, Vec<Cow<str>>)> = Vec::new();
            for (label, c) in groups.labels.iter().zip(&self.columns) {
                if label.is_empty() {
                    continue;
                }
                match spans.last_mut() {
                    Some((l, names)) if l == label => names.push(one_line(&c.name)),
                    _ => spans.push((label.clone(), vec![one_line(&c.name)])),
                }
            }
            let shown: Vec<String> = spans
                .iter()
                .take(MAX_LISTED)
                .map(|(label, names)| format!("**{}** over {}", one_line(label), names.join(", ")))
                .collect();
            let _ = writeln!(s, "Line {} groups the columns: {}.\n", groups.line, shown.join("; "));
        }
        if let Some(decimal) = &self.decimal {
            let names: Vec<Cow<str>> = decimal.columns.iter().take(MAX_LISTED).map(|n| one_line(n)).collect();
            let _ = writeln!(
                s,
                "Numbers are written with a decimal comma in {} (text to pandas' default reader, numbers with `decimal=\"{}\"`).\n",
                names.join(", "),
                decimal.separator
            );
        }
        if self.footer_lines > 0 {
            let _ = writeln!(
                s,
                "{} line(s) of notes below the table are not part of it.\n",
                self.footer_lines
            );
        }
        if self.skipped_lines > 0 {
            let _ = writeln!(
                s,
                "{} line(s) that belong to no table (above it, or wider than it) were set aside.\n",
                self.skipped_lines
            );
        }
        if !self.other_tables.is_empty() {
            let shown: Vec<String> = self
                .other_tables
                .iter()
                .take(5)
                .map(|t| {
                    format!(
                        "lines {}–{} ({} rows × {} columns)",
                        t.first_line, t.last_line, t.row_count, t.column_count
                    )
                })
                .collect();
            let more = self.other_tables.len().saturating_sub(shown.len());
            let _ = writeln!(
                s,
                "The file holds {} other table(s), not described here: {}{}.\n",
                self.other_tables.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        let mut missing: Vec<(Cow<str>, u64)> = self
            .columns
            .iter()
            .filter(|c| c.null_count > 0)
            .map(|c| (one_line(&c.name), c.null_count))
            .collect();
        if missing.is_empty() {
            s.push_str("No missing values.\n");
        } else {
            missing.sort_by_key(|m| std::cmp::Reverse(m.1));
            let _ = writeln!(
                s,
                "Missing values ({} of {} columns):\n",
                missing.len(),
                self.columns.len()
            );
            for (name, n) in missing.iter().take(MAX_LISTED) {
                let pct = *n as f64 * 100.0 / self.row_count as f64;
                let _ = writeln!(s, "- **{name}**: {n} ({})", percent(pct));
            }
            if missing.len() > MAX_LISTED {
                let _ = writeln!(
                    s,
                    "- … and {} more columns with missing values",
                    missing.len() - MAX_LISTED
                );
            }
        }

        let ranges: Vec<String> = self
            .columns
            .iter()
            .filter_map(|c| {
                let (min, max) = (c.min.as_ref()?, c.max.as_ref()?);
                let mut line = format!("- **{}**: {} to {}", one_line(&c.name), text(min), text(max));
                if let Some(mean) = c.mean {
                    let _ = write!(line, " (mean {})", num(mean));
                }
                Some(line)
            })
            .collect();
        if !ranges.is_empty() {
            let _ = writeln!(s, "\nRanges of numeric and date columns:\n");
            for line in ranges.iter().take(MAX_LISTED) {
                s.push_str(line);
                s.push('\n');
            }
            if ranges.len() > MAX_LISTED {
                let _ = writeln!(s, "- … and {} more numeric or date columns", ranges.len() - MAX_LISTED);
            }
        }
        // No trailing newline, like the opening section.
        while s.ends_with('\n') {
            s.pop();
        }
        s
    }
}

/// A column name as one line of Markdown: a header cell may hold line breaks (quoted), which
/// would end the list item and make the rest of the name read as a line of its own. They
/// are shown escaped (`\n`, `\r`); the profile keeps the name as it is.
fn one_line(name: &str) -> Cow<'_, str> {
    if name.contains(['\n', '\r']) {
        Cow::Owned(name.replace('\r', "\\r").replace('\n', "\\n"))
    } else {
        Cow::Borrowed(name)
    }
}

fn percent(p: f64) -> String {
    if (99.95..100.0).contains(&p) {
        "99.9%".into()
    } else if p > 0.0 && p < 0.1 {
        "<0.1%".into()
    } else {
        format!("{p:.1}%")
    }
}

/// Four significant decimals at most; Python-like exponent form for very large/small values.
fn num(x: f64) -> String {
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e15).contains(&a) {
        return format_float(x);
    }
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Number(n) if n.is_f64() => n.as_f64().map(num).unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ColumnProfile, Profile};

    fn col(name: &str, dtype: &str) -> ColumnProfile {
        ColumnProfile {
            name: name.into(),
            dtype: dtype.into(),
            null_count: 0,
            unique_count: 0,
            unique_count_is_estimate: false,
            min: None,
            max: None,
            mean: None,
            std: None,
            quartiles: None,
            quartiles_are_estimate: false,
            top_values: vec![],
            top_values_are_estimate: false,
        }
    }

    fn spec_profile() -> Profile {
        Profile {
            row_count: 1500,
            column_count: 3,
            encoding: "utf-8".into(),
            delimiter: ",".into(),
            header_line: 1,
            footer_lines: 0,
            skipped_lines: 0,
            other_tables: Vec::new(),
            sheet: None,
            sheets: vec![],
            chunks: None,
            header_groups: None,
            decimal: None,
            columns: vec![
                col("date", "datetime64[ns]"),
                col("product", "object"),
                col("sales", "float64"),
            ],
        }
    }

    #[test]
    fn opening_matches_spec_exactly() {
        let spec = "The dataset has **1500 rows** and **3 columns**.\n\nIt contains the following features:\n\n- **date**: `datetime64[ns]`\n- **product**: `object`\n- **sales**: `float64`";
        let s = spec_profile().summary();
        assert!(s.starts_with(spec), "{s}");
        assert_eq!(&s[spec.len()..spec.len() + 2], "\n\n");
    }

    #[test]
    fn one_row_and_header_only_and_no_columns_do_not_panic() {
        let mut p = spec_profile();
        p.row_count = 1;
        assert!(p.summary().starts_with("The dataset has **1 rows** and **3 columns**."));
        p.row_count = 0;
        let s = p.summary();
        assert!(s.ends_with("- **sales**: `float64`"), "{s}");
        p.columns.clear();
        p.column_count = 0;
        assert_eq!(
            p.summary(),
            "The dataset has **0 rows** and **0 columns**.\n\nIt contains the following features:\n\n"
        );
    }

    #[test]
    fn statistics_section_lists_missing_and_ranges() {
        let mut p = spec_profile();
        p.columns[2].null_count = 15;
        p.columns[2].min = Some(serde_json::json!(1.5));
        p.columns[2].max = Some(serde_json::json!(300.0));
        p.columns[2].mean = Some(20.123456);
        p.columns[0].min = Some(serde_json::json!("2024-01-01"));
        p.columns[0].max = Some(serde_json::json!("2024-12-31"));
        let s = p.summary();
        assert!(s.contains("## Statistics"), "{s}");
        assert!(s.contains("- **sales**: 15 (1.0%)"), "{s}");
        assert!(s.contains("- **sales**: 1.5 to 300 (mean 20.1235)"), "{s}");
        assert!(s.contains("- **date**: 2024-01-01 to 2024-12-31"), "{s}");
        assert!(!s.ends_with('\n'));
    }

    /// Found by fuzzing: a quoted header cell with line breaks split the feature list.
    #[test]
    fn a_name_with_line_breaks_stays_one_list_item() {
        let csv = "\"first\nsecond\r\nthird\",b\n1,2\n";
        let p = crate::analysis::profile_reader(csv.as_bytes(), crate::analysis::Format::Csv).unwrap();
        assert_eq!(
            p.columns[0].name, "first\nsecond\r\nthird",
            "the profile keeps the name"
        );
        let s = p.summary();
        let features: Vec<&str> = s.lines().skip(4).take_while(|l| !l.is_empty()).collect();
        assert_eq!(
            features,
            ["- **first\\nsecond\\r\\nthird**: `int64`", "- **b**: `int64`"],
            "{s}"
        );
        assert!(s.contains("- **first\\nsecond\\r\\nthird**: 1 to 1"), "{s}");
    }

    #[test]
    fn statistics_are_capped_for_wide_files() {
        let columns: Vec<ColumnProfile> = (0..300)
            .map(|i| {
                let mut c = col(&format!("c{i}"), "float64");
                c.null_count = 1;
                c.min = Some(serde_json::json!(0.0));
                c.max = Some(serde_json::json!(1.0));
                c
            })
            .collect();
        let p = Profile {
            row_count: 10,
            column_count: 300,
            encoding: "utf-8".into(),
            delimiter: ",".into(),
            header_line: 1,
            footer_lines: 0,
            skipped_lines: 0,
            other_tables: Vec::new(),
            sheet: None,
            sheets: vec![],
            chunks: None,
            header_groups: None,
            decimal: None,
            columns,
        };
        let s = p.summary();
        let stats = &s[s.find("## Statistics").expect("section")..];
        assert!(stats.lines().count() < 45, "{stats}");
        assert!(stats.contains("… and 285 more columns with missing values"));
        assert!(stats.contains("… and 285 more numeric or date columns"));
    }
}
