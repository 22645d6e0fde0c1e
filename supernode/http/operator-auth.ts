import type { FastifyInstance, FastifyRequest } from 'fastify'
import { bearerMatches } from '../../shared/security/api-token.js'
import { ociErrorBody } from '../../shared/errors.js'

export interface OperatorAuthOptions {
  /** The bearer token operators present; absent: the operator API is open. */
  token?: string
  /** Also require it for /metrics and /healthz. */
  protectMetrics?: boolean
}

/** Routes daemons need without a token: their way to learn and pin the supernode's identity. */
const OPEN_API = new Set(['/api/v1/info'])

function isProtected (req: FastifyRequest, opts: OperatorAuthOptions): boolean {
  const path = (req.raw.url ?? '/').split('?')[0]
  if (path.startsWith('/api/')) return !OPEN_API.has(path)
  // Dragonfly's preheat APIs, as Harbor's provider calls them
  if (path === '/preheats' || path.startsWith('/preheats/') || path.startsWith('/oapi/')) return true
  if (path === '/metrics' || path === '/healthz' || path === '/_ping') return opts.protectMetrics === true
  return false
}

/**
 * Operator endpoints (`/api/v1/*` but info, Dragonfly's `/preheats` and `/oapi/*`) need `Authorization: Bearer <token>`,
 * compared in constant time; a missing or wrong token is a 401 with a Bearer
 * challenge. Registered before the routes so no handler runs unauthenticated.
 */
export function registerOperatorAuth (app: FastifyInstance, opts: OperatorAuthOptions): void {
  const token = opts.token
  if (token == null) return
  app.addHook('onRequest', async (req, reply) => {
    if (!isProtected(req, opts)) return
    if (bearerMatches(req.headers.authorization, token)) return
    await reply.code(401).header('www-authenticate', 'Bearer realm="damselfly-supernode"').send(ociErrorBody('UNAUTHORIZED', 'operator token required'))
  })
}
