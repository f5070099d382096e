//! kvscope's own seeded prompt generator: readable English-like prose about
//! everyday topics, so the model sees real text (real tokenization, real
//! attention patterns) and a run is reproducible from its seed.

/// The seeded generator: the same seed gives the same prompts everywhere.
pub use kvscope_core::rng::SplitMix64 as Rng;

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
