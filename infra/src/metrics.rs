//! `/metrics` for both daemons, through `prometheus-client`: one [`Registry`] per daemon, whose
//! collectors read the daemon's counters on each scrape, encoded as OpenMetrics text.
//!
//! The counters themselves stay plain atomics owned by the stage that bumps them: the agent's
//! status heartbeat and the hub's health checks read the same ones, so a scrape and a heartbeat
//! never disagree, and the hot paths pay one relaxed `fetch_add`. A collector is a list of
//! [`Families`] calls; the library owns the format (names, types, `_total`, `# EOF`).

use std::fmt::{self, Write as _};

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::encoding::{
    EncodeCounterValue, EncodeGaugeValue, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
pub use prometheus_client::registry::Registry;

/// The `Content-Type` of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition text of everything registered in `registry`, `# EOF` included.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail; a collector's own error would be a bug in it, and a
    // scrape must still answer, so the text so far is served.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        let _ = writeln!(out, "# encoding failed: {e}");
    }
    out
}

/// The text of one collector alone (tests and tools that hold a daemon's counters directly).
pub fn encode_one(collector: impl Collector) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    encode(&registry)
}

/// Writes metric families from a [`Collector::encode`]: a counter's name is given without
/// `_total` (the encoder adds it to the sample, as OpenMetrics wants).
#[derive(Debug)]
pub struct Families<'a> {
    enc: DescriptorEncoder<'a>,
}

impl<'a> Families<'a> {
    pub fn new(enc: DescriptorEncoder<'a>) -> Self {
        Self { enc }
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: impl CounterValue) -> fmt::Result {
        self.one(name, help, ConstCounter::new(value))
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl GaugeValue) -> fmt::Result {
        self.one(name, help, ConstGauge::new(value.encoded()))
    }

    /// A counter with one sample per label set: `keys` name the labels, each item gives their
    /// values in the same order.
    pub fn counters<'v, const N: usize, V: CounterValue>(
        &mut self,
        name: &str,
        help: &str,
        keys: [&'static str; N],
        items: impl IntoIterator<Item = ([&'v str; N], V)>,
    ) -> fmt::Result {
        self.family(
            name,
            help,
            keys,
            items.into_iter().map(|(l, v)| (l, ConstCounter::new(v))),
        )
    }

    /// A gauge with one sample per label set (see [`Families::counters`]).
    pub fn gauges<'v, const N: usize, V: GaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        keys: [&'static str; N],
        items: impl IntoIterator<Item = ([&'v str; N], V)>,
    ) -> fmt::Result {
        self.family(
            name,
            help,
            keys,
            items
                .into_iter()
                .map(|(l, v)| (l, ConstGauge::new(v.encoded()))),
        )
    }

    fn one<M: EncodeMetric + TypedMetric>(&mut self, name: &str, help: &str, m: M) -> fmt::Result {
        debug_assert!(!name.ends_with("_total"), "{name}: the encoder adds _total");
        m.encode(self.enc.encode_descriptor(name, help, None, M::TYPE)?)
    }

    fn family<'v, const N: usize, M: EncodeMetric + TypedMetric>(
        &mut self,
        name: &str,
        help: &str,
        keys: [&'static str; N],
        items: impl IntoIterator<Item = ([&'v str; N], M)>,
    ) -> fmt::Result {
        debug_assert!(!name.ends_with("_total"), "{name}: the encoder adds _total");
        let mut enc = self.enc.encode_descriptor(name, help, None, M::TYPE)?;
        for (values, m) in items {
            let labels: [(&str, Escaped<'_>); N] =
                std::array::from_fn(|i| (keys[i], Escaped(values[i])));
            m.encode(enc.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// What a counter may count (`u64`, or `f64` for seconds).
pub trait CounterValue: EncodeCounterValue + fmt::Debug + Send + Sync + 'static {}
impl<T: EncodeCounterValue + fmt::Debug + Send + Sync + 'static> CounterValue for T {}

/// What a gauge may hold. Unsigned values saturate at `i64::MAX`: prometheus-client refuses a
/// `u64::MAX` gauge with an error that would end the whole scrape (a "no limit" setting is
/// `u64::MAX`), and no size we report comes near 2^63.
pub trait GaugeValue {
    type Encoded: EncodeGaugeValue + fmt::Debug + Send + Sync + 'static;
    fn encoded(self) -> Self::Encoded;
}

impl GaugeValue for i64 {
    type Encoded = i64;
    fn encoded(self) -> i64 {
        self
    }
}

impl GaugeValue for f64 {
    type Encoded = f64;
    fn encoded(self) -> f64 {
        self
    }
}

impl GaugeValue for u64 {
    type Encoded = i64;
    fn encoded(self) -> i64 {
        i64::try_from(self).unwrap_or(i64::MAX)
    }
}

impl GaugeValue for usize {
    type Encoded = i64;
    fn encoded(self) -> i64 {
        i64::try_from(self).unwrap_or(i64::MAX)
    }
}

/// A label value escaped as the exposition format requires (backslash, double quote, newline):
/// prometheus-client writes label values as given, and ours include ids from config files and
/// from the network.
#[derive(Debug, Clone, Copy)]
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Sample;

    impl Collector for Sample {
        fn encode(&self, enc: DescriptorEncoder<'_>) -> fmt::Result {
            let mut f = Families::new(enc);
            f.counter("x_sent", "Sent.", 7u64)?;
            f.gauge("x_depth", "Depth.", 3i64)?;
            f.gauge("x_unlimited", "A u64::MAX setting.", u64::MAX)?;
            f.gauge("x_ratio", "Ratio.", 0.5f64)?;
            f.counters(
                "x_dropped",
                "Dropped, by site and kind.",
                ["site", "kind"],
                [(["a\"b\\c\nd", "alert"], 2u64), (["s2", "status"], 0)],
            )?;
            f.gauges(
                "x_empty",
                "No samples.",
                ["camera"],
                std::iter::empty::<([&str; 1], u64)>(),
            )
        }
    }

    #[test]
    fn families_encode_types_totals_labels_and_eof() {
        let text = encode_one(Sample);
        for line in [
            "# HELP x_sent Sent.\n# TYPE x_sent counter\nx_sent_total 7\n",
            "# TYPE x_depth gauge\nx_depth 3\n",
            "x_ratio 0.5\n",
            "x_unlimited 9223372036854775807\n",
            "x_dropped_total{site=\"a\\\"b\\\\c\\nd\",kind=\"alert\"} 2\n",
            "x_dropped_total{site=\"s2\",kind=\"status\"} 0\n",
            "# TYPE x_empty gauge\n",
        ] {
            assert!(text.contains(line), "{line:?} missing in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
