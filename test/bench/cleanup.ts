/**
 * Everything the bench creates outside its own heap — child processes, network namespaces, the
 * blackhole route, temp dirs, per-host CPU groups — is registered here the moment it exists, so
 * that one call (also from a signal handler, synchronously) removes it all, newest first.
 */
import { execFileSync } from 'node:child_process'
import { rmdirSync, rmSync } from 'node:fs'

type Item =
  | { kind: 'pid', pid: number, what: string }
  | { kind: 'netns', name: string }
  | { kind: 'route', dest: string }
  | { kind: 'dir', path: string }
  | { kind: 'cgroup', path: string }

export class Cleanup {
  private readonly items: Item[] = []

  pid (pid: number | undefined, what: string): void { if (pid !== undefined) this.items.push({ kind: 'pid', pid, what }) }
  netns (name: string): void { this.items.push({ kind: 'netns', name }) }
  route (dest: string): void { this.items.push({ kind: 'route', dest }) }
  dir (path: string): void { this.items.push({ kind: 'dir', path }) }
  cgroup (path: string): void { this.items.push({ kind: 'cgroup', path }) }

  /** Forget a process that was stopped normally (its PID may be reused later). */
  forgetPid (pid: number | undefined): void {
    const i = this.items.findIndex((x) => x.kind === 'pid' && x.pid === pid)
    if (i >= 0) this.items.splice(i, 1)
  }

  /** Remove one namespace now (after its processes were stopped) and forget it. */
  removeNetns (name: string): void {
    const i = this.items.findIndex((x) => x.kind === 'netns' && x.name === name)
    if (i >= 0) this.items.splice(i, 1)
    try { execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' }) } catch { /* already gone */ }
  }

  /** Remove one CPU group now (its processes were stopped) and forget it. */
  removeCgroup (path: string): void {
    const i = this.items.findIndex((x) => x.kind === 'cgroup' && x.path === path)
    if (i >= 0) this.items.splice(i, 1)
    try { removeGroup(path) } catch { /* a process still in it: best effort, as for namespaces */ }
  }

  /** Synchronous, idempotent, never throws: kill the processes by PID, then delete the rest. */
  runAll (): void {
    // processes first (SIGKILL by PID only), so nothing holds a namespace or a dir
    for (const it of this.items) {
      if (it.kind !== 'pid') continue
      try { process.kill(it.pid, 'SIGKILL') } catch { /* already gone */ }
    }
    while (this.items.length > 0) {
      const it = this.items.pop()!
      try {
        if (it.kind === 'netns') execFileSync('ip', ['netns', 'del', it.name], { stdio: 'ignore' })
        else if (it.kind === 'route') execFileSync('ip', ['route', 'del', 'blackhole', it.dest], { stdio: 'ignore' })
        else if (it.kind === 'dir') rmSync(it.path, { recursive: true, force: true })
        else if (it.kind === 'cgroup') removeGroup(it.path)
      } catch { /* best effort: keep going */ }
    }
  }
}

/**
 * rmdir a cgroup once the processes killed a moment ago have left it (the kernel takes them out
 * as they are reaped): up to 2 s, synchronously, as `runAll` must be.
 */
function removeGroup (path: string): void {
  const until = Date.now() + 2000
  for (;;) {
    try {
      rmdirSync(path)
      return
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return
      if (code !== 'EBUSY' || Date.now() > until) throw err
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
    }
  }
}
