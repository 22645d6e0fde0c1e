/**
 * The dfdaemon's registry mirror: the pull side of the OCI distribution API that container
 * runtimes are pointed at. `buildMirrorApp` wires routes, hooks and the one error handler and
 * returns the instance; the entry point decides where it listens.
 */
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { fastify, LogController, type FastifyInstance, type FastifyRequest, type RawReplyDefaultExpression, type RawRequestDefaultExpression, type RawServerDefault } from 'fastify'
import { Type } from '@sinclair/typebox'
import type { Registry } from 'prom-client'
import type { Logger } from '../../shared/logging.js'
import { parseDigest } from '../../shared/oci/digest.js'
import type { BlobProvider } from '../blob-provider.js'
import type { ClientAllowlist } from '../../shared/security/client-allowlist.js'
import { DeniedError, UnauthorizedError } from '../../shared/errors.js'
import { serveBlob } from './blob-route.js'
import { MethodNotAllowedError, RouteNotFoundError } from './errors.js'
import { API_VERSION, API_VERSION_HEADER, clientErrorHandler, isV2Url, sendError } from './http-errors.js'
import type { ManifestSource } from './manifest-proxy.js'
import { serveManifest } from './manifest-route.js'
import { ConfigPrefetcher } from './config-prefetch.js'
import { createMirrorMetrics } from './metrics.js'
import type { UpstreamQuery, ResolvedUpstream } from './upstream.js'
import { checkUrlLength, parseV2Path } from './v2-path.js'
import type { DfgetService } from '../dfget/dfget-service.js'
import { registerDfgetRoute } from '../dfget/dfget-route.js'

/** What the app needs from upstream resolution; UpstreamResolver is the real one. */
export interface UpstreamSource {
  resolve: (query: UpstreamQuery) => ResolvedUpstream
}

export interface MirrorAppOptions {
  logger: Logger
  /** The process's Prometheus registry, served on /metrics. */
  metrics: Registry
  blobs: BlobProvider
  /** Usually a ManifestProxy. */
  manifests: ManifestSource
  /** Usually an UpstreamResolver. */
  upstreams: UpstreamSource
  /** /healthz answers 200 once this returns true (default: always ready). */
  ready?: () => boolean
  /** Client networks allowed besides loopback; others get 403 DENIED. Absent: anyone who reaches the port. */
  allowClients?: ClientAllowlist
  /** Serve HTTPS with this PEM certificate and key. */
  tls?: { cert: Buffer, key: Buffer }
  /**
   * Ask the upstream's `/v2/` with the client's Authorization: its 401 and
   * challenge are passed on, so clients that authenticate only when the ping
   * asks them to (skopeo, podman, docker) send their credentials. Absent, or
   * the upstream unreachable: 200.
   */
  ping?: (endpoint: ResolvedUpstream['endpoint'], authorization: string | undefined, signal: AbortSignal) => Promise<{ status: number, challenge?: string }>
  /** `GET /dfget` for local clients (the dfget CLI); absent: no such route. */
  dfget?: DfgetService
  /** Fetch an image's config as soon as its manifest is served (default true). */
  prefetchConfigs?: boolean
}

const READ_METHODS = new Set(['GET', 'HEAD'])
/** The mirror takes no request bodies; anything bigger than this is refused before it is read. */
const BODY_LIMIT = 1024

const V2Query = Type.Object({ ns: Type.Optional(Type.String({ maxLength: 255 })) })
const EmptyObject = Type.Object({}, { additionalProperties: false })
const Health = Type.Object({ status: Type.String() })

/** The mirror's fastify instance (its logger is the process's pino logger). */
export type MirrorApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, Logger>

