#!/usr/bin/env node
import '../shared/polyfill.js'
import { Command } from 'commander'
import { loadConfig } from '../shared/config.js'
import { ConfigError } from '../shared/errors.js'
import { createLogger } from '../shared/logging.js'
import { DaemonConfigSchema, DAEMON_DEFAULTS, type DaemonConfig } from './config.js'
import { createDaemon } from './daemon.js'
import { isRuntime, runtimeSnippet, RUNTIMES } from './print-config.js'

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

function keyValues (pairs: string[] | undefined): Record<string, string> | undefined {
  if (pairs == null) return undefined
  const out: Record<string, string> = {}
  for (const p of pairs) {
    const i = p.indexOf('=')
    if (i <= 0) throw new ConfigError(`expected NAME=URL, got "${p}"`)
    out[p.slice(0, i)] = p.slice(i + 1)
  }
  return out
}

const program = new Command()
  .name('dfdaemon')
  .description('damselfly host agent: a registry mirror for the local container runtime, fed by the swarm')
  .option('--supernode <url>', 'the supernode HTTP address, e.g. http://10.0.0.5:8002')
  .option('--port <port>', `mirror port (default ${DAEMON_DEFAULTS.port})`)
  .option('--p2p-port <port>', `libp2p port (default ${DAEMON_DEFAULTS.p2pPort})`)
  .option('--data-dir <dir>', 'where pieces and blobs are kept')
  .option('--upstream <url>', `registry behind un-prefixed requests (default ${DAEMON_DEFAULTS.upstream})`)
  .option('--host <addr>', `mirror listen address (default ${DAEMON_DEFAULTS.host})`)
  .option('--p2p-host <addr>', 'libp2p listen address (default: --host)')
  .option('--announce <multiaddr>', 'address to announce to peers (repeatable)', collect)
  .option('--upload-limit <bytes>', 'upload bound per second over all peers, e.g. 50M (default: none)')
  .option('--download-limit <bytes>', 'download bound per second over all sources, e.g. 100M (default: none)')
  .option('--stall-timeout <ms>', `no piece for this long: go back to the origin (default ${DAEMON_DEFAULTS.noProgressTimeoutMs})`)
  .option('--max-disk <bytes>', 'most disk the store may take, e.g. 20G; least recently used blobs are evicted (default: none)')
  .option('--min-free-disk <bytes>', 'free space to keep on the data dir\'s filesystem, e.g. 2G (default: none)')
  .option('--piece-recheck-ms <ms>', `serve a checked piece again without hashing it for this long; 0: hash every piece read from disk (default ${DAEMON_DEFAULTS.pieceRecheckMs})`)
  .option('--bootstrap <multiaddr>', 'a peer to join the DHT through, besides the supernode (repeatable)', collect)
  .option('--registry-endpoint <name=url>', 'fetch registry NAME from URL (repeatable)', collect)
  .option('--insecure-registry <name>', 'reach registry NAME over plain HTTP (repeatable)', collect)
  .option('--swarm-key <file>', 'closed swarm: libp2p pre-shared key file, the same on every member')
  .option('--supernode-peer-id <id>', 'the supernode\'s peer id (default: learned once from the supernode, then pinned)')
  .option('--allow-client <cidr>', 'client network allowed to use the mirror besides loopback (repeatable)', collect)
  .option('--tls-cert <file>', 'serve the mirror over HTTPS with this PEM certificate')
  .option('--tls-key <file>', 'the PEM private key of --tls-cert')
  .option('--credentials-file <file>', 'YAML file registries: { NAME: { username, password } }: credentials for this node\'s own fetches when the client sent none')
  .option('--docker-config <file>', 'Docker config.json (auths) with credentials for this node\'s own fetches when the client sent none')
  .option('--ca-file <file>', 'extra CA bundle (PEM) trusted for upstream HTTPS, besides the system CAs')
  .option('--insecure-skip-verify', 'do not verify upstream TLS certificates (insecure; explicit opt-in)')
  .option('--config <file>', 'YAML config file (flags override it)')
  .option('--log-level <level>', `trace|debug|info|warn|error|silent (default ${DAEMON_DEFAULTS.logLevel})`)
  .addHelpText('after', `\nSubcommand:\n  print-config ${RUNTIMES.join('|')} [options]  print the snippet that points that runtime at this mirror, for these settings (starts nothing)`)
  .showHelpAfterError()

