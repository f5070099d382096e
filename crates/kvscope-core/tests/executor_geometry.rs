//! An engine and its executor are built from one configuration: an
//! executor whose KV storage is laid out otherwise than the pool is
//! refused before any request runs, with a message that names the fix.

use kvscope_core::testing::PagedTokenExecutor;
use kvscope_core::{
    BlockManager, ConfigError, Engine, EngineConfig, KvBlockManager, KvGeometry, PoolConfig, SchedulerConfig, SimClock,
    DEFAULT_BLOCK_SIZE,
};

const VOCAB: u32 = 500;

fn config() -> EngineConfig {
    EngineConfig::new(
        SchedulerConfig::new(4, 64, 256),
        PoolConfig::new(12, DEFAULT_BLOCK_SIZE, 0, true),
        Some(VOCAB as usize),
    )
}

#[test]
fn an_executor_built_from_the_pool_is_accepted() {
    let config = config();
    let executor = PagedTokenExecutor::for_pool(&config.pool, VOCAB);
    assert!(Engine::new(config, executor, SimClock::new()).is_ok());
}

#[test]
fn an_executor_with_other_blocks_or_block_size_is_refused_naming_the_fix() {
    for (num_blocks, block_size) in [(13, DEFAULT_BLOCK_SIZE), (12, 8), (6, 32)] {
        let executor = PagedTokenExecutor::new(num_blocks, block_size, VOCAB);
        let Err(error) = Engine::new(config(), executor, SimClock::new()) else {
            panic!("{num_blocks} blocks of {block_size} accepted for a pool of 12 blocks of 16");
        };
        assert_eq!(
            error,
            ConfigError::ExecutorGeometry {
                executor: KvGeometry { num_blocks, block_size },
                pool: KvGeometry { num_blocks: 12, block_size: DEFAULT_BLOCK_SIZE },
            }
        );
        let message = error.to_string();
        assert!(message.contains(&format!("{num_blocks} blocks of {block_size} tokens")), "{message}");
        assert!(message.contains("12 blocks of 16 tokens"), "{message}");
        assert!(message.contains("build the executor from the engine configuration's pool"), "{message}");
    }
}

#[test]
fn a_plugged_in_manager_gets_the_same_geometry_check() {
    let config = config();
    let plugged: Box<dyn KvBlockManager> = Box::new(BlockManager::new(config.pool.clone()));
    let executor = PagedTokenExecutor::new(6, 32, VOCAB);
    let Err(error) = Engine::with_block_manager(config, plugged, executor, SimClock::new()) else {
        panic!("6 blocks of 32 accepted under a plug-in for a pool of 12 blocks of 16");
    };
    assert!(matches!(error, ConfigError::ExecutorGeometry { .. }), "{error}");
}