export function buildMirrorApp (options: MirrorAppOptions): MirrorApp {
  const log = options.logger.child({ component: 'mirror' })
  const ready = options.ready ?? (() => true)
  const metrics = createMirrorMetrics(options.metrics)
  const routeLabels = new WeakMap<FastifyRequest, string>()
  const prefetcher = options.prefetchConfigs !== false ? new ConfigPrefetcher({ blobs: options.blobs, logger: options.logger }) : undefined

  const app = fastify({
    loggerInstance: log,
    // Per-request lines would be one per blob and manifest; errors are logged by sendError.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT,
    return503OnClosing: true,
    clientErrorHandler,
    frameworkErrors: (err, request, reply) => { sendError(err, request, reply, log) },
    ...(options.tls != null ? { serverFactory: httpsFactory(options.tls) } : {})
  })

  const allow = options.allowClients
  if (allow != null) {
    // first hook: a client outside the allowlist learns nothing, not even which routes exist
    app.addHook('onRequest', async (request) => {
      if (!allow.allows(request.socket.remoteAddress)) {
        routeLabels.set(request, 'denied')
        log.info({ client: request.socket.remoteAddress }, 'client not in the allowlist')
        throw new DeniedError('client address not allowed')
      }
    })
  }

  app.addHook('onRequest', async (request, reply) => {
    checkUrlLength(request.raw.url ?? '')
    if (isV2Url(request.raw.url)) {
      reply.header(API_VERSION_HEADER, API_VERSION)
      if (!READ_METHODS.has(request.method)) {
        routeLabels.set(request, 'v2')
        throw new MethodNotAllowedError()
      }
    }
  })
  app.addHook('onResponse', async (request, reply) => {
    const route = routeLabels.get(request) ?? request.routeOptions.url ?? 'unmatched'
    metrics.requestDone(route, request.method, reply.statusCode)
  })
  app.setErrorHandler((err, request, reply) => sendError(err, request, reply, log))
  app.setNotFoundHandler(async (request) => {
    routeLabels.set(request, 'unmatched')
    throw new RouteNotFoundError()
  })

  const ping = options.ping
  for (const url of ['/v2', '/v2/']) {
    app.route<{ Querystring: { ns?: string } }>({
      method: ['GET', 'HEAD'],
      url,
      schema: { querystring: V2Query, response: { 200: EmptyObject } },
      handler: async (request) => {
        if (ping == null) return {}
        let answer: { status: number, challenge?: string }
        try {
          const { endpoint } = options.upstreams.resolve({ name: 'ping', ...(request.query.ns !== undefined ? { ns: request.query.ns } : {}) })
          answer = await ping(endpoint, request.headers.authorization, AbortSignal.timeout(10_000))
        } catch (err) {
          log.debug({ err: { name: (err as Error).name, message: (err as Error).message } }, 'upstream ping failed; answering it ourselves')
          return {}
        }
        if (answer.status !== 401) return {}
        throw new UnauthorizedError('authentication required', answer.challenge)
      }
    })
  }

  app.route<{ Querystring: { ns?: string } }>({
    method: ['GET', 'HEAD'],
    url: '/v2/*',
    schema: { querystring: V2Query },
    handler: async (request, reply) => {
      const path = parseV2Path(request.raw.url ?? '')
      if (path === undefined) throw new RouteNotFoundError()
      routeLabels.set(request, path.kind)
      const upstream = options.upstreams.resolve(request.query.ns !== undefined ? { name: path.name, ns: request.query.ns } : { name: path.name })
      const authorization = request.headers.authorization
      const signal = clientGone(reply.raw)
      if (path.kind === 'blobs') {
        return await serveBlob(options.blobs, {
          registry: upstream.registry,
          repository: upstream.repository,
          digest: parseDigest(path.reference),
          ...(authorization !== undefined ? { authorization } : {})
        }, request, reply, signal)
      }
      return await serveManifest(options.manifests, {
        endpoint: upstream.endpoint,
        repository: upstream.repository,
        reference: path.reference,
        ...(authorization !== undefined ? { authorization } : {})
      }, request, reply, signal, prefetcher === undefined
        ? undefined
        : (bytes, contentType) => {
            prefetcher.manifestServed(bytes, contentType, { registry: upstream.registry, repository: upstream.repository, ...(authorization !== undefined ? { authorization } : {}) })
          })
    }
  })

  if (options.dfget != null) registerDfgetRoute(app as unknown as FastifyInstance, options.dfget)

  app.get('/healthz', { schema: { response: { 200: Health, 503: Health } } }, async (_request, reply) => {
    if (ready()) return { status: 'ok' }
    return await reply.code(503).send({ status: 'starting' })
  })

  app.get('/metrics', async (_request, reply) => {
    const text = await options.metrics.metrics()
    return await reply.type(options.metrics.contentType).send(text)
  })

  return app
}

/** fastify's server factory for HTTPS (fastify types its instance as an http.Server; https.Server serves the same requests). */
function httpsFactory (tls: { cert: Buffer, key: Buffer }): (handler: RequestListener) => Server {
  return (handler) => createHttpsServer({ cert: tls.cert, key: tls.key }, handler) as unknown as Server
}

/** An AbortSignal that fires when the client goes away before its response was finished. */
function clientGone (res: ServerResponse<IncomingMessage>): AbortSignal {
  const controller = new AbortController()
  res.once('close', () => {
    if (!res.writableFinished) controller.abort(new Error('client closed the connection'))
  })
  return controller.signal
}
