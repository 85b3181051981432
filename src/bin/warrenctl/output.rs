//! What warrenctl prints: rabbitmqctl's banners ("Listing queues for vhost / ...") and its
//! three ways of printing a list: tab-separated with a header row (the default), a box-drawn
//! table, or JSON.

use std::io::Write;

use clap::ValueEnum;
use serde_json::Value;

/// How lists and reports are printed (`--formatter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Formatter {
    /// Tab-separated columns with a header row, as rabbitmqctl prints by default.
    Tsv,
    /// A table drawn with box characters (rabbitmqctl's `pretty_table`).
    #[value(alias = "pretty_table")]
    Table,
    /// JSON: a list of objects for lists, an object for reports; no banners.
    Json,
}

/// Standard output with the formatter and the `-q` switch applied.
pub(crate) struct Output {
    formatter: Formatter,
    quiet: bool,
    out: Box<dyn Write>,
    /// The first failed write; later writes are skipped and `main` exits non-zero.
    failed: Option<std::io::Error>,
}

impl Output {
    /// Prints to standard output.
    pub(crate) fn stdout(formatter: Formatter, quiet: bool) -> Output {
        Output {
            formatter,
            quiet,
            out: Box::new(std::io::stdout()),
            failed: None,
        }
    }

    /// The formatter in use.
    pub(crate) fn formatter(&self) -> Formatter {
        self.formatter
    }

    /// The write error that stopped output, if any.
    pub(crate) fn take_error(&mut self) -> Option<std::io::Error> {
        if self.failed.is_none() {
            if let Err(error) = self.out.flush() {
                self.failed = Some(error);
            }
        }
        self.failed.take()
    }

    /// Writes `text` and a newline, unconditionally.
    pub(crate) fn line(&mut self, text: &str) {
        if self.failed.is_some() {
            return;
        }
        if let Err(error) = writeln!(self.out, "{text}") {
            self.failed = Some(error);
        }
    }

    /// Writes `text` as is (no newline added).
    pub(crate) fn raw(&mut self, text: &str) {
        if self.failed.is_some() {
            return;
        }
        if let Err(error) = self.out.write_all(text.as_bytes()) {
            self.failed = Some(error);
        }
    }

    /// An informational line ("Adding user ..."): left out with `-q` and with a
    /// machine-readable formatter, as rabbitmqctl does.
    pub(crate) fn banner(&mut self, text: &str) {
        if !self.quiet && self.formatter != Formatter::Json {
            self.line(text);
        }
    }

    /// A command's result line ("Queue was successfully deleted ..."): printed even with
    /// `-q`, left out with the JSON formatter.
    pub(crate) fn result(&mut self, text: &str) {
        if self.formatter != Formatter::Json {
            self.line(text);
        }
    }

    /// Turns `-q` on or off; returns what it was (the report shows its section titles even
    /// with `-q`).
    pub(crate) fn set_quiet(&mut self, quiet: bool) -> bool {
        std::mem::replace(&mut self.quiet, quiet)
    }

    /// A list: `columns` as the header, one row per entry of `rows` (each as long as
    /// `columns`).
    pub(crate) fn table(&mut self, columns: &[String], rows: &[Vec<Value>]) {
        match self.formatter {
            Formatter::Json => {
                let text = json_rows(columns, rows);
                self.line(&text);
            }
            Formatter::Tsv => {
                self.line(&columns.join("\t"));
                for row in rows {
                    let cells: Vec<String> = columns
                        .iter()
                        .zip(row)
                        .map(|(column, value)| render(column, value))
                        .collect();
                    self.line(&cells.join("\t"));
                }
            }
            Formatter::Table => {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|row| {
                        columns
                            .iter()
                            .zip(row)
                            .map(|(column, value)| render(column, value))
                            .collect()
                    })
                    .collect();
                for line in boxed(columns, &cells) {
                    self.line(&line);
                }
            }
        }
    }
}

