//! kvscope's own seeded prompt generator: readable English-like prose about
//! everyday topics, so the model sees real text (real tokenization, real
//! attention patterns) and a run is reproducible from its seed.

/// A small, fast, seedable PRNG (splitmix64): the same seed gives the same
/// prompts on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// Exponentially distributed with the given rate (Poisson inter-arrivals).
    pub fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.unit()).ln() / rate
    }
}

const SUBJECTS: &[&str] = &[
    "The old harbour",
    "A young engineer",
    "The village baker",
    "Our research team",
    "The city council",
    "A travelling musician",
    "The night train",
    "The library on the hill",
    "A retired teacher",
    "The mountain guide",
    "The small bakery",
    "A curious student",
    "The river ferry",
    "The weather station",
    "A local farmer",
];
const VERBS: &[&str] = &[
    "noticed",
    "described",
    "remembered",
    "explained",
    "measured",
    "planned",
    "questioned",
    "repaired",
    "recorded",
    "compared",
    "celebrated",
    "studied",
    "organised",
    "announced",
    "carried",
];
const OBJECTS: &[&str] = &[
    "the morning fog over the valley",
    "a long list of careful notes",
    "the price of bread at the market",
    "the sound of bells across the square",
    "a map of the northern coast",
    "the timetable for the autumn festival",
    "the slow rhythm of the tides",
    "an unexpected letter from abroad",
    "the colours of the late summer fields",
    "a recipe for apple cake",
    "the path of the evening storm",
    "the number of boats in the bay",
    "a plan for the new bridge",
    "the history of the stone tower",
    "the results of the spring survey",
];
const ENDINGS: &[&str] = &[
    "before the sun went down.",
    "while everyone else was asleep.",
    "with great patience.",
    "as the first snow began to fall.",
    "for the people of the town.",
    "in a quiet voice.",
    "without saying a word to anyone.",
    "after a long day of work.",
    "because nobody else had time.",
    "and then wrote it all down.",
];
const QUESTIONS: &[&str] = &[
    "Summarise the passage above in three sentences.",
    "What happened first, and why?",
    "Write a short title for this story.",
    "Which detail matters most, and why?",
    "Continue the story with one more paragraph.",
];

/// One sentence of prose.
pub fn sentence(rng: &mut Rng) -> String {
    format!("{} {} {} {}", rng.pick(SUBJECTS), rng.pick(VERBS), rng.pick(OBJECTS), rng.pick(ENDINGS))
}

/// A passage of roughly `approx_words` words ending with a question.
pub fn passage(rng: &mut Rng, approx_words: usize) -> String {
    let mut text = String::new();
    let mut words = 0;
    while words < approx_words {
        let s = sentence(rng);
        words += s.split_whitespace().count();
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&s);
    }
    text.push_str("\n\n");
    let question: &&str = rng.pick(QUESTIONS);
    text.push_str(question);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_text() {
        assert_eq!(passage(&mut Rng::new(3), 50), passage(&mut Rng::new(3), 50));
        assert_ne!(passage(&mut Rng::new(3), 50), passage(&mut Rng::new(4), 50));
    }
}
