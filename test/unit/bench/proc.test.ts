/**
 * The bench's per-process figures: the main thread's run delay from /proc/PID/schedstat, read
 * from real processes made to wait for a core, and how the figures and the report carry it.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { parseSchedstat, procStats, type ProcStats } from '../../bench/proc.js'
import type { ScenarioResult } from '../../bench/figures.js'
import { scenarioResult } from '../../helpers/bench-result.js'
import { cpuBound, cpuLimitMarkdown, markdownTable } from '../../bench/report.js'

describe('bench process figures', () => {
  const spinners: ChildProcess[] = []
  after(() => { for (const c of spinners) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL') })

  it('reads the run delay (ns) from schedstat as seconds', async () => {
    assert.equal(parseSchedstat('2549504 1250000000 17\n'), 1.25)
    assert.throws(() => parseSchedstat(''), /unreadable schedstat/)
    // this kernel's own file parses the same way
    assert.ok(parseSchedstat(await readFile('/proc/self/schedstat', 'utf8')) >= 0)
  })

  it('counts the time a process waited for a core when more want to run than there are cores', async () => {
    // one more busy shell than the machine has cores, for half a second: together they must wait
    const n = cpus().length + 1
    for (let i = 0; i < n; i++) spinners.push(spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }))
    await new Promise((resolve) => setTimeout(resolve, 500))
    const stats = await Promise.all(spinners.map(async (c, i) => await procStats(`spin-${i}`, c.pid!)))
    for (const c of spinners) c.kill('SIGKILL')
    const waited = stats.reduce((s, p) => s + p.runDelaySeconds, 0)
    const ran = stats.reduce((s, p) => s + p.cpuSeconds, 0)
    assert.ok(waited > 0.05, `${n} spinners on ${n - 1} cores waited ${waited.toFixed(3)} s in all (ran ${ran.toFixed(2)} CPU-s)`)
    assert.ok(stats.every((p) => p.cpuSeconds > 0 && p.peakRssMiB > 0), JSON.stringify(stats))
    assert.deepEqual(await procStats('gone', 2 ** 22 + 1), { name: 'gone', cpuSeconds: 0, peakRssMiB: 0, runDelaySeconds: 0 }, 'no such process: zeros')
  })

  it('reports the clients\' median run delay and the server\'s sum, and none for a system without processes', () => {
    const proc = (name: string, runDelaySeconds: number): ProcStats => ({ name, cpuSeconds: 1, peakRssMiB: 100, runDelaySeconds })
    const result = (system: 'damselfly' | 'direct', processes: ProcStats[]): ScenarioResult => scenarioResult({ system, times: [13, 13.2, 13.4], processes, machineBusy: 0.7 })
    const df = result('damselfly', [proc('dfdaemon-1', 2.5), proc('dfdaemon-2', 1.5), proc('dfdaemon-3', 2.0), proc('supernode', 1.75)])
    assert.deepEqual(df.runDelay, { clientP50Sec: 2.0, serverSec: 1.75 })
    const direct = result('direct', [])
    assert.deepEqual(direct.runDelay, { clientP50Sec: null, serverSec: null })
    const md = markdownTable([df, direct])
    assert.match(md, /\| waiting for a core s client \/ server \|/)
    assert.match(md, /^\| 1x128MiB \| 3 \| damselfly \|.*\| 3\.0 \/ 1\.0 \| 2\.00 \/ 1\.75 \| 100 \/ 100 \|/m)
    assert.match(md, /^\| 1x128MiB \| 3 \| direct \|.*\| – \| – \| – \| 70 % \|/m)
    const columns = (line: string): number => line.split('|').length
    const lines = md.trim().split('\n')
    assert.ok(lines.every((l) => columns(l) === columns(lines[0])), 'every row has the header\'s columns')
  })

  it('says per image and system at which N the cores were the limit, and by which figure', () => {
    const row = (system: 'damselfly' | 'bittorrent' | 'direct', hosts: number, p50: number, busy: number, clientWait?: number): ScenarioResult => scenarioResult({
      system, hosts, times: [p50], machineBusy: busy,
      processes: clientWait === undefined ? [] : [{ name: 'dfdaemon-1', cpuSeconds: 1, peakRssMiB: 100, runDelaySeconds: clientWait }]
    })
    const rows = [
      row('damselfly', 2, 12, 0.32, 0.72), // 6 % waiting, 32 % busy: not bound
      row('damselfly', 4, 13, 0.70, 2.6), // 20 % waiting at 70 % busy: bound by the wait
      row('damselfly', 8, 20, 0.95, 1.0), // 5 % waiting, 95 % busy: bound by the busy share
      row('bittorrent', 4, 14, 0.16, 0.2),
      row('direct', 4, 40, 0.93)
    ]
    assert.deepEqual(rows.map(cpuBound), [false, true, true, false, true])
    const md = cpuLimitMarkdown(rows)
    assert.match(md, /^- 1x128MiB, damselfly: CPU-bound at N = 4, 8 \(the clients' loops waited for a core 20 % \/ 5 % of the p50 time, the machine 70 % \/ 95 % busy\); not at N = 2 \(the clients' loops waited for a core 6 % of the p50 time, the machine 32 % busy\)$/m)
    assert.match(md, /^- 1x128MiB, bittorrent: not CPU-bound at N = 4 \(the clients' loops waited for a core 1 % of the p50 time, the machine 16 % busy\)$/m)
    assert.match(md, /^- 1x128MiB, direct: CPU-bound at N = 4 \(the machine 93 % busy\) — no client process of its own to watch$/m)
    assert.equal(cpuLimitMarkdown([]), '', 'no swarm scenarios, no section')
  })
})
