//! Stop strings over streamed text: text that might be the start of a stop
//! string is held back until it is known not to be one.

#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), pending: String::new() }
    }

    /// Adds text; returns what may be emitted, and whether a stop string
    /// matched (the stop string itself is never emitted).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        let keep = self.held_suffix_len();
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    /// The end of the stream: the held-back text was not a stop string.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Longest suffix of the pending text that begins some stop string.
    fn held_suffix_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for (i, _) in self.pending.char_indices() {
                let suffix = &self.pending[i..];
                if suffix.len() <= best {
                    break;
                }
                if stop.starts_with(suffix) {
                    best = suffix.len();
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_a_possible_stop_and_cuts_at_it() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("abcE"), ("abc".into(), false));
        assert_eq!(m.push("N"), (String::new(), false));
        assert_eq!(m.push("Dxyz"), (String::new(), true));
    }

    #[test]
    fn releases_held_text_that_was_not_a_stop() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("aE"), ("a".into(), false));
        assert_eq!(m.push("x"), ("Ex".into(), false));
        assert_eq!(m.push("EN"), (String::new(), false));
        assert_eq!(m.flush(), "EN");
    }

    #[test]
    fn earliest_stop_wins() {
        let mut m = StopMatcher::new(vec!["cd".into(), "b".into()]);
        assert_eq!(m.push("abcd"), ("a".into(), true));
    }
}
