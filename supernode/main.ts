#!/usr/bin/env node
import '../shared/polyfill.js'
import { Command, Option } from 'commander'
import { loadConfig } from '../shared/config.js'
import { ConfigError } from '../shared/errors.js'
import { createLogger } from '../shared/logging.js'
import { SUPERNODE_DEFAULTS, SupernodeConfigSchema, LOG_LEVELS, type SupernodeConfig } from './config.js'
import { createSupernode, type Supernode } from './supernode.js'

interface Flags {
  port?: string
  p2pPort?: string
  dataDir?: string
  host?: string
  config?: string
  logLevel?: string
  registryEndpoint?: string[]
  insecureRegistry?: string[]
  allowUrl?: string[]
  allowRegistry?: string[]
  announce?: string[]
  uploadLimit?: string
  maxDisk?: string
  minFreeDisk?: string
  swarmKey?: string
  apiTokenFile?: string
  protectMetrics?: boolean
  ticketTtl?: string
  accessCacheTtl?: string
  credentialsFile?: string
  dockerConfig?: string
  caFile?: string
  insecureSkipVerify?: boolean
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value]

function parseArgs (argv: string[]): Flags {
  const program = new Command()
    .name('supernode')
    .description('damselfly supernode: fetches each blob from its origin once and seeds its pieces to the dfdaemons')
    .option('--port <port>', `HTTP API port (default ${SUPERNODE_DEFAULTS.port})`)
    .option('--p2p-port <port>', `libp2p TCP port (default ${SUPERNODE_DEFAULTS.p2pPort})`)
    .option('--data-dir <dir>', 'directory for the blob store and the node key (required)')
    .option('--host <addr>', `address the HTTP API and libp2p listen on (default ${SUPERNODE_DEFAULTS.host})`)
    .option('--config <file>', 'YAML or JSON config file; flags override it')
    .addOption(new Option('--log-level <level>', `log level (default ${SUPERNODE_DEFAULTS.logLevel})`).choices(LOG_LEVELS))
    .option('--registry-endpoint <name=url>', 'API base URL of a registry, e.g. docker.io=https://mirror.example (repeatable)', collect)
    .option('--insecure-registry <name>', 'registry reached over plain HTTP (repeatable)', collect)
    .option('--allow-url <prefix>', 'dfget: URL prefix this supernode fetches for the swarm, e.g. https://files.example.com/releases/, or \'*\' for any (repeatable; default: none, URL tasks are refused)', collect)
    .option('--allow-registry <name>', 'registry this supernode fetches layers from for the swarm, as clients name it (docker.io, registry.internal:5000) or *.domain (repeatable; default: any registry a daemon names)', collect)
    .option('--upload-limit <bytes>', 'upload bound per second over all daemons, e.g. 100M (default: none)')
    .option('--max-disk <bytes>', 'most disk the store may take, e.g. 200G; least recently used blobs are evicted (default: none)')
    .option('--min-free-disk <bytes>', 'free space to keep on the data dir\'s filesystem, e.g. 10G (default: none)')
    .option('--announce <multiaddr>', 'multiaddr to announce instead of the listen address (repeatable)', collect)
    .option('--swarm-key <file>', 'closed swarm: libp2p pre-shared key file, the same on every member')
    .option('--api-token-file <file>', 'file holding the bearer token the operator API (/api/v1/* but info) requires')
    .option('--protect-metrics', 'require the operator token for /metrics and /healthz too')
    .option('--ticket-ttl <seconds>', `lifetime of a private blob's ticket (default ${SUPERNODE_DEFAULTS.ticketTtl})`)
    .option('--access-cache-ttl <seconds>', `how long an origin access decision is cached (default ${SUPERNODE_DEFAULTS.accessCacheTtl})`)
    .option('--credentials-file <file>', 'YAML file registries: { NAME: { username, password } }: credentials for this node\'s own fetches when the client sent none')
    .option('--docker-config <file>', 'Docker config.json (auths) with credentials for this node\'s own fetches when the client sent none')
    .option('--ca-file <file>', 'extra CA bundle (PEM) trusted for upstream HTTPS, besides the system CAs')
    .option('--insecure-skip-verify', 'do not verify upstream TLS certificates (insecure; explicit opt-in)')
    .showHelpAfterError()
  program.parse(argv)
  return program.opts<Flags>()
}

function endpointMap (pairs: string[] | undefined): Record<string, string> | undefined {
  if (pairs === undefined) return undefined
  const out: Record<string, string> = {}
  for (const pair of pairs) {
    const eq = pair.indexOf('=')
    if (eq <= 0 || eq === pair.length - 1) throw new ConfigError(`--registry-endpoint wants NAME=URL, got "${pair}"`)
    out[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return out
}

function readConfig (flags: Flags): SupernodeConfig {
  const config = loadConfig(SupernodeConfigSchema, SUPERNODE_DEFAULTS, {
    file: flags.config,
    flags: {
      port: flags.port,
      p2pPort: flags.p2pPort,
      dataDir: flags.dataDir,
      host: flags.host,
      logLevel: flags.logLevel,
      registryEndpoints: endpointMap(flags.registryEndpoint),
      insecureRegistries: flags.insecureRegistry,
      allowUrls: flags.allowUrl,
      allowRegistries: flags.allowRegistry,
      announce: flags.announce,
      uploadLimit: flags.uploadLimit,
      maxDisk: flags.maxDisk,
      minFreeDisk: flags.minFreeDisk,
      swarmKeyFile: flags.swarmKey,
      apiTokenFile: flags.apiTokenFile,
      protectMetrics: flags.protectMetrics,
      ticketTtl: flags.ticketTtl,
      accessCacheTtl: flags.accessCacheTtl,
      credentialsFile: flags.credentialsFile,
      dockerConfig: flags.dockerConfig,
      caFile: flags.caFile,
      insecureSkipVerify: flags.insecureSkipVerify
    }
  })
  if (config.dataDir === '') throw new ConfigError('a data directory is required (--data-dir or dataDir)')
  return config
}

async function main (): Promise<void> {
  let config: SupernodeConfig
  try {
    config = readConfig(parseArgs(process.argv))
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`supernode: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
  const logger = createLogger({ name: 'supernode', level: config.logLevel })
  let supernode: Supernode
  try {
    supernode = await createSupernode(config, { logger })
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`supernode: ${err.message}\n`)
    process.exit(2)
  }

  let stopping = false
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal, exiting now')
      process.exit(1)
    }
    stopping = true
    logger.info({ signal }, 'stopping')
    supernode.stop().then(() => { process.exit(0) }, (err: unknown) => {
      logger.error({ err }, 'unclean stop')
      process.exit(1)
    })
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)

  try {
    await supernode.start()
  } catch (err) {
    process.stderr.write(`supernode: cannot start: ${(err as Error).message}\n`)
    await supernode.stop().catch(() => {})
    process.exit(1)
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`supernode: ${(err as Error).message ?? String(err)}\n`)
  process.exit(1)
})
