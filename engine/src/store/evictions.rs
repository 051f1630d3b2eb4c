//! The store's side of the layer cache (`Config::layer_cache`): its figures, and
//! evicting layer files on request or down to the budget (after a sync made more layers
//! evictable). The cache itself, and the invariants eviction keeps, are in
//! `layer::cache`.

use super::Store;
use crate::error::{EngineError, Result};
use crate::layer::{LayerCache, LayerCacheStats};

impl Store {
    /// What the layer cache holds and has done; `None` for a store without one.
    pub fn layer_cache_stats(&self) -> Option<LayerCacheStats> {
        self.inner.layer_cache.as_ref().map(|cache| cache.stats())
    }

    /// Evicts the least recently read layer files the cache's source holds until at most
    /// `bytes` of layer files are on local disk, or none left can go (not uploaded yet, or
    /// busy). Refused for a store without a layer cache.
    pub fn evict_layers_to(&self, bytes: u64) -> Result<LayerCacheStats> {
        let cache = self.layer_cache()?;
        cache.evict_down_to(bytes, None)?;
        Ok(cache.stats())
    }

    /// `evict_layers_to` the budget, when over it (nothing without a budget).
    pub fn evict_layers_over_budget(&self) -> Result<LayerCacheStats> {
        let cache = self.layer_cache()?;
        if cache.over_budget()
            && let Some(budget) = cache.stats().budget_bytes
        {
            cache.evict_down_to(budget, None)?;
        }
        Ok(cache.stats())
    }

    fn layer_cache(&self) -> Result<&LayerCache> {
        self.inner.layer_cache.as_deref().ok_or_else(|| {
            EngineError::InvalidConfig(
                "this store was opened without a layer cache: nothing can be evicted".to_owned(),
            )
        })
    }
}
