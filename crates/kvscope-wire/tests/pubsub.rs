//! The publisher and the subscriber over loopback TCP: batches arrive in
//! order with their sequence numbers, replay brings back what a late
//! subscriber missed, and a full queue drops and counts instead of waiting.
//! Every wait is bounded.

use kvscope_wire::{
    BlockHash, BlockStored, EventBatch, KvCacheEvent, Publisher, PublisherConfig, Subscriber, SubscriberConfig,
};
use std::time::Duration;

fn batch(i: u32) -> EventBatch {
    let stored = BlockStored {
        block_hashes: vec![BlockHash::Int(u64::from(i) << 40)],
        parent_block_hash: None,
        token_ids: vec![i, i + 1],
        block_size: 2,
        lora_id: None,
        medium: Some("CPU".into()),
        lora_name: None,
        group_idx: None,
    };
    EventBatch { ts: f64::from(i), events: vec![KvCacheEvent::BlockStored(stored)], data_parallel_rank: Some(0) }
}

fn publisher(replay: bool) -> Publisher {
    let mut config = PublisherConfig::new("tcp://127.0.0.1:0");
    config.replay_endpoint = replay.then(|| "tcp://127.0.0.1:0".to_string());
    config.topic = "kv".into();
    Publisher::start(config).expect("binds on loopback")
}

async fn subscriber(publisher: &Publisher) -> Subscriber {
    let mut config = SubscriberConfig::new(publisher.endpoint());
    config.replay_endpoint = publisher.replay_endpoint().map(str::to_owned);
    config.topic = "kv".into();
    Subscriber::connect(config).await.expect("connects")
}

/// PUB/SUB drops what is sent before the subscription reaches the
/// publisher; publish probes until one arrives (bounded).
async fn wait_until_subscribed(publisher: &Publisher, sub: &mut Subscriber) -> u64 {
    for i in 0..100 {
        publisher.publish(batch(i));
        if let Some(got) = sub.next(Duration::from_millis(100)).await.unwrap() {
            return got.seq;
        }
    }
    panic!("the subscriber never received a batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_arrive_in_order_with_their_contents() {
    let publisher = publisher(false);
    let mut sub = subscriber(&publisher).await;
    let first = wait_until_subscribed(&publisher, &mut sub).await;
    for i in 1000..1010 {
        assert!(publisher.publish(batch(i)));
    }
    let mut seqs = Vec::new();
    for i in 1000..1010 {
        let got = sub.next(Duration::from_secs(5)).await.unwrap().expect("a batch within 5 s");
        // Probes sent after the first arrival may still be in flight.
        if got.batch.ts < 1000.0 {
            continue;
        }
        assert_eq!(got.batch, batch(i));
        assert!(!got.replayed);
        seqs.push(got.seq);
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(seqs[0] > first);
    assert_eq!(sub.missed(), 0);
    assert_eq!(sub.malformed(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_returns_buffered_batches_from_the_asked_sequence_number() {
    let publisher = publisher(true);
    let mut sub = subscriber(&publisher).await;
    let first = wait_until_subscribed(&publisher, &mut sub).await;
    let replayed = sub.replay_from(0, first + 1).await.unwrap();
    assert_eq!(replayed.iter().map(|r| r.seq).collect::<Vec<_>>(), (0..=first).collect::<Vec<_>>());
    assert!(replayed.iter().all(|r| r.replayed));
    assert_eq!(replayed[0].batch, batch(0));
}

#[test]
fn a_full_queue_drops_and_counts_without_waiting() {
    let mut config = PublisherConfig::new("tcp://127.0.0.1:0");
    config.max_queue_size = 1;
    let publisher = Publisher::start(config).unwrap();
    let dropped = publisher.dropped_counter();
    let sent = (0..10_000).filter(|&i| publisher.publish(batch(i))).count() as u64;
    assert_eq!(sent + dropped.load(std::sync::atomic::Ordering::Relaxed), 10_000);
    assert!(sent >= 1);
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let first = publisher(false);
    let err = Publisher::start(PublisherConfig::new(first.endpoint())).err().expect("the port is taken");
    assert!(err.to_string().contains("cannot bind"), "{err}");
}
