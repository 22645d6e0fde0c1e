import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import type { Logger } from 'pino'
import { BlobStore } from '../shared/store/blob-store.js'
import { storeMetricsHooks } from '../shared/store/store-metrics.js'
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
import { PieceClient } from '../shared/p2p/piece-client.js'
import { ConnectionLanes } from '../shared/p2p/connection-lanes.js'
import { SwarmBlobProvider } from './swarm/swarm-blob-provider.js'
import { OriginAccess } from './swarm/origin-source.js'
import { VerifiedPieces } from './swarm/verified-pieces.js'
import type { BlobRequest } from './blob-provider.js'
import { SwarmNetwork } from './swarm/swarm-network.js'
import { Seeder } from './swarm/seeder.js'
import { SwarmHandler } from './p2p/swarm-handler.js'
import { buildMirrorApp, type MirrorApp } from './mirror/app.js'
import { UpstreamResolver } from './mirror/upstream.js'
import { ManifestProxy } from './mirror/manifest-proxy.js'
import { ManifestCache } from './mirror/manifest-cache.js'
import { endpointFromUrl, resolveEndpoint, type RegistryEndpoint } from '../shared/oci/endpoints.js'
import { ANONYMOUS } from '../shared/oci/registry-types.js'
import { AccessChecker } from '../shared/security/access-check.js'
import { ClientAllowlist } from '../shared/security/client-allowlist.js'
import { loadSwarmKey } from '../shared/security/swarm-key.js'
import { readSecretFile, warnIfExposed } from '../shared/security/secret-file.js'
import { CredentialStore, withConfiguredCredentials } from '../shared/oci/credential-store.js'
import { loadUpstreamTls } from '../shared/oci/upstream-tls.js'
import { BlobVisibility } from '../shared/security/blob-visibility.js'
import { SupernodePin } from './security/supernode-pin.js'
import { TicketGuard } from './security/ticket-guard.js'
import { DfgetService } from './dfget/dfget-service.js'
import { UrlOrigin } from '../shared/http/url-origin.js'
import { manifestFromWire } from '../shared/pieces/piece-manifest.js'
import { DeniedError, UnavailableError, errorFromCode } from '../shared/errors.js'
import type { Digest } from '../shared/oci/digest.js'

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
  const store = new BlobStore({
    dir: join(config.dataDir, 'store'),
    logger,
    quota: { maxBytes: parseBytes(config.maxDisk), minFreeBytes: parseBytes(config.minFreeDisk) },
    hooks: storeMetricsHooks(registry, 'damselfly_dfdaemon')
  })
  const keyPath = join(config.dataDir, 'peer.key')
  const privateKey = await loadOrCreateKey(keyPath)
  warnIfExposed(keyPath, 'node key', logger)
  const node = await createNode({
    privateKey,
    host: config.p2pHost ?? config.host,
    port: config.p2pPort,
    announce: config.announce,
    psk: config.swarmKeyFile != null ? loadSwarmKey(config.swarmKeyFile, logger) : undefined
  })
  // security: the pinned supernode, which blobs are public, who may have a private one
  const pin = new SupernodePin({ path: join(config.dataDir, 'supernode.id'), configured: config.supernodePeerId, logger })
  const visibility = new BlobVisibility(join(config.dataDir, 'public'))
  const ticketGuard = new TicketGuard({
    isPrivate: (digest) => !visibility.isPublic(digest),
    supernodeKey: () => pin.expected()?.publicKey,
    logger
  })
  const allowClients = config.allowClients.length > 0 ? new ClientAllowlist(config.allowClients) : undefined
  const tls = config.tlsCert != null && config.tlsKey != null
    ? { cert: readSecretFile(config.tlsCert, 'TLS certificate', logger), key: readSecretFile(config.tlsKey, 'TLS key', logger) }
    : undefined
  const metrics = new DaemonMetrics(registry, { connections: () => node.getConnections().length })
  // piece bytes on connections of their own, so no message waits behind them
  const lanes = new ConnectionLanes({ libp2p: node, logger })
  const supernode = new SupernodeClient({ libp2p: node, logger, lanes }, { url: config.supernode, pin })
  // provider records wait while downloads run (blobs is created below; asked only later)
  const network = new SwarmNetwork({ libp2p: node, supernode, metrics, logger, lanes, busy: () => blobs.downloading() })
  const pieceClient = new PieceClient(node, { lanes })
  const policy = new RarestFirstPolicy()
  const uploadLimit = parseBytes(config.uploadLimit)
  const downloadLimit = parseBytes(config.downloadLimit)
  const uploadLimiter = uploadLimit != null ? new RateLimiter(uploadLimit) : undefined
  const downloadLimiter = downloadLimit != null ? new RateLimiter(downloadLimit) : undefined
  // every piece read from the store is checked before a peer or a client gets it
  const verifiedPieces = new VerifiedPieces({ store, metrics, logger }, { freshMs: config.pieceRecheckMs })

  const blobs: SwarmBlobProvider = new SwarmBlobProvider({
    store,
    pieces: verifiedPieces,
    metrics,
    logger,
    authorizeLocal: async (req, signal) => { await authorizeLocal(req, signal) },
    newDownload: (req) => urlPublic(req, new BlobDownload({
      store,
      metrics,
      logger,
      network,
      openTask: async (r) => await supernode.openTask({
        registry: r.registry,
        repository: r.repository,
        digest: r.digest.value,
        ...(r.authorization != null ? { authorization: r.authorization } : {}),
        ...(r.url != null ? { url: r.url } : {})
      }),
      onPieceVerified: (digest, index) => { verifiedPieces.vouch(digest, index) },
      onGrant: (digest, ticket) => {
        visibility.set(digest, ticket == null).catch(err => { logger.warn({ digest, err: (err as Error).message }, 'cannot record blob visibility') })
      },
      supernodeSource: (manifest, has) => {
        const peer = supernode.knownPeerId()
        if (peer == null) throw new Error('supernode identity unknown')
        return peerPieceSource(pieceClient, peer, manifest, has, { kind: 'supernode', maxInFlight: config.supernodeInFlight, downloadLimiter, ticket: () => blobs.active(manifest.digest.value)?.ticket })
      },
      peerSource: (manifest, neighbour) => peerPieceSource(pieceClient, neighbour.peer, manifest, (i) => neighbour.bitfield.has(i), {
        kind: 'peer', maxInFlight: config.peerInFlight, downloadLimiter, ticket: () => blobs.active(manifest.digest.value)?.ticket
      }),
      origin: originAccess
    }, { req, policy, maxNeighbours: config.maxNeighbours, noProgressTimeoutMs: config.noProgressTimeoutMs }))
  })
  /** A file fetched by URL and verified against its digest is public, whatever ticket it was fetched with. */
  const urlPublic = (req: BlobRequest, dl: BlobDownload): BlobDownload => {
    if (req.url != null) {
      dl.done.then(async () => { await visibility.set(req.digest.value, true) }, () => {}).catch(err => {
        logger.warn({ digest: req.digest.value, err: (err as Error).message }, 'cannot record blob visibility')
      })
    }
    return dl
  }

  const pieceServer = new PieceServer({ libp2p: node, source: verifiedPieces, logger, lanes }, {
    onUpload: (bytes) => { metrics.uploadBytes.inc(bytes) },
    maxConcurrentUploads: config.maxUploads,
    uploadLimiter,
    authorize: async (digest, peer, ticket) => { await ticketGuard.authorize(digest.value, peer, ticket) }
  })
  const swarmHandler = new SwarmHandler({
    libp2p: node,
    store,
    download: (d) => blobs.active(d),
    logger,
    authorize: async (digest, peer, ticket) => { await ticketGuard.authorize(digest, peer, ticket) }
  })
  const seeder = new Seeder({ store, network, logger })

  const client = new RegistryClient({ logger, tls: loadUpstreamTls({ caFile: config.caFile, insecureSkipVerify: config.insecureSkipVerify }, logger) })
  const credentials = CredentialStore.load({ credentialsFile: config.credentialsFile, dockerConfig: config.dockerConfig }, logger)
  const upstreams = new UpstreamResolver({
    upstream: config.upstream,
    registryEndpoints: config.registryEndpoints,
    insecureRegistries: config.insecureRegistries
  })
  const manifestCache = new ManifestCache({ dir: join(config.dataDir, 'manifests'), logger })
  const manifests = new ManifestProxy({ client, logger, cache: manifestCache })
  // a registry name → its endpoint, as the mirror resolves it (the default registry is --upstream)
  const defaultEndpoint = endpointFromUrl(config.upstream)
  const originEndpoint = (name: string): RegistryEndpoint => name === defaultEndpoint.name && config.registryEndpoints[name] == null
    ? defaultEndpoint
    : resolveEndpoint(name, { endpoints: config.registryEndpoints, insecure: config.insecureRegistries })
  // back-to-source: range requests to the origin with the client's own credentials
  // configured credentials stand in for an anonymous client's only once the origin has said that
  // anyone may have the blob (an anonymous HEAD with the raw client): they change who fetches
  // (rate limits), never what an anonymous client may pull through the mirror
  const originClient = credentials.size > 0
    ? withConfiguredCredentials(client, credentials, {
      beforeBlob: async (ep, repository, digest, signal) => {
        await localAccess.check({ registry: ep.name, repository, digest, credentials: ANONYMOUS }, signal)
      }
    })
    : client
  const originAccess = new OriginAccess({ client: originClient, resolveEndpoint: originEndpoint, downloadLimiter, urls: new UrlOrigin() })
  // a private blob held here (or being fetched for another client) goes to a client only with the origin's word
  const localAccess = new AccessChecker({
    client,
    resolveEndpoint: originEndpoint,
    logger
  })
  const authorizeLocal = async (req: BlobRequest, signal?: AbortSignal): Promise<void> => {
    if (visibility.isPublic(req.digest.value)) return
    // a URL is no proof of access to a private blob that happens to have the same digest; joining a URL fetch is fine
    if (req.url != null) {
      if (blobs.active(req.digest.value)?.req.url != null) return
      throw new DeniedError('this digest is held here as a private blob')
    }
    const credentials = req.authorization != null && req.authorization !== '' ? { kind: 'authorization' as const, header: req.authorization } : ANONYMOUS
    const seen = await localAccess.check({ registry: req.registry, repository: req.repository, digest: req.digest.value, credentials }, signal)
    if (seen === 'public') await visibility.set(req.digest.value, true)
  }
  // dfget without a digest: the supernode fetches the file once and names its digest in its first answer
  const resolveUrl = async (url: string, signal?: AbortSignal): Promise<Digest> => {
    const task = await supernode.openTask({ registry: 'dfget', repository: 'dfget', digest: '', url }, signal)
    try {
      for await (const a of task) {
        if (a.type === 'error') throw errorFromCode(a.code, a.message, a.challenge)
        if (a.type === 'manifest') return manifestFromWire(a.manifest).digest
      }
    } finally {
      task.close()
    }
    throw new UnavailableError('the supernode closed the task without naming the file\'s digest')
  }
  const dfget = new DfgetService({ blobs, resolve: resolveUrl })
  let ready = false
  const app = buildMirrorApp({
    dfget,
    logger,
    metrics: registry,
    blobs,
    manifests,
    upstreams,
    ready: () => ready,
    allowClients,
    tls,
    prefetchConfigs: config.prefetchConfigs,
    ping: async (endpoint, authorization, signal) => await client.ping(endpoint, {
      credentials: authorization != null && authorization !== '' ? { kind: 'authorization', header: authorization } : undefined,
      signal
    })
  })
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
      await manifestCache.init()
      await pin.init()
      await visibility.init()
      await node.start()
      await pieceServer.start()
      await swarmHandler.start()
      mirrorUrl = await app.listen({ host: config.host, port: config.port })
      ready = true
      if (allowClients == null && !isLoopback(config.host)) logger.warn({ host: config.host }, 'mirror listens beyond loopback without an allowlist (--allow-client): anyone who reaches it may pull through it')
      if (config.swarmKeyFile == null) logger.info('open swarm: no swarm key (--swarm-key)')
      logger.info({ mirror: mirrorUrl, peerId: node.peerId.toString(), p2p: node.getMultiaddrs().map(String) }, 'dfdaemon ready')
      void bootstrap()
      seeder.start()
    },
    async stop () {
      ready = false
      await seeder.stop()
      blobs.close()
      pieceClient.close()
      network.close()
      await app.close()
      await swarmHandler.stop()
      await pieceServer.stop()
      await node.stop()
      lanes.stop()
      await client.close()
      await manifestCache.flush()
      await store.close()
    }
  }
}

function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.')
}
