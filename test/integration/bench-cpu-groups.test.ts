/**
 * The bench's per-host CPU groups (`--cpu-groups`), for real: every process started through a
 * host's prefix lands in that host's group, the groups share the cores host by host — one busy
 * process on the server host gets a core while three per core on a client host share the rest —
 * and taking the network down removes the groups with the namespaces.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { access, readFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { Cleanup } from '../bench/cleanup.js'
import { cpuGroupRoot } from '../bench/cpu-groups.js'
import { netnsTopology, type Host, type Topology } from '../bench/hosts.js'
import { procStats } from '../bench/proc.js'

const exists = async (path: string): Promise<boolean> => await access(path).then(() => true, () => false)

/** The cgroup paths of a process, one per hierarchy ("ID:CONTROLLERS:PATH" lines of /proc/PID/cgroup). */
async function groupsOf (pid: number): Promise<string[]> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8')
  return text.trim().split('\n').map((line) => line.split(':').slice(2).join(':'))
}

describe('bench network: a CPU group per emulated host', () => {
  const cleanup = new Cleanup()
  let topo: Topology | undefined

  after(() => { topo?.down(); cleanup.runAll() })

  it('puts each host\'s processes in its own group and shares the cores host by host', async (t) => {
    const root = await cpuGroupRoot().catch((err: Error) => err)
    if (root instanceof Error) {
      // a machine without a cpu controller: the bench must refuse the option with that reason
      await assert.rejects(netnsTopology(1, '100mbit', cleanup, undefined, true), /--cpu-groups needs a cgroup cpu controller/)
      t.diagnostic(root.message)
      return
    }
    topo = await netnsTopology(1, '100mbit', cleanup, undefined, true)
    const spin = (host: Host): ChildProcess => {
      const c = spawn(host.prefix[0], [...host.prefix.slice(1), 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' })
      cleanup.pid(c.pid, `spinner on ${host.name}`)
      return c
    }
    // three busy processes per core on the client, one on the server
    const client = Array.from({ length: 3 * cpus().length }, () => spin(topo!.clients[0]))
    const server = spin(topo.server)
    await new Promise((resolve) => setTimeout(resolve, 1500))
    const [serverStats, ...clientStats] = await Promise.all([server, ...client].map(async (c, i) => await procStats(`spin-${i}`, c.pid!)))
    const serverGroups = await groupsOf(server.pid!)
    const clientGroups = await groupsOf(client[0].pid!)
    for (const c of [server, ...client]) c.kill('SIGKILL')
    await Promise.all([server, ...client].map(async (c) => await new Promise((resolve) => { if (c.exitCode !== null || c.signalCode !== null) resolve(undefined); else c.once('exit', resolve) })))

    assert.ok(serverGroups.some((g) => g.endsWith('-server')), `the server's spinner is in the server's group: ${serverGroups.join(' ')}`)
    assert.ok(clientGroups.some((g) => g.endsWith('-c1')), `the client's spinner is in the client's group: ${clientGroups.join(' ')}`)
    const clientMean = clientStats.reduce((s, p) => s + p.cpuSeconds, 0) / clientStats.length
    // per process, all would get the same; per host, the server's one process gets about a core
    assert.ok(serverStats.cpuSeconds > 2 * clientMean, `server spinner ${serverStats.cpuSeconds} CPU-s, client spinners ${clientMean.toFixed(2)} each`)

    const groups = ['origin', 'server', 'c1'].map((h) => serverGroups.find((g) => g.endsWith('-server'))!.replace(/-server$/, `-${h}`))
    for (const g of groups) assert.ok(await exists(`${root}${g}`), `${root}${g} exists while the network is up`)
    topo.down()
    topo = undefined
    for (const g of groups) assert.equal(await exists(`${root}${g}`), false, `${root}${g} is removed with the network`)
  })
})
