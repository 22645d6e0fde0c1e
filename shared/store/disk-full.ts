import { DiskFullError } from '../errors.js'

/** errno codes that mean "no room left": the filesystem is full, or the user's disk quota is. */
const FULL = new Set(['ENOSPC', 'EDQUOT'])

export function isDiskFull (err: unknown): boolean {
  return err instanceof DiskFullError || FULL.has((err as NodeJS.ErrnoException | null)?.code ?? '')
}

/** `err` as a DiskFullError when it says the disk is full, else unchanged. */
export function asDiskFull (err: unknown, what: string): unknown {
  if (err instanceof DiskFullError || !isDiskFull(err)) return err
  return new DiskFullError(`disk full while ${what}`, { cause: err })
}
