/** damselfly: the supernode on the server host, a dfdaemon on every pulling host, skopeo → its mirror. */
import { join } from 'node:path'
import { DFDAEMON_BIN, SUPERNODE_BIN } from '../../helpers/processes.js'
import type { Cleanup } from '../cleanup.js'
import type { Host } from '../hosts.js'
import { hostGet, metricSum, procStats, startProc, waitHttp, type Proc } from '../proc.js'
import { skopeoPulls, type RunningSystem, type ScenarioContext } from './system.js'

/** DAMSELFLY_BENCH_LOG_LEVEL=debug (with --keep) leaves every process's full log behind. */
const LOG_LEVEL = process.env.DAMSELFLY_BENCH_LOG_LEVEL ?? 'warn'

/**
 * A supernode on `host`, its store in `dir/name`, answering /healthz; `insecure` registries are
 * reached over plain HTTP. The single-host and tracker parts of the bench start it the same way.
 */
export async function startSupernodeOn (host: Host, dir: string, name: string, insecure: string[], cleanup: Cleanup): Promise<{ proc: Proc, url: string }> {
  const port = await host.port('supernode', 8002)
  const p2pPort = await host.port('supernode-p2p', 8003)
  const url = `http://${host.addr}:${port}`
  const proc = startProc(host, name, [process.execPath, SUPERNODE_BIN,
    '--host', host.addr, '--port', String(port), '--p2p-port', String(p2pPort),
    '--data-dir', join(dir, name), ...insecure.flatMap((r) => ['--insecure-registry', r]), '--log-level', LOG_LEVEL
  ], dir, cleanup)
  try {
    await waitHttp(proc, `${url}/healthz`)
  } catch (err) {
    await proc.stop(1000)
    throw err
  }
  return { proc, url }
}

/** A dfdaemon on `host` with its store in `dir/name`, its mirror on 127.0.0.1; not yet waited for (see waitHttp). */
export async function launchDaemonOn (host: Host, dir: string, name: string, supernodeUrl: string, originUrl: string, originHostPort: string, cleanup: Cleanup): Promise<{ proc: Proc, mirror: string }> {
  const mport = await host.port('dfdaemon', 65001)
  const mp2p = await host.port('dfdaemon-p2p', 65002)
  const proc = startProc(host, name, [process.execPath, DFDAEMON_BIN,
    '--supernode', supernodeUrl, '--upstream', originUrl, '--insecure-registry', originHostPort,
    '--host', '127.0.0.1', '--port', String(mport), '--p2p-host', host.addr, '--p2p-port', String(mp2p),
    '--data-dir', join(dir, name), '--log-level', LOG_LEVEL
  ], dir, cleanup)
  return { proc, mirror: `127.0.0.1:${mport}` }
}

export async function startDamselfly (ctx: ScenarioContext): Promise<RunningSystem> {
  const server = ctx.topo.server
  const procs: Proc[] = []
  const stopAll = async (): Promise<void> => { await Promise.allSettled(procs.map(async (p) => { await p.stop() })) }
  try {
    const { proc: supernode, url: supernodeUrl } = await startSupernodeOn(server, ctx.dir, 'supernode', [ctx.origin.hostPort], ctx.cleanup)
    procs.push(supernode)

    const daemons: Array<{ proc: Proc, mirror: string }> = []
    for (const [i, host] of ctx.clients.entries()) {
      const d = await launchDaemonOn(host, ctx.dir, `dfdaemon-${i + 1}`, supernodeUrl, ctx.origin.url, ctx.origin.hostPort, ctx.cleanup)
      procs.push(d.proc)
      daemons.push(d)
    }
    await Promise.all(daemons.map(async (d) => { await waitHttp(d.proc, `http://${d.mirror}/healthz`) }))

    return {
      ...skopeoPulls(ctx, (i) => daemons[i].mirror),
      procs: () => procs.map((p) => ({ name: p.name, pid: p.pid })),
      collect: async () => {
        const bySource: Record<string, number> = { supernode: 0, peer: 0, origin: 0 }
        let duplicates = 0
        for (const [i, d] of daemons.entries()) {
          const text = await hostGet(ctx.clients[i], `http://${d.mirror}/metrics`)
          if (text === undefined) throw new Error(`dfdaemon-${i + 1}: /metrics did not answer`)
          for (const source of Object.keys(bySource)) bySource[source] += metricSum(text, 'damselfly_dfdaemon_piece_bytes_total', { source })
          duplicates += metricSum(text, 'damselfly_dfdaemon_piece_bytes_wasted_total')
        }
        const snText = await hostGet(server, `${supernodeUrl}/metrics`) ?? ''
        return {
          processes: await Promise.all(procs.map(async (p) => await procStats(p.name, p.pid))),
          bytesBySource: bySource,
          serverUploadBytes: metricSum(snText, 'damselfly_supernode_upload_bytes_total'),
          duplicateBytes: duplicates
        }
      },
      stop: stopAll
    }
  } catch (err) {
    await stopAll()
    throw err
  }
}
