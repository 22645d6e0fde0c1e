/** skopeo, the real registry client, copying an image through a mirror into a directory. */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export async function skopeoCopy (source: string, destDir: string, opts: { creds?: string, all?: boolean } = {}): Promise<void> {
  const args = ['copy', '--quiet', '--src-tls-verify=false', '--retry-times', '0']
  if (opts.creds != null) args.push('--src-creds', opts.creds)
  if (opts.all === true) args.push('--all')
  args.push(`docker://${source}`, `dir:${destDir}`)
  await run('skopeo', args, { timeout: 300_000, maxBuffer: 16 << 20 })
}

/** sha256 of a file, streamed. */
export async function fileSha256 (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Blob files of a `dir:` copy: every file named by a 64-hex digest, with the sha256 of its content. */
export async function dirBlobs (dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const name of await readdir(dir)) {
    if (/^[a-f0-9]{64}$/.test(name)) out.set(name, await fileSha256(join(dir, name)))
  }
  return out
}
