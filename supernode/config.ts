import { Type, type Static } from '@sinclair/typebox'
import { ByteSize } from '../shared/config.js'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

/** Everything the supernode is configured with: defaults, then a YAML/JSON file, then flags. */
export const SupernodeConfigSchema = Type.Object({
  /** HTTP API port (health, info, metrics). */
  port: Type.Integer({ minimum: 0, maximum: 65535 }),
  /** libp2p TCP port (task, piece and DHT protocols). */
  p2pPort: Type.Integer({ minimum: 0, maximum: 65535 }),
  /** Address both listeners bind: 127.0.0.1, ::1, 0.0.0.0, ::. */
  host: Type.String({ minLength: 1 }),
  /** Where the store and the node key live. */
  dataDir: Type.String({ minLength: 1 }),
  logLevel: Type.Union(LOG_LEVELS.map(l => Type.Literal(l))),
  /** Registry name → base URL of its API, e.g. { "docker.io": "https://mirror.example" }. */
  registryEndpoints: Type.Record(Type.String({ minLength: 1 }), Type.String({ pattern: '^https?://' })),
  /** Registry names (host or host:port) reached over plain HTTP. */
  insecureRegistries: Type.Array(Type.String({ minLength: 1 })),
  /** Upload bound in bytes per second over all daemons (e.g. "100M"); none when unset. */
  uploadLimit: Type.Optional(ByteSize),
  /** Most bytes the store may take (its complete and partial blobs); least recently used blobs are evicted. None when unset. */
  maxDisk: Type.Optional(ByteSize),
  /** Free space to keep on the filesystem holding dataDir; least recently used blobs are evicted to keep it. */
  minFreeDisk: Type.Optional(ByteSize),
  /**
   * dfget: URL prefixes (scheme://host[:port]/path) this supernode fetches for
   * swarm members, or "*" for any http(s) URL. Empty: URL tasks are refused.
   */
  allowUrls: Type.Array(Type.String({ minLength: 1 })),
  /**
   * Registries (host[:port] as clients name them, or *.domain) this supernode fetches
   * blobs from for swarm members. Empty or "*": any registry a member names.
   */
  allowRegistries: Type.Array(Type.String({ minLength: 1 })),
  /** Multiaddrs to announce to peers instead of the listen addresses. */
  announce: Type.Array(Type.String({ minLength: 1 })),
  /** Closed swarm: a libp2p PSK file (the same on every member). */
  swarmKeyFile: Type.Optional(Type.String({ minLength: 1 })),
  /** File holding the bearer token of the operator API (/api/v1/* but info). */
  apiTokenFile: Type.Optional(Type.String({ minLength: 1 })),
  /** Require the operator token for /metrics and /healthz as well. */
  protectMetrics: Type.Boolean(),
  /** Lifetime of a private blob's ticket, in seconds. */
  ticketTtl: Type.Integer({ minimum: 10, maximum: 86_400 }),
  /** How long an origin access decision is remembered, in seconds (refusals: at most 10). */
  accessCacheTtl: Type.Integer({ minimum: 1, maximum: 3600 }),
  /** YAML/JSON file `registries: { name: { username, password } }`: credentials for this node's own fetches when the client sent none. */
  credentialsFile: Type.Optional(Type.String({ minLength: 1 })),
  /** Docker's config.json (`auths`): credentials for this node's own fetches when the client sent none. */
  dockerConfig: Type.Optional(Type.String({ minLength: 1 })),
  /** Extra CA bundle (PEM) trusted for upstream HTTPS, besides the system CAs. */
  caFile: Type.Optional(Type.String({ minLength: 1 })),
  /** Do not verify upstream TLS certificates (explicit opt-in; logged as a warning). */
  insecureSkipVerify: Type.Optional(Type.Boolean())
}, { additionalProperties: false })

export type SupernodeConfig = Static<typeof SupernodeConfigSchema>

/** dataDir has no usable default: it must come from the file or --data-dir. */
export const SUPERNODE_DEFAULTS: SupernodeConfig = {
  port: 8002,
  p2pPort: 8003,
  host: '127.0.0.1',
  dataDir: '',
  logLevel: 'info',
  registryEndpoints: {},
  insecureRegistries: [],
  allowUrls: [],
  allowRegistries: [],
  announce: [],
  protectMetrics: false,
  ticketTtl: 900,
  accessCacheTtl: 60
}
