import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { BlobStore } from '../shared/store/blob-store.js'
import { createNode, loadOrCreateKey, type DamselflyNode } from '../shared/p2p/node.js'
import { PieceServer } from '../shared/p2p/piece-protocol.js'
import { RegistryClient } from '../shared/oci/registry-client.js'
import { createMetricsRegistry } from '../shared/metrics.js'
import { parseBytes } from '../shared/config.js'
import { RateLimiter } from '../shared/rate-limiter.js'
import type { DaemonConfig } from './config.js'
import { DaemonMetrics } from './metrics.js'
import { SupernodeClient } from './swarm/supernode-client.js'
import { BlobDownload } from './swarm/blob-download.js'
import { RarestFirstPolicy } from './swarm/piece-policy.js'
import { peerPieceSource } from './swarm/peer-source.js'
import { SwarmBlobProvider } from './swarm/swarm-blob-provider.js'
import { SwarmNetwork } from './swarm/swarm-network.js'
import { Seeder } from './swarm/seeder.js'
import { SwarmHandler } from './p2p/swarm-handler.js'
import { buildMirrorApp, type MirrorApp } from './mirror/app.js'
import { UpstreamResolver } from './mirror/upstream.js'
import { ManifestProxy } from './mirror/manifest-proxy.js'

export interface Daemon {
  start: () => Promise<void>
  stop: () => Promise<void>
  readonly node: DamselflyNode
  readonly app: MirrorApp
  readonly metrics: DaemonMetrics
  /** Base URL of the mirror once started. */
  readonly mirrorUrl: string
}

/** The composition root of a dfdaemon: builds every component and wires them together. */
export async function createDaemon (config: DaemonConfig, deps: { logger: Logger }): Promise<Daemon> {
  const logger = deps.logger
  const registry = createMetricsRegistry('damselfly_dfdaemon')
  const store = new BlobStore({ dir: join(config.dataDir, 'store'), logger })
  const node = await createNode({
    privateKey: await loadOrCreateKey(join(config.dataDir, 'peer.key')),
    host: config.p2pHost ?? config.host,
    port: config.p2pPort,
    announce: config.announce
  })
  const metrics = new DaemonMetrics(registry, { connections: () => node.getConnections().length })
  const supernode = new SupernodeClient({ libp2p: node, logger }, { url: config.supernode })
  const network = new SwarmNetwork({ libp2p: node, supernode, metrics, logger })
  const policy = new RarestFirstPolicy()
  const uploadLimit = parseBytes(config.uploadLimit)
  const downloadLimit = parseBytes(config.downloadLimit)
  const uploadLimiter = uploadLimit != null ? new RateLimiter(uploadLimit) : undefined
  const downloadLimiter = downloadLimit != null ? new RateLimiter(downloadLimit) : undefined

  const blobs: SwarmBlobProvider = new SwarmBlobProvider({
    store,
    metrics,
    logger,
    newDownload: (req) => new BlobDownload({
      store,
      metrics,
      logger,
      network,
      openTask: async (r) => await supernode.openTask({
        registry: r.registry,
        repository: r.repository,
        digest: r.digest.value,
        ...(r.authorization != null ? { authorization: r.authorization } : {})
      }),
      supernodeSource: (manifest, has) => {
        const peer = supernode.knownPeerId()
        if (peer == null) throw new Error('supernode identity unknown')
        return peerPieceSource(node, peer, manifest, has, { kind: 'supernode', maxInFlight: config.supernodeInFlight, downloadLimiter })
      },
      peerSource: (manifest, neighbour) => peerPieceSource(node, neighbour.peer, manifest, (i) => neighbour.bitfield.has(i), {
        kind: 'peer', maxInFlight: config.peerInFlight, downloadLimiter
      })
    }, { req, policy, maxNeighbours: config.maxNeighbours })
  })

  const pieceServer = new PieceServer({ libp2p: node, source: store, logger }, {
    onUpload: (bytes) => { metrics.uploadBytes.inc(bytes) },
    maxConcurrentUploads: config.maxUploads,
    uploadLimiter
  })
  const swarmHandler = new SwarmHandler({ libp2p: node, store, download: (d) => blobs.active(d), logger })
  const seeder = new Seeder({ store, network, logger })

  const client = new RegistryClient({ logger })
  const upstreams = new UpstreamResolver({
    upstream: config.upstream,
    registryEndpoints: config.registryEndpoints,
    insecureRegistries: config.insecureRegistries
  })
  const manifests = new ManifestProxy({ client, logger })
  let ready = false
  const app = buildMirrorApp({ logger, metrics: registry, blobs, manifests, upstreams, ready: () => ready })
  let mirrorUrl = ''

  /** Join the DHT through the supernode and any configured peers; failures are retried by the next pull. */
  const bootstrap = async (): Promise<void> => {
    const dials: Array<Promise<unknown>> = config.bootstrap.map(async (a) => await node.dial(multiaddr(a), { signal: AbortSignal.timeout(10_000) }))
    dials.push(supernode.peerId().then(async (peer) => await node.dial(peer, { signal: AbortSignal.timeout(10_000) })))
    const results = await Promise.allSettled(dials)
    for (const r of results) if (r.status === 'rejected') logger.warn({ err: (r.reason as Error).message }, 'bootstrap peer not reachable')
  }

  return {
    node,
    app,
    metrics,
    get mirrorUrl () { return mirrorUrl },
    async start () {
      await store.init()
      await node.start()
      await pieceServer.start()
      await swarmHandler.start()
      mirrorUrl = await app.listen({ host: config.host, port: config.port })
      ready = true
      logger.info({ mirror: mirrorUrl, peerId: node.peerId.toString(), p2p: node.getMultiaddrs().map(String) }, 'dfdaemon ready')
      void bootstrap()
      seeder.start()
    },
    async stop () {
      ready = false
      await seeder.stop()
      blobs.close()
      await app.close()
      await swarmHandler.stop()
      await pieceServer.stop()
      await node.stop()
      await client.close()
      await store.close()
    }
  }
}
