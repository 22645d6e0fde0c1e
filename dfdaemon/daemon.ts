import { join } from 'node:path'
import type { Logger } from 'pino'
import { BlobStore } from '../shared/store/blob-store.js'
import { createNode, loadOrCreateKey, type DamselflyNode } from '../shared/p2p/node.js'
import { PieceServer } from '../shared/p2p/piece-protocol.js'
import { RegistryClient } from '../shared/oci/registry-client.js'
import { createMetricsRegistry } from '../shared/metrics.js'
import type { DaemonConfig } from './config.js'
import { DaemonMetrics } from './metrics.js'
import { SupernodeClient } from './swarm/supernode-client.js'
import { BlobDownload } from './swarm/blob-download.js'
import { RarestFirstPolicy } from './swarm/piece-policy.js'
import { peerPieceSource } from './swarm/peer-source.js'
import { SwarmBlobProvider } from './swarm/swarm-blob-provider.js'
import { buildMirrorApp, type MirrorApp } from './mirror/app.js'
import { UpstreamResolver } from './mirror/upstream.js'
import { ManifestProxy } from './mirror/manifest-proxy.js'

export interface Daemon {
  start: () => Promise<void>
  stop: () => Promise<void>
  readonly node: DamselflyNode
  readonly app: MirrorApp
  /** Base URL of the mirror once started. */
  readonly mirrorUrl: string
}

/** The composition root of a dfdaemon: builds every component and wires them together. */
export async function createDaemon (config: DaemonConfig, deps: { logger: Logger }): Promise<Daemon> {
  const logger = deps.logger
  const registry = createMetricsRegistry('damselfly_dfdaemon')
  const metrics = new DaemonMetrics(registry)
  const store = new BlobStore({ dir: join(config.dataDir, 'store'), logger })
  const node = await createNode({
    privateKey: await loadOrCreateKey(join(config.dataDir, 'peer.key')),
    host: config.p2pHost ?? config.host,
    port: config.p2pPort,
    announce: config.announce
  })
  const supernode = new SupernodeClient({ libp2p: node, logger }, { url: config.supernode })
  const policy = new RarestFirstPolicy()

  const blobs = new SwarmBlobProvider({
    store,
    metrics,
    logger,
    newDownload: (req) => new BlobDownload({
      store,
      metrics,
      logger,
      openTask: async (r) => await supernode.openTask({
        registry: r.registry,
        repository: r.repository,
        digest: r.digest.value,
        ...(r.authorization != null ? { authorization: r.authorization } : {})
      }),
      supernodeSource: (manifest, has) => {
        const peer = supernode.knownPeerId()
        if (peer == null) throw new Error('supernode identity unknown')
        return peerPieceSource(node, peer, manifest, has, { kind: 'supernode', maxInFlight: config.supernodeInFlight })
      }
    }, { req, policy })
  })

  const pieceServer = new PieceServer({ libp2p: node, source: store, logger }, {
    onUpload: (bytes) => { metrics.uploadBytes.inc(bytes) }
  })

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

  return {
    node,
    app,
    get mirrorUrl () { return mirrorUrl },
    async start () {
      await store.init()
      await node.start()
      await pieceServer.start()
      mirrorUrl = await app.listen({ host: config.host, port: config.port })
      ready = true
      logger.info({ mirror: mirrorUrl, peerId: node.peerId.toString(), p2p: node.getMultiaddrs().map(String) }, 'dfdaemon ready')
      // learn the supernode early; a failure here is retried on the first pull
      supernode.peerId().catch((err: Error) => { logger.warn({ err: err.message }, 'supernode not reachable yet') })
    },
    async stop () {
      ready = false
      blobs.close()
      await app.close()
      await pieceServer.stop()
      await node.stop()
      await store.close()
    }
  }
}
