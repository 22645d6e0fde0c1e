/**
 * `dfdaemon print-config docker|containerd|podman`: the snippet that points a container runtime
 * at this daemon's mirror, for the settings it would run with. Pure text; nothing is started.
 *
 * - Docker mirrors Docker Hub only (`registry-mirrors`); the daemon's `--upstream` is the
 *   registry behind those un-prefixed requests.
 * - containerd reads one `hosts.toml` per registry under `config_path` and adds `?ns=<registry>`.
 * - podman/CRI-O/skopeo take a `[[registry.mirror]]` whose location carries the registry as a
 *   path prefix (`127.0.0.1:65001/docker.io`), so one daemon serves many registries.
 */
import { resolveEndpoint } from '../shared/oci/endpoints.js'
import { DOCKER_HUB } from '../shared/oci/reference.js'
import type { DaemonConfig } from './config.js'

export const RUNTIMES = ['docker', 'containerd', 'podman'] as const
export type Runtime = typeof RUNTIMES[number]

/** The settings a snippet depends on. */
export type PrintConfigSettings = Pick<DaemonConfig, 'host' | 'port' | 'registryEndpoints' | 'insecureRegistries'> & { tlsCert?: string }

export function isRuntime (name: string): name is Runtime {
  return (RUNTIMES as readonly string[]).includes(name)
}

/** `host:port` the local runtime dials: a wildcard listen address is reached on loopback. */
export function mirrorHost (s: PrintConfigSettings): string {
  const host = s.host === '0.0.0.0' ? '127.0.0.1' : s.host === '::' ? '::1' : s.host
  return `${host.includes(':') ? `[${host}]` : host}:${s.port}`
}

export function mirrorUrl (s: PrintConfigSettings): string {
  return `${s.tlsCert != null ? 'https' : 'http'}://${mirrorHost(s)}`
}

/** docker.io first, then every registry named in the settings, each once. */
export function mirroredRegistries (s: PrintConfigSettings): string[] {
  return [...new Set([DOCKER_HUB, ...Object.keys(s.registryEndpoints), ...s.insecureRegistries])]
}

function isLoopbackMirror (s: PrintConfigSettings): boolean {
  const h = mirrorHost(s)
  return h.startsWith('127.') || h.startsWith('localhost:') || h.startsWith('[::1]:')
}

export function dockerSnippet (s: PrintConfigSettings): string {
  const config: Record<string, string[]> = { 'registry-mirrors': [mirrorUrl(s)] }
  // Docker talks plain HTTP to 127.0.0.0/8 on its own; anything else must be listed
  if (s.tlsCert == null && !isLoopbackMirror(s)) config['insecure-registries'] = [mirrorHost(s)]
  return `# /etc/docker/daemon.json — Docker mirrors Docker Hub only; then: systemctl restart docker
${JSON.stringify(config, null, 2)}
`
}

export function containerdSnippet (s: PrintConfigSettings): string {
  const hosts = mirroredRegistries(s).map((name) => {
    const server = resolveEndpoint(name, { endpoints: s.registryEndpoints, insecure: s.insecureRegistries }).url
    return `# /etc/containerd/certs.d/${name}/hosts.toml
server = "${server}"

[host."${mirrorUrl(s)}"]
  capabilities = ["pull", "resolve"]
`
  })
  return `# /etc/containerd/config.toml (containerd 1.x; in 2.x the table is [plugins."io.containerd.cri.v1.images".registry])
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"

${hosts.join('\n')}
# ctr reads them with: ctr images pull --hosts-dir /etc/containerd/certs.d docker.io/library/alpine:latest
# containerd falls back to "server" when the mirror does not answer.
`
}

export function podmanSnippet (s: PrintConfigSettings): string {
  const insecure = s.tlsCert == null ? '\ninsecure = true' : ''
  const blocks = mirroredRegistries(s).map((name) => `[[registry]]
prefix = "${name}"
location = "${name}"${s.insecureRegistries.includes(name) ? '\ninsecure = true' : ''}

[[registry.mirror]]
location = "${mirrorHost(s)}/${name}"${insecure}
`)
  return `# /etc/containers/registries.conf.d/damselfly.conf (podman, CRI-O, skopeo, buildah)
${blocks.join('\n')}`
}

export function runtimeSnippet (runtime: Runtime, s: PrintConfigSettings): string {
  switch (runtime) {
    case 'docker': return dockerSnippet(s)
    case 'containerd': return containerdSnippet(s)
    case 'podman': return podmanSnippet(s)
  }
}
