/**
 * podman and skopeo, configured the way CRI-O/podman users point them at a dfdaemon: a
 * registries.conf whose `[[registry.mirror]]` location carries the registry as a path prefix
 * (`127.0.0.1:PORT/docker.io`). podman keeps its images in its own vfs storage under `dir`.
 */
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface MirroredRegistry {
  /** The registry name in references (`docker.io`, `registry.example`). */
  prefix: string
  /** Where the registry itself is; tests give a dead local port so only the mirror can succeed. */
  location: string
}

/** registries.conf: each registry's mirror is `<mirrorHost>/<prefix>`, plain HTTP. */
export function registriesConf (mirrorHost: string, registries: MirroredRegistry[]): string {
  const blocks = registries.map((r) => `[[registry]]
prefix = "${r.prefix}"
location = "${r.location}"
insecure = true

[[registry.mirror]]
location = "${mirrorHost}/${r.prefix}"
insecure = true
`)
  return `unqualified-search-registries = []\n\n${blocks.join('\n')}`
}

/** A podman with its own storage (vfs), run root, tmp dir, registries.conf and signature policy. */
export interface Podman {
  dir: string
  registriesConf: string
  policy: string
  podman: (args: string[]) => Promise<string>
  skopeo: (args: string[]) => Promise<string>
  /** `podman image inspect` of one image. */
  inspect: (ref: string) => Promise<{ Id: string, Digest: string, RepoDigests: string[], RootFS: { Layers: string[] } }>
}

export async function setupPodman (dir: string, conf: string): Promise<Podman> {
  await mkdir(join(dir, 'tmp'), { recursive: true })
  const registries = join(dir, 'registries.conf')
  const policy = join(dir, 'policy.json')
  const containersConf = join(dir, 'containers.conf')
  await writeFile(registries, conf)
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }))
  await writeFile(containersConf, '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n')
  const env = { ...process.env, CONTAINERS_REGISTRIES_CONF: registries, CONTAINERS_CONF: containersConf, CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf') }
  await writeFile(env.CONTAINERS_STORAGE_CONF, `[storage]\ndriver = "vfs"\nrunroot = "${dir}/runroot"\ngraphroot = "${dir}/root"\n`)
  const global = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--storage-driver', 'vfs', '--tmpdir', join(dir, 'tmp'),
    '--cgroup-manager', 'cgroupfs', '--events-backend', 'file']
  const podman = async (args: string[]): Promise<string> => (await run('podman', [...global, ...args], { env, timeout: 300_000, maxBuffer: 16 << 20 })).stdout
  // skopeo does not read CONTAINERS_REGISTRIES_CONF: the file is given as a flag
  const skopeo = async (args: string[]): Promise<string> => (await run('skopeo', ['--registries-conf', registries, ...args], { env, timeout: 300_000, maxBuffer: 16 << 20 })).stdout
  return {
    dir,
    registriesConf: registries,
    policy,
    podman,
    skopeo,
    inspect: async (ref) => {
      const parsed = JSON.parse(await podman(['image', 'inspect', ref])) as Array<Awaited<ReturnType<Podman['inspect']>>>
      return parsed[0]
    }
  }
}
