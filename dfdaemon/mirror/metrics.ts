/** The mirror endpoint's Prometheus metrics. */
import { Counter, type Registry } from 'prom-client'

export const HTTP_REQUESTS_TOTAL = 'damselfly_dfdaemon_http_requests_total'

export type HttpRequestLabels = 'route' | 'method' | 'status'

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

export interface MirrorMetrics {
  /** Count one answered request; `route` is a fixed label (blobs, manifests, /v2/, ...), never a URL. */
  requestDone: (route: string, method: string, status: number) => void
}

/** Registers the metrics on `registry`, or reuses them when an app was built on it before. */
export function createMirrorMetrics (registry: Registry): MirrorMetrics {
  const existing = registry.getSingleMetric(HTTP_REQUESTS_TOTAL) as Counter<HttpRequestLabels> | undefined
  const requests = existing ?? new Counter<HttpRequestLabels>({
    name: HTTP_REQUESTS_TOTAL,
    help: 'HTTP requests answered by the dfdaemon registry mirror',
    labelNames: ['route', 'method', 'status'],
    registers: [registry]
  })
  return {
    requestDone (route, method, status) {
      requests.inc({ route, method: KNOWN_METHODS.has(method) ? method : 'OTHER', status: String(status) })
    }
  }
}
