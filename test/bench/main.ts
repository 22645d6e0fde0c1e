#!/usr/bin/env node
/**
 * `npm run bench [-- --quick] [-- --only swarm,single,tracker,cost]`: N emulated hosts pulling one
 * image at once through damselfly, straight from the origin, through an nginx cache and over
 * BitTorrent, on one namespace network with a per-host bandwidth cap; one dfdaemon's throughput
 * and time to first byte on loopback; the tracker under announces from many peers; CPU per GiB
 * through each layer of the transport. Prints the tables; writes JSON, Markdown and SVG to
 * test/bench/results/. Everything it creates is removed at the end, on failure and on SIGINT.
 */
import '../../shared/polyfill.js'
import { fileURLToPath } from 'node:url'
import { Cleanup } from './cleanup.js'
import { markdownSections, runBench } from './run.js'
import { parseArgs, USAGE } from './scenarios.js'

const DEFAULT_OUT = fileURLToPath(new URL('../../../test/bench/results/', import.meta.url))
const out = (s: string): void => { process.stdout.write(s) }

async function main (): Promise<number> {
  const argv = process.argv.slice(2)
  if (argv.includes('--help') || argv.includes('-h')) { out(`${USAGE}\n`); return 0 }
  let opts
  try {
    opts = parseArgs(argv, DEFAULT_OUT)
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n`)
    return 2
  }
  if (opts.parts.includes('swarm') && opts.mode === 'netns' && process.getuid?.() !== 0) {
    process.stderr.write('bench: the emulated network needs root (network namespaces, tc); run as root, or --loopback for an uncapped run\n')
    return 2
  }
  const cleanup = new Cleanup()
  let interrupted = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return
    interrupted = true
    process.stderr.write(`bench: ${signal}: stopping processes, removing namespaces, routes and temp dirs\n`)
    cleanup.runAll()
    process.exit(130)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  process.on('exit', () => { cleanup.runAll() })
  try {
    const run = await runBench(opts, cleanup, (line) => { out(`bench: ${line}\n`) })
    for (const section of markdownSections(run, false)) out(`\n${section}\n`)
    out(`load average before ${run.machine.loadBefore.join(' ')}, after ${run.machine.loadAfter?.join(' ')} on ${run.machine.cores} cores\n`)
    out(`wrote ${[run.files.json, run.files.markdown, ...(run.files.svg !== undefined ? [run.files.svg] : [])].join(', ')}\n`)
    const t = run.tracker
    const failed = run.results.some((r) => r.failures > 0) ||
      (run.singleHost?.rows.some((r) => r.failures > 0) ?? false) ||
      (t !== undefined && [t.inProcess.seed, t.inProcess.download, t.wire.seed, t.wire.download].some((p) => p.failures > 0))
    return failed ? 1 : 0
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error)?.stack ?? String(err)}\n`)
    return 1
  } finally {
    cleanup.runAll()
  }
}

main().then((code) => { process.exitCode = code }, () => { process.exitCode = 1 })
