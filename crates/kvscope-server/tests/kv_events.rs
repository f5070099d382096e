//! `--kv-events-endpoint`: the server publishes its prefix cache as vLLM's
//! KV events, and kvscope-wire's subscriber reads them: stored blocks carry
//! the prompt's tokens in chain order, evictions come back as removals, and
//! the drop counter is on /metrics. Also: every name of the `kvscope:`
//! metric family is on the server's page. Every wait is bounded.

mod common;

use common::{config, start, CharModel, Client};
use kvscope_server::TextModel;
use kvscope_wire::{
    BlockHash, EngineFamily, KvCacheEvent, MetricsPage, PublisherConfig, Quantity, Received, Subscriber,
    SubscriberConfig,
};
use serde_json::json;
use std::time::Duration;

async fn complete(client: &Client, prompt: &str) {
    let body = json!({"prompt": prompt, "max_tokens": 1, "ignore_eos": true}).to_string();
    let (status, answer) = client.post("/v1/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
}

/// Every batch that arrives within `wait`.
async fn drain(sub: &mut Subscriber, wait: Duration) -> Vec<Received> {
    let mut got = Vec::new();
    while let Some(r) = sub.next(wait).await.unwrap() {
        got.push(r);
    }
    got
}

fn stored(batches: &[Received]) -> Vec<(Vec<u64>, Option<u64>, Vec<u32>)> {
    let mut out = Vec::new();
    for b in batches {
        for e in &b.batch.events {
            if let KvCacheEvent::BlockStored(s) = e {
                assert_eq!(s.block_size, 4);
                assert_eq!(s.medium.as_deref(), Some("CPU"));
                assert_eq!(s.token_ids.len(), 4 * s.block_hashes.len());
                let hashes = s.block_hashes.iter().map(BlockHash::as_u64).collect();
                out.push((hashes, s.parent_block_hash.as_ref().map(BlockHash::as_u64), s.token_ids.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefix_cache_is_published_as_vllm_kv_events() {
    let mut server_config = config(12, 4, 4, 8);
    let mut publisher = PublisherConfig::new("tcp://127.0.0.1:0");
    publisher.replay_endpoint = Some("tcp://127.0.0.1:0".into());
    server_config.kv_events = Some(publisher);
    let server = start(server_config, Duration::from_millis(0)).await;
    let client = Client::new(server.addr);
    let mut sub = Subscriber::connect(SubscriberConfig::new(server.kv_events_endpoint().unwrap())).await.unwrap();

    // PUB/SUB drops what is sent before the subscription arrives: warm up
    // with distinct prompts until one is heard (bounded).
    let mut heard = false;
    for i in 0..50 {
        complete(&client, &format!("warm{i:04}")).await;
        if !drain(&mut sub, Duration::from_millis(200)).await.is_empty() {
            heard = true;
            break;
        }
    }
    assert!(heard, "no KV event batch arrived");

    let prompt = "abcdefgh";
    complete(&client, prompt).await;
    let batches = drain(&mut sub, Duration::from_millis(500)).await;
    let want = CharModel.tokenize(prompt).unwrap();
    let stores = stored(&batches);
    let chain = stores.iter().find(|(_, _, tokens)| *tokens == want).expect("the prompt's two blocks in one event");
    assert_eq!(chain.0.len(), 2);
    assert_eq!(chain.1, None, "a prompt's first block has no parent");

    // The same prefix again is a hit: nothing new is stored for it.
    complete(&client, "abcdefgh!").await;
    let again = stored(&drain(&mut sub, Duration::from_millis(500)).await);
    assert!(again.iter().all(|(hashes, _, _)| !hashes.contains(&chain.0[0])), "{again:?}");

    // Distinct prompts fill the 12-block pool: cached blocks are evicted.
    let mut removed = Vec::new();
    for i in 0..12 {
        complete(&client, &format!("{i:02}zzzzzzyyyy")).await;
        for r in drain(&mut sub, Duration::from_millis(200)).await {
            for e in r.batch.events {
                if let KvCacheEvent::BlockRemoved(rm) = e {
                    removed.extend(rm.block_hashes.iter().map(BlockHash::as_u64));
                }
            }
        }
        if removed.contains(&chain.0[0]) {
            break;
        }
    }
    assert!(removed.contains(&chain.0[0]), "the prompt's first block was never reported evicted: {removed:?}");
    assert_eq!(sub.malformed(), 0);
    assert_eq!(client.metric("kvscope:kv_events_dropped_total").await, 0.0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kvscope_family_name_is_on_the_metrics_page() {
    let server = start(config(8, 4, 4, 8), Duration::from_millis(0)).await;
    let client = Client::new(server.addr);
    complete(&client, "abcdefgh").await;
    let page = MetricsPage::parse(&client.get_text("/metrics").await);
    assert_eq!(EngineFamily::detect(&page), Some(EngineFamily::Kvscope));
    for q in [
        Quantity::RunningRequests,
        Quantity::WaitingRequests,
        Quantity::KvUsage,
        Quantity::TotalBlocks,
        Quantity::BlockSize,
        Quantity::PrefixQueries,
        Quantity::PrefixHits,
        Quantity::Preemptions,
        Quantity::QueueTime,
        Quantity::PromptTokens,
        Quantity::GenerationTokens,
        Quantity::Evictions,
    ] {
        let source = kvscope_wire::metric_family::source(EngineFamily::Kvscope, q).expect("kvscope exports it");
        assert!(source.read(&page).is_some(), "{q:?}: {} not on the page", source.metric_name());
    }
    server.shutdown().await.unwrap();
}
