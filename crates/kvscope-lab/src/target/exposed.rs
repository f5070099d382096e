//! What the target actually exported. A quantity counts as exposed only
//! when its metric was on at least one page the lab read (the first
//! `/metrics` read, the poller's scrapes, the scrapes around each case),
//! never because the family's table (kvscope-wire `metric_family`) names
//! one: builds of one engine differ, and llama-server at llama.cpp
//! 0c1e570 has no `llamacpp:kv_cache_usage_ratio` although older builds
//! do. Everything not exposed is listed in the report with how it was
//! filled in or left blank.

use kvscope_wire::metric_family::source;
use kvscope_wire::{EngineFamily, MetricsPage, Quantity};
use serde::Serialize;

/// The quantities some page held, each with the metric it was found under
/// (as the report cites it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposed(Vec<(Quantity, String)>);

impl Exposed {
    pub fn of(family: EngineFamily, page: &MetricsPage) -> Exposed {
        Exposed(Quantity::ALL.into_iter().filter_map(|q| Some((q, source(family, q)?.found_on(page)?))).collect())
    }

    /// Adds what `other` held and this did not.
    pub fn merge(&mut self, other: &Exposed) {
        for (q, name) in &other.0 {
            if self.metric(*q).is_none() {
                self.0.push((*q, name.clone()));
            }
        }
    }

    /// The metric `q` was found under; `None`: no page held it.
    pub fn metric(&self, q: Quantity) -> Option<&str> {
        self.0.iter().find(|(x, _)| *x == q).map(|(_, name)| name.as_str())
    }
}

/// As a map from quantity to metric (target.json).
impl Serialize for Exposed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(q, name)| (format!("{q:?}"), name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_the_family_table_lists_but_the_page_lacks_is_not_exposed() {
        let page = MetricsPage::parse("llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\n");
        let mut seen = Exposed::of(EngineFamily::LlamaCpp, &page);
        assert_eq!(seen.metric(Quantity::RunningRequests), Some("llamacpp:requests_processing"));
        assert_eq!(seen.metric(Quantity::KvUsage), None, "listed in the table, absent from the page");
        let later = MetricsPage::parse("llamacpp:kv_cache_usage_ratio 0.5\n");
        seen.merge(&Exposed::of(EngineFamily::LlamaCpp, &later));
        assert_eq!(seen.metric(Quantity::KvUsage), Some("llamacpp:kv_cache_usage_ratio"), "one scrape is enough");
    }
}
