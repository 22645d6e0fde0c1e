import { Counter, Gauge, type Registry } from 'prom-client'
import type { StoreHooks } from './blob-store.js'

/**
 * The store's metrics under one side's prefix (`damselfly_dfdaemon`,
 * `damselfly_supernode`): `<prefix>_store_bytes` and `<prefix>_store_evictions_total`.
 */
export function storeMetricsHooks (registry: Registry, prefix: string): StoreHooks {
  const registers = [registry]
  const bytes = new Gauge({ name: `${prefix}_store_bytes`, help: 'Bytes of the store\'s own entries: complete blobs, and partial ones at their full size', registers })
  const evictions = new Counter({ name: `${prefix}_store_evictions_total`, help: 'Store entries evicted, by reason (quota, free-space)', labelNames: ['reason'] as const, registers })
  for (const reason of ['quota', 'free-space']) evictions.inc({ reason }, 0)
  return {
    usage: (n) => { bytes.set(n) },
    evicted: (e) => { evictions.inc({ reason: e.reason }) }
  }
}
