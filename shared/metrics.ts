import { Registry, collectDefaultMetrics } from 'prom-client'

/** A Prometheus registry of the process's own, with Node's default metrics under the given prefix. */
export function createMetricsRegistry (prefix: string): Registry {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: `${prefix}_` })
  return registry
}
