import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { createMetricsRegistry } from '../shared/metrics.js'
import { BlobStore } from '../shared/store/blob-store.js'
import { storeMetricsHooks } from '../shared/store/store-metrics.js'
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
import { UrlResolver } from './origin/url-resolver.js'
import { UrlAccess } from './auth/url-access.js'
import { UrlOrigin } from '../shared/http/url-origin.js'
import { UrlAllowlist } from '../shared/security/url-allowlist.js'
import { RegistryAllowlist } from '../shared/security/registry-allowlist.js'
import { PreheatManager } from './preheat/preheat-manager.js'
import type { ManifestClient } from './preheat/image-blobs.js'
import { TrackerState } from './tracker/tracker-state.js'
import { TrackerHandler } from './tracker/tracker-handler.js'
import { buildApp } from './http/app.js'
import { AccessChecker, type AccessClient } from '../shared/security/access-check.js'
import { BlobAccess } from './auth/blob-access.js'
import { BlobVisibility } from '../shared/security/blob-visibility.js'
import { loadSwarmKey } from '../shared/security/swarm-key.js'
import { readTokenFile, warnIfExposed } from '../shared/security/secret-file.js'
import { CredentialStore, withConfiguredCredentials } from '../shared/oci/credential-store.js'
import { loadUpstreamTls } from '../shared/oci/upstream-tls.js'

/** Connections the supernode keeps open: two per daemon (ConnectionLanes), for a couple of thousand hosts. */
const MAX_CONNECTIONS = 4096

