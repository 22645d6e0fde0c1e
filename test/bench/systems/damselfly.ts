/** damselfly: the supernode on the server host, a dfdaemon on every pulling host, skopeo → its mirror. */
import { join } from 'node:path'
import { DFDAEMON_BIN, SUPERNODE_BIN } from '../../helpers/processes.js'
import { hostGet, metricSum, procStats, startProc, waitHttp, type Proc } from '../proc.js'
import { skopeoPull, type RunningSystem, type ScenarioContext } from './system.js'

const LOG_LEVEL = 'warn'

export async function startDamselfly (ctx: ScenarioContext): Promise<RunningSystem> {
  const server = ctx.topo.server
  const port = await server.port('supernode', 8002)
  const p2pPort = await server.port('supernode-p2p', 8003)
  const supernodeUrl = `http://${server.addr}:${port}`
  const procs: Proc[] = []
  const stopAll = async (): Promise<void> => { await Promise.allSettled(procs.map(async (p) => { await p.stop() })) }
  try {
    const supernode = startProc(server, 'supernode', [process.execPath, SUPERNODE_BIN,
      '--host', server.addr, '--port', String(port), '--p2p-port', String(p2pPort),
      '--data-dir', join(ctx.dir, 'supernode'), '--insecure-registry', ctx.origin.hostPort, '--log-level', LOG_LEVEL
    ], ctx.dir, ctx.cleanup)
    procs.push(supernode)
    await waitHttp(supernode, `${supernodeUrl}/healthz`)

    const daemons: Array<{ proc: Proc, mirror: string }> = []
    for (const [i, host] of ctx.clients.entries()) {
      const mport = await host.port('dfdaemon', 65001)
      const mp2p = await host.port('dfdaemon-p2p', 65002)
      const proc = startProc(host, `dfdaemon-${i + 1}`, [process.execPath, DFDAEMON_BIN,
        '--supernode', supernodeUrl, '--upstream', ctx.origin.url, '--insecure-registry', ctx.origin.hostPort,
        '--host', '127.0.0.1', '--port', String(mport), '--p2p-host', host.addr, '--p2p-port', String(mp2p),
        '--data-dir', join(ctx.dir, `dfdaemon-${i + 1}`), '--log-level', LOG_LEVEL
      ], ctx.dir, ctx.cleanup)
      procs.push(proc)
      daemons.push({ proc, mirror: `127.0.0.1:${mport}` })
    }
    await Promise.all(daemons.map(async (d) => { await waitHttp(d.proc, `http://${d.mirror}/healthz`) }))

    return {
      pull: async (i, dest) => { await skopeoPull(ctx, ctx.clients[i], daemons[i].mirror, dest, `skopeo-${i + 1}`) },
      procs: () => procs.map((p) => ({ name: p.name, pid: p.pid })),
      collect: async () => {
        const bySource: Record<string, number> = { supernode: 0, peer: 0, origin: 0 }
        for (const [i, d] of daemons.entries()) {
          const text = await hostGet(ctx.clients[i], `http://${d.mirror}/metrics`)
          if (text === undefined) throw new Error(`dfdaemon-${i + 1}: /metrics did not answer`)
          for (const source of Object.keys(bySource)) bySource[source] += metricSum(text, 'damselfly_dfdaemon_piece_bytes_total', { source })
        }
        const snText = await hostGet(server, `${supernodeUrl}/metrics`) ?? ''
        return {
          processes: await Promise.all(procs.map(async (p) => await procStats(p.name, p.pid))),
          bytesBySource: bySource,
          serverUploadBytes: metricSum(snText, 'damselfly_supernode_upload_bytes_total')
        }
      },
      stop: stopAll
    }
  } catch (err) {
    await stopAll()
    throw err
  }
}
