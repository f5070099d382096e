//! Prometheus text exposition (what every engine's `/metrics` answers),
//! read into samples kvscope can use: a metric's value summed over its
//! label sets (one engine, several label sets: vLLM's per-engine index,
//! SGLang's per-rank labels), a histogram's buckets, sum and count, and a
//! label's value (vLLM's `cache_config_info` carries the block size as a
//! label).
//!
//! A small parser of the text format's sample lines, written here because
//! the crate that parses it (`prometheus-parse` 0.2.5) reads names as
//! `\w+`, and every engine's names have a colon (`vllm:`, `sglang:`, ...).
//! Lines it cannot read are skipped: a page of garbage has no samples.

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// One scrape of a `/metrics` page.
#[derive(Clone, Debug, Default)]
pub struct MetricsPage {
    samples: Vec<Sample>,
}

/// A histogram's cumulative buckets `(upper bound, count)`, sum and count,
/// summed over label sets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSample {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl HistogramSample {
    /// This histogram minus an earlier one of the same series: what was
    /// observed between the two scrapes (a case's own queue times).
    pub fn since(&self, earlier: &HistogramSample) -> HistogramSample {
        let before = |bound: f64| earlier.buckets.iter().find(|(b, _)| *b == bound).map_or(0.0, |(_, c)| *c);
        HistogramSample {
            buckets: self.buckets.iter().map(|&(b, c)| (b, c - before(b))).collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// Two histograms of the same buckets as one: several replicas'
    /// observations together (a bound only one of them has keeps its count).
    pub fn plus(&self, other: &HistogramSample) -> HistogramSample {
        let other_at = |bound: f64| other.buckets.iter().find(|(b, _)| *b == bound).map_or(0.0, |(_, c)| *c);
        let mut buckets: Vec<(f64, f64)> = self.buckets.iter().map(|&(b, c)| (b, c + other_at(b))).collect();
        let only_other = other.buckets.iter().filter(|(b, _)| !self.buckets.iter().any(|(s, _)| s == b));
        buckets.extend(only_other.copied());
        buckets.sort_by(|x, y| x.0.total_cmp(&y.0));
        HistogramSample { buckets, sum: self.sum + other.sum, count: self.count + other.count }
    }
}

impl MetricsPage {
    /// Parses a page; lines that are not Prometheus samples are skipped.
    pub fn parse(text: &str) -> MetricsPage {
        MetricsPage { samples: text.lines().filter_map(parse_sample).collect() }
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Every sample's metric name, in page order (repeats included).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.samples.iter().map(|s| s.name.as_str())
    }

    /// The value of `name`, summed over its label sets; `None` when the
    /// page does not have it.
    pub fn value(&self, name: &str) -> Option<f64> {
        let mut values = self.samples.iter().filter(|s| s.name == name).map(|s| s.value);
        let first = values.next()?;
        Some(values.fold(first, |a, b| a + b))
    }

    /// The value of label `label` on the first sample of `name`.
    pub fn label(&self, name: &str, label: &str) -> Option<&str> {
        let sample = self.samples.iter().find(|s| s.name == name)?;
        sample.labels.iter().find(|(k, _)| k == label).map(|(_, v)| v.as_str())
    }

    /// Histogram `name` from its `_bucket`, `_sum` and `_count` series.
    pub fn histogram(&self, name: &str) -> Option<HistogramSample> {
        let bucket_name = format!("{name}_bucket");
        let mut out = HistogramSample::default();
        for sample in self.samples.iter().filter(|s| s.name == bucket_name) {
            let Some(bound) = sample.labels.iter().find(|(k, _)| k == "le").and_then(|(_, v)| parse_value(v)) else {
                continue;
            };
            match out.buckets.iter_mut().find(|(b, _)| *b == bound) {
                Some((_, count)) => *count += sample.value,
                None => out.buckets.push((bound, sample.value)),
            }
        }
        if out.buckets.is_empty() {
            return None;
        }
        out.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.sum = self.value(&format!("{name}_sum")).unwrap_or(0.0);
        out.count = self.value(&format!("{name}_count")).unwrap_or(0.0);
        Some(out)
    }
}

/// Go's float spellings as Prometheus writes them (`+Inf`, `NaN`).
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_end);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after)?;
        labels = parsed;
        rest = after;
    }
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some(Sample { name: name.to_owned(), labels, value })
}

/// `key="value",...}` with the format's escapes; returns the rest after `}`.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim().to_owned();
        let quoted = text[eq + 1..].trim_start().strip_prefix('"')?;
        let mut chars = quoted.char_indices();
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        text = &quoted[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_replicas_histograms_add_bucket_by_bucket() {
        let a = HistogramSample { buckets: vec![(0.1, 2.0), (f64::INFINITY, 3.0)], sum: 0.5, count: 3.0 };
        let b = HistogramSample { buckets: vec![(0.1, 1.0), (f64::INFINITY, 1.0)], sum: 0.05, count: 1.0 };
        let both = a.plus(&b);
        assert_eq!(both.buckets, vec![(0.1, 3.0), (f64::INFINITY, 4.0)]);
        assert_eq!((both.count, both.sum), (4.0, 0.55));
    }

    const PAGE: &str = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 128.0
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",num_gpu_blocks="4096"} 1.0
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{le="0.3",model_name="m"} 1.0
vllm:request_queue_time_seconds_bucket{le="1.0",model_name="m"} 3.0
vllm:request_queue_time_seconds_bucket{le="+Inf",model_name="m"} 4.0
vllm:request_queue_time_seconds_sum{model_name="m"} 2.5
vllm:request_queue_time_seconds_count{model_name="m"} 4.0
"#;

    #[test]
    fn reads_values_labels_and_histograms() {
        let page = MetricsPage::parse(PAGE);
        assert_eq!(page.value("vllm:num_requests_running"), Some(5.0));
        assert_eq!(page.value("vllm:prefix_cache_hits_total"), Some(128.0));
        assert_eq!(page.label("vllm:cache_config_info", "block_size"), Some("16"));
        let h = page.histogram("vllm:request_queue_time_seconds").unwrap();
        assert_eq!(h.buckets, vec![(0.3, 1.0), (1.0, 3.0), (f64::INFINITY, 4.0)]);
        assert_eq!((h.sum, h.count), (2.5, 4.0));
        let zero = h.since(&h);
        assert_eq!((zero.count, zero.buckets[2].1), (0.0, 0.0));
        assert_eq!(page.value("vllm:absent"), None);
    }

    #[test]
    fn garbage_gives_no_samples() {
        let page =
            MetricsPage::parse("<html>502 Bad Gateway</html>\n\u{0}\u{1}{{{ 12\nvllm:x{le=} nope\nvllm:y{a=\"b 1\n");
        assert_eq!(page.names().count(), 0);
    }

    #[test]
    fn label_values_keep_escapes_and_braces() {
        let page = MetricsPage::parse("m{a=\"x}\\\"y\",b=\"2\"} 7 1700000000\n");
        assert_eq!(page.label("m", "a"), Some("x}\"y"));
        assert_eq!(page.value("m"), Some(7.0));
    }
}