type Opts = Record<string, string | string[] | undefined>

/** The command-line settings, under their config-file keys. */
function flagsOf (o: Opts): Record<string, unknown> {
  return {
    supernode: o.supernode,
    port: o.port,
    p2pPort: o.p2pPort,
    dataDir: o.dataDir,
    upstream: o.upstream,
    host: o.host,
    p2pHost: o.p2pHost,
    announce: o.announce,
    bootstrap: o.bootstrap,
    uploadLimit: o.uploadLimit,
    downloadLimit: o.downloadLimit,
    noProgressTimeoutMs: o.stallTimeout,
    maxDisk: o.maxDisk,
    minFreeDisk: o.minFreeDisk,
    pieceRecheckMs: o.pieceRecheckMs,
    registryEndpoints: keyValues(o.registryEndpoint as string[] | undefined),
    insecureRegistries: o.insecureRegistry,
    swarmKeyFile: o.swarmKey,
    supernodePeerId: o.supernodePeerId,
    allowClients: o.allowClient,
    tlsCert: o.tlsCert,
    tlsKey: o.tlsKey,
    credentialsFile: o.credentialsFile,
    dockerConfig: o.dockerConfig,
    caFile: o.caFile,
    insecureSkipVerify: o.insecureSkipVerify as unknown as boolean | undefined,
    logLevel: o.logLevel
  }
}

/** `dfdaemon print-config RUNTIME [options]`: the same flags and config file as a run, nothing started. */
function printConfig (argv: string[]): void {
  const [runtime, ...rest] = argv
  program.parse(rest, { from: 'user' })
  const o = program.opts<Opts>()
  if (runtime === undefined || !isRuntime(runtime)) {
    process.stderr.write(`dfdaemon: usage: dfdaemon print-config ${RUNTIMES.join('|')} [options]\n`)
    process.exit(2)
  }
  try {
    // supernode and dataDir do not shape a snippet: placeholders let them be left out
    const defaults = { ...DAEMON_DEFAULTS, supernode: 'http://127.0.0.1', dataDir: '.' } as DaemonConfig
    const config = loadConfig(DaemonConfigSchema, defaults, { file: o.config as string | undefined, flags: flagsOf(o) })
    process.stdout.write(runtimeSnippet(runtime, config))
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`dfdaemon: ${err.message}\n`)
    process.exit(2)
  }
}

async function main (): Promise<void> {
  if (process.argv[2] === 'print-config') {
    printConfig(process.argv.slice(3))
    return
  }
  program.parse()
  const o = program.opts<Opts>()
  let config: DaemonConfig
  try {
    config = loadConfig(DaemonConfigSchema, DAEMON_DEFAULTS as DaemonConfig, {
      file: o.config as string | undefined,
      flags: flagsOf(o)
    })
    if (config.supernode == null) throw new ConfigError('missing required setting "supernode" (--supernode URL)')
    if (config.dataDir == null) throw new ConfigError('missing required setting "dataDir" (--data-dir DIR)')
    if ((config.tlsCert == null) !== (config.tlsKey == null)) throw new ConfigError('tlsCert and tlsKey go together')
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`dfdaemon: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }

  const logger = createLogger({ name: 'dfdaemon', level: config.logLevel })
  let daemon
  try {
    daemon = await createDaemon(config, { logger })
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`dfdaemon: ${err.message}\n`)
    process.exit(2)
  }
  await daemon.start()

  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'stopping')
    daemon.stop().then(() => process.exit(0), (err: unknown) => {
      logger.error({ err }, 'error while stopping')
      process.exit(1)
    })
  }
  process.on('SIGINT', () => { stop('SIGINT') })
  process.on('SIGTERM', () => { stop('SIGTERM') })
}

main().catch((err: unknown) => {
  process.stderr.write(`dfdaemon: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
})
