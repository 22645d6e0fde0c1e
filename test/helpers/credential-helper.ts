/**
 * A real Docker credential helper for tests, `docker-credential-damselflytest`: a shell script
 * that speaks the protocol (`get`, the server URL on stdin, the JSON answer on stdout, "credentials
 * not found in native keychain" and exit 1 when it has none). Each call is appended to a log file
 * next to it; the answers are files the test writes. It also echoes its answer to stderr, as a
 * careless helper might, so tests can check that what it writes there is logged redacted.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export const TEST_HELPER = 'damselflytest'

const SCRIPT = `#!/bin/sh
here=$(dirname "$0")
[ "$1" = get ] || { echo "unsupported action: $1" >&2; exit 2; }
server=
IFS= read -r server || true
printf 'get %s\\n' "$server" >> "$here/calls.log"
file="$here/answers/$(printf '%s' "$server" | tr -c 'A-Za-z0-9.-' '_')"
if [ -f "$file" ]; then
  printf 'damselflytest: answering %s\\n' "$(cat "$file")" >&2
  cat "$file"
  exit 0
fi
echo "credentials not found in native keychain"
exit 1
`

export interface TestCredentialHelper {
  /** The directory holding the script: put it first in the PATH of whatever should find it. */
  binDir: string
  /** Store the answer for a server URL (`{ServerURL, Username, Secret}`). */
  answer: (serverUrl: string, username: string, secret: string) => Promise<void>
  /** The server URLs it was asked about, one per call, in order. */
  calls: () => Promise<string[]>
}

export async function installTestCredentialHelper (binDir: string): Promise<TestCredentialHelper> {
  await mkdir(join(binDir, 'answers'), { recursive: true })
  const program = join(binDir, `docker-credential-${TEST_HELPER}`)
  await writeFile(program, SCRIPT)
  await chmod(program, 0o755)
  return {
    binDir,
    answer: async (serverUrl, username, secret) => {
      const file = join(binDir, 'answers', serverUrl.replace(/[^A-Za-z0-9.-]/g, '_'))
      await writeFile(file, JSON.stringify({ ServerURL: serverUrl, Username: username, Secret: secret }))
    },
    calls: async () => {
      const text = await readFile(join(binDir, 'calls.log'), 'utf8').catch(() => '')
      return text.split('\n').filter(Boolean).map((line) => line.replace(/^get /, ''))
    }
  }
}

/** `env` (default: this process's) with `binDir` prepended to its PATH. */
export function pathWith (binDir: string, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, PATH: [binDir, env.PATH ?? '/usr/bin:/bin'].join(':') }
}
