/**
 * Per-host CPU groups (`--cpu-groups`): one cgroup for every emulated host, all with the same CPU
 * weight, so that when the machine's cores are contended each host's processes together get an
 * equal share — as separate hosts would each have cores of their own — instead of every process
 * competing on its own, where the server host's one busy process (the supernode, a seeder, a
 * cache) gets no more than any one of N daemons or N skopeo. Works with cgroup v1 (the `cpu`
 * hierarchy) and with v2 when the cpu controller is enabled for the root's children; otherwise
 * the bench says so and stops.
 */
import { access, readFile } from 'node:fs/promises'

const V1_ROOT = '/sys/fs/cgroup/cpu'
const V2_ROOT = '/sys/fs/cgroup'

/** The directory new per-host groups go under. */
export async function cpuGroupRoot (): Promise<string> {
  if (await access(`${V1_ROOT}/cgroup.procs`).then(() => true, () => false)) return V1_ROOT
  const enabled = await readFile(`${V2_ROOT}/cgroup.subtree_control`, 'utf8').catch(() => '')
  if (enabled.split(/\s+/).includes('cpu')) return V2_ROOT
  throw new Error(`--cpu-groups needs a cgroup cpu controller: cgroup v1's ${V1_ROOT}, or v2 with "cpu" in ${V2_ROOT}/cgroup.subtree_control`)
}

/**
 * A command prefix that moves the process into `group` and then execs the rest of the command
 * line, so everything started with it (and its children) is counted in the host's group.
 */
export function enterGroup (group: string): string[] {
  return ['sh', '-c', `echo $$ > '${group}/cgroup.procs' && exec "$@"`, 'sh']
}