/// Rows as a JSON array of objects, keys in column order (one object a line, as rabbitmqctl's
/// JSON formatter prints them).
fn json_rows(columns: &[String], rows: &[Vec<Value>]) -> String {
    let mut text = String::from("[");
    for (index, row) in rows.iter().enumerate() {
        text.push_str(if index == 0 { "\n" } else { "\n," });
        text.push('{');
        for (field, (column, value)) in columns.iter().zip(row).enumerate() {
            if field > 0 {
                text.push(',');
            }
            text.push_str(&Value::String(column.clone()).to_string());
            text.push(':');
            text.push_str(&value.to_string());
        }
        text.push('}');
    }
    text.push_str("\n]");
    text
}

/// A value as rabbitmqctl prints it in a table cell: strings bare, `[a, b]` for lists of
/// strings (user tags), `[{"key",value}]` for argument tables, JSON for policy definitions,
/// nothing for a missing value.
pub(crate) fn render(column: &str, value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(|item| render(column, item)).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) if column == "definition" => Value::Object(map.clone()).to_string(),
        Value::Object(map) => {
            let pairs: Vec<String> = map
                .iter()
                .map(|(key, value)| format!("{{{},{}}}", quoted(key), term(value)))
                .collect();
            format!("[{}]", pairs.join(","))
        }
    }
}

fn quoted(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// A value inside an argument table: strings quoted, as Erlang binaries print.
fn term(value: &Value) -> String {
    match value {
        Value::String(text) => quoted(text),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(term).collect();
            format!("[{}]", inner.join(","))
        }
        Value::Object(_) => render("", value),
        other => other.to_string(),
    }
}

/// The lines of a box-drawn table.
fn boxed(columns: &[String], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rule = |left: &str, middle: &str, right: &str| {
        let parts: Vec<String> = widths.iter().map(|w| "─".repeat(w + 2)).collect();
        format!("{left}{}{right}", parts.join(middle))
    };
    let row_line = |cells: &[String]| {
        let parts: Vec<String> = widths
            .iter()
            .zip(cells)
            .map(|(width, cell)| {
                let pad = width.saturating_sub(cell.chars().count());
                format!(" {cell}{} ", " ".repeat(pad))
            })
            .collect();
        format!("│{}│", parts.join("│"))
    };
    let mut lines = vec![rule("┌", "┬", "┐"), row_line(columns), rule("├", "┼", "┤")];
    lines.extend(rows.iter().map(|row| row_line(row)));
    lines.push(rule("└", "┴", "┘"));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_render_as_rabbitmqctl_prints_them() {
        assert_eq!(render("tags", &json!(["administrator"])), "[administrator]");
        assert_eq!(render("tags", &json!([])), "[]");
        assert_eq!(render("arguments", &json!({})), "[]");
        assert_eq!(
            render(
                "arguments",
                &json!({"x-queue-type": "classic", "x-max-length": 10})
            ),
            r#"[{"x-max-length",10},{"x-queue-type","classic"}]"#
        );
        assert_eq!(
            render("definition", &json!({"max-length": 10})),
            r#"{"max-length":10}"#
        );
        assert_eq!(render("policy", &Value::Null), "");
        assert_eq!(render("durable", &json!(true)), "true");
    }

    #[test]
    fn json_rows_keep_the_column_order() {
        let columns = vec!["name".to_string(), "messages".to_string()];
        let text = json_rows(&columns, &[vec![json!("q"), json!(5)]]);
        assert_eq!(text, "[\n{\"name\":\"q\",\"messages\":5}\n]");
        assert_eq!(json_rows(&columns, &[]), "[\n]");
    }

    #[test]
    fn boxes_fit_the_widest_cell() {
        let lines = boxed(&["name".to_string()], &[vec!["longer".to_string()]]);
        assert_eq!(lines[1], "│ name   │");
        assert_eq!(lines[3], "│ longer │");
    }
}