export interface SupernodeDeps {
  logger: Logger
  /** The origin registry client; a RegistryClient by default. */
  client?: OriginClient & { close?: () => Promise<void> }
  /** Who answers the access checks when `client` is not a RegistryClient (tests). */
  accessClient?: AccessClient
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
  // dfget: only URLs (and redirect hops) on the operator's list are fetched; a bad pattern is a ConfigError, before anything starts
  const allowUrls = new UrlAllowlist(config.allowUrls)
  const allowRegistries = new RegistryAllowlist(config.allowRegistries)
  const metrics = createMetricsRegistry('damselfly_supernode')
  const counters = createSupernodeMetrics(metrics)
  const store = new BlobStore({
    dir: join(config.dataDir, 'store'),
    logger,
    quota: { maxBytes: parseBytes(config.maxDisk), minFreeBytes: parseBytes(config.minFreeDisk) },
    hooks: storeMetricsHooks(metrics, 'damselfly_supernode')
  })
  const keyPath = join(config.dataDir, 'peer.key')
  const privateKey = await loadOrCreateKey(keyPath)
  warnIfExposed(keyPath, 'node key', logger)
  const apiToken = config.apiTokenFile != null ? readTokenFile(config.apiTokenFile, logger) : undefined
  const node = await createNode({
    privateKey,
    host: config.host,
    port: config.p2pPort,
    announce: config.announce,
    // every daemon keeps two connections here (messages, and its piece streams:
    // ConnectionLanes); libp2p would prune beyond its default of 300
    maxConnections: MAX_CONNECTIONS,
    psk: config.swarmKeyFile != null ? loadSwarmKey(config.swarmKeyFile, logger) : undefined
  })
  const client = deps.client ?? new RegistryClient({ logger, tls: loadUpstreamTls({ caFile: config.caFile, insecureSkipVerify: config.insecureSkipVerify }, logger) })
  // configured credentials serve the supernode's own fetches (origin fetch, preheat) for requests
  // without any; the access checks below keep the raw client, so they never grant a client a blob
  const credentials = CredentialStore.load({ credentialsFile: config.credentialsFile, dockerConfig: config.dockerConfig }, logger)
  const ownClient = credentials.size > 0 ? withConfiguredCredentials(client, credentials) : client
  const urls = new UrlOrigin({ policy: allowUrls })
  const resolve = (name: string): ReturnType<typeof resolveEndpoint> => resolveEndpoint(name, { endpoints: config.registryEndpoints, insecure: config.insecureRegistries })
  const visibility = new BlobVisibility(join(config.dataDir, 'public'))
  const blobAccess = new BlobAccess({
    visibility,
    access: new AccessChecker({ client: accessClientOf((deps.accessClient ?? client) as Partial<AccessClient>), resolveEndpoint: resolve, logger }, { ttlMs: config.accessCacheTtl * 1000 }),
    privateKey,
    logger
  }, { ticketTtlMs: config.ticketTtl * 1000 })
  const originFetcher = new OriginFetcher({
    store,
    client: ownClient,
    resolveEndpoint: name => resolveEndpoint(name, { endpoints: config.registryEndpoints, insecure: config.insecureRegistries }),
    logger,
    metrics: counters,
    urls
  })
  // dfget: any HTTP(S) file, fetched once here and shared like a layer
  const urlResolver = new UrlResolver({
    urls,
    store,
    tmpDir: join(config.dataDir, 'dfget-tmp'),
    logger,
    metrics: counters,
    onPublic: async (digest) => { await visibility.set(digest, true) }
  })
  const urlAccess = new UrlAccess({ visibility, store, running: () => originFetcher.running(), tickets: blobAccess, urls: allowUrls })
  // preheat resolves manifests: only with a client that can fetch them (a RegistryClient)
  const manifestClient = typeof (ownClient as Partial<ManifestClient>).getManifest === 'function' ? ownClient as unknown as ManifestClient : undefined
  const preheat = manifestClient != null ? new PreheatManager({ fetcher: originFetcher, client: manifestClient, resolveEndpoint: resolve, registries: allowRegistries, logger }) : undefined
  const taskHandler = new TaskHandler({ libp2p: node, originFetcher, logger, access: blobAccess, registries: allowRegistries, metrics: counters, urls: { resolver: urlResolver, access: urlAccess } })
  const trackerState = new TrackerState()
  const trackerHandler = new TrackerHandler({ libp2p: node, state: trackerState, logger, metrics: counters })
  const superSeed = new SuperSeedPolicy({ isPresent: (peer) => node.getConnections().some(c => c.remotePeer.toString() === peer) })
  const uploadLimit = parseBytes(config.uploadLimit)
  const pieceServer = new PieceServer({ libp2p: node, source: store, logger }, {
    onUpload: bytes => { counters.uploadBytes.inc(bytes) },
    uploadLimiter: uploadLimit != null ? new RateLimiter(uploadLimit) : undefined,
    authorize: async (digest, peer, ticket) => { await blobAccess.authorizePiece(digest, peer, ticket) },
    admit: async (digest, index, peer) => {
      // only a blob's first piece can be its only one: no manifest lookup on the way to any other
      const pieces = index === 0 ? (await store.getManifest(digest))?.pieces.length : undefined
      const ok = superSeed.admit(digest, index, peer, pieces)
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
    ready: () => ready,
    tasks: async () => {
      const fetching = originFetcher.running()
      const stored = (await store.listComplete()).map(d => d.value).filter(d => !fetching.includes(d))
      return { tasks: [...fetching.map(digest => ({ digest, state: 'fetching' as const })), ...stored.map(digest => ({ digest, state: 'stored' as const }))] }
    },
    peers: () => ({ peers: trackerState.peerList() }),
    apiToken,
    protectMetrics: config.protectMetrics,
    preheat
  })

  return {
    peerId: node.peerId.toString(),
    get multiaddrs () { return multiaddrs() },
    get httpAddress () { return httpAddress },
    metrics,
    node,

    async start () {
      await store.init()
      await visibility.init()
      await node.start()
      await taskHandler.start()
      await trackerHandler.start()
      await pieceServer.start()
      await app.listen({ host: config.host, port: config.port })
      const addr = app.server.address() as AddressInfo
      httpAddress = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`
      ready = true
      if (apiToken == null && !isLoopback(config.host)) log.warn({ host: config.host }, 'operator API has no token (--api-token-file): anyone who reaches it may use it')
      if (config.swarmKeyFile == null && !isLoopback(config.host)) log.warn({ host: config.host }, 'open swarm: any process that reaches the p2p port may join (--swarm-key)')
      if (allowUrls.any) log.warn('dfget: --allow-url \'*\': this supernode fetches any http(s) URL a swarm member names, internal addresses included')
      else log.info({ allowUrls: allowUrls.patterns }, allowUrls.empty ? 'dfget: URL tasks are refused (no --allow-url)' : 'dfget: URLs fetched only under these prefixes')
      if (allowRegistries.any) log.info('layers fetched from any registry a swarm member names (--allow-registry limits them)')
      else log.info({ allowRegistries: allowRegistries.patterns }, 'layers fetched only from these registries')
      log.info({ peerId: node.peerId.toString(), multiaddrs: multiaddrs(), http: httpAddress }, 'supernode started')
    },

    async stop () {
      ready = false
      await app.close()
      await taskHandler.stop().catch(err => { log.warn({ err }, 'task handler stop failed') })
      await trackerHandler.stop().catch(err => { log.warn({ err }, 'tracker handler stop failed') })
      await pieceServer.stop().catch(err => { log.warn({ err }, 'piece server stop failed') })
      await preheat?.stop()
      await urlResolver.stop()
      await originFetcher.stop()
      await node.stop()
      await client.close?.()
      await store.close()
      log.info('supernode stopped')
    }
  }
}

function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.')
}

/** The access checks need `headBlob`; a supernode that cannot check access must not start. */
function accessClientOf (client: Partial<AccessClient>): AccessClient {
  if (typeof client.headBlob !== 'function') throw new Error('the origin client cannot HEAD blobs: pass deps.accessClient')
  return client as AccessClient
}
