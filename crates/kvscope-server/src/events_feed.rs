//! `/events`: the KV event stream, live. Each record is serialised exactly
//! as `events.jsonl` writes it and broadcast to every connected client.

use kvscope_core::{EventRecord, Observer};
use std::sync::Arc;
use tokio::sync::broadcast;

pub struct EventsFeed {
    tx: broadcast::Sender<Arc<str>>,
}

impl EventsFeed {
    pub fn new(tx: broadcast::Sender<Arc<str>>) -> Self {
        EventsFeed { tx }
    }
}

impl Observer for EventsFeed {
    fn on_event(&mut self, record: &EventRecord) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let line = serde_json::to_string(record).expect("events always serialise");
        let _ = self.tx.send(line.into());
    }
}
