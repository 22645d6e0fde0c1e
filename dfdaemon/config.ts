import { Type, type Static } from '@sinclair/typebox'
import { ByteSize } from '../shared/config.js'

export const DaemonConfigSchema = Type.Object({
  /** The supernode's HTTP address. */
  supernode: Type.String({ pattern: '^https?://' }),
  /** Mirror endpoint address (loopback by default: only this host's runtime talks to it). */
  host: Type.String({ minLength: 1 }),
  port: Type.Integer({ minimum: 0, maximum: 65535 }),
  /** Address other daemons reach this one on; defaults to `host`. */
  p2pHost: Type.Optional(Type.String({ minLength: 1 })),
  p2pPort: Type.Integer({ minimum: 0, maximum: 65535 }),
  /** Multiaddrs to announce instead of the listen address (NAT, containers). */
  announce: Type.Array(Type.String()),
  dataDir: Type.String({ minLength: 1 }),
  /** The registry behind un-prefixed requests (Docker's registry-mirrors). */
  upstream: Type.String({ pattern: '^https?://' }),
  /** Registry name → endpoint URL that serves it. */
  registryEndpoints: Type.Record(Type.String(), Type.String({ pattern: '^https?://' })),
  /** Registries reached over plain HTTP (loopback ones always are). */
  insecureRegistries: Type.Array(Type.String()),
  /** Piece requests in flight to the supernode at once, per blob. */
  supernodeInFlight: Type.Integer({ minimum: 1, maximum: 64 }),
  /** Piece requests in flight to one neighbour at once, per blob. */
  peerInFlight: Type.Integer({ minimum: 1, maximum: 64 }),
  /** Most neighbours per blob. */
  maxNeighbours: Type.Integer({ minimum: 1, maximum: 200 }),
  /** Upload bound in bytes per second over all peers (e.g. 12500000 or "100M"); none when unset. */
  uploadLimit: Type.Optional(ByteSize),
  /** Download bound in bytes per second over all sources; none when unset. */
  downloadLimit: Type.Optional(ByteSize),
  /** Most bytes the store may take (its complete and partial blobs); least recently used blobs are evicted. None when unset. */
  maxDisk: Type.Optional(ByteSize),
  /** Free space to keep on the filesystem holding dataDir; least recently used blobs are evicted to keep it. */
  minFreeDisk: Type.Optional(ByteSize),
  /** No piece for this long while pieces are missing: fetch what no other source has from the origin (back-to-source). */
  noProgressTimeoutMs: Type.Integer({ minimum: 1000, maximum: 600_000 }),
  /** Most pieces uploaded at once; more requests are told to try elsewhere. */
  maxUploads: Type.Integer({ minimum: 1, maximum: 1024 }),
  /** Extra DHT bootstrap peers (multiaddrs with /p2p/ ids), besides the supernode. */
  bootstrap: Type.Array(Type.String({ minLength: 1 })),
  /** Closed swarm: a libp2p PSK file (the same on every member). */
  swarmKeyFile: Type.Optional(Type.String({ minLength: 1 })),
  /** The supernode's peer id; absent: learned from its /api/v1/info once, then pinned in the data dir. */
  supernodePeerId: Type.Optional(Type.String({ minLength: 1 })),
  /** Client networks (CIDR) allowed to use the mirror besides loopback; empty: no allowlist. */
  allowClients: Type.Array(Type.String({ minLength: 1 })),
  /** Serve the mirror over HTTPS with this PEM certificate (with tlsKey). */
  tlsCert: Type.Optional(Type.String({ minLength: 1 })),
  tlsKey: Type.Optional(Type.String({ minLength: 1 })),
  /** YAML/JSON file `registries: { name: { username, password } }`: credentials for this node's own fetches when the client sent none. */
  credentialsFile: Type.Optional(Type.String({ minLength: 1 })),
  /** Docker's config.json (`auths`): credentials for this node's own fetches when the client sent none. */
  dockerConfig: Type.Optional(Type.String({ minLength: 1 })),
  /** Extra CA bundle (PEM) trusted for upstream HTTPS, besides the system CAs. */
  caFile: Type.Optional(Type.String({ minLength: 1 })),
  /** Do not verify upstream TLS certificates (explicit opt-in; logged as a warning). */
  insecureSkipVerify: Type.Optional(Type.Boolean()),
  /** A piece checked against its hash is served again without hashing for this long (0: hash every piece read from disk). */
  pieceRecheckMs: Type.Integer({ minimum: 0, maximum: 86_400_000 }),
  /** Fetch an image's config (up to 1 MiB) as soon as a GET of its manifest passes through the mirror. */
  prefetchConfigs: Type.Boolean(),
  logLevel: Type.Union([Type.Literal('trace'), Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn'), Type.Literal('error'), Type.Literal('silent')])
}, { additionalProperties: false })

export type DaemonConfig = Static<typeof DaemonConfigSchema>

export const DAEMON_DEFAULTS: Omit<DaemonConfig, 'supernode' | 'dataDir'> = {
  host: '127.0.0.1',
  port: 65001,
  p2pPort: 65002,
  announce: [],
  upstream: 'https://registry-1.docker.io',
  registryEndpoints: {},
  insecureRegistries: [],
  supernodeInFlight: 4,
  peerInFlight: 2,
  maxNeighbours: 10,
  maxUploads: 32,
  noProgressTimeoutMs: 15_000,
  bootstrap: [],
  allowClients: [],
  pieceRecheckMs: 60_000,
  prefetchConfigs: true,
  logLevel: 'info'
}
