import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { createMetricsRegistry } from '../shared/metrics.js'
import { BlobStore } from '../shared/store/blob-store.js'
import { createNode, loadOrCreateKey, type DamselflyNode } from '../shared/p2p/node.js'
import { PieceServer } from '../shared/p2p/piece-protocol.js'
import { SuperSeedPolicy } from './p2p/super-seed.js'
import { RateLimiter } from '../shared/rate-limiter.js'
import { parseBytes } from '../shared/config.js'
import { RegistryClient } from '../shared/oci/registry-client.js'
import { resolveEndpoint } from '../shared/oci/endpoints.js'
import type { SupernodeConfig } from './config.js'
import { createSupernodeMetrics } from './metrics.js'
import { OriginFetcher, type OriginClient } from './origin/origin-fetcher.js'
import { TaskHandler } from './p2p/task-handler.js'
import { TrackerState } from './tracker/tracker-state.js'
import { TrackerHandler } from './tracker/tracker-handler.js'
import { buildApp } from './http/app.js'

export interface SupernodeDeps {
  logger: Logger
  /** The origin registry client; a RegistryClient by default. */
  client?: OriginClient & { close?: () => Promise<void> }
}

export interface Supernode {
  start: () => Promise<void>
  stop: () => Promise<void>
  readonly peerId: string
  /** Addresses peers dial, each ending in /p2p/<peerId>; known after start(). */
  readonly multiaddrs: string[]
  /** `http://host:port` of the operator API; known after start(). */
  readonly httpAddress: string | undefined
  readonly metrics: Registry
  readonly node: DamselflyNode
}

/** Build the supernode from its config: store, libp2p node, origin fetcher, protocol handlers, HTTP API. */
export async function createSupernode (config: SupernodeConfig, deps: SupernodeDeps): Promise<Supernode> {
  const logger = deps.logger
  const log = logger.child({ component: 'supernode' })
  const metrics = createMetricsRegistry('damselfly_supernode')
  const counters = createSupernodeMetrics(metrics)
  const store = new BlobStore({ dir: join(config.dataDir, 'store'), logger })
  const node = await createNode({
    privateKey: await loadOrCreateKey(join(config.dataDir, 'peer.key')),
    host: config.host,
    port: config.p2pPort,
    announce: config.announce
  })
  const client = deps.client ?? new RegistryClient({ logger })
  const originFetcher = new OriginFetcher({
    store,
    client,
    resolveEndpoint: name => resolveEndpoint(name, { endpoints: config.registryEndpoints, insecure: config.insecureRegistries }),
    logger,
    metrics: counters
  })
  const taskHandler = new TaskHandler({ libp2p: node, originFetcher, logger })
  const trackerState = new TrackerState()
  const trackerHandler = new TrackerHandler({ libp2p: node, state: trackerState, logger, metrics: counters })
  const superSeed = new SuperSeedPolicy()
  const uploadLimit = parseBytes(config.uploadLimit)
  const pieceServer = new PieceServer({ libp2p: node, source: store, logger }, {
    onUpload: bytes => { counters.uploadBytes.inc(bytes) },
    uploadLimiter: uploadLimit != null ? new RateLimiter(uploadLimit) : undefined,
    admit: (digest, index, peer) => {
      const ok = superSeed.admit(digest, index, peer)
      if (!ok) counters.superSeedRefusals.inc()
      return ok
    }
  })
  const multiaddrs = (): string[] => node.getMultiaddrs().map(ma => ma.toString())
  let ready = false
  let httpAddress: string | undefined
  const app = buildApp({
    logger,
    metrics,
    info: () => ({ peerId: node.peerId.toString(), multiaddrs: multiaddrs() }),
    ready: () => ready
  })

  return {
    peerId: node.peerId.toString(),
    get multiaddrs () { return multiaddrs() },
    get httpAddress () { return httpAddress },
    metrics,
    node,

    async start () {
      await store.init()
      await node.start()
      await taskHandler.start()
      await trackerHandler.start()
      await pieceServer.start()
      await app.listen({ host: config.host, port: config.port })
      const addr = app.server.address() as AddressInfo
      httpAddress = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`
      ready = true
      log.info({ peerId: node.peerId.toString(), multiaddrs: multiaddrs(), http: httpAddress }, 'supernode started')
    },

    async stop () {
      ready = false
      await app.close()
      await taskHandler.stop().catch(err => { log.warn({ err }, 'task handler stop failed') })
      await trackerHandler.stop().catch(err => { log.warn({ err }, 'tracker handler stop failed') })
      await pieceServer.stop().catch(err => { log.warn({ err }, 'piece server stop failed') })
      await originFetcher.stop()
      await node.stop()
      await client.close?.()
      await store.close()
      log.info('supernode stopped')
    }
  }
}
