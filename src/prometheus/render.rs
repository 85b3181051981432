//! Families of samples, the three views of them RabbitMQ's `rabbitmq_prometheus` serves
//! (aggregated, per object, detailed), and their rendering.
//!
//! Counters and gauges go through the `metrics` facade into a `metrics-exporter-prometheus`
//! recorder built for the scrape, which renders the text format; nothing is left behind, so
//! a deleted queue's series are gone from the next scrape. Histograms are counted by the
//! broker in fixed buckets (one uncontended increment per event), which the facade cannot
//! take pre-aggregated, so they are written with the exporter's own formatting functions.

use std::collections::HashMap;

use metrics::{Key, Label, Metadata, Recorder};
use metrics_exporter_prometheus::formatting::{
    write_help_line, write_metric_line, write_type_line,
};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Whether a family counts or measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only grows (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Which prefix a family's name takes, and how the views treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// One series per object (queue, channel, connection) in `detailed` family `group`:
    /// `/metrics` sums them without their labels; names start `rabbitmq_` (per object) or
    /// `rabbitmq_detailed_` (detailed).
    Object(&'static str),
    /// One series per object of `detailed` family `group`, named `rabbitmq_cluster_…`, only in
    /// the per-object and detailed views (RabbitMQ's exchange and vhost families).
    Cluster(&'static str),
    /// Node-wide (`rabbitmq_…`), the same in `/metrics` and `/metrics/per-object`, and in
    /// `detailed` family `group` when it has one.
    Node(Option<&'static str>),
    /// warren's own (`warren_…`), in `/metrics` and `/metrics/per-object`.
    Warren,
    /// Exactly this name, in every view (`process_start_time_seconds`, identity).
    Bare,
}

/// A metric family: name (without prefix), help text, kind and scope.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: Kind,
    pub(crate) scope: Scope,
}

/// Which view a scrape asked for.
#[derive(Debug, Clone)]
pub(crate) enum View {
    /// `/metrics`: per-object families summed.
    Aggregated,
    /// `/metrics/per-object`.
    PerObject,
    /// `/metrics/detailed?family=…&vhost=…`: only these groups, only these vhosts (all when
    /// empty).
    Detailed {
        groups: Vec<String>,
        vhosts: Vec<String>,
    },
}

impl View {
    /// The `rabbitmq_endpoint` label of `rabbitmq_identity_info`.
    pub(crate) fn endpoint(&self) -> &'static str {
        match self {
            View::Aggregated => "metrics",
            View::PerObject => "per-object",
            View::Detailed { .. } => "detailed",
        }
    }
}

type Labels = Vec<(&'static str, String)>;

/// A histogram counted in fixed buckets.
pub(crate) struct HistogramSeries {
    /// Its labels.
    pub(crate) labels: Labels,
    /// The buckets' upper bounds as the `le` label writes them, with their counts (not
    /// cumulative); the last count is for everything above the last bound.
    pub(crate) buckets: Vec<(&'static str, u64)>,
    /// The sum of the observations.
    pub(crate) sum: f64,
}

/// What a scrape collects: samples in family order, rendered at the end.
pub(crate) struct Output {
    view: View,
    order: Vec<&'static Family>,
    series: HashMap<*const Family, Vec<(Labels, f64)>>,
    histograms: Vec<(&'static Family, Vec<HistogramSeries>)>,
}

impl Output {
    /// An empty output for `view`.
    pub(crate) fn new(view: View) -> Output {
        Output {
            view,
            order: Vec::new(),
            series: HashMap::new(),
            histograms: Vec::new(),
        }
    }

    /// The view being collected.
    pub(crate) fn view(&self) -> &View {
        &self.view
    }

    /// Whether `family` appears in this view at all (collectors skip work otherwise).
    pub(crate) fn wants(&self, family: &Family) -> bool {
        match (&self.view, family.scope) {
            (_, Scope::Bare) => true,
            (View::Detailed { groups, .. }, Scope::Object(group) | Scope::Cluster(group)) => {
                groups.iter().any(|g| g == group)
            }
            (View::Detailed { groups, .. }, Scope::Node(Some(group))) => {
                groups.iter().any(|g| g == group)
            }
            (View::Detailed { .. }, _) => false,
            (View::Aggregated, Scope::Cluster(_)) => false,
            _ => true,
        }
    }

    /// Whether objects of `vhost` are in this view.
    pub(crate) fn wants_vhost(&self, vhost: &str) -> bool {
        match &self.view {
            View::Detailed { vhosts, .. } => vhosts.is_empty() || vhosts.iter().any(|v| v == vhost),
            _ => true,
        }
    }

    fn entry(&mut self, family: &'static Family) -> &mut Vec<(Labels, f64)> {
        let key = family as *const Family;
        if !self.series.contains_key(&key) {
            self.order.push(family);
        }
        self.series.entry(key).or_default()
    }

    /// Declares a family with no samples yet, so it is rendered (RabbitMQ lists every family
    /// even when nothing is open).
    pub(crate) fn declare(&mut self, family: &'static Family) {
        if self.wants(family) {
            let aggregated = matches!(self.view, View::Aggregated);
            let series = self.entry(family);
            if aggregated && series.is_empty() {
                // A sum over no objects is 0, as RabbitMQ reports it.
                series.push((Vec::new(), 0.0));
            }
        }
    }

    /// A sample of a per-object family; `labels` is only called when the view keeps them.
    pub(crate) fn object(
        &mut self,
        family: &'static Family,
        vhost: Option<&str>,
        labels: impl FnOnce() -> Labels,
        value: f64,
    ) {
        if !self.wants(family) || !vhost.is_none_or(|v| self.wants_vhost(v)) {
            return;
        }
        if matches!(self.view, View::Aggregated) {
            let series = self.entry(family);
            match series.first_mut() {
                Some((_, sum)) => *sum += value,
                None => series.push((Vec::new(), value)),
            }
        } else {
            self.entry(family).push((labels(), value));
        }
    }

    /// A node-wide sample with its labels (kept in every view).
    pub(crate) fn sample(&mut self, family: &'static Family, labels: Labels, value: f64) {
        if self.wants(family) {
            self.entry(family).push((labels, value));
        }
    }

    /// A node-wide sample whose labels `/metrics` drops, summing (RabbitMQ aggregates
    /// `rabbitmq_auth_attempts_*` over protocols there).
    pub(crate) fn summed(&mut self, family: &'static Family, labels: Labels, value: f64) {
        if matches!(self.view, View::Aggregated) {
            self.object(family, None, Vec::new, value);
        } else {
            self.sample(family, labels, value);
        }
    }

    /// A histogram family.
    pub(crate) fn histogram(&mut self, family: &'static Family, series: Vec<HistogramSeries>) {
        if self.wants(family) {
            self.histograms.push((family, series));
        }
    }

    fn full_name(&self, family: &Family) -> String {
        let detailed = matches!(self.view, View::Detailed { .. });
        match family.scope {
            Scope::Object(_) | Scope::Node(_) if detailed => {
                format!("rabbitmq_detailed_{}", family.name)
            }
            Scope::Object(_) | Scope::Node(_) => format!("rabbitmq_{}", family.name),
            Scope::Cluster(_) => format!("rabbitmq_cluster_{}", family.name),
            Scope::Warren => format!("warren_{}", family.name),
            Scope::Bare => family.name.to_string(),
        }
    }

    /// Renders everything in the Prometheus text format.
    pub(crate) fn render(self) -> String {
        // A recorder of its own per scrape: what is not collected now is not rendered.
        let recorder = PrometheusBuilder::new().build_recorder();
        static METADATA: Metadata<'static> =
            Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));
        // Families with one series per object go straight to the exporter's formatting
        // functions once they are that large: registering each series in a recorder costs
        // microseconds (hashing, sanitising, allocating), which with 10,000 queues and
        // 10,000 connections made /metrics/per-object take 1.5 s.
        let mut direct = String::new();
        for family in &self.order {
            let name = self.full_name(family);
            let Some(series) = self.series.get(&(*family as *const Family)) else {
                continue;
            };
            if series.len() > DIRECT_RENDER_SERIES {
                write_family(&mut direct, &name, family, series);
                continue;
            }
            match family.kind {
                Kind::Counter => {
                    recorder.describe_counter(name.clone().into(), None, family.help.into())
                }
                Kind::Gauge => {
                    recorder.describe_gauge(name.clone().into(), None, family.help.into())
                }
            }
            for (labels, value) in series {
                let labels: Vec<Label> = labels
                    .iter()
                    .map(|(key, value)| Label::new(*key, value.clone()))
                    .collect();
                let key = Key::from_parts(name.clone(), labels);
                match family.kind {
                    Kind::Counter => recorder
                        .register_counter(&key, &METADATA)
                        .absolute(value.max(0.0) as u64),
                    Kind::Gauge => recorder.register_gauge(&key, &METADATA).set(*value),
                }
            }
        }
        let mut text = recorder.handle().render();
        text.push_str(&direct);
        for (family, series) in &self.histograms {
            let name = self.full_name(family);
            write_help_line(&mut text, &name, family.help);
            write_type_line(&mut text, &name, "histogram");
            for histogram in series {
                let labels: Vec<String> = histogram
                    .labels
                    .iter()
                    .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
                    .collect();
                let mut cumulative = 0u64;
                for (le, count) in &histogram.buckets {
                    cumulative += count;
                    write_metric_line(
                        &mut text,
                        &name,
                        Some("bucket"),
                        &labels,
                        Some(("le", le)),
                        cumulative,
                        None,
                    );
                }
                write_metric_line::<&str, f64>(
                    &mut text,
                    &name,
                    Some("sum"),
                    &labels,
                    None,
                    histogram.sum,
                    None,
                );
                write_metric_line::<&str, u64>(
                    &mut text,
                    &name,
                    Some("count"),
                    &labels,
                    None,
                    cumulative,
                    None,
                );
            }
            text.push('\n');
        }
        text
    }
}

/// Families with more series than this are written directly (see [`Output::render`]).
const DIRECT_RENDER_SERIES: usize = 64;

/// Writes a counter or gauge family with the exporter's formatting functions.
fn write_family(text: &mut String, name: &str, family: &Family, series: &[(Labels, f64)]) {
    write_help_line(text, name, family.help);
    let kind = match family.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
    };
    write_type_line(text, name, kind);
    let mut labels = Vec::new();
    for (pairs, value) in series {
        labels.clear();
        labels.extend(
            pairs
                .iter()
                .map(|(key, value)| format!("{key}=\"{}\"", escape(value))),
        );
        match family.kind {
            Kind::Counter => write_metric_line::<&str, u64>(
                text,
                name,
                None,
                &labels,
                None,
                value.max(0.0) as u64,
                None,
            ),
            Kind::Gauge => {
                write_metric_line::<&str, f64>(text, name, None, &labels, None, *value, None)
            }
        }
    }
    text.push('\n');
}

/// Escapes a label value for the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::families as f;

    fn queue_labels(index: usize) -> Labels {
        vec![("vhost", "/".to_string()), ("queue", format!("q\"{index}"))]
    }

    /// Large families (written directly) and small ones (through the recorder) come out in
    /// the same form.
    #[test]
    fn both_rendering_paths_write_the_same_lines() {
        let mut output = Output::new(View::PerObject);
        for index in 0..(DIRECT_RENDER_SERIES + 10) {
            output.object(
                &f::QUEUE_MESSAGES_READY,
                Some("/"),
                || queue_labels(index),
                index as f64,
            );
        }
        for index in 0..3 {
            output.object(
                &f::QUEUE_CONSUMER_COUNT,
                Some("/"),
                || queue_labels(index),
                index as f64,
            );
            output.object(
                &f::QUEUE_MESSAGES_PUBLISHED,
                Some("/"),
                || queue_labels(index),
                (index * 1000) as f64,
            );
        }
        let text = output.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&r#"rabbitmq_queue_messages_ready{vhost="/",queue="q\"7"} 7"#));
        assert!(lines.contains(&r#"rabbitmq_queue_consumers{vhost="/",queue="q\"2"} 2"#));
        assert!(lines
            .contains(&r#"rabbitmq_queue_messages_published_total{vhost="/",queue="q\"2"} 2000"#));
        assert!(lines.contains(&"# TYPE rabbitmq_queue_messages_ready gauge"));
        assert!(lines.contains(&"# TYPE rabbitmq_queue_consumers gauge"));
        assert!(lines.contains(&"# TYPE rabbitmq_queue_messages_published_total counter"));
        let ready = lines
            .iter()
            .filter(|line| line.starts_with("rabbitmq_queue_messages_ready{"))
            .count();
        assert_eq!(ready, DIRECT_RENDER_SERIES + 10);
    }

    /// `/metrics` sums a per-object family into one unlabelled series.
    #[test]
    fn the_aggregated_view_sums_objects() {
        let mut output = Output::new(View::Aggregated);
        output.declare(&f::QUEUE_MESSAGES_UNACKED);
        for index in 0..5 {
            output.object(
                &f::QUEUE_MESSAGES_READY,
                Some("/"),
                || queue_labels(index),
                2.0,
            );
        }
        let text = output.render();
        assert!(text
            .lines()
            .any(|line| line == "rabbitmq_queue_messages_ready 10"));
        assert!(text
            .lines()
            .any(|line| line == "rabbitmq_queue_messages_unacked 0"));
    }
}
